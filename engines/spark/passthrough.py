"""Spark's pass-through ceiling: how fast Spark reads (``raw``) and reads and parses
(``parse``) the input topic with nothing else to do (issue 14; ``sdsbench.ceiling`` runs it).

Each pass is a streaming query over the whole topic from its earliest offset
(``Trigger.AvailableNow``: every record there at the start, in batches of at most
``--max-per-batch``) into Spark's ``noop`` sink. ``parse`` parses every record with the CTR
query's JSON schema and counts the parsed events (``Dataset.observe``), so the count is
exact. A pass's rate is its records over the span from its first batch's start to its
last batch's end, from the query's own progress.

    python -m engines.spark.passthrough --bootstrap HOST:PORT --topic T --out result.json \
        --master 'local[2]' --driver-memory 2g --jars a.jar,b.jar --passes raw,parse
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from engines.common.passthrough_job import parse_args, pass_result, write_result
from engines.spark.ctr_query import event_schema
from engines.spark.progress import iso_to_ms

OBSERVATION = "passthrough"


def build(spark: Any, bootstrap: str, topic: str, mode: str, max_per_batch: int) -> Any:
    """The pass's DataFrame: the topic's values, parsed in ``parse`` mode."""
    from pyspark.sql import functions as F

    source = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", bootstrap).option("subscribe", topic)
              .option("startingOffsets", "earliest").option("failOnDataLoss", "true")
              .option("maxOffsetsPerTrigger", str(max_per_batch)).load())
    if mode == "raw":
        rows = source.select(F.col("value"))
        counted = F.count(F.lit(1))
    else:
        rows = source.select(F.from_json(F.col("value").cast("string"),
                                         event_schema(with_corrupt_column=False)).alias("e"))
        # An event counts when every field parsed: all of them are read.
        parsed = F.lit(True)
        for name in event_schema(with_corrupt_column=False).fieldNames():
            parsed = parsed & F.col(f"e.{name}").isNotNull()
        counted = F.count(F.when(parsed, F.lit(1)))
    return rows.observe(OBSERVATION, counted.alias("counted"))


def run_pass(spark: Any, bootstrap: str, topic: str, mode: str, max_per_batch: int,
             scratch: Path) -> dict[str, Any]:
    """One pass over the topic (module docstring): records, counted events, seconds, rate."""
    started = time.time()
    query = (build(spark, bootstrap, topic, mode, max_per_batch).writeStream.format("noop")
             .option("checkpointLocation", str(scratch / f"cp-{time.time_ns()}"))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    batches = [json.loads(p.json) for p in query.recentProgress]
    batches = [b for b in batches if b.get("numInputRows")]
    if not batches:
        raise RuntimeError(f"pass {mode} over {topic} read nothing")
    first_ms = iso_to_ms(batches[0]["timestamp"])
    last = batches[-1]
    end_ms = iso_to_ms(last["timestamp"]) + last["durationMs"]["triggerExecution"]
    records = sum(b["numInputRows"] for b in batches)
    counted = sum(int((b.get("observedMetrics") or {}).get(OBSERVATION, {}).get("counted", 0))
                  for b in batches)
    return pass_result(mode, records, counted, first_ms, end_ms, started,
                       batches=len(batches))


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--max-per-batch", type=int, default=500_000)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], _options, argv)
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory(prefix="sdsbench-passthrough-") as scratch:
        spark = (SparkSession.builder.appName("sdsbench-passthrough").master(args.master)
                 .config("spark.driver.memory", args.driver_memory)
                 .config("spark.jars", args.jars).config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.driver.host", "127.0.0.1")
                 .config("spark.driver.bindAddress", "127.0.0.1")
                 .config("spark.local.dir", scratch).getOrCreate())
        spark.sparkContext.setLogLevel("WARN")
        results = [run_pass(spark, args.bootstrap, args.topic, mode, args.max_per_batch,
                            Path(scratch)) for mode in args.passes]
        spark.stop()
    write_result(args.out, "spark", {"master": args.master}, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
