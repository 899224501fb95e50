"""The CTR query on Spark Structured Streaming (A4s): ``build`` makes the streaming query,
``set_aside_rejects`` the batch job that lists rejected records after the run.

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

Measured costs and the layouts tried: docs/spark.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.spark.job_config import (
    CORRUPT_COLUMN,
    PIPELINE_NAME,
    REJECTS_OBSERVATION,
    WARMUP_TIMEOUT_S,
    JobConfig,
    JobPaths,
    session_conf,
)
from sdsbench import contract
from sdsbench.services.kafka import create_topic, delete_topics, end_offsets

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import DataStreamWriter
    from pyspark.sql.types import DataType, StructType

log = logging.getLogger("sdsbench.spark.job")


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
    # Real-time mode has no micro-batches to bound (Spark refuses the option there).
    if cfg.max_offsets_per_trigger is not None and cfg.execution == "micro_batch":
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


    # ``label``: the session warm-up and the run's own use different topics (a deleted
    # topic's name may not be free again at once).
    names = {"input_topic": f"{label}-in-{cfg.run_id}",
             "output_topic": f"{label}-out-{cfg.run_id}",
             "dead_letter_topic": f"{label}-dlq-{cfg.run_id}"}
    # Micro-batches also for a real-time run: availableNow needs them, and the warm-up's
    # purpose, the JIT-compiled parsing and aggregation, is the same code.
    wcfg = dataclasses.replace(cfg, **names, execution="micro_batch",
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
    writer = (
        ctr_records(counted.where(F.col("reject_reason").isNull()), cfg)
        .writeStream.queryName("ctr")
        .format("kafka")
        .option("kafka.bootstrap.servers", cfg.bootstrap)
        .option("topic", cfg.output_topic)
        .option("checkpointLocation", str(paths.checkpoint("ctr")))
        .outputMode(cfg.output_mode)
    )
    interval = f"{cfg.trigger_ms} milliseconds"
    if cfg.execution == "real_time":
        return writer.trigger(realTime=interval)  # type: ignore[call-arg]  # pyspark >= 4.3
    return writer.trigger(processingTime=interval)


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
