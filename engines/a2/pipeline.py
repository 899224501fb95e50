"""A2: generator -> Kafka -> consumer group -> PostgreSQL -> window query (decoupled).

    generator process(es) --JSON--> input topic (P partitions)
        --> a2.consumers consumer processes (one group; engines.a2.consumer)
            --> PostgreSQL: events + dead_letters + kafka_offsets, one transaction per batch
        <-- query runner process (engines.common.query_runner): clicks per campaign per
            10 s window, run when the wall clock passes window end + grace

Exactly-once into PostgreSQL: the consumers store their Kafka offsets in PostgreSQL in
the same transaction as the rows (see engines.a2.consumer). Consumer lag is sampled
from those PostgreSQL offsets (the authoritative ones) against the topic's end offsets
into ``metrics/lag.csv``. A consumer that dies (e.g. kill -9) is restarted by a
supervisor thread when ``a2.restart_crashed_consumers`` is set; restarts are listed in
``metrics/a2.json``.

Run outputs: ``results.csv`` + ``metrics/queries.csv`` (query runner),
``metrics/lag.csv``, ``metrics/consumer-<i>.csv``, ``final_counts.csv`` (recount of
every window over the complete table), ``rejects.csv`` (dead letters per reason),
``metrics/a2.json`` (drain outcome, restarts, settings), ``logs/`` (process logs).
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.common import outputs, pg_schema
from engines.common.consumer_group import ConsumerGroup, stop_run
from engines.common.processes import spawn_module, terminate, write_job
from sdsbench import contract
from sdsbench.experiments import pipeline_params
from sdsbench.rundir import write_json_atomic, write_rejects
from sdsbench.topics import create_run_topics

log = logging.getLogger("sdsbench.a2")


@dataclass
class _State:
    params: dict[str, Any]
    schema: str
    topic: str
    partitions: int
    job_path: Path | None = None
    group: ConsumerGroup | None = None
    query_runner: subprocess.Popen | None = None
    drain: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    owns_generator = False

    # ------------------------------------------------------------------ prepare
    def prepare(self, ctx: Any) -> None:
        params = pipeline_params(ctx.config, ctx.spec)
        partitions = int(params.get("partitions") or ctx.config["services"]["kafka"]["partitions"])
        workload = ctx.config["workload"]
        catalog = contract.ad_catalog(workload["campaigns"], workload["ads_per_campaign"])
        topics = create_run_topics(ctx.services, ctx.run_id, partitions)
        schema = pg_schema.run_schema_name(ctx.run_id)
        # From here on stop() cleans up (topics and schema), whatever fails next.
        st = ctx.extra["a2"] = _State(params, schema, topics["input"], partitions)
        pg_schema.create_run_schema(ctx.services.pg_dsn, schema, catalog, partitions)
        job = {
            "pipeline": "a2",
            "dsn": ctx.services.pg_dsn,
            "schema": schema,
            "bootstrap": ctx.services.kafka_bootstrap,
            "topic": topics["input"],
            "group": f"sdsbench-a2-{ctx.run_id}",
            "run_dir": str(ctx.run_dir),
            "campaigns": workload["campaigns"],
            "ads_per_campaign": workload["ads_per_campaign"],
            "window_ms": contract.WINDOW_MS,
            "grace_ms": int(params["query_grace_ms"]),
            "max_batch_messages": int(params["max_batch_messages"]),
            "poll_timeout_ms": int(params["poll_timeout_ms"]),
            "session_timeout_ms": int(params["session_timeout_ms"]),
            "kafka_consumer_config": dict(params.get("kafka_consumer_config") or {}),
        }
        st.job_path = write_job(ctx.run_dir, "a2-job", job)

    # -------------------------------------------------------------------- start
    def start(self, ctx: Any) -> None:
        st: _State = ctx.extra["a2"]
        st.group = ConsumerGroup(ctx, "a2", "engines.a2.consumer", st.job_path,
                                 int(st.params["consumers"]),
                                 bool(st.params["restart_crashed_consumers"]), "consumer-")
        st.group.start(st.schema, st.topic)
        st.query_runner = spawn_module(
            "engines.common.query_runner",
            ["--job", str(st.job_path)],
            ctx.run_dir / "logs" / "query_runner.log",
        )
        ctx.processes.append(st.query_runner)

    # ------------------------------------------------------------------- faults
    def kill(self, ctx: Any) -> dict[str, Any]:
        """Fault runs (sdsbench.faults): SIGKILL every consumer process at once. Their
        offsets live in PostgreSQL with the rows, so nothing committed is lost and nothing
        uncommitted was stored. The query runner is not state: it is left running."""
        st: _State = ctx.extra["a2"]
        return {"killed": "a2 consumers", "pids": sorted(st.group.kill())}

    def restart(self, ctx: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        """Consumers back (they then resume from the offsets stored in PostgreSQL)."""
        st: _State = ctx.extra["a2"]
        waited = st.group.respawn(timeout_s)
        return {"pids": [p.pid for p in st.group.consumers], "respawn_wait_s": round(waited, 3)}

    # --------------------------------------------------------------- generator
    def generator_sink(self, ctx: Any) -> dict[str, Any]:
        st: _State = ctx.extra["a2"]
        return {
            "kind": "kafka",
            "bootstrap": ctx.services.kafka_bootstrap,
            "topic": st.topic,
            "watermark_markers": False,
            "marker_interval_ms": 0,
            "watermark_bound_ms": 0,
            "idle_partitions": [],
        }

    # -------------------------------------------------------------------- drain
    def drain(self, ctx: Any, timeout_s: float) -> None:
        """Wait until PostgreSQL holds everything in the topic, then let the query
        runner query the remaining windows (each still when it closes) and exit."""
        st: _State = ctx.extra["a2"]
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        caught_up = False
        lag_left: dict[int, int] = {}
        last_report = t0
        while time.monotonic() < deadline:
            stored, ends = st.group.stored_offsets(), st.group.end_offsets()
            lag_left = {p: e - stored.get(p, 0) for p, e in ends.items() if e > stored.get(p, 0)}
            if not lag_left:
                caught_up = True
                break
            if time.monotonic() - last_report > 5:
                log.info("a2 drain: %d records left", sum(lag_left.values()))
                last_report = time.monotonic()
            time.sleep(0.2)
        consumed_s = time.monotonic() - t0
        # The query runner's last window closes up to window + grace after the last event.
        runner_timeout = max(0.0, deadline - time.monotonic()) + contract.WINDOW_MS / 1000 + (
            int(st.params["query_grace_ms"]) / 1000
        )
        runner_rc = terminate([st.query_runner], runner_timeout)[0] if st.query_runner else None
        st.drain = {
            "caught_up": caught_up,
            "records_left": sum(lag_left.values()),
            "consume_wait_s": round(consumed_s, 3),
            "total_wait_s": round(time.monotonic() - t0, 3),
            "query_runner_returncode": runner_rc,
        }
        log.info("a2 drain: %s", st.drain)

    # ------------------------------------------------------------------ collect
    def collect(self, ctx: Any) -> None:
        st: _State = ctx.extra["a2"]
        with pg_schema.connect(ctx.services.pg_dsn, st.schema) as conn:
            windows = outputs.write_final_counts(
                conn, ctx.run_dir / "final_counts.csv", contract.WINDOW_MS
            )
            rejects = outputs.reject_counts(conn)
            write_rejects(ctx.run_dir / "rejects.csv", rejects)
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM events")
                (stored_events,) = cur.fetchone()
        write_json_atomic(
            ctx.run_dir / "metrics" / "a2.json",
            {
                "schema": st.schema,
                "topic": st.topic,
                "partitions": st.partitions,
                "params": st.params,
                "drain": st.drain,
                "consumer_restarts": st.group.restarts,
                "stored_events": int(stored_events),
                "rejected": rejects,
                "final_count_rows": windows,
            },
        )

    # --------------------------------------------------------------------- stop
    def stop(self, ctx: Any) -> None:
        st: _State | None = ctx.extra.get("a2")
        if st is not None:
            stop_run(ctx, "a2", st.group, [st.query_runner], st.params, st.schema)
