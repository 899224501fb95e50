"""Summarize one run directory: summary JSON, per-window CSV, time-series CSV.

    python scripts/summarize_run.py --config config/config.yaml --run-dir data/quick/raw/<id> \
        --summary s.json --windows w.csv --series t.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.analysis.summarize import write_run_summary  # noqa: E402
from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--windows", required=True)
    parser.add_argument("--series", required=True)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    write_run_summary(args.run_dir, config, args.summary, args.windows, args.series)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
