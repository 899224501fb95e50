"""The CTR query on Apache Flink SQL (A4f), as the SQL text of one statement set: the
DDL of its tables (``ddl_statements``) and its INSERTs (``insert_statements``).

Asks, per campaign and per 10 s event-time window: views, clicks, CTR = clicks / views
(null when views = 0) and the min/max insertion time of the window's events. The output
record is the shared one (``sdsbench.contract.OUTPUT_FIELDS``, pipeline "flink"); its
event time is the window end (``window_end_ms``; the output topic stamps each record with
the broker's append time, so the Kafka record timestamp is not the event time).
``result_time_ms`` is CURRENT_TIMESTAMP, which streaming SQL evaluates per record, in the
operator that emits the result.

Differences from YSB: YSB counts views only and keeps the ad -> campaign map in Redis;
here all valid events are grouped (a window of a campaign with only purchases is emitted
with views = 0, ctr = null), the map is the contract's fixed catalog compiled into the
query, and malformed input is set aside instead of failing the job.

SQL, not DataStream: a PyFlink DataStream job with Python functions costs several times
the CPU per event of the SQL plan (docs/flink.md). The pipeline is one statement set (one
Flink job); the Kafka source is read once and feeds three operator chains per event:

- ``ctr``: JSON -> per-record checks -> first aggregation per (ad, 10 s tumbling
  event-time window) -> campaign lookup per (ad, window) -> second aggregation per
  (campaign, window) -> output topic. Two levels because the ad -> campaign lookup cannot
  run per event: Calcite needs minutes to plan a CASE / IN over 1000 string literals, so
  the lookup is a linear search in one string literal (plans in under a second, see
  ``ad_campaign``), run once per (ad, window) row.
- ``late``: every event whose window the watermark had already closed when it arrived
  (``window_end - 1 + allowed_lateness <= CURRENT_WATERMARK(ts)``: the rule Flink's window
  operators drop by) -> the run's late topic, one record per event, so the analysis can
  account for them (``metrics/late.csv``). Exact at parallelism 1 (the filter and the
  window operator see the same watermark sequence); above, the window operator's
  watermark (the minimum over its input channels) can trail the one the filter sees, so
  the count is an upper bound of the events dropped.
- ``dead_letter``: records the JSON format parsed but the checks rejected, with the
  contract's reason (``contract.REJECT_REASONS``) -> the run's dead-letter topic; and,
  after the first aggregation, one record per (unknown ad, window) with its event count.

Event time and watermark. ``ts`` is a computed column of the source from
``event_time_ns``; the watermark is declared in the source DDL (``WATERMARK FOR ts AS ts
- watermark_delay_ms``: bounded out-of-orderness, watermark = max event time - delay),
pushed into the Kafka source, generated per partition and combined as the minimum; a
partition silent for ``idle_timeout_ms`` stops holding it back
(``table.exec.source.idle-timeout``), it never advances it. An event whose event time is
not plausible (``contract.MAX_FUTURE_SKEW_MS`` after the record's Kafka timestamp, or
<= 0) gets ``ts`` = epoch 0, so it never moves the watermark; it is dead-lettered.

Records that are not JSON: Flink's JSON format skips them. With ``not_json_dead_letters``
a second source reads the topic as text and dead-letters every record that is not a JSON
object; otherwise the driver counts and lists them (``engines.flink.pipeline``).

Allowed lateness. The window TVF has none: with ``allowed_lateness_ms = 0`` (default) a
window is emitted once, when the watermark passes its end, and later events are dropped
(and reported). With ``allowed_lateness_ms > 0`` the first level is the legacy group
window (``GROUP BY TUMBLE(ts, ...)``) with ``table.exec.emit.allow-lateness`` and a late
firing per late element; the second level becomes a regular aggregation and the output an
upsert-kafka table keyed by (campaign_id, window_start_ms): a window is re-emitted for
each late event accepted within the allowed lateness, and its first firing may arrive as
several partial records; readers keep the last record per window.

Rejected-record reasons deviate from ``contract.validate_event`` where Flink's JSON format
decides before the query sees the record: a value it cannot convert to the column type
(``"abc"`` or ``true`` for a BIGINT) becomes NULL and is reported as ``missing_field``,
not ``bad_type``; a number in a string field is read as its text, and a numeric string or
a fraction in a BIGINT field is converted (``"123"`` -> 123, ``1.5`` -> 1); a record with
an unknown ad and an absurd time is ``absurd_timestamp`` (the ad is checked later). "Now"
for ``absurd_timestamp`` is the record's Kafka timestamp (deterministic, as the Spark job).
"""

