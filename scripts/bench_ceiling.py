"""Each engine's pass-through ceiling on this machine (sdsbench.ceiling): a figure input, not
a test.

    .venv/main/bin/python scripts/bench_ceiling.py --config config/config.yaml \
        --out data/quick/bench/ceiling

Uses the services of engine runs (started if none run: ``sdsbench.paths.services_state_dir``).
Writes passes.csv, summary.json, the fill's generator files and each job's log and result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.ceiling import run_ceiling  # noqa: E402
from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.paths import services_state_dir  # noqa: E402
from sdsbench.rundir import atomic_run_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    # Built aside and moved in whole: an interrupted benchmark leaves no output behind.
    with atomic_run_dir(args.out) as partial:
        summary = run_ceiling(config, partial, services_state_dir())
    print(json.dumps(summary["engines"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
