"""PostgreSQL side of A3: watermark tables, ``WATERMARK_NOW()``, the CTR query.

A3 reuses A2's per-run schema (engines/common/pg_schema.py: ``events`` with exactly the
contract's fields, ``ads``, ``dead_letters``, ``kafka_offsets``) and adds to it:

- ``partition_watermarks``  one row per input partition, written by the consumer in the
                            transaction that makes a batch durable (watermark.py explains
                            the formula); NULL watermark = "nothing heard yet" = holds back;
- ``watermark``             one row: the global low watermark, monotonic (a trigger refuses
                            a step back), and the end-of-input flag set at drain;
- ``firing_progress``       the watermark up to which windows have been fired and emitted;
- ``fired_windows``         (campaign, window) results already emitted, with their count;
- ``late_windows``          late events per (campaign, window): dropped / accepted per type.

Functions (in the run's schema, so ``WATERMARK_NOW()`` needs no argument once the session's
search_path is the run's schema, which ``pg_schema.connect`` sets):

- ``low_watermark_ms()``   the candidate: min over non-idle partitions (NULL if one of
                           them has none, or all are idle); END_OF_INPUT_MS after drain;
- ``advance_watermark()``  moves ``watermark`` to the candidate if it is ahead (locks the row);
- ``WATERMARK_NOW_MS()``   the global watermark, bigint ms (NULL before the first advance);
- ``WATERMARK_NOW()``      the same as timestamptz ('infinity' once the input has ended).

Concurrency. Every consumer transaction starts with ``SELECT ... FROM watermark FOR SHARE``
and classifies its events as on time or late against that value; the emitter advances the
watermark in a short transaction that holds the row ``FOR UPDATE``, so it waits for the
consumer transactions in flight. An event is therefore either committed before the
watermark passes its window (and counted by the firing, which starts after the advance
committed and sees every committed row), or classified against the new watermark (and
counted as late). No event falls in between.
"""

from __future__ import annotations

from psycopg import sql

from engines.a3.watermark import END_OF_INPUT_MS
from sdsbench import contract

# Events are YSB-faithful (no campaign column): the campaign comes from the join to ads.
# A2 indexes clicks only; the CTR query reads views and clicks by event time.
_DDL = """
DROP INDEX IF EXISTS {s}.events_click_time;
CREATE INDEX events_view_click_time ON {s}.events (event_time_ns)
    WHERE event_type IN ('view', 'click');

CREATE TABLE {s}.partition_watermarks (
    kafka_partition   integer PRIMARY KEY,
    watermark_ms      bigint,            -- min(oldest pending, injector); NULL holds back
    injector_ms       bigint,            -- min over producers of their latest marker
    producer_marks_ms bigint[],          -- latest marker of each producer (restart state)
    max_event_time_ms bigint,            -- newest event time made durable
    idle              boolean NOT NULL DEFAULT false,
    last_heard_ms     bigint,            -- wall time the consumer last read a record
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {s}.watermark (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    watermark_ms bigint,                 -- NULL until the first advance
    end_of_input boolean NOT NULL DEFAULT false,
    advanced_at  timestamptz
);
INSERT INTO {s}.watermark (only_row) VALUES (true);

CREATE FUNCTION {s}.refuse_watermark_regression() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.watermark_ms IS NOT NULL
       AND (NEW.watermark_ms IS NULL OR NEW.watermark_ms < OLD.watermark_ms) THEN
        RAISE EXCEPTION 'watermark must not move back: % -> %',
            OLD.watermark_ms, NEW.watermark_ms;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER watermark_monotonic BEFORE UPDATE ON {s}.watermark
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_watermark_regression();

-- How far firing has got (the emitter's own row: consumers never lock it).
CREATE TABLE {s}.firing_progress (
    only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    fired_through_ms bigint              -- every window ending at or before it has fired
);
INSERT INTO {s}.firing_progress (only_row) VALUES (true);

CREATE TABLE {s}.fired_windows (
    campaign_id     integer NOT NULL,
    window_start_ms bigint  NOT NULL,
    emissions       integer NOT NULL,    -- 1 + updates for late events (policy update)
    watermark_ms    bigint  NOT NULL,    -- WATERMARK_NOW() when it first fired
    first_fired_ms  bigint  NOT NULL,
    last_fired_ms   bigint  NOT NULL,
    PRIMARY KEY (campaign_id, window_start_ms)
);

CREATE TABLE {s}.late_windows (
    campaign_id        integer NOT NULL,
    window_start_ms    bigint  NOT NULL,
    dropped_views      bigint  NOT NULL DEFAULT 0,
    dropped_clicks     bigint  NOT NULL DEFAULT 0,
    dropped_purchases  bigint  NOT NULL DEFAULT 0,
    accepted_views     bigint  NOT NULL DEFAULT 0,
    accepted_clicks    bigint  NOT NULL DEFAULT 0,
    accepted_purchases bigint  NOT NULL DEFAULT 0,
    needs_emit         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (campaign_id, window_start_ms)
);

CREATE FUNCTION {s}.low_watermark_ms() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN (SELECT end_of_input FROM {s}.watermark) THEN {end}::bigint
        WHEN count(*) FILTER (WHERE NOT idle) = 0 THEN NULL
        WHEN bool_or(NOT idle AND watermark_ms IS NULL) THEN NULL
        ELSE min(watermark_ms) FILTER (WHERE NOT idle)
    END
    FROM {s}.partition_watermarks
$$;

CREATE FUNCTION {s}.advance_watermark(OUT previous_ms bigint, OUT watermark_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE candidate bigint;
BEGIN
    SELECT w.watermark_ms INTO previous_ms FROM {s}.watermark w FOR UPDATE;
    candidate := {s}.low_watermark_ms();
    IF candidate IS NOT NULL AND (previous_ms IS NULL OR candidate > previous_ms) THEN
        UPDATE {s}.watermark w SET watermark_ms = candidate, advanced_at = now();
        watermark_ms := candidate;
    ELSE
        watermark_ms := previous_ms;
    END IF;
END $$;

CREATE FUNCTION {s}.watermark_now_ms() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT watermark_ms FROM {s}.watermark
$$;

CREATE FUNCTION {s}.watermark_now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN watermark_ms IS NULL THEN NULL
                WHEN watermark_ms >= {end} THEN 'infinity'::timestamptz
                ELSE to_timestamp(watermark_ms / 1000.0) END
    FROM {s}.watermark
$$;
"""