from __future__ import annotations

from engines.flink.job_config import (
    LATE_SCHEMA,
    MAX_INTERVAL_MS,
    PIPELINE_NAME,
    REJECT_COLUMNS,
    JobConfig,
)
from sdsbench import contract

# ------------------------------------------------------------------ schema translation
FLINK_TYPES = {"string": "STRING", "long": "BIGINT", "double": "DOUBLE"}


def flink_type(kind: str) -> str:
    """The Flink SQL type of a contract logical type (the one translation from the contract)."""
    if kind not in FLINK_TYPES:
        raise ValueError(f"no Flink type for contract type {kind!r}")
    return FLINK_TYPES[kind]


def quote(name: str) -> str:
    """A quoted Flink SQL identifier (``views``, ``offset`` are reserved words)."""
    return "`" + name.replace("`", "``") + "`"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def column_list(schema: tuple[tuple[str, str], ...]) -> str:
    return ",\n  ".join(f"{quote(name)} {flink_type(kind)}" for name, kind in schema)


def interval_ms(ms: int) -> str:
    """A day-time interval literal of ``ms`` milliseconds (below 1000 s)."""
    if not 0 <= ms <= MAX_INTERVAL_MS:
        raise ValueError(f"interval of {ms} ms: must be within [0, {MAX_INTERVAL_MS}]")
    return f"INTERVAL '{ms / 1000:.3f}' SECOND(3)"


def epoch_ms(expr: str) -> str:
    """Epoch milliseconds of a TIMESTAMP / TIMESTAMP_LTZ (session time zone is UTC).
    Flink has no direct function; a single CURRENT_TIMESTAMP is evaluated once per record,
    so the two EXTRACTs below see the same instant."""
    return f"(EXTRACT(EPOCH FROM {expr}) * 1000 + EXTRACT(MILLISECOND FROM {expr}))"


def plausible_time(event_time_ns: str, kafka_time: str) -> str:
    """``contract.is_plausible_event_time`` with the record's Kafka timestamp as now."""
    skew = interval_ms(contract.MAX_FUTURE_SKEW_MS)
    return (f"({event_time_ns} > 0 AND TO_TIMESTAMP_LTZ({event_time_ns} / 1000000, 3)"
            f" <= {kafka_time} + {skew})")


# ------------------------------------------------------------------ statements
def _kafka_source_options(cfg: JobConfig, group_id: str, bounded: bool) -> list[str]:
    options = [
        "'connector' = 'kafka'",
        f"'topic' = {literal(cfg.input_topic)}",
        f"'properties.bootstrap.servers' = {literal(cfg.bootstrap)}",
        f"'properties.group.id' = {literal(group_id)}",
        # The topic is per run and the job starts before the generator: read all of it.
        "'scan.startup.mode' = 'earliest-offset'",
    ]
    if bounded:  # the warm-up: stop at the end offsets found at start
        options.append("'scan.bounded.mode' = 'latest-offset'")
    return options


def _kafka_sink_options(cfg: JobConfig, topic: str, name: str) -> list[str]:
    options = [
        "'connector' = 'kafka'",
        f"'topic' = {literal(topic)}",
        f"'properties.bootstrap.servers' = {literal(cfg.bootstrap)}",
        "'format' = 'json'",
        f"'sink.delivery-guarantee' = {literal(cfg.delivery_guarantee)}",
    ]
    if cfg.delivery_guarantee == "exactly-once":
        options += [f"'sink.transactional-id-prefix' = {literal(f'{cfg.run_id}-{name}')}",
                    # above the checkpoint interval, below the broker's max (15 min)
                    f"'properties.transaction.timeout.ms' = "
                    f"'{max(60_000, 10 * cfg.checkpoint_interval_ms)}'"]
    return options


def _with(options: list[str]) -> str:
    return "WITH (\n  " + ",\n  ".join(options) + "\n)"


