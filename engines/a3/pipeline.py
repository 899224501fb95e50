"""A3: generator -> Kafka -> PostgreSQL with a MillWheel-style low watermark -> CTR -> Kafka.

    generator process(es) --events + watermark markers--> input topic (P partitions)
        --> a3.consumers consumer processes (engines.a3.consumer): events, dead letters,
            Kafka offsets and per-partition watermarks, one PostgreSQL transaction per batch
        --> emitter process (engines.a3.ctr_emitter): every fire_interval_ms advances
            WATERMARK_NOW() (monotonic min over partitions), runs the CTR query for the
            windows it passed and publishes each result record to the output topic

The watermark formula is in engines/a3/watermark.py, the SQL in engines/a3/sql.py.

What is emitted: one shared output record (sdsbench.contract) per (campaign, 10 s
event-time window) that has at least one view or click, once WATERMARK_NOW() >= window end;
CTR is NULL when the window has clicks but no views. A campaign with no view or click in a
window gets no record (there is nothing to report, and Spark/Flink group-bys emit none
either). Under lateness policy ``update`` a window that accepts late events is emitted again
with its new totals (the last record of a window is its final answer).

End of input. The generator's final marker of each producer is the end of its schedule, so
the watermark reaches the last whole window boundary before it, but the window that
contains the end never becomes complete by markers alone. ``drain`` therefore waits until
PostgreSQL holds every record of the input topic (stored offsets = end offsets, after the
generator flushed and exited), then sets ``watermark.end_of_input``: the watermark becomes
+infinity and the emitter fires the remaining windows. Those windows are marked (watermark
"inf") in metrics/fired_windows.csv: their latency includes the drain, not the watermark.

Run outputs: ``results.csv`` (the output topic, with broker append times),
``metrics/watermark.csv`` (emitter, one row per tick), ``metrics/lag.csv``,
``metrics/fired_windows.csv``, ``metrics/late.csv`` (late events per window and policy),
``metrics/events_sample.csv`` (a seeded sample of stored events: event time vs insertion
time, for the event-time/processing-time figure with the watermark line), ``rejects.csv``
(dead letters per reason; each one in ``a3/dead_letters.csv``), ``metrics/a3.json``
(settings incl. the lateness policy, drain outcome, totals), ``logs/`` (job file and
process logs).
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.a3 import sql as a3sql
from engines.a3.watermark import END_OF_INPUT_MS
from engines.common import outputs, pg_schema
from engines.common.consumer_group import ConsumerGroup, stop_run
from engines.common.processes import spawn_module, write_job
from sdsbench import contract
from sdsbench.config import deep_merge
from sdsbench.experiments import pipeline_params
from sdsbench.measurement.output_reader import read_output_topic, write_results
from sdsbench.rundir import csv_text, write_json_atomic, write_rejects, write_text_atomic
from sdsbench.topics import create_run_topics

log = logging.getLogger("sdsbench.a3")

# The same values as the a3 section of config/config.yaml; used for keys a config lacks.
DEFAULTS: dict[str, Any] = {
    "partitions": None,
    "consumers": 2,
    "batch_max_events": 5000,
    "batch_max_wait_ms": 50,
    "marker_interval_ms": 200,
    "watermark_bound_ms": None,
    "idle_partitions": [],
    "idle_timeout_ms": None,
    "fire_interval_ms": 100,
    "lateness": {"policy": "drop", "allowed_ms": 0},
    "lag_interval_ms": 1000,
    "restart_crashed_consumers": True,
    "stop_timeout_s": 15,
    "keep_data": False,
}

# <type>_dropped: late and ignored; <type>_accepted: late but counted (policy update).
LATE_COLUMNS = (
    "campaign_id", "window_start_ms", "views_dropped", "clicks_dropped", "purchases_dropped",
    "views_accepted", "clicks_accepted", "purchases_accepted", "policy", "allowed_ms",
)
# Each rejected record (the first DEAD_LETTER_ROWS, raw value cut at 4 KiB by the consumer).
DEAD_LETTER_COLUMNS = ("reason", "partition", "offset", "rejected_ms", "raw")
DEAD_LETTER_ROWS = 10_000
SAMPLE_COLUMNS = ("event_time_ms", "insertion_time_ms", "event_type", "campaign_id")
EVENT_SAMPLE_ROWS = 20_000
FIRED_COLUMNS = (
    "campaign_id", "window_start_ms", "emissions", "watermark_ms", "first_fired_ms",
    "last_fired_ms",
)


def a3_params(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The run's a3 settings (config section + run overrides) with defaults filled in."""
    params = deep_merge(DEFAULTS, pipeline_params(config, spec))
    if params["watermark_bound_ms"] is None:
        params["watermark_bound_ms"] = int(config["workload"]["disorder"]["max_delay_ms"])
    if params["lateness"]["policy"] not in ("drop", "update"):
        raise ValueError(f"a3.lateness.policy: unknown {params['lateness']['policy']!r}")
    return params


