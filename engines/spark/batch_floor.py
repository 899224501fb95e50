"""Spark's own per-micro-batch cost on this machine, without this project's source, parsing
or sink: the floor under the CTR query's fixed cost per batch (issue 14).

    .venv/spark/bin/python -m engines.spark.batch_floor --out data/bench/spark_floor.csv

Each variant is a streaming query from Spark's ``rate-micro-batch`` source (a fixed number
of rows per micro-batch, event time advancing with it) into the ``noop`` sink, with the
CTR query's trigger, master and shuffle partitions. Each repetition is one fresh driver
JVM, as warm as an engine session's (the windowed query runs unmeasured for
``warmup_s`` first), which then measures every variant in turn, the order rotated from
one repetition to the next: per variant the driver JVM's CPU (/proc), its JIT
compilation time and Spark's generated-code compilations per batch. The variants add the
CTR query's stateful core step by step:

- ``stateless``: rows -> noop (planning, scheduling, offset and commit logs);
- ``window``: + ``withWatermark`` + 10 s tumbling windows per key, append mode (the
  state store, the shuffle);
- ``window-interpreted``: as ``window`` with ``spark.sql.codegen.factoryMode=NO_CODEGEN``
  (no code generated per batch: the watermark is a literal in the eviction predicate);
- ``window-rocksdb``: as ``window`` with the RocksDB state store and changelog
  checkpointing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ("stateless", "window", "window-interpreted", "window-rocksdb")
COLUMNS = ("variant", "repetition", "position", "batches", "rows_per_batch",
           "cpu_ms_per_batch", "jit_ms_per_batch", "codegen_per_batch", "batch_ms_median",
           "cores")
# SQL settings a variant changes; every query starts from the defaults (runtime settings,
# so one JVM serves every variant).
VARIANT_CONF = {
    "window-interpreted": {"spark.sql.codegen.factoryMode": "NO_CODEGEN"},
    "window-rocksdb": {
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true"},
}
SETTLE_S = 3.0  # after a query's first batch, before its measurement


def rotated(variants: list[str], repetition: int) -> list[str]:
    """The measuring order of ``repetition`` (1-based): each variant first once in turn."""
    k = (repetition - 1) % len(variants)
    return variants[k:] + variants[:k]


def measure_all(variants: list[str], rows_per_batch: int, trigger_ms: int, master: str,
                shuffle_partitions: int, warmup_s: float, measure_s: float,
                ) -> list[dict[str, Any]]:
    """Every variant in this process's JVM, in the given order, after the warm-up."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (SparkSession.builder.master(master).appName("batch-floor")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", str(shuffle_partitions)).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    jvm = spark.sparkContext._jvm
    pid = jvm.java.lang.ProcessHandle.current().pid()
    jit = jvm.java.lang.management.ManagementFactory.getCompilationMXBean()
    codegen = jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    def sample(query: Any) -> tuple[int, float, int, int]:
        return (query.lastProgress["batchId"], cpu_s(), jit.getTotalCompilationTime(),
                codegen.getCount())

    def run(variant: str, settle_s: float, measured_s: float) -> dict[str, Any]:
        for key in {k for conf in VARIANT_CONF.values() for k in conf}:
            spark.conf.unset(key)
        for key, value in VARIANT_CONF.get(variant, {}).items():
            spark.conf.set(key, value)
        # Event time from now, as the CTR job's: every query sees new watermarks, which
        # Spark compiles into code (from 0, each query would repeat the warm-up's, cached).
        rows = (spark.readStream.format("rate-micro-batch")
                .option("startTimestamp", time.time_ns() // 1_000_000)
                .option("rowsPerBatch", rows_per_batch)
                .option("advanceMillisPerBatch", trigger_ms).load()
                .withColumn("k", F.col("value") % 10))
        if variant != "stateless":
            rows = (rows.withWatermark("timestamp", "2 seconds")
                    .groupBy(F.window("timestamp", "10 seconds"), "k").count())
        # Checkpoints stay until the process ends: a stopped query's state store (RocksDB's
        # changelog) may still be committing into its directory.
        checkpoint = tempfile.mkdtemp(prefix=f"{variant}-", dir=scratch)
        query = (rows.writeStream.format("noop").outputMode("append")
                 .trigger(processingTime=f"{trigger_ms} milliseconds")
                 .option("checkpointLocation", checkpoint).start())
        try:
            deadline = time.monotonic() + 120
            while query.lastProgress is None:  # the first batch plans and compiles
                if time.monotonic() > deadline or query.exception() is not None:
                    raise RuntimeError(f"{variant}: no batch in 120 s "
                                       f"({query.exception()})")
                time.sleep(0.5)
            time.sleep(settle_s)
            b0, c0, j0, g0 = sample(query)
            time.sleep(measured_s)
            b1, c1, j1, g1 = sample(query)
            durations = [p["durationMs"].get("triggerExecution", 0)
                         for p in query.recentProgress if p["batchId"] > b0]
        finally:
            query.stop()
        n = max(b1 - b0, 1)
        return {"variant": variant, "batches": n, "rows_per_batch": rows_per_batch,
                "cpu_ms_per_batch": round(1000 * (c1 - c0) / n, 1),
                "jit_ms_per_batch": round((j1 - j0) / n, 1),
                "codegen_per_batch": round((g1 - g0) / n, 2),
                "batch_ms_median": statistics.median(durations) if durations else None,
                "cores": round((c1 - c0) / measured_s, 3) if measured_s else None}

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as scratch:
        run("window", warmup_s, 0.0)  # the JVM's warm-up, not measured
        return [{**run(v, SETTLE_S, measure_s), "position": i + 1}
                for i, v in enumerate(variants)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV of every measurement")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--rows-per-batch", type=int, default=5000)  # 20k ev/s at 250 ms
    parser.add_argument("--trigger-ms", type=int, default=250)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--shuffle-partitions", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=30)
    parser.add_argument("--measure-s", type=float, default=15)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    settings = (args.rows_per_batch, args.trigger_ms, args.master, args.shuffle_partitions,
                args.warmup_s, args.measure_s)
    if args.one:  # one repetition in this process: the variants in the order given
        print(json.dumps(measure_all(args.variants, *settings)))
        return 0
    rows = []
    for repetition in range(1, args.repetitions + 1):
        order = rotated(args.variants, repetition)
        cmd = [sys.executable, "-m", "engines.spark.batch_floor", "--one", "--out",
               str(args.out), "--variants", *order] + [
            f"--{k}={v}" for k, v in (("rows-per-batch", args.rows_per_batch),
                                      ("trigger-ms", args.trigger_ms), ("master", args.master),
                                      ("shuffle-partitions", args.shuffle_partitions),
                                      ("warmup-s", args.warmup_s),
                                      ("measure-s", args.measure_s))]
        budget = args.warmup_s + len(order) * (args.measure_s + SETTLE_S + 60) + 120
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget,
                              cwd=Path(__file__).resolve().parents[2])
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        for row in json.loads(done.stdout.strip().splitlines()[-1]):
            rows.append({**row, "repetition": repetition})
            print(f"[{repetition}/{args.repetitions}] {row['variant']}: "
                  f"{row['cpu_ms_per_batch']} CPU-ms per batch over {row['batches']} batches",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{'variant':20s} CPU-ms per batch, median [min-max] of {args.repetitions}")
    for variant in args.variants:
        values = sorted(r["cpu_ms_per_batch"] for r in rows if r["variant"] == variant)
        codegen = statistics.median(r["codegen_per_batch"] for r in rows
                                    if r["variant"] == variant)
        print(f"{variant:20s} {statistics.median(values):.0f} [{values[0]:.0f}-{values[-1]:.0f}]"
              f"  (code generated per batch: {codegen})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