def source_ddl(cfg: JobConfig, bounded: bool = False) -> str:
    """The input topic as JSON: the contract's fields, Kafka metadata, event time and
    the watermark (bounded out-of-orderness)."""
    time_ok = plausible_time(quote("event_time_ns"), quote("kafka_time"))
    ts = (f"CASE WHEN {time_ok} THEN TO_TIMESTAMP_LTZ({quote('event_time_ns')} / 1000000, 3)"
          f" ELSE TO_TIMESTAMP_LTZ(0, 3) END")
    options = _kafka_source_options(cfg, cfg.group_id, bounded) + [
        "'format' = 'json'",
        # A record that is not JSON is skipped (the raw source dead-letters it); a field
        # that cannot be converted becomes NULL and the query rejects the record.
        "'json.ignore-parse-errors' = 'true'",
        "'json.fail-on-missing-field' = 'false'",
    ]
    return (
        f"CREATE TEMPORARY TABLE `events` (\n  {column_list(contract.EVENT_SCHEMA)},\n"
        "  `kafka_partition` INT METADATA FROM 'partition' VIRTUAL,\n"
        "  `kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,\n"
        "  `kafka_time` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,\n"
        f"  `ts` AS {ts},\n"
        f"  WATERMARK FOR `ts` AS `ts` - {interval_ms(cfg.watermark_delay_ms)}\n"
        f") {_with(options)}"
    )


def raw_source_ddl(cfg: JobConfig, bounded: bool = False) -> str:
    """The input topic as text, to dead-letter records that are not JSON objects.
    Its own consumer group: the lag is measured on the JSON source's group."""
    options = _kafka_source_options(cfg, cfg.group_id + "-raw", bounded) + ["'format' = 'raw'"]
    return (
        "CREATE TEMPORARY TABLE `raw_events` (\n  `line` STRING,\n"
        "  `kafka_partition` INT METADATA FROM 'partition' VIRTUAL,\n"
        "  `kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,\n"
        "  `kafka_time` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL\n"
        f") {_with(options)}"
    )


def reject_reason() -> str:
    """The first failing per-record check, in ``contract.validate_event``'s order; NULL when
    the record passes. ``unknown_ad`` is decided per ad after the first aggregation
    (see ``ad_campaign``), so a record with an unknown ad and an absurd time is reported
    as ``absurd_timestamp``."""
    any_null = " OR ".join(f"{quote(name)} IS NULL" for name in contract.EVENT_FIELDS)
    types = ", ".join(literal(t) for t in contract.EVENT_TYPES)
    time_ok = plausible_time(quote("event_time_ns"), quote("kafka_time"))
    return (
        f"CASE WHEN {any_null} THEN 'missing_field'"
        f" WHEN {quote('event_type')} NOT IN ({types}) THEN 'bad_event_type'"
        f" WHEN NOT {time_ok} THEN 'absurd_timestamp' END"
    )


def classified_view() -> str:
    """Every JSON record with its reject reason (NULL: passes the per-record checks);
    read by the dead-letter INSERT only."""
    return (
        "CREATE TEMPORARY VIEW `classified` AS SELECT *, "
        f"{reject_reason()} AS `reject_reason` FROM `events`"
    )


def checked_view() -> str:
    """Records that pass the per-record checks, as the first aggregation needs them.

    ``checked_events`` and ``late_candidates`` repeat the (cheap) checks instead of
    sharing one view: a view read by two INSERTs becomes a common block of the plan, i.e.
    one more operator per event, and Flink's generated Calc copies the strings of every
    row it forwards (measured: 3 Calcs per event instead of 5, see the report)."""
    return (
        "CREATE TEMPORARY VIEW `checked_events` AS SELECT "
        "`ad_id`, `event_type`, `insertion_time_ms`, `ts` "
        f"FROM `events` WHERE {reject_reason()} IS NULL"
    )


def late_candidates_view() -> str:
    """Records that pass the per-record checks, with what a late-event record needs."""
    window = contract.WINDOW_MS
    event_ms = f"({quote('event_time_ns')} / 1000000)"
    return (
        "CREATE TEMPORARY VIEW `late_candidates` AS SELECT "
        "`ad_id`, `event_type`, `ts`, `kafka_partition`, `kafka_offset`, "
        f"{event_ms} AS `event_time_ms`, "
        f"{event_ms} - MOD({event_ms}, {window}) AS `window_start_ms` "
        f"FROM `events` WHERE {reject_reason()} IS NULL"
    )


