"""One repetition of the search for the sustainable throughput t_h of one pipeline under
one arrival process.

    python scripts/search_throughput.py --config config/config.yaml --search-id flink-spp \
        --repetition 1 --trials data/quick/search/flink-spp/trials \
        --out data/quick/search/flink-spp/rep1.json

Each trial is a complete run (sdsbench.runner.execute_run); the method is in
sdsbench.analysis.throughput_search, the runs in sdsbench.search.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.experiments import searches  # noqa: E402
from sdsbench.paths import services_state_dir  # noqa: E402
from sdsbench.rundir import write_json_atomic  # noqa: E402
from sdsbench.search import run_search  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--search-id", required=True, help="<pipeline>-<process>")
    parser.add_argument("--repetition", type=int, default=1, help="which repetition (1..)")
    parser.add_argument("--trials", required=True, help="directory for the trial runs")
    parser.add_argument("--out", required=True, help="result JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    config = config_from_arguments(args)
    known = searches(config)
    if args.search_id not in known:
        parser.error(f"search {args.search_id!r} is not in this profile ({sorted(known)})")
    s = known[args.search_id]
    result = run_search(config, s["pipeline"], s["process"], args.trials, args.repetition,
                        services_dir=services_state_dir())
    write_json_atomic(args.out, result)
    logging.info("t_h of %s, repetition %d: %s (%s)", args.search_id, args.repetition,
                 result["t_h_eps"], result["stop_reason"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
