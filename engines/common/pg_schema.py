"""PostgreSQL layout shared by A1, A2 (and usable by A3): one schema per run.

Each run gets its own schema (``run_schema_name``) holding

- ``events``        the YSB events, one row each, columns exactly ``contract.EVENT_FIELDS``;
- ``ads``           the YSB join table ``(ad_id, campaign_id)``, filled from
                    ``contract.ad_catalog`` (YSB keeps this mapping in Redis);
- ``dead_letters``  malformed input records, raw bytes + reject reason (A2);
- ``kafka_offsets`` the next Kafka offset to read per input partition, written in the
                    same transaction as the events (A2's exactly-once sink).

A schema per run (instead of one shared table) keeps runs from mixing, makes a run's
data easy to inspect afterwards and lets ``drop_run_schema`` remove it in one statement.

Index choice. The window query reads the clicks of one 10 s event-time window. The
table only grows during a run (100k ev/s = 6M rows a minute), so the query must reach
the window without scanning the table. We use a *partial* btree index

    CREATE INDEX ... ON events (event_time_ns) WHERE event_type = 'click'

- it holds only clicks (one row in three), so ingest maintains a third of the entries a
  full index would, and the entries it maintains are appended near the right edge of
  the tree because event time follows insertion order up to the bounded disorder;
- the query is a range scan over exactly the rows it counts; heap pages of a window are
  contiguous (rows arrive in about event-time order), so the bitmap heap scan is cheap;
- the final recount and ``max(event_time_ns)`` of the last click use it too.

BRIN on ``event_time_ns`` would be cheaper to maintain, but its newest block ranges stay
unsummarized until autovacuum gets to them (autovacuum_naptime, 1 min by default) and an
unsummarized range is always scanned, so the query cost would depend on autovacuum
timing rather than on the window. A full btree on all events costs three times the
index maintenance for no benefit to this query.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from sdsbench import contract
from sdsbench.topics import delete_run_topics

log = logging.getLogger("sdsbench.pg_schema")

SCHEMA_PREFIX = "sds_"
# PostgreSQL truncates identifiers to 63 bytes; keep room for the prefix and a hash.
_MAX_SCHEMA_LEN = 63

_DDL = """
CREATE TABLE events (
    user_id           text   NOT NULL,
    page_id           text   NOT NULL,
    ad_id             text   NOT NULL,
    ad_type           text   NOT NULL,
    event_type        text   NOT NULL,
    event_time_ns     bigint NOT NULL,
    insertion_time_ms bigint NOT NULL
);
-- why partial btree and not BRIN or a full btree: see the module docstring
CREATE INDEX events_click_time ON events (event_time_ns) WHERE event_type = 'click';
CREATE TABLE ads (
    ad_id       text PRIMARY KEY,
    campaign_id integer NOT NULL
);
CREATE TABLE dead_letters (
    kafka_partition integer,
    kafka_offset    bigint,
    reason          text   NOT NULL,
    raw             bytea  NOT NULL,
    rejected_ms     bigint NOT NULL
);
CREATE TABLE kafka_offsets (
    kafka_partition integer PRIMARY KEY,
    next_offset     bigint NOT NULL
);
"""

# Clicks per campaign in one event-time window [lo_ns, hi_ns); the YSB join to ads.
# max_insertion_ms is over the clicks counted, for the end-to-end latency of the result.
WINDOW_QUERY = """
SELECT a.campaign_id, count(*) AS clicks, max(e.insertion_time_ms) AS max_insertion_ms
FROM events e JOIN ads a ON a.ad_id = e.ad_id
WHERE e.event_type = 'click' AND e.event_time_ns >= %(lo_ns)s AND e.event_time_ns < %(hi_ns)s
GROUP BY a.campaign_id
ORDER BY a.campaign_id
"""

# Every window recounted over the complete table at the end of a run. Event times are
# positive (the generator and validate_event guarantee it), so integer division floors.
FINAL_COUNTS_QUERY = """
SELECT a.campaign_id,
       (e.event_time_ns / 1000000 / %(window_ms)s) * %(window_ms)s AS window_start_ms,
       count(*) FILTER (WHERE e.event_type = 'view')     AS views,
       count(*) FILTER (WHERE e.event_type = 'click')    AS clicks,
       count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
       count(*) AS events,
       max(e.insertion_time_ms) AS max_insertion_ms
