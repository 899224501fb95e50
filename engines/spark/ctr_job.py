"""The CTR query on Spark Structured Streaming (A4s).

Asks, per campaign and per 10 s event-time window: views, clicks, CTR = clicks / views
(null when views = 0) and the min/max insertion time of the window's events. The output
record is the shared one (``sdsbench.contract.OUTPUT_FIELDS``, pipeline "spark"); its
event time is the window end.

Differences from YSB: YSB counts views only and keeps the ad -> campaign map in Redis;
here all valid events are grouped (so a window of a campaign with only purchases is
emitted with views = 0, ctr = null), the map is the contract's fixed catalog joined as a
broadcast table, and malformed input is set aside instead of failing the job.

One streaming query reads the run's input topic, once per record:

- ``ctr``: parse -> classify -> count the rejects per reason (``Dataset.observe``, in each
  batch's progress) -> valid events -> watermark -> 10 s tumbling windows per campaign ->
  output topic (append mode by default; ``update`` emits a window every time it changes,
  so readers take the last record per window).
- After the run, when the driver asks (``collect``), one batch job reads the input topic
  again with the same classification and writes the rejected records, each with its
  reason (``contract.REJECT_REASONS``), to the run's dead-letter topic
  (``set_aside_rejects``). One ``classify`` expression for both, with the record's Kafka
  timestamp as "now", so a record is either aggregated or dead-lettered; the summary
  keeps both counts (``rejected_by_reason`` from the topic, ``rejected_observed_by_reason``
  from the streaming batches) as a check.

Cost (issue 6; 30 s runs, SPP, on the shared 2-core machine while other runs loaded it,
load average 3-8: pessimistic numbers, to re-measure on a quiet machine). Per record,
the plans run in batch mode over 1M records read from Kafka (local[2], JIT warm) cost
2.3 CPU-us for the Kafka read, 4.8 with parsing and classification, 7.0 with aggregation
and output (the CTR query) and 4.5 for the dead-letter query: ~12 CPU-us per event for
both. The streaming runs cost far more: a two-point fit of SUT CPU-seconds
(metrics/resources.csv) at 2000 and 20000 ev/s gave ~0.5-0.8 CPU-s per micro-batch and
~30 CPU-us per event, with the JIT's compiler threads at a third of the JVM's thread CPU
(JFR). Two changes cut the per-batch part (below): at 2000 ev/s the CTR batch went from
1.2 s to 0.54 s (median; walCommit + commitOffsets from 154 to 31 ms) and the p95
latency above the delay from 3.3 s to 2.2 s. Probes with both changes (load average
2-3): 30000 ev/s, p95 above the delay 1.34 s (CTR batches 0.31 s median), lag flat;
50000 ev/s keeps up (lag falling, 0.9 s of input at the end) but p95 2.1 s (batches 0.7
s). Latency above the delay is about 2.5 batch durations: the wait for the batch that
reads the event moving the watermark past the window end (~half a batch), that batch,
and the next one, which emits the window (batches run back to back, so the trigger wait
adds nothing once a batch takes longer than ``trigger_ms``). A JFR profile at 20000
ev/s: JSON parsing 27 % of the samples, the Kafka consumer 17 %, planning 9 %; then both
queries read and parse every record. Tried and not kept: parsing the generator's exact
layout with one ``split`` instead of from_json (exact classification kept) was not
cheaper (4.7 vs 3.7 CPU-us per record, batch benchmark); ``map_literal`` costs 4.9 vs
3.2 CPU-us per record (a linear scan of the 1000-entry map) for 27 vs 65 ms of planning
per batch; a C1-only JIT (-XX:TieredStopAtLevel=1) lowered the CPU per batch (~0.37 vs
~0.5 CPU-s) but tripled the cost per record (CTR path 24.5 vs 7.0, dead-letter path 15.3
vs 4.5 CPU-us, same batch benchmark).

One read and parse per record (issue 6, this layout). Before, a second streaming query
(``dead_letter``, 5 s trigger) read and parsed every record again to write the rejects.
A union of the aggregation's output with the rejected rows into one Kafka sink (a
``topic`` column per row) is accepted by Spark 4.2 in append mode, and the rejected rows
leave in the batch that reads them, but the plan scans the source once per branch (two
MicroBatchScans under the Union), so it would still read and parse twice; not kept.
Measured, run ``spark-spp-r20000`` (SPP 20000 ev/s, 20 s; scripts/run_experiment.py,
SUT CPU from metrics/resources.csv from 2 s after the first batch with input to the last,
divided by the CTR query's input rows in that span). With ``trigger_ms`` 2000, so both
layouts run the same 9 CTR batches (machine 40-50 % busy): 43.7 -> 31.1 CPU-us per event
(-29 %), CTR batch median 660 -> 638 ms. With the default 250 ms trigger the engine
spends what the dead-letter query freed on more, smaller CTR batches (45 -> 49 and 21 ->
43 batches in two pairs, ~81-85 CPU-us per event both ways, machine 93-99 % busy): the
CTR batch p95 fell from 1000 to 551 ms and from 2066 to 607 ms (median 335 -> 357 and
691 -> 416 ms). Window latency from 20 s runs on the loaded machine was inconclusive
(p95 above the delay 1060 -> 1369 ms in one pair, 1958 -> 1312 ms in the other); the
t_h probes at 30000 and 50000 ev/s are to be re-run on a quiet machine. The set-aside
after the run took 4.1-4.9 s for 400k records (outside the measured load).

Run as ``python -m engines.spark.ctr_job --config JOB.json --run-dir DIR`` (one run, its
own JVM), or as an engine-session server (``engines.common.engine_session``) with
``--config FIRST_JOB.json --session-dir D``: one Spark session (driver JVM) serves runs
one at a time, so the JVM start (~6 s) and the cold JIT are paid once per session, not
per run. Shared between runs: the JVM and what fixes it (``session_settings``: master,
driver memory, jars, extra_conf; the session key). Per run (``serve_run``, the same code
as the one-shot job): shuffle partitions, the run's own warm-up (``warmup_events``, so
each run starts with its plan compiled whatever ran before), listener, query, set-aside,
STOP, final.json; afterwards everything of the run is stopped and removed and a full GC
runs (``reset_session``). The first run of a session also runs ``session.warmup_events``
once. A failed run is reported (code 1) and the server takes the next one; a session it
cannot reset exits. The JSON is written by ``engines.spark.pipeline`` (broker, topics,
jars, the ``spark:`` settings).
The job never times itself: a StreamingQueryListener (``engines.spark.progress``) writes
Spark's own per-batch numbers, the runner samples CPU and memory from outside.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdsbench import contract
from sdsbench.rundir import write_json_atomic

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import DataStreamWriter
    from pyspark.sql.types import DataType, StructType

log = logging.getLogger("sdsbench.spark.job")

PIPELINE_NAME = "spark"
OUTPUT_MODES = ("append", "update")
CAMPAIGN_LOOKUPS = ("broadcast_join", "map_literal")
CORRUPT_COLUMN = "_corrupt_record"
REJECTS_OBSERVATION = "rejects"  # name of the per-batch reject counts in query progress
SESSION_WARMUP_BATCHES = 80  # ~5k events each at 400k: the size of a 250 ms batch at 20k/s
WARMUP_TIMEOUT_S = 120.0  # longest wait for a warm-up query, or the first batch


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class JobConfig:
    """Everything the job needs; ``engines.spark.pipeline.job_config`` builds it."""

    run_id: str
    bootstrap: str
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    campaigns: int
    ads_per_campaign: int
    jars: tuple[str, ...]
    master: str
    driver_memory: str
    trigger_ms: int
    watermark_delay_ms: int
    output_mode: str
    shuffle_partitions: int
    max_offsets_per_trigger: int | None
    campaign_lookup: str
    warmup_events: int
    extra_conf: dict[str, str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Validate a job config; the error names the bad key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"spark job config: unknown keys {unknown}")
        missing = sorted(known - set(data))
        if missing:
            raise ValueError(f"spark job config: missing keys {missing}")
        for key in ("trigger_ms", "shuffle_partitions",
                    "campaigns", "ads_per_campaign"):
            if not isinstance(data[key], int) or data[key] < 1:
                raise ValueError(f"spark job config key {key}: must be an integer >= 1")
        for key in ("watermark_delay_ms", "warmup_events"):
            if not isinstance(data[key], int) or data[key] < 0:
                raise ValueError(f"spark job config key {key}: must be an integer >= 0")
        limit = data["max_offsets_per_trigger"]
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError("spark job config key max_offsets_per_trigger: integer >= 1 or null")
        if data["output_mode"] not in OUTPUT_MODES:
            raise ValueError(f"spark job config key output_mode: one of {OUTPUT_MODES}")
        if data["campaign_lookup"] not in CAMPAIGN_LOOKUPS:
            raise ValueError(f"spark job config key campaign_lookup: one of {CAMPAIGN_LOOKUPS}")
        extra = data["extra_conf"]
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise ValueError("spark job config key extra_conf: a mapping of strings to strings")
        for jar in data["jars"]:
            if not Path(jar).is_file():
                raise ValueError(f"spark job config key jars: {jar} does not exist")
        return cls(**{**data, "jars": tuple(data["jars"])})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"jars": list(self.jars)}


@dataclass(frozen=True)
class JobPaths:
    """Where the job and its driver keep files inside the run directory."""

    run_dir: Path

    @property
    def spark_dir(self) -> Path:
        return self.run_dir / "spark"

    @property
    def job_config(self) -> Path:
        return self.spark_dir / "job_config.json"

    @property
    def log(self) -> Path:
        return self.spark_dir / "job.log"

    def checkpoint(self, query: str) -> Path:
        return self.spark_dir / "checkpoint" / query

    @property
    def scratch(self) -> Path:
        return self.spark_dir / "tmp"

    @property
    def status(self) -> Path:
        return self.spark_dir / "status.json"  # latest progress per query (the driver polls it)

    @property
    def ready(self) -> Path:
        return self.spark_dir / "ready.json"

    @property
    def final(self) -> Path:
        return self.spark_dir / "final.json"

    @property
    def stop_request(self) -> Path:
        return self.spark_dir / "STOP"

    @property
    def set_aside_request(self) -> Path:
        return self.spark_dir / "SET_ASIDE"  # the driver asks for the dead letters (collect)

    @property
    def set_aside(self) -> Path:
        return self.spark_dir / "set_aside.json"  # the job's report: records, rejects per reason

    @property
    def progress_csv(self) -> Path:
        return self.run_dir / "metrics" / "spark_progress.csv"


# ------------------------------------------------------------------ schemas
def spark_type(kind: str) -> DataType:
    """The Spark type of a contract logical type (the one translation from the contract)."""
    from pyspark.sql import types as T

    mapping = {"string": T.StringType(), "long": T.LongType(), "double": T.DoubleType()}
    if kind not in mapping:
        raise ValueError(f"no Spark type for contract type {kind!r}")
    return mapping[kind]


def event_schema(with_corrupt_column: bool = True) -> StructType:
    """``contract.EVENT_SCHEMA`` as a Spark struct (+ the column for unparsable text)."""
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(name, spark_type(kind)) for name, kind in
                           contract.EVENT_SCHEMA])
    if with_corrupt_column:
        schema = schema.add(T.StructField(CORRUPT_COLUMN, T.StringType()))
    return schema


# ------------------------------------------------------------------ session
def session_settings(cfg: JobConfig) -> dict[str, Any]:
    """The settings that fix the JVM (an engine session's key): runs that agree on them
    can share one driver JVM; everything else of ``JobConfig`` is per run."""
    return {"master": cfg.master, "driver_memory": cfg.driver_memory, "jars": list(cfg.jars),
            "extra_conf": dict(cfg.extra_conf)}


def session_conf(cfg: JobConfig, local_dir: Path) -> dict[str, str]:
    """Spark settings of the job; all go through spark-submit, before the JVM starts
    (``spark.sql.shuffle.partitions`` is set again per run: a runtime SQL setting)."""
    return {
        # Local mode: the driver JVM is the whole engine, so its heap is the memory cap.
        "spark.driver.memory": cfg.driver_memory,
        # The connector and its runtime deps as local files: nothing is downloaded at run
        # time (spark.jars.packages would resolve from a repository).
        "spark.jars": ",".join(cfg.jars),
        # Default 200 shuffle partitions would schedule 200 tiny state-store tasks per
        # batch on 2 cores; the state here is 10 campaigns x a few open windows.
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.ui.enabled": "false",  # no web server competing for the 2 cores
        "spark.ui.showConsoleProgress": "false",  # no progress bars in the job log
        # Loopback only: the driver's RPC and block manager need no other interface.
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.session.timeZone": "UTC",
        # Keep the fields that did parse when another field has the wrong type, so a
        # rejected record is classified by its first bad field (as contract.validate_event).
        "spark.sql.json.enablePartialResults": "true",
        # After the last data batch, run a batch without data when the watermark moved,
        # so windows the final watermark closes are emitted (the drain rule relies on it).
        "spark.sql.streaming.noDataMicroBatches.enabled": "true",
        # Keep every batch's offsets and watermark in the checkpoint: the late-event audit
        # (engines.spark.late_audit) replays them. The default (100) would purge them.
        "spark.sql.streaming.minBatchesToRetain": "100000",
        "spark.local.dir": str(local_dir),
        # Checkpoint files (offsets, commits, state deltas: several per batch) through the
        # FileSystem API. The default FileContext manager, on the local file system without
        # Hadoop's native library, runs a `chmod` process per file created and a `readlink`
        # per rename (a JFR profile: ~1400 forks of the 2 GB JVM in a 30 s run; walCommit +
        # commitOffsets 150 ms a batch at 2000 ev/s, 30 ms with this manager). A rename
        # on one local file system is atomic, which is all the manager needs.
        "spark.sql.streaming.checkpointFileManagerClass":
            "org.apache.spark.sql.execution.streaming.checkpointing."
            "FileSystemBasedCheckpointFileManager",
        # The set-aside job (after the run) and the idle CTR query share the task slots;
        # FAIR keeps a CTR batch from waiting behind the whole set-aside job.
        "spark.scheduler.mode": "FAIR",
        # Anything else, e.g. a profiler's -XX options in spark.driver.extraJavaOptions.
        **cfg.extra_conf,
    }


def make_session(cfg: JobConfig, local_dir: Path, app_name: str) -> SparkSession:
    from pyspark.sql import SparkSession

    local_dir.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(app_name).master(cfg.master)
    for key, value in session_conf(cfg, local_dir).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# ------------------------------------------------------------------ the query
def read_input(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.bootstrap)
        .option("subscribe", cfg.input_topic)
        # The input topic is created empty for this run, so "earliest" is exactly this
        # run's events, including any sent while Spark was still starting. On a restart
        # the checkpoint's offsets win and this option is ignored (exact resume).
        .option("startingOffsets", "earliest")
        # Losing input (topic deleted, offsets out of range) would make the counts wrong
        # without a trace: fail the query instead of skipping silently.
        .option("failOnDataLoss", "true")
    )
    if cfg.max_offsets_per_trigger is not None:
        # Bounds a batch after a backlog (start-up, a GC pause) so batch time and memory
        # stay bounded; a rate above limit / batch time shows up as growing lag.
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    return reader.load()


def catalog_values_sql(catalog: contract.AdCatalog) -> str:
    """``SELECT`` of the ad -> campaign catalog as an inline table (ad_id, campaign_id)."""
    for ad in catalog.ad_ids:
        if "'" in ad or "\\" in ad:
            raise ValueError(f"ad id {ad!r} cannot be written as a SQL string literal")
    rows = ", ".join(f"('{ad}', {campaign}L)" for ad, campaign in catalog.campaign_of_ad.items())
    return f"SELECT * FROM VALUES {rows} AS catalog(ad_id, campaign_id)"


def campaign_table(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """The catalog as an inline table (a LocalRelation in the plan).

    Why not ``createDataFrame(rows)``: that is an RDD, and a streaming query plans every
    micro-batch anew, so each batch ran a Spark job to collect the 1000 rows for the
    broadcast (closure cleaning, serialisation, task scheduling: in a JFR profile at
    2000 ev/s ~5 % of the samples were in the broadcast-exchange thread alone). A local
    relation is collected without a job.
    """
    return spark.sql(catalog_values_sql(contract.ad_catalog(cfg.campaigns, cfg.ads_per_campaign)))


def with_campaign(events: DataFrame, spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """Add ``campaign_id`` (null for an ad not in the catalog)."""
    from pyspark.sql import functions as F

    if cfg.campaign_lookup == "broadcast_join":
        # YSB-style: a 1000-row static table, hash-joined on every executor.
        table = F.broadcast(campaign_table(spark, cfg))
        return events.join(table, on="ad_id", how="left")
    catalog = contract.ad_catalog(cfg.campaigns, cfg.ads_per_campaign)
    pairs = [F.lit(x) for ad, c in catalog.campaign_of_ad.items() for x in (ad, c)]
    # try_element_at: a missing key gives null (element_at raises under ANSI mode).
    lookup = F.try_element_at(F.create_map(*pairs), F.col("ad_id")).cast("long")
    return events.withColumn("campaign_id", lookup)


def reject_reason(raw: Column) -> Column:
    """The first failing check of ``contract.validate_event``, or null for a valid event.

    Expects the parsed struct ``e``, ``campaign_id`` and ``kafka_time_ms`` as columns.
    "Now" for the absurd-timestamp check is the record's Kafka timestamp (the producer's
    send time), not the batch clock, so the streaming query, the set-aside after the run
    and a replay classify a record identically. Known difference from the Python
    validator: Spark's JSON reader takes a non-string JSON value in a string field as its text,
    accepts trailing text after a complete object, and rejects integers beyond 64 bits as
    bad_type (Python: absurd_timestamp).
    """
    from pyspark.sql import functions as F

    e = F.col("e")
    not_json = e.isNull() | (
        e[CORRUPT_COLUMN].isNotNull() & F.json_object_keys(raw).isNull()
    )
    field_problems = [
        F.when(e[name].isNotNull(), F.lit(None))
        .when(F.get_json_object(raw, f"$.{name}").isNull(), F.lit("missing_field"))
        .otherwise(F.lit("bad_type"))
        for name in contract.EVENT_FIELDS
    ]
    any_field_null = F.lit(False)
    for name in contract.EVENT_FIELDS:
        any_field_null = any_field_null | e[name].isNull()
    event_time_ns = e["event_time_ns"]
    plausible = (event_time_ns > 0) & (
        F.expr("e.event_time_ns div 1000000")
        <= F.col("kafka_time_ms") + F.lit(contract.MAX_FUTURE_SKEW_MS)
    )
    return (
        F.when(not_json, F.lit("not_json"))
        .when(any_field_null, F.coalesce(*field_problems))
        .when(~e["event_type"].isin(*contract.EVENT_TYPES), F.lit("bad_event_type"))
        .when(F.col("campaign_id").isNull(), F.lit("unknown_ad"))
        .when(~plausible, F.lit("absurd_timestamp"))
    )


def classified_events(source: DataFrame, spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """Input records parsed and classified: valid events have ``reject_reason`` null."""
    from pyspark.sql import functions as F

    raw = F.col("value").cast("string")
    parsed = source.select(
        raw.alias("raw"),
        F.from_json(raw, event_schema(), {"columnNameOfCorruptRecord": CORRUPT_COLUMN})
        .alias("e"),
        F.unix_millis(F.col("timestamp")).alias("kafka_time_ms"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    ).withColumn("ad_id", F.col("e.ad_id"))
    joined = with_campaign(parsed, spark, cfg)
    return joined.withColumn("reject_reason", reject_reason(F.col("raw")))


def ctr_records(valid: DataFrame, cfg: JobConfig) -> DataFrame:
    """Windowed CTR per campaign as Kafka records (``value`` = the contract's JSON)."""
    from pyspark.sql import functions as F

    events = valid.select(
        # micro-second timestamps: windows fall on the same ms boundaries as
        # contract.event_window_start_ms (floor of event_time_ns / 1e6).
        F.timestamp_micros(F.expr("e.event_time_ns div 1000")).alias("event_time"),
        F.col("campaign_id"),
        F.col("e.event_type").alias("event_type"),
        F.col("e.insertion_time_ms").alias("insertion_time_ms"),
    )
    windowed = (
        events.withWatermark("event_time", f"{cfg.watermark_delay_ms} milliseconds")
        .groupBy(F.window("event_time", f"{contract.WINDOW_MS} milliseconds"), "campaign_id")
        .agg(
            F.count_if(F.col("event_type") == "view").alias("views"),
            F.count_if(F.col("event_type") == "click").alias("clicks"),
            F.min("insertion_time_ms").alias("min_insertion_ms"),
            F.max("insertion_time_ms").alias("max_insertion_ms"),
        )
    )
    columns = {
        "pipeline": F.lit(PIPELINE_NAME),
        "campaign_id": F.col("campaign_id"),
        "window_start_ms": F.unix_millis(F.col("window.start")),
        "window_end_ms": F.unix_millis(F.col("window.end")),
        "views": F.col("views"),
        "clicks": F.col("clicks"),
        # CASE evaluates lazily, so no division by zero under ANSI mode.
        "ctr": F.when(F.col("views") > 0, F.col("clicks") / F.col("views")),
        # current_timestamp() is fixed per micro-batch (the batch start); this reads the
        # JVM clock per row, in the task that hands the row to the Kafka producer.
        "result_time_ms": F.expr("reflect('java.lang.System', 'currentTimeMillis')"),
        "min_insertion_ms": F.col("min_insertion_ms"),
        "max_insertion_ms": F.col("max_insertion_ms"),
    }
    if set(columns) != set(contract.OUTPUT_FIELDS):
        raise AssertionError("ctr_records must produce exactly contract.OUTPUT_FIELDS")
    record = F.struct(*[
        columns[name].cast(spark_type(kind)).alias(name) for name, kind in contract.OUTPUT_SCHEMA
    ])
    return windowed.select(
        F.col("campaign_id").cast("string").alias("key"),
        # ignoreNullFields=false: a null ctr stays in the record as "ctr": null.
        F.to_json(record, {"ignoreNullFields": "false"}).alias("value"),
    )


def dead_letter_records(rejected: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    record = F.struct(
        F.lit(PIPELINE_NAME).alias("pipeline"),
        F.col("reject_reason").alias("reason"),
        F.col("kafka_partition").alias("partition"),
        F.col("kafka_offset").alias("offset"),
        F.col("kafka_time_ms").alias("kafka_time_ms"),
        F.col("raw").alias("raw"),
    )
    return rejected.select(
        F.col("reject_reason").alias("key"),
        F.to_json(record, {"ignoreNullFields": "false"}).alias("value"),
    )


def synthetic_events(spark: SparkSession, cfg: JobConfig, events: int) -> DataFrame:
    """``events`` input records built in the JVM: valid events over the last 60 s, and one
    in 1000 with an unknown event type (so the dead-letter path runs too)."""
    from pyspark.sql import functions as F

    catalog = contract.ad_catalog(cfg.campaigns, cfg.ads_per_campaign)
    now_ms = time.time_ns() // 1_000_000
    n = F.col("id")

    def pick(values: tuple[str, ...]) -> Column:
        return F.element_at(F.array(*[F.lit(v) for v in values]),
                            (n % len(values) + 1).cast("int"))

    event = F.struct(
        F.concat(F.lit("u"), (n % 100).cast("string")).alias("user_id"),
        F.concat(F.lit("p"), (n % 97).cast("string")).alias("page_id"),
        pick(catalog.ad_ids).alias("ad_id"),
        pick(contract.AD_TYPES).alias("ad_type"),
        F.when(n % 1000 == 999, F.lit("x")).otherwise(pick(contract.EVENT_TYPES))
        .alias("event_type"),
        ((F.lit(now_ms - 60_000) + (n * 60_000 / events).cast("long")) * 1_000_000)
        .alias("event_time_ns"),
        F.lit(now_ms).alias("insertion_time_ms"),
    )
    return spark.range(events, numPartitions=4).select(F.to_json(event).alias("value"))


def warm_up(spark: SparkSession, cfg: JobConfig, paths: JobPaths, events: int,
            label: str = "warmup", batches: int = 4) -> None:
    """Run the job itself, once, over synthetic events in private topics, then drop them.

    Why: Spark generates Java code per plan, and the JVM compiles the hot path (JSON
    parsing, classification, the generated stages) only after it ran for a while; without
    a warm-up the first ~30 s of a measured run have batches several times slower than
    later ones. The warm-up queries are built by ``build`` like the real ones and differ
    only in topic names and checkpoint, which are not part of the generated code, so
    Spark's code cache hands the real queries the already compiled classes. The topics
    ``warmup-*-<run id>`` are created and deleted here; the measured topics are untouched
    and nothing of this reaches the run's metrics (the listener is added afterwards).
    """
    import dataclasses
    import shutil

    from sdsbench.services.kafka import create_topic, delete_topics

    # ``label``: the session warm-up and the run's own use different topics (a deleted
    # topic's name may not be free again at once).
    names = {"input_topic": f"{label}-in-{cfg.run_id}",
             "output_topic": f"{label}-out-{cfg.run_id}",
             "dead_letter_topic": f"{label}-dlq-{cfg.run_id}"}
    wcfg = dataclasses.replace(cfg, **names,
                               max_offsets_per_trigger=max(1, events // batches))
    wpaths = JobPaths(paths.scratch / label)
    for topic in names.values():
        create_topic(cfg.bootstrap, topic, 4 if topic == names["input_topic"] else 1,
                     exist_ok=True)
    try:
        (synthetic_events(spark, cfg, events).write.format("kafka")
         .option("kafka.bootstrap.servers", cfg.bootstrap)
         .option("topic", names["input_topic"]).save())
        query = build(spark, wcfg, wpaths).trigger(availableNow=True).start()
        query.awaitTermination(WARMUP_TIMEOUT_S)
        if query.isActive:
            query.stop()
    finally:
        delete_topics(cfg.bootstrap, list(names.values()))
        shutil.rmtree(wpaths.run_dir, ignore_errors=True)


def reject_counts(classified: DataFrame) -> list[Column]:
    """Per-reason reject counts (one column per ``contract.REJECT_REASONS`` entry)."""
    from pyspark.sql import functions as F

    return [F.count_if(F.col("reject_reason") == reason).alias(reason)
            for reason in contract.REJECT_REASONS]


def build(spark: SparkSession, cfg: JobConfig, paths: JobPaths) -> DataStreamWriter:
    """Assemble the streaming query from a validated config (not started).

    One Kafka read and one parse per record: the rejected records are counted per reason
    (``Dataset.observe``: exact per batch, in the progress event's ``observedMetrics``) and
    filtered out before the aggregation; the records themselves are set aside after the
    run by ``set_aside_rejects``. Why not a second query, or a union of the aggregation's
    output with the rejected rows into one Kafka sink (``topic`` column): Spark accepts
    the union in append mode, but plans one source scan per branch, so each record would
    still be read and parsed twice (see the module docstring).
    """
    from pyspark.sql import functions as F

    classified = classified_events(read_input(spark, cfg), spark, cfg)
    counted = classified.observe(REJECTS_OBSERVATION, *reject_counts(classified))
    return (
        ctr_records(counted.where(F.col("reject_reason").isNull()), cfg)
        .writeStream.queryName("ctr")
        .format("kafka")
        .option("kafka.bootstrap.servers", cfg.bootstrap)
        .option("topic", cfg.output_topic)
        .option("checkpointLocation", str(paths.checkpoint("ctr")))
        .outputMode(cfg.output_mode)
        .trigger(processingTime=f"{cfg.trigger_ms} milliseconds")
    )


def set_aside_rejects(spark: SparkSession, cfg: JobConfig) -> dict[str, Any]:
    """Write every rejected record of the input topic, with its reason, to the dead-letter
    topic: one batch job over the whole topic, after the run (the driver asks once the CTR
    query has drained). The same ``classified_events`` expression as the streaming query,
    and its "now" is the record's Kafka timestamp, so a record is rejected here exactly
    when the streaming query left it out of the windows. Returns the records read (the
    topic's end offsets: it was created empty for the run) and the rejects per reason.

    The rejected records are cached and counted after the write: ``Observation`` would be
    one pass, but its ``get`` never returns after a DataSource V2 write such as Kafka's
    (it hung here; known for other V2 sinks, e.g. spark-bigquery-connector issue 1040).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from sdsbench.services.kafka import end_offsets

    t0 = time.monotonic()
    ends = end_offsets(cfg.bootstrap, cfg.input_topic)
    source = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", cfg.bootstrap)
        .option("subscribe", cfg.input_topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", json.dumps({cfg.input_topic: {str(p): o
                                                               for p, o in ends.items()}}))
        .option("failOnDataLoss", "true")
        .load()
    )
    classified = classified_events(source, spark, cfg)
    letters = dead_letter_records(classified.where(F.col("reject_reason").isNotNull()))
    letters = letters.persist(StorageLevel.MEMORY_AND_DISK)  # rejects are few; one scan
    try:
        (letters.write.format("kafka")
         .option("kafka.bootstrap.servers", cfg.bootstrap)
         .option("topic", cfg.dead_letter_topic)
         .save())
        counts = {row["key"]: int(row["count"]) for row in letters.groupBy("key").count()
                  .collect()}
    finally:
        letters.unpersist()
    unknown = sorted(set(counts) - set(contract.REJECT_REASONS))
    if unknown:
        raise AssertionError(f"reasons outside contract.REJECT_REASONS: {unknown}")
    return {
        "records": sum(ends.values()),
        "rejected_by_reason": {r: counts.get(r, 0) for r in contract.REJECT_REASONS},
        "seconds": round(time.monotonic() - t0, 3),
    }


# ------------------------------------------------------------------ main
STOP_POLL_S = 0.25  # stop-file / query-state checks (py4j calls): cheap at this rate
SESSION_WARMUP_LABEL = "session-warmup"


class _StopFlag:
    """Set by SIGTERM/SIGINT: the run in progress stops, and a session server exits."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.server: Any = None  # engines.common.engine_session.SessionServer (server mode)

    def set(self, signum: int, _frame: Any) -> None:
        self.reason = signal.Signals(signum).name
        if self.server is not None:
            self.server.stop_requested = True


def _stop_asked(paths: JobPaths, stop: _StopFlag) -> bool:
    """A signal, the driver's stop file, or the run directory gone (the runner renamed it
    to .failed: the driver is done with the run, a session must not serve it on)."""
    return (stop.reason is not None or paths.stop_request.exists()
            or not paths.run_dir.exists())


def serve_run(spark: SparkSession, cfg: JobConfig, paths: JobPaths, stop: _StopFlag,
              t0: float, session: dict[str, Any] | None = None) -> int:
    """One run on a running Spark session (a one-shot job's own, or an engine session's):
    the run's warm-up, then its query until a stop request; 0 on a clean stop.

    Meanwhile, set the rejected records aside when the driver asks (``set_aside_request``).
    Whatever the run added to the session (its query, its listener) is gone on return,
    also when it fails. ``t0``: when the run's start-up began (``startup_s`` counts from
    it); ``session``: the engine-session block of ready.json (None: a private process).
    """
    from engines.spark.progress import ProgressRecorder

    paths.scratch.mkdir(parents=True, exist_ok=True)
    # Per run (a session may have served another value): the new checkpoint records it.
    spark.conf.set("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    if cfg.warmup_events:
        warm_up(spark, cfg, paths, cfg.warmup_events)
    warmed_s = time.monotonic() - t0
    recorder = ProgressRecorder(paths.progress_csv, paths.status)
    spark.streams.addListener(recorder)
    queries: dict[str, Any] = {}
    try:
        # The query's thread inherits the pool (Structured Streaming guide, scheduler pools).
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "ctr")
        queries["ctr"] = build(spark, cfg, paths).start()
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "set_aside")
        started_s = time.monotonic() - t0
        # Ready once every query finished a first batch: on a fresh topic Spark runs batch
        # 0 at once, and it carries the one-off costs (code generation, JIT, Kafka clients;
        # 5-20 s here), which would otherwise land on the first seconds of the measured load.
        warmed_up = False
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        while time.monotonic() < deadline and not _stop_asked(paths, stop):
            if all(q.lastProgress is not None for q in queries.values()):
                warmed_up = True
                break
            if not all(q.isActive for q in queries.values()):
                break
            time.sleep(0.2)
        write_json_atomic(paths.ready, {
            "spark_version": spark.version,
            "startup_s": round(time.monotonic() - t0, 3),
            "batch_warmup_done_s": round(warmed_s, 3),
            "queries_started_s": round(started_s, 3),
            "warmed_up": warmed_up,
            "queries": {name: str(q.id) for name, q in queries.items()},
            "session_conf": session_conf(cfg, Path(spark.conf.get("spark.local.dir"))),
            "session": session,
        })
        log.info("queries started after %.1f s, first batches done after %.1f s", started_s,
                 time.monotonic() - t0)
        failed: dict[str, str] = {}
        while not _stop_asked(paths, stop):
            for name, query in queries.items():
                if not query.isActive:
                    error = query.exception()
                    failed[name] = str(error) if error is not None else "stopped"
            if failed:
                break
            if paths.set_aside_request.exists() and not paths.set_aside.exists():
                log.info("setting aside the rejected records")
                report = set_aside_rejects(spark, cfg)
                write_json_atomic(paths.set_aside, report)
                log.info("set aside %s", report)
                continue
            time.sleep(STOP_POLL_S)
        log.info("stopping (%s)", stop.reason or ("query ended" if failed else
                                                  "stop file" if paths.run_dir.exists() else
                                                  "run directory gone"))
        final = {name: q.lastProgress for name, q in queries.items()}
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()
        spark.streams.removeListener(recorder)
        recorder.close()
    if paths.run_dir.exists():  # gone: the driver gave up on the run; do not recreate it
        write_json_atomic(paths.final, {"last_progress": final, "failed": failed,
                                        "stop": stop.reason or "stop file"})
    if failed:
        log.error("query failed: %s", failed)
        return 1
    return 0


def run(cfg: JobConfig, paths: JobPaths) -> int:
    """A one-shot job: its own Spark session (and JVM) for one run."""
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    t0 = time.monotonic()
    spark = make_session(cfg, paths.scratch, f"sdsbench-ctr-{cfg.run_id}")
    try:
        return serve_run(spark, cfg, paths, stop, t0)
    finally:
        spark.stop()


def reset_session(spark: SparkSession) -> bool:
    """Between runs of a session: nothing of the previous run left (queries, cached data,
    the scheduler pool), then a full GC so the next run starts on a clean heap. False when
    the session is unusable (the server then exits; the next run starts a new one)."""
    try:
        for query in spark.streams.active:
            query.stop()
        spark.streams.resetTerminated()
        spark.catalog.clearCache()
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]
        spark._jvm.System.gc()  # type: ignore[union-attr]
        spark.range(1).count()  # the session still runs jobs
        return True
    except Exception:  # noqa: BLE001 - any failure here means: do not serve another run
        log.exception("the Spark session cannot be reset: exiting")
        return False


def serve(first: JobConfig, session_dir: Path, session_warmup_events: int,
          idle_timeout_s: float) -> int:
    """Engine-session server: one Spark session (driver JVM) serving runs one at a time
    (``engines.common.engine_session``). ``first`` (the first run's job config, read once:
    its directory is renamed later) fixes the JVM-level settings (``session_settings``);
    a run with other ones is refused (the driver's session key keeps them apart). A
    failed run is reported (code 1) and the server takes the next one."""
    import shutil

    from engines.common.engine_session import SessionServer

    t_start = time.monotonic()
    stop = _StopFlag()
    server = SessionServer(session_dir, idle_timeout_s)
    stop.server = server
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    settings = session_settings(first)
    local_dir = session_dir / "tmp"
    spark = make_session(first, local_dir, "sdsbench-ctr-session")
    key = session_dir.name.split("-", 1)[-1]
    server.announce(engine="spark", key=key, spark_version=spark.version, settings=settings,
                    session_warmup_events=session_warmup_events,
                    jvm_start_s=round(time.monotonic() - t_start, 3))
    session_warmed = session_warmup_events == 0
    try:
        for request in server.requests():
            picked_up = time.monotonic()
            log.info("run %s: serving (%d runs served before)", request.run_id,
                     server.runs_served)
            code, report = 1, {}
            try:
                cfg = JobConfig.from_dict(json.loads(request.config.read_text()))
                if session_settings(cfg) != settings:
                    raise ValueError(f"run settings {session_settings(cfg)} are not the "
                                     f"session's {settings}")
                paths = JobPaths(request.run_dir)
                # The first run's start-up includes the JVM's (as a one-shot job's does).
                t0 = t_start if server.runs_served == 0 else picked_up
                block: dict[str, Any] = {
                    "key": key, "server_pid": os.getpid(),
                    "reused": server.runs_served > 0,
                    "runs_served_before": server.runs_served,
                    "session_warmup_events": 0, "session_warmup_s": None,
                }
                if not session_warmed:
                    # Once per session, before the first run's own warm-up (which follows).
                    tw = time.monotonic()
                    # Many small batches: a micro-batch's fixed work (planning, state
                    # store commit, offsets) is what a 4-batch warm-up leaves cold; measured,
                    # quick run 2026-11-24: the first run of a session had CTR batches
                    # 446-520 ms (median, first half) vs 314 ms in a reused session.
                    warm_up(spark, cfg, paths, session_warmup_events, SESSION_WARMUP_LABEL,
                            batches=SESSION_WARMUP_BATCHES)
                    session_warmed = True
                    block["session_warmup_events"] = session_warmup_events
                    block["session_warmup_s"] = round(time.monotonic() - tw, 3)
                code = serve_run(spark, cfg, paths, stop, t0, block)
            except Exception as exc:  # noqa: BLE001 - the run fails, the server goes on
                log.exception("run %s failed", request.run_id)
                report = {"error": repr(exc)}
            healthy = reset_session(spark)
            log.info("run %s: done (code %d)", request.run_id, code)
            server.finished(request, code, seconds=round(time.monotonic() - picked_up, 3),
                            **report)
            if not healthy:
                return 1
        return 0
    finally:
        spark.stop()
        shutil.rmtree(local_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="job settings (JSON, see JobConfig)")
    parser.add_argument("--run-dir", help="one-shot: the run's directory")
    parser.add_argument("--session-dir", help="server mode: the engine session's directory")
    parser.add_argument("--session-warmup-events", type=int, default=0,
                        help="server mode: synthetic events run once, before the first run")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0,
                        help="server mode: exit after this long without a run")
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (args.session_dir is None):
        parser.error("give exactly one of --run-dir (one run) and --session-dir (a session)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = JobConfig.from_dict(json.loads(Path(args.config).read_text()))
    if args.session_dir is not None:
        return serve(cfg, Path(args.session_dir), args.session_warmup_events,
                     args.idle_timeout_s)
    return run(cfg, JobPaths(Path(args.run_dir)))


if __name__ == "__main__":
    sys.exit(main())