_W = contract.WINDOW_MS

# The CTR query. A window [s, s + 10 s) fires once WATERMARK_NOW() >= s + 10 s, i.e. its
# events are those with  window_end - INTERVAL '10 seconds' <= event_time < window_end
# <= WATERMARK_NOW(). Each firing takes the windows that ended since the previous one:
# event_time from the start of the first window not yet complete at the previous
# watermark (%(from_ms)s) up to the last window boundary at or before WATERMARK_NOW().
# The bound is capped so that END_OF_INPUT_MS * 1e6 cannot overflow bigint (9e12 ms is
# the year 2255). Only views and clicks count: a (campaign, window) with neither emits
# nothing; one with clicks but no views has CTR NULL.
CTR_QUERY = f"""
SELECT a.campaign_id,
       (e.event_time_ns / 1000000 / {_W}) * {_W}            AS window_start_ms,
       count(*) FILTER (WHERE e.event_type = 'view')      AS views,
       count(*) FILTER (WHERE e.event_type = 'click')     AS clicks,
       min(e.insertion_time_ms)                           AS min_insertion_ms,
       max(e.insertion_time_ms)                           AS max_insertion_ms
FROM events e JOIN ads a ON a.ad_id = e.ad_id
WHERE e.event_type IN ('view', 'click')
  AND e.event_time_ns >= %(from_ms)s::bigint * 1000000
  AND e.event_time_ns < LEAST((WATERMARK_NOW_MS() / {_W}) * {_W}, 9000000000000) * 1000000
  AND NOT EXISTS (SELECT 1 FROM fired_windows f
                  WHERE f.campaign_id = a.campaign_id
                    AND f.window_start_ms = (e.event_time_ns / 1000000 / {_W}) * {_W})
GROUP BY 1, 2
ORDER BY 2, 1
"""

# One window recounted (a late event was accepted into it under policy "update").
RECOUNT_QUERY = f"""
SELECT count(*) FILTER (WHERE e.event_type = 'view'),
       count(*) FILTER (WHERE e.event_type = 'click'),
       min(e.insertion_time_ms), max(e.insertion_time_ms)
FROM events e JOIN ads a ON a.ad_id = e.ad_id
WHERE e.event_type IN ('view', 'click')
  AND e.event_time_ns >= %(start_ms)s::bigint * 1000000
  AND e.event_time_ns < (%(start_ms)s::bigint + {_W}) * 1000000
  AND a.campaign_id = %(campaign_id)s
"""

RECORD_FIRED = """
INSERT INTO fired_windows AS f
    (campaign_id, window_start_ms, emissions, watermark_ms, first_fired_ms, last_fired_ms)
VALUES (%s, %s, 1, %s, %s, %s)
ON CONFLICT (campaign_id, window_start_ms)
DO UPDATE SET emissions = f.emissions + 1, last_fired_ms = EXCLUDED.last_fired_ms
"""

ADD_LATE = """
INSERT INTO late_windows AS l
    (campaign_id, window_start_ms, dropped_views, dropped_clicks, dropped_purchases,
     accepted_views, accepted_clicks, accepted_purchases, needs_emit)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (campaign_id, window_start_ms) DO UPDATE SET
    dropped_views = l.dropped_views + EXCLUDED.dropped_views,
    dropped_clicks = l.dropped_clicks + EXCLUDED.dropped_clicks,
    dropped_purchases = l.dropped_purchases + EXCLUDED.dropped_purchases,
    accepted_views = l.accepted_views + EXCLUDED.accepted_views,
    accepted_clicks = l.accepted_clicks + EXCLUDED.accepted_clicks,
    accepted_purchases = l.accepted_purchases + EXCLUDED.accepted_purchases,
    needs_emit = l.needs_emit OR EXCLUDED.needs_emit
"""

UPDATE_PARTITION = """
UPDATE partition_watermarks SET
    watermark_ms = %s, injector_ms = %s, producer_marks_ms = %s, max_event_time_ms = %s,
    idle = %s, last_heard_ms = %s, updated_at = now()
WHERE kafka_partition = %s
"""

UPDATE_OFFSET = "UPDATE kafka_offsets SET next_offset = %s WHERE kafka_partition = %s"

LOCK_WATERMARK_SHARED = "SELECT watermark_ms FROM watermark FOR SHARE"

PARTITION_STATE = """
SELECT kafka_partition, watermark_ms, injector_ms, max_event_time_ms, idle
FROM partition_watermarks ORDER BY kafka_partition
"""


def create_a3_objects(dsn: str, schema: str, partitions: int) -> None:
    """Add A3's tables and functions to a run schema made by pg_schema.create_run_schema."""
    import psycopg

    ddl = _DDL.format(s=sql.Identifier(schema).as_string(None), end=END_OF_INPUT_MS)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT set_config('search_path', %s, true)", (schema,))
        conn.execute(ddl)
        conn.cursor().executemany(
            "INSERT INTO partition_watermarks (kafka_partition) VALUES (%s)",
            [(p,) for p in range(partitions)],
        )
