"""Build one table across runs from the summary files (sdsbench.analysis.tables).

    python scripts/make_table.py --config config/config.yaml --table runs \
        --summary-dir data/quick/summary --out data/quick/summary/runs.csv

The faults table (sdsbench.analysis.faults) also reads the raw runs: ``--table faults
--raw-dir data/quick/raw``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.analysis.tables import build_table  # noqa: E402
from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.rundir import write_text_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--table", required=True, choices=["runs", "search", "stress", "headline",
                                                           "correctness", "cpu", "faults"])
    parser.add_argument("--summary-dir", required=True)
    parser.add_argument("--raw-dir", help="raw run directories (table faults)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    if args.table == "faults":
        from sdsbench.analysis.faults import faults_table

        if not args.raw_dir:
            parser.error("--table faults needs --raw-dir")
        table = faults_table(config, args.summary_dir, args.raw_dir)
    else:
        table = build_table(args.table, args.summary_dir, config)
    write_text_atomic(args.out, table.to_csv(index=False))
    print(f"{args.table}: {len(table)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