def ad_table(catalog: contract.AdCatalog) -> str:
    """The catalog as one string: ``,<ad>:<campaign>`` per ad."""
    for ad in catalog.ad_ids:
        if not ad or any(c in ad for c in ",:'\\"):
            raise ValueError(f"ad id {ad!r}: must be non-empty, without , : ' or \\")
    return "".join(f",{ad}:{campaign}" for ad, campaign in catalog.campaign_of_ad.items())


def ad_campaign(catalog: contract.AdCatalog, column: str = "ad_id") -> str:
    """The campaign of an ad (NULL: unknown ad), found in one string literal of the catalog
    (``ad_table``) by a regular expression ``,<ad>:([0-9]+)``, the ad quoted (\\Q...\\E).

    Why not ``CASE WHEN ad_id IN (...)`` or a MAP literal: Calcite's simplifier needs
    minutes to plan a CASE or NOT IN over 1000 string literals (measured: 118-272 s), a
    MAP literal as long. One literal plans in well under a second. POSITION in it was a
    naive scan (~1 ms per lookup: a window's 1000 rows took ~1 s); Java's regex engine
    searches a literal prefix with Boyer-Moore and the result is the campaign itself, so
    it is evaluated once. It runs once per (ad, window) after the first aggregation, never
    per event. Ad ids contain no comma or colon, so ``,<ad>:`` only matches a whole
    entry; an id the quoting cannot hold (``\\E``) makes an invalid pattern: NULL."""
    pattern = f"CONCAT(',\\Q', {quote(column)}, '\\E:([0-9]+)')"
    return (f"CAST(REGEXP_EXTRACT({literal(ad_table(catalog))}, {pattern}, 1) AS BIGINT)")


AD_AGGREGATES = (
    "COUNT(*) FILTER (WHERE `event_type` = 'view') AS `views`, "
    "COUNT(*) FILTER (WHERE `event_type` = 'click') AS `clicks`, "
    "COUNT(*) AS `events`, "
    "MIN(`insertion_time_ms`) AS `min_insertion_ms`, "
    "MAX(`insertion_time_ms`) AS `max_insertion_ms`"
)


def ad_windows_view(name: str, legacy: bool) -> str:
    """First aggregation: per ad and 10 s event-time window (the only per-event state).
    Window TVF (``legacy=False``); the legacy group window, whose late firings the
    ``table.exec.emit.*`` settings control, for allowed lateness."""
    window = interval_ms(contract.WINDOW_MS)
    if legacy:
        body = (
            f"SELECT `ad_id`, TUMBLE_START(`ts`, {window}) AS `ad_window_start`, "
            f"TUMBLE_END(`ts`, {window}) AS `ad_window_end`, {AD_AGGREGATES} "
            f"FROM `checked_events` GROUP BY `ad_id`, TUMBLE(`ts`, {window})"
        )
    else:
        body = (
            "SELECT `ad_id`, `window_start` AS `ad_window_start`, `window_end` AS `ad_window_end`,"
            f" `window_time` AS `ad_window_time`, {AD_AGGREGATES} "
            f"FROM TABLE(TUMBLE(TABLE `checked_events`, DESCRIPTOR(`ts`), {window})) "
            "GROUP BY `ad_id`, `window_start`, `window_end`, `window_time`"
        )
    return f"CREATE TEMPORARY VIEW {quote(name)} AS {body}"


def mapped_view(catalog: contract.AdCatalog, source: str, name: str) -> str:
    """Each (ad, window) row of ``source`` with its campaign (NULL: unknown ad).

    The lookup is guarded by ``events > 0`` (always true) on purpose: an expression of the
    group key alone would let the planner push the filters on ``campaign_id`` below the
    aggregation, i.e. run the linear lookup once per event instead of once per (ad,
    window) -- and plan the aggregation twice (one copy per filter)."""
    return (f"CREATE TEMPORARY VIEW {quote(name)} AS SELECT *, CASE WHEN `events` > 0 "
            f"THEN {ad_campaign(catalog)} END AS `campaign_id` FROM {quote(source)}")


