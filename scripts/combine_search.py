"""Combine the repetitions of one t_h search into its result (median and spread).

    python scripts/combine_search.py --reps data/quick/search/flink-spp/rep1.json ... \
        --out data/quick/search/flink-spp.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.analysis.throughput_search import combine_repetitions  # noqa: E402
from sdsbench.rundir import write_json_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", nargs="+", required=True, help="repetition result JSONs")
    parser.add_argument("--out", required=True, help="combined result JSON")
    args = parser.parse_args(argv)
    reps = [json.loads(Path(p).read_text()) for p in args.reps]
    write_json_atomic(args.out, combine_repetitions(reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
