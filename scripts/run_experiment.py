"""Run one experiment of the configured matrix (the Snakemake rule run_experiment calls it).

    python scripts/run_experiment.py --config config/config.yaml --run-id a2-constant-r50000 \
        --out data/quick/raw/a2-constant-r50000

Runs at a multiple of t_h need the search result: ``--search-result <search>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench import runner  # noqa: E402
from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.experiments import expand_runs, resolve_threshold_rate  # noqa: E402
from sdsbench.paths import services_state_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--search-result", help="t_h search result (runs at a multiple of t_h)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Snakemake ends the jobs of an interrupted run with SIGTERM: raise, so the runner
    # stops the SUT and leaves the run aside as <out>.failed (never as a finished run).
    signal.signal(signal.SIGTERM, _terminated)

    config = config_from_arguments(args)
    runs = expand_runs(config)
    if args.run_id not in runs:
        parser.error(f"run id {args.run_id!r} is not in this profile's matrix")
    spec = runs[args.run_id]
    if spec.get("rate_of"):
        if not args.search_result:
            parser.error(f"run {args.run_id} runs at a multiple of t_h: give --search-result")
        spec = resolve_threshold_rate(spec, json.loads(Path(args.search_result).read_text()))
    logging.info("run %s: %s", args.run_id, json.dumps(spec, sort_keys=True))
    # The runner starts the services in this directory, or reuses those running there.
    runner.execute_run(config, spec, args.out, services_state_dir())
    logging.info("run %s complete: %s", args.run_id, args.out)
    return 0


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
