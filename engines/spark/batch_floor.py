"""Spark's own per-micro-batch cost on this machine, without this project's source, parsing
or sink: the floor under the CTR query's fixed cost per batch (issue 14).

    .venv/spark/bin/python -m engines.spark.batch_floor --out data/bench/spark_floor.csv

Each variant is a streaming query from Spark's ``rate-micro-batch`` source (a fixed number
of rows per micro-batch, event time advancing with it) into the ``noop`` sink, with the
CTR query's trigger, master and shuffle partitions; one fresh JVM per (variant,
repetition), repetitions interleaved across variants. After a warm-up it measures the
driver JVM's CPU (/proc), its JIT compilation time and Spark's generated-code compilations
per batch. The variants add the CTR query's stateful core step by step:

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

VARIANTS = ("stateless", "window", "window-interpreted", "window-rocksdb")
COLUMNS = ("variant", "repetition", "batches", "rows_per_batch", "cpu_ms_per_batch",
           "jit_ms_per_batch", "codegen_per_batch", "batch_ms_median", "cores")


def measure(variant: str, rows_per_batch: int, trigger_ms: int, master: str,
            shuffle_partitions: int, warmup_s: float, measure_s: float) -> dict[str, float]:
    """One variant in this process's JVM (called in a fresh process per measurement)."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    builder = (SparkSession.builder.master(master).appName(f"batch-floor-{variant}")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions)))
    if variant == "window-interpreted":
        builder = builder.config("spark.sql.codegen.factoryMode", "NO_CODEGEN")
    if variant == "window-rocksdb":
        builder = (builder.config(
            "spark.sql.streaming.stateStore.providerClass",
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
            .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled",
                    "true"))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    jvm = spark.sparkContext._jvm
    pid = jvm.java.lang.ProcessHandle.current().pid()
    jit = jvm.java.lang.management.ManagementFactory.getCompilationMXBean()
    codegen = jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    rows = (spark.readStream.format("rate-micro-batch")
            .option("rowsPerBatch", rows_per_batch)
            .option("advanceMillisPerBatch", trigger_ms).load()
            .withColumn("k", F.col("value") % 10))
    if variant != "stateless":
        rows = (rows.withWatermark("timestamp", "2 seconds")
                .groupBy(F.window("timestamp", "10 seconds"), "k").count())
    with tempfile.TemporaryDirectory() as checkpoint:
        query = (rows.writeStream.format("noop").outputMode("append")
                 .trigger(processingTime=f"{trigger_ms} milliseconds")
                 .option("checkpointLocation", checkpoint).start())
        deadline = time.monotonic() + 120
        while query.lastProgress is None:  # the first batch plans and compiles everything
            if time.monotonic() > deadline or query.exception() is not None:
                raise RuntimeError(f"{variant}: no batch in 120 s ({query.exception()})")
            time.sleep(0.5)
        time.sleep(warmup_s)
        b0, c0, j0, g0 = query.lastProgress["batchId"], cpu_s(), jit.getTotalCompilationTime(), \
            codegen.getCount()
        time.sleep(measure_s)
        b1, c1, j1, g1 = query.lastProgress["batchId"], cpu_s(), jit.getTotalCompilationTime(), \
            codegen.getCount()
        durations = [p["durationMs"].get("triggerExecution", 0) for p in query.recentProgress
                     if p["batchId"] > b0]
        query.stop()
    n = max(b1 - b0, 1)
    return {"batches": n, "rows_per_batch": rows_per_batch,
            "cpu_ms_per_batch": round(1000 * (c1 - c0) / n, 1),
            "jit_ms_per_batch": round((j1 - j0) / n, 1),
            "codegen_per_batch": round((g1 - g0) / n, 2),
            "batch_ms_median": statistics.median(durations) if durations else None,
            "cores": round((c1 - c0) / measure_s, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV of every measurement")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--rows-per-batch", type=int, default=5000)  # 20k ev/s at 250 ms
    parser.add_argument("--trigger-ms", type=int, default=250)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--shuffle-partitions", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=20)
    parser.add_argument("--measure-s", type=float, default=30)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure in this process
    args = parser.parse_args(argv)
    settings = (args.rows_per_batch, args.trigger_ms, args.master, args.shuffle_partitions,
                args.warmup_s, args.measure_s)
    if args.one:
        print(json.dumps(measure(args.one, *settings)))
        return 0
    rows = []
    for repetition in range(1, args.repetitions + 1):  # interleaved: drift hits all alike
        for variant in args.variants:
            cmd = [sys.executable, "-m", "engines.spark.batch_floor", "--one", variant,
                   "--out", str(args.out)] + [
                f"--{k}={v}" for k, v in (("rows-per-batch", args.rows_per_batch),
                                          ("trigger-ms", args.trigger_ms),
                                          ("master", args.master),
                                          ("shuffle-partitions", args.shuffle_partitions),
                                          ("warmup-s", args.warmup_s),
                                          ("measure-s", args.measure_s))]
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=args.warmup_s + args.measure_s + 180,
                                  cwd=Path(__file__).resolve().parents[2])
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            row = {"variant": variant, "repetition": repetition,
                   **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"[{repetition}/{args.repetitions}] {variant}: {row['cpu_ms_per_batch']} "
                  f"CPU-ms per batch over {row['batches']} batches", flush=True)
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
