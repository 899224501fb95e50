"""Re-analyse the trials of a t_h search with the current analysis code.

    python scripts/summarize_search.py --config config/config.yaml \
        --search data/quick/search/flink-spp.json --trials data/quick/search/flink-spp/trials \
        --out data/quick/summary/search/flink-spp.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.analysis.summarize import summarize_search  # noqa: E402
from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.rundir import write_json_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--search", required=True, help="result JSON of the search")
    parser.add_argument("--trials", required=True, help="directory of its trial runs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    result = json.loads(Path(args.search).read_text())
    write_json_atomic(args.out, summarize_search(result, args.trials, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