def known_view() -> str:
    """(ad, window) rows of catalog ads."""
    return ("CREATE TEMPORARY VIEW `ad_windows_known` AS SELECT * FROM `ad_windows_mapped` "
            "WHERE `campaign_id` IS NOT NULL")


def aggregation_views(cfg: JobConfig, catalog: contract.AdCatalog) -> list[str]:
    """The first aggregation and its campaign lookup. With allowed lateness the legacy
    window's late firings are updates, which the append-only dead-letter topic cannot
    take: the unknown-ad records are then the first firings only (TO_CHANGELOG, op
    INSERT: the on-time events); the late ones reach the driver through the late topic."""
    legacy = cfg.allowed_lateness_ms > 0
    views = [ad_windows_view("ad_windows", legacy=legacy),
             mapped_view(catalog, "ad_windows", "ad_windows_mapped"), known_view()]
    if legacy:
        columns = ("ad_id", "ad_window_start", "ad_window_end", "views", "clicks", "events",
                   "min_insertion_ms", "max_insertion_ms", "campaign_id")
        views.append(f"CREATE TEMPORARY VIEW `unknown_ad_source` AS SELECT "
                     f"{', '.join(quote(c) for c in columns)} "
                     "FROM TO_CHANGELOG(input => TABLE `ad_windows_mapped`) "
                     "WHERE `op` = 'INSERT'")
    else:
        views.append("CREATE TEMPORARY VIEW `unknown_ad_source` AS "
                     "SELECT * FROM `ad_windows_mapped`")
    return views


def sink_ddl(cfg: JobConfig) -> str:
    """The output topic: exactly the contract's record fields, as JSON."""
    if cfg.allowed_lateness_ms > 0:
        # Late firings update a window: upsert by (campaign, window start).
        options = [
            "'connector' = 'upsert-kafka'",
            f"'topic' = {literal(cfg.output_topic)}",
            f"'properties.bootstrap.servers' = {literal(cfg.bootstrap)}",
            "'key.format' = 'json'",
            "'value.format' = 'json'",
            f"'sink.delivery-guarantee' = {literal(cfg.delivery_guarantee)}",
            # The second level is a regular aggregation of the first level's update
            # stream: it updates a window once per (ad, window) row it receives. The sink
            # buffer keeps the last update per key for up to 100 ms, so a firing becomes
            # one record per window (Flink's mini-batch would do the same upstream, but
            # its processing-time assigner replaces the watermarks the late-event filter
            # reads).
            "'sink.buffer-flush.max-rows' = '10000'",
            "'sink.buffer-flush.interval' = '100 ms'",
        ]
        if cfg.delivery_guarantee == "exactly-once":
            options.append(f"'sink.transactional-id-prefix' = {literal(cfg.run_id + '-ctr')}")
        key = ",\n  PRIMARY KEY (`campaign_id`, `window_start_ms`) NOT ENFORCED"
    else:
        options = _kafka_sink_options(cfg, cfg.output_topic, "ctr")
        key = ""
    return (f"CREATE TEMPORARY TABLE `ctr_out` (\n  {column_list(contract.OUTPUT_SCHEMA)}"
            f"{key}\n) {_with(options)}")


def dead_letter_sink_ddl(cfg: JobConfig) -> str:
    schema = (("reason", "string"), ("count", "long"), ("partition", "long"),
              ("offset", "long"), ("kafka_time_ms", "long"), ("raw", "string"))
    assert tuple(n for n, _ in schema) == REJECT_COLUMNS
    options = _kafka_sink_options(cfg, cfg.dead_letter_topic, "dlq")
    return f"CREATE TEMPORARY TABLE `dead_letters` (\n  {column_list(schema)}\n) {_with(options)}"


def late_sink_ddl(cfg: JobConfig) -> str:
    options = _kafka_sink_options(cfg, cfg.late_topic, "late")
    return (f"CREATE TEMPORARY TABLE `late_events` (\n  {column_list(LATE_SCHEMA)}\n) "
            f"{_with(options)}")