FROM events e JOIN ads a ON a.ad_id = e.ad_id
GROUP BY 1, 2
ORDER BY 2, 1
"""
FINAL_COUNT_COLUMNS = (
    "campaign_id", "window_start_ms", "views", "clicks", "purchases", "events", "max_insertion_ms"
)

COPY_EVENTS = "COPY events ({}) FROM STDIN".format(", ".join(contract.EVENT_FIELDS))


def run_schema_name(run_id: str) -> str:
    """A valid, unique PostgreSQL schema name for ``run_id`` (lower case, <= 63 bytes)."""
    clean = re.sub(r"[^a-z0-9_]", "_", run_id.lower())
    name = SCHEMA_PREFIX + clean
    if len(name) > _MAX_SCHEMA_LEN or clean != run_id.lower():
        # Sanitizing can map two run ids to one name; a hash of the original keeps them apart.
        digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
        name = name[: _MAX_SCHEMA_LEN - 9] + "_" + digest
    return name


def connect(dsn: str, schema: str, autocommit: bool = False) -> psycopg.Connection:
    """A connection whose unqualified table names resolve to the run's schema."""
    conn = psycopg.connect(dsn, autocommit=autocommit)
    # set_config(..., false) is session-wide and survives commits and rollbacks.
    conn.execute("SELECT set_config('search_path', %s, false)", (schema,))
    if not autocommit:
        conn.commit()
    return conn


def create_run_schema(
    dsn: str, schema: str, catalog: contract.AdCatalog, kafka_partitions: int = 0
) -> None:
    """(Re)create the run's schema: tables, index, the ads mapping and offset rows."""
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute("SELECT set_config('search_path', %s, true)", (schema,))
        conn.execute(_DDL)
        with conn.cursor().copy("COPY ads (ad_id, campaign_id) FROM STDIN") as copy:
            for ad_id in catalog.ad_ids:
                copy.write_row((ad_id, catalog.campaign_of_ad[ad_id]))
        # One row per input partition: a fresh per-run topic starts at offset 0.
        conn.cursor().executemany(
            "INSERT INTO kafka_offsets (kafka_partition, next_offset) VALUES (%s, 0)",
            [(p,) for p in range(kafka_partitions)],
        )
        conn.execute("ANALYZE ads")


def drop_run_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def copy_events(cur: psycopg.Cursor, rows: Iterable[Sequence[Any]]) -> int:
    """COPY rows (tuples in EVENT_FIELDS order) into events; the caller commits."""
    count = 0
    with cur.copy(COPY_EVENTS) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_dead_letters(cur: psycopg.Cursor, rows: Sequence[Sequence[Any]]) -> int:
    """COPY set-aside records (partition, offset, reason, raw bytes, rejected_ms) into
    dead_letters, in the caller's transaction (with the batch they came in)."""
    with cur.copy(
        "COPY dead_letters (kafka_partition, kafka_offset, reason, raw, rejected_ms) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)


def insert_events(cur: psycopg.Cursor, rows: Sequence[Sequence[Any]], chunk: int = 1000) -> int:
    """Multi-row INSERT (the alternative to COPY, kept to measure against it)."""
    width = len(contract.EVENT_FIELDS)
    head = "INSERT INTO events ({}) VALUES ".format(", ".join(contract.EVENT_FIELDS))
    one = "(" + ", ".join(["%s"] * width) + ")"
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        params = [v for row in part for v in row]
        cur.execute(head + ", ".join([one] * len(part)), params)
    return len(rows)


def window_counts(
    cur: psycopg.Cursor, window_start_ms: int, window_ms: int = contract.WINDOW_MS
) -> list[tuple[int, int, int]]:
    """``[(campaign_id, clicks, max_insertion_ms)]`` for one window (the timed query)."""
    lo_ns = window_start_ms * 1_000_000
    cur.execute(WINDOW_QUERY, {"lo_ns": lo_ns, "hi_ns": lo_ns + window_ms * 1_000_000})
    return [(int(c), int(n), int(m)) for c, n, m in cur.fetchall()]


def last_click_time_ns(cur: psycopg.Cursor) -> int | None:
    """Event time of the latest click stored (index-backed: the partial index)."""
    cur.execute("SELECT max(event_time_ns) FROM events WHERE event_type = 'click'")
    (value,) = cur.fetchone()
    return None if value is None else int(value)


def first_click_time_ns(cur: psycopg.Cursor) -> int | None:
    """Event time of the earliest click stored (index-backed: the partial index)."""
    cur.execute("SELECT min(event_time_ns) FROM events WHERE event_type = 'click'")
    (value,) = cur.fetchone()
    return None if value is None else int(value)


def first_event_time_ns(cur: psycopg.Cursor) -> int | None:
    """Event time of some stored event (any one row: cheap), or None while empty."""
    cur.execute("SELECT event_time_ns FROM events LIMIT 1")
    row = cur.fetchone()
    return None if row is None else int(row[0])


def final_counts(cur: psycopg.Cursor, window_ms: int = contract.WINDOW_MS) -> list[tuple]:
    cur.execute(FINAL_COUNTS_QUERY, {"window_ms": window_ms})
    return cur.fetchall()


def drop_run_artifacts(services: Any, run_id: str, schema: str, label: str) -> None:
    """Delete a run's topics and PostgreSQL schema (A2, A3). Failures are logged, never
    raised: cleanup must not hide the run's outcome."""

    try:
        delete_run_topics(services, run_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: deleting topics failed: %s", label, exc)
    try:
        drop_run_schema(services.pg_dsn, schema)
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: dropping schema %s failed: %s", label, schema, exc)