def _inf(value: int | None) -> Any:
    return "inf" if value is not None and value >= END_OF_INPUT_MS else value


@dataclass
class _State:
    params: dict[str, Any]
    schema: str
    topics: dict[str, str]
    partitions: int
    job_path: Path
    group: ConsumerGroup | None = None
    emitter: subprocess.Popen | None = None
    drain: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    owns_generator = False

    # ------------------------------------------------------------------ prepare
    def prepare(self, ctx: Any) -> None:
        params = a3_params(ctx.config, ctx.spec)
        partitions = int(params["partitions"] or ctx.config["services"]["kafka"]["partitions"])
        workload = ctx.config["workload"]
        catalog = contract.ad_catalog(workload["campaigns"], workload["ads_per_campaign"])
        topics = create_run_topics(ctx.services, ctx.run_id, partitions)
        schema = pg_schema.run_schema_name(ctx.run_id)
        pg_schema.create_run_schema(ctx.services.pg_dsn, schema, catalog, partitions)
        a3sql.create_a3_objects(ctx.services.pg_dsn, schema, partitions)
        consumers = max(1, min(int(params["consumers"]), partitions))
        job = {
            "pipeline": "a3",
            "dsn": ctx.services.pg_dsn,
            "schema": schema,
            "bootstrap": ctx.services.kafka_bootstrap,
            "topic": topics["input"],
            "output_topic": topics["output"],
            "partitions": partitions,
            "consumers": consumers,
            "producers": int(workload["producer_processes"]),
            "campaigns": workload["campaigns"],
            "ads_per_campaign": workload["ads_per_campaign"],
            "idle_timeout_ms": params["idle_timeout_ms"],
            "lateness_policy": params["lateness"]["policy"],
            "allowed_lateness_ms": int(params["lateness"]["allowed_ms"]),
            "batch_max_events": int(params["batch_max_events"]),
            "batch_max_wait_ms": int(params["batch_max_wait_ms"]),
            "fire_interval_ms": int(params["fire_interval_ms"]),
            "watermark_csv": str(ctx.run_dir / "metrics" / "watermark.csv"),
        }
        params["consumers"] = consumers
        job_path = write_job(ctx.run_dir, "a3-job", job)
        ctx.extra["a3"] = _State(params, schema, topics, partitions, job_path)

    # -------------------------------------------------------------------- start
    def start(self, ctx: Any) -> None:
        st: _State = ctx.extra["a3"]
        st.group = ConsumerGroup(ctx, "a3", "engines.a3.consumer", st.job_path,
                                 int(st.params["consumers"]),
                                 bool(st.params["restart_crashed_consumers"]), "a3-consumer-")
        # A consumer that died resumes from the offsets and producer markers stored in
        # PostgreSQL with its last batch; until it is back its partitions hold the
        # watermark (their published watermark stays where its last batch left it).
        st.group.start(st.schema, st.topics["input"], int(st.params["lag_interval_ms"]) / 1000)
        self._start_emitter(ctx, st)

    @staticmethod
    def _start_emitter(ctx: Any, st: _State) -> None:
        st.emitter = spawn_module(
            "engines.a3.ctr_emitter", ["--job", str(st.job_path)],
            ctx.run_dir / "logs" / "a3-emitter.log",
        )
        ctx.processes.append(st.emitter)

    # ------------------------------------------------------------------- faults
    def kill(self, ctx: Any) -> dict[str, Any]:
        """Fault runs (sdsbench.faults): SIGKILL the whole watermark stage at once: every
        consumer (they store events, offsets, producer markers and per-partition
        watermarks) and the emitter (it advances WATERMARK_NOW() and fires windows)."""
        st: _State = ctx.extra["a3"]
        return {"killed": "a3 consumers + CTR emitter", "pids": st.group.kill([st.emitter])}

    def restart(self, ctx: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        """The emitter is started here, the consumers come back (ConsumerGroup.respawn).
        Each resumes from PostgreSQL: offsets and markers stored with the last batch,
        ``firing_progress`` of the last firing. An emitter killed between its Kafka flush
        and its commit fires those windows again (at-least-once towards the output topic:
        measured as duplicates)."""
        st: _State = ctx.extra["a3"]
        self._start_emitter(ctx, st)
        waited = st.group.respawn(timeout_s)
        return {"pids": [p.pid for p in [*st.group.consumers, st.emitter]],
                "respawn_wait_s": round(waited, 3)}

    # --------------------------------------------------------------- generator
    def generator_sink(self, ctx: Any) -> dict[str, Any]:
        st: _State = ctx.extra["a3"]
        return {
            "kind": "kafka",
            "bootstrap": ctx.services.kafka_bootstrap,
            "topic": st.topics["input"],
            "watermark_markers": True,
            "marker_interval_ms": int(st.params["marker_interval_ms"]),
            "watermark_bound_ms": int(st.params["watermark_bound_ms"]),
            "idle_partitions": list(st.params["idle_partitions"]),
        }

    # -------------------------------------------------------------------- drain
    def drain(self, ctx: Any, timeout_s: float) -> None:
        """Consume to the end offsets, then declare end of input and wait for the last
        windows (see the module doc)."""
        st: _State = ctx.extra["a3"]
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        caught_up, left = self._wait_consumed(st, deadline)
        consumed_s = time.monotonic() - t0
        fired_all = False
        watermark = None
        if caught_up:
            with st.group.offsets_lock:
                st.group.offsets_conn.execute("UPDATE watermark SET end_of_input = true")
            fired_all, watermark = self._wait_fired(st, deadline)
        else:
            # Declaring the end would fire windows whose events are still in Kafka.
            log.warning("a3 drain: %d records not consumed after %.0f s", left, timeout_s)
        st.drain = {
            "method": "end_of_input after stored offsets reached end offsets",
            "caught_up": caught_up,
            "records_left": left,
            "consume_wait_s": round(consumed_s, 3),
            "fired_all": fired_all,
            "final_watermark_ms": _inf(watermark),
            "total_wait_s": round(time.monotonic() - t0, 3),
        }
        log.info("a3 drain: %s", st.drain)

    def _wait_consumed(self, st: _State, deadline: float) -> tuple[bool, int]:
        left = -1
        last_report = time.monotonic()
        while time.monotonic() < deadline:
            stored, ends = st.group.stored_offsets(), st.group.end_offsets()
            left = sum(max(0, e - stored.get(p, 0)) for p, e in ends.items())
            if left == 0:
                return True, 0
            if all(p.poll() is not None for p in st.group.consumers):
                log.error("a3 drain: every consumer has exited; %d records left", left)
                return False, left
            if time.monotonic() - last_report > 5:
                log.info("a3 drain: %d records left to consume", left)
                last_report = time.monotonic()
            time.sleep(0.2)
        return False, left

    def _wait_fired(self, st: _State, deadline: float) -> tuple[bool, int | None]:
        watermark = None
        while time.monotonic() < deadline:
            with st.group.offsets_lock, st.group.offsets_conn.cursor() as cur:
                (watermark,) = cur.execute(
                    "SELECT fired_through_ms FROM firing_progress"
                ).fetchone()
                (dirty,) = cur.execute(
                    "SELECT count(*) FROM late_windows WHERE needs_emit"
                ).fetchone()
            if watermark is not None and watermark >= END_OF_INPUT_MS and dirty == 0:
                return True, watermark
            if st.emitter is None or st.emitter.poll() is not None:
                log.error("a3 drain: the emitter has exited")
                break
            time.sleep(0.1)
        return False, watermark

    # ------------------------------------------------------------------ collect
    def collect(self, ctx: Any) -> None:
        st: _State = ctx.extra["a3"]
        results = read_output_topic(ctx.services.kafka_bootstrap, st.topics["output"])
        write_results(results, ctx.run_dir / "results.csv")
        policy = st.params["lateness"]["policy"]
        allowed = int(st.params["lateness"]["allowed_ms"])
        with pg_schema.connect(ctx.services.pg_dsn, st.schema) as conn:
            late = conn.execute(
                "SELECT campaign_id, window_start_ms, dropped_views, dropped_clicks, "
                "dropped_purchases, accepted_views, accepted_clicks, accepted_purchases "
                "FROM late_windows ORDER BY window_start_ms, campaign_id"
            ).fetchall()
            fired = conn.execute(
                "SELECT campaign_id, window_start_ms, emissions, watermark_ms, first_fired_ms, "
                "last_fired_ms FROM fired_windows ORDER BY window_start_ms, campaign_id"
            ).fetchall()
            partitions = conn.execute(
                "SELECT kafka_partition, watermark_ms, injector_ms, max_event_time_ms, idle "
                "FROM partition_watermarks ORDER BY kafka_partition"
            ).fetchall()
            (stored_events,) = conn.execute("SELECT count(*) FROM events").fetchone()
            sample = self._sample_events(conn, int(stored_events), int(ctx.spec["seed"]))
            dead = conn.execute(
                "SELECT reason, kafka_partition, kafka_offset, rejected_ms, raw FROM dead_letters "
                "ORDER BY kafka_partition, kafka_offset LIMIT %s",
                (DEAD_LETTER_ROWS,),
            ).fetchall()
            conn.commit()
            rejects = outputs.reject_counts(conn)
        write_rejects(ctx.run_dir / "rejects.csv", rejects)
        write_text_atomic(
            ctx.run_dir / "a3" / "dead_letters.csv",
            csv_text(
                DEAD_LETTER_COLUMNS,
                [(*row[:4], bytes(row[4]).decode("utf-8", "backslashreplace")) for row in dead],
            ),
        )
        write_text_atomic(
            ctx.run_dir / "metrics" / "late.csv",
            csv_text(LATE_COLUMNS, [(*row, policy, allowed) for row in late]),
        )
        write_text_atomic(
            ctx.run_dir / "metrics" / "events_sample.csv", csv_text(SAMPLE_COLUMNS, sample)
        )
        write_text_atomic(
            ctx.run_dir / "metrics" / "fired_windows.csv",
            csv_text(FIRED_COLUMNS, [(c, w, n, _inf(wm), a, b) for c, w, n, wm, a, b in fired]),
        )
        write_json_atomic(
            ctx.run_dir / "metrics" / "a3.json",
            {
                "schema": st.schema,
                "topics": st.topics,
                "partitions": st.partitions,
                "params": st.params,
                "lateness_policy": policy,
                "allowed_lateness_ms": allowed,
                "watermark_bound_ms": int(st.params["watermark_bound_ms"]),
                "idle_timeout_ms": st.params["idle_timeout_ms"],
                "drain": st.drain,
                "consumer_restarts": st.group.restarts,
                "stored_events": int(stored_events),
                "late_dropped_events": int(sum(sum(r[2:5]) for r in late)),
                "late_accepted_events": int(sum(sum(r[5:8]) for r in late)),
                "rejected": rejects,
                "windows_fired": len(fired),
                "emissions": int(sum(r[2] for r in fired)),
                "result_records": len(results),
                "partition_watermarks": [
                    {"partition": p, "watermark_ms": _inf(wm), "injector_ms": inj,
                     "max_event_time_ms": mx, "idle": idle}
                    for p, wm, inj, mx, idle in partitions
                ],
            },
        )

    @staticmethod
    def _sample_events(conn: Any, stored: int, seed: int) -> list[tuple]:
        """About EVENT_SAMPLE_ROWS stored events, the same rows for the same stored table."""
        if stored == 0:
            return []
        percent = min(100.0, 100.0 * EVENT_SAMPLE_ROWS / stored)
        return conn.execute(
            "SELECT e.event_time_ns / 1000000, e.insertion_time_ms, e.event_type, a.campaign_id "
            "FROM events e TABLESAMPLE BERNOULLI (%s) REPEATABLE (%s) "
            "JOIN ads a ON a.ad_id = e.ad_id ORDER BY 2, 1",
            (percent, seed % 2**31),
        ).fetchall()

    # --------------------------------------------------------------------- stop
    def stop(self, ctx: Any) -> None:
        st: _State | None = ctx.extra.get("a3")
        if st is not None:
            stop_run(ctx, "a3", st.group, [st.emitter], st.params, st.schema)