def ctr_insert(cfg: JobConfig) -> str:
    """Second aggregation, per campaign and window, over the (ad, window) rows -> output.
    Without allowed lateness it is a window TVF on the first level's ``window_time``, so
    it fires on the same watermark as the first level; with it, a regular aggregation
    (mini-batched) that re-emits a window when a late firing updates one of its ads."""
    window = interval_ms(contract.WINDOW_MS)
    sums = ("SUM(`views`) AS `views`, SUM(`clicks`) AS `clicks`, "
            "MIN(`min_insertion_ms`) AS `min_insertion_ms`, "
            "MAX(`max_insertion_ms`) AS `max_insertion_ms`")
    if cfg.allowed_lateness_ms > 0:
        # Grouped by the output's own key columns (epoch ms), so the planner sees that
        # the update stream's key is the upsert sink's primary key.
        start, end = epoch_ms("`ad_window_start`"), epoch_ms("`ad_window_end`")
        inner = (f"SELECT `campaign_id`, `window_start_ms`, MAX(`window_end_ms`) "
                 f"AS `window_end_ms`, {sums} FROM (SELECT *, CAST({start} AS BIGINT) AS "
                 f"`window_start_ms`, CAST({end} AS BIGINT) AS `window_end_ms` "
                 "FROM `ad_windows_known`) GROUP BY `campaign_id`, `window_start_ms`")
    else:
        # w_start/w_end: the first level's bounds, equal to this window's (same size);
        # read from the first level so both of its consumers use the same columns.
        inner = (
            "SELECT `campaign_id`, MIN(`ad_window_start`) AS `w_start`, "
            f"MAX(`ad_window_end`) AS `w_end`, {sums} "
            "FROM TABLE(TUMBLE(TABLE `ad_windows_known`, DESCRIPTOR(`ad_window_time`), "
            f"{window})) GROUP BY `campaign_id`, `window_start`, `window_end`"
        )
    now = "CURRENT_TIMESTAMP"  # streaming mode: evaluated per record, when it is produced
    columns = {
        "pipeline": literal(PIPELINE_NAME),
        "campaign_id": "`campaign_id`",
        "window_start_ms": ("`window_start_ms`" if cfg.allowed_lateness_ms > 0
                            else f"CAST({epoch_ms('`w_start`')} AS BIGINT)"),
        "window_end_ms": ("`window_end_ms`" if cfg.allowed_lateness_ms > 0
                          else f"CAST({epoch_ms('`w_end`')} AS BIGINT)"),
        "views": "`views`",
        "clicks": "`clicks`",
        "ctr": "CASE WHEN `views` = 0 THEN CAST(NULL AS DOUBLE) "
               "ELSE CAST(`clicks` AS DOUBLE) / `views` END",
        "result_time_ms": f"CAST({epoch_ms(now)} AS BIGINT)",
        "min_insertion_ms": "`min_insertion_ms`",
        "max_insertion_ms": "`max_insertion_ms`",
    }
    assert tuple(columns) == contract.OUTPUT_FIELDS
    select = ", ".join(f"{expr} AS {quote(name)}" for name, expr in columns.items())
    return f"INSERT INTO `ctr_out` SELECT {select} FROM ({inner})"


def late_insert(cfg: JobConfig) -> str:
    """Events whose window the watermark already closed when they arrived (see module
    doc). The ad, not the campaign, is recorded: the driver maps it (and counts an
    unknown ad as a reject)."""
    window = contract.WINDOW_MS
    allowed = cfg.allowed_lateness_ms
    closed = f"TO_TIMESTAMP_LTZ(`window_start_ms` + {window - 1}, 3) <= CURRENT_WATERMARK(`ts`)"
    beyond = (f"TO_TIMESTAMP_LTZ(`window_start_ms` + {window - 1 + allowed}, 3)"
              " <= CURRENT_WATERMARK(`ts`)")
    verdict = ("'dropped'" if allowed == 0
               else f"CASE WHEN {beyond} THEN 'dropped' ELSE 'accepted' END")
    return (
        "INSERT INTO `late_events` SELECT `ad_id`, `window_start_ms`, `event_type`, "
        f"`event_time_ms`, CAST({epoch_ms('CURRENT_WATERMARK(`ts`)')} AS BIGINT), {verdict}, "
        f"`kafka_partition`, `kafka_offset` FROM `late_candidates` WHERE {closed}"
    )


