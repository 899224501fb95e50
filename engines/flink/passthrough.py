"""Flink's pass-through ceiling: how fast Flink reads (``raw``) and reads and parses
(``parse``) the input topic with nothing else to do (issue 14; ``sdsbench.ceiling`` runs it).

Each pass is a streaming job over the whole topic, bounded at the end offsets it finds at
its start (``engines.flink.passthrough_sql``), at the CTR job's parallelism. The count is
exact; a pass's rate is its records over the span between the first and the last record
the aggregation saw (processing time), so job start-up is not in it.

    python -m engines.flink.passthrough --bootstrap HOST:PORT --topic T --out result.json \
        --parallelism 2 --jars a.jar,b.jar --passes raw,parse
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from engines.common.passthrough_job import parse_args, pass_result, write_result
from engines.flink import passthrough_sql


def run_pass(bootstrap: str, topic: str, mode: str, parallelism: int, jars: list[str],
             n: int) -> dict[str, Any]:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    settings = {"parallelism.default": str(parallelism), "table.local-time-zone": "UTC",
                "pipeline.jars": ";".join(Path(j).resolve().as_uri() for j in jars),
                "pipeline.object-reuse": "true", **passthrough_sql.SETTINGS}
    for key, value in settings.items():
        conf.set_string(key, value)
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_streaming_mode()
                                    .with_configuration(conf).build())
    started = time.time()
    t_env.execute_sql(passthrough_sql.source_ddl(bootstrap, topic,
                                                 f"sdsbench-passthrough-{mode}-{n}", mode))
    last = None
    with t_env.execute_sql(passthrough_sql.count_query(mode)).collect() as rows:
        for row in rows:  # updates of the one global row: the last is the total
            last = row
    if last is None:
        raise RuntimeError(f"pass {mode} over {topic} read nothing")
    counted = int(last[0])
    return pass_result(mode, counted, counted, int(last[1]), int(last[2]), started)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parallelism", type=int, default=2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], _options, argv)
    results = [run_pass(args.bootstrap, args.topic, mode, args.parallelism,
                        args.jars.split(","), i) for i, mode in enumerate(args.passes)]
    write_result(args.out, "flink", {"parallelism": args.parallelism}, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