def rejected_select() -> str:
    """Records the JSON format parsed and the checks rejected; ``raw`` is Flink's
    re-encoding of the parsed fields (the original bytes are at partition/offset)."""
    pairs = ", ".join(f"KEY {literal(n)} VALUE {quote(n)}" for n in contract.EVENT_FIELDS)
    return (
        "SELECT `reject_reason`, CAST(1 AS BIGINT), "
        f"CAST(`kafka_partition` AS BIGINT), `kafka_offset`, "
        f"CAST({epoch_ms('`kafka_time`')} AS BIGINT), "
        f"JSON_OBJECT({pairs} NULL ON NULL) FROM `classified` WHERE `reject_reason` IS NOT NULL"
    )


def unknown_ad_select(cfg: JobConfig) -> str:
    """Events of an ad outside the catalog, one record per (ad, window) with their count
    (the ad is looked up after the first aggregation; see ``ad_campaign``)."""
    fields = [("ad_id", "`ad_id`"),
              ("window_start_ms", f"CAST({epoch_ms('`ad_window_start`')} AS BIGINT)"),
              ("window_end_ms", f"CAST({epoch_ms('`ad_window_end`')} AS BIGINT)"),
              ("events", "`events`"), ("views", "`views`"), ("clicks", "`clicks`"),
              ("min_insertion_ms", "`min_insertion_ms`"),
              ("max_insertion_ms", "`max_insertion_ms`")]
    if cfg.allowed_lateness_ms == 0:
        # Every column of the first aggregation, as the CTR path reads it, so that Flink
        # plans that aggregation once for both (sub-plan reuse).
        fields.append(("window_time_ms", f"CAST({epoch_ms('`ad_window_time`')} AS BIGINT)"))
    raw = "JSON_OBJECT(" + ", ".join(f"KEY '{k}' VALUE {v}" for k, v in fields) + ")"
    return (
        "SELECT 'unknown_ad', `events`, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), "
        f"CAST(NULL AS BIGINT), {raw} FROM `unknown_ad_source` WHERE `campaign_id` IS NULL"
    )


def not_json_select() -> str:
    """Records that are not a JSON object (the JSON format skips them silently)."""
    return (
        "SELECT 'not_json', CAST(1 AS BIGINT), CAST(`kafka_partition` AS BIGINT), "
        f"`kafka_offset`, CAST({epoch_ms('`kafka_time`')} AS BIGINT), `line` "
        "FROM `raw_events` WHERE `line` IS NULL OR NOT (`line` IS JSON OBJECT)"
    )


def dead_letter_insert(cfg: JobConfig) -> str:
    """All dead letters through one sink (one INSERT of a UNION ALL): the exactly-once
    Kafka sink needs a transactional id prefix of its own per sink operator."""
    parts = [rejected_select(), unknown_ad_select(cfg)]
    if cfg.not_json_dead_letters:
        parts.append(not_json_select())
    return "INSERT INTO `dead_letters` " + " UNION ALL ".join(parts)


def ddl_statements(cfg: JobConfig, warmup: bool = False) -> list[str]:
    """The job's tables and views. ``warmup``: the same plan over the warm-up topic, read
    to its end, into blackhole sinks (nothing is written to Kafka)."""
    catalog = contract.ad_catalog(cfg.campaigns, cfg.ads_per_campaign)
    raw = [raw_source_ddl(cfg, warmup)] if cfg.not_json_dead_letters else []
    sinks = [sink_ddl(cfg), dead_letter_sink_ddl(cfg), late_sink_ddl(cfg)]
    if warmup:
        sinks = [blackhole(statement) for statement in sinks]
    return [source_ddl(cfg, warmup), *raw, classified_view(), checked_view(),
            late_candidates_view(), *aggregation_views(cfg, catalog), *sinks]


def blackhole(sink_statement: str) -> str:
    """The same sink table, discarding its rows."""
    return sink_statement.split(" WITH (")[0] + " WITH ('connector' = 'blackhole')"


def insert_statements(cfg: JobConfig) -> list[str]:
    return [ctr_insert(cfg), late_insert(cfg), dead_letter_insert(cfg)]
