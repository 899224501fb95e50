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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from engines.common import outputs, pg_schema
from engines.common.processes import spawn_module, terminate, write_job
from sdsbench import contract
from sdsbench.experiments import pipeline_params
from sdsbench.measurement.lag import KafkaEndOffsets, LagSampler
from sdsbench.rundir import write_json_atomic

log = logging.getLogger("sdsbench.a2")


@dataclass
class _State:
    params: dict[str, Any]
    schema: str
    topic: str
    partitions: int
    job_path: Path | None = None
    consumers: list[subprocess.Popen] = field(default_factory=list)
    query_runner: subprocess.Popen | None = None
    lag: LagSampler | None = None
    ends: KafkaEndOffsets | None = None
    offsets_conn: psycopg.Connection | None = None
    offsets_lock: threading.Lock = field(default_factory=threading.Lock)
    supervisor: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    killed_pids: set[int] = field(default_factory=set)  # of the last fault-run kill
    drain: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    owns_generator = False

    # ------------------------------------------------------------------ prepare
    def prepare(self, ctx: Any) -> None:
        from sdsbench.topics import create_run_topics

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
        for index in range(int(st.params["consumers"])):
            st.consumers.append(self._spawn_consumer(ctx, index))
        st.query_runner = spawn_module(
            "engines.common.query_runner",
            ["--job", str(st.job_path)],
            ctx.run_dir / "logs" / "query_runner.log",
        )
        ctx.processes.append(st.query_runner)
        st.offsets_conn = pg_schema.connect(ctx.services.pg_dsn, st.schema, autocommit=True)
        st.ends = KafkaEndOffsets(ctx.services.kafka_bootstrap, st.topic)
        st.lag = LagSampler(
            ctx.run_dir / "metrics" / "lag.csv",
            lambda: self._end_offsets(st),
            lambda: self._stored_offsets(st),
        )
        st.lag.start()
        st.supervisor = threading.Thread(
            target=self._supervise, args=(ctx,), name="a2-supervisor", daemon=True
        )
        st.supervisor.start()

    def _spawn_consumer(self, ctx: Any, index: int) -> subprocess.Popen:
        st: _State = ctx.extra["a2"]
        proc = spawn_module(
            "engines.a2.consumer",
            ["--job", str(st.job_path), "--index", str(index)],
            ctx.run_dir / "logs" / f"consumer-{index}.log",
        )
        ctx.processes.append(proc)
        return proc

    def _supervise(self, ctx: Any) -> None:
        """Restart consumers that die while the run goes on (crash, kill -9)."""
        st: _State = ctx.extra["a2"]
        while not st.stopping.wait(0.5):
            for index, proc in enumerate(st.consumers):
                if proc.poll() is None or st.stopping.is_set():
                    continue
                event = {
                    "consumer": index,
                    "pid": proc.pid,
                    "returncode": proc.returncode,
                    "time_ms": time.time_ns() // 1_000_000,
                    "restarted": bool(st.params["restart_crashed_consumers"]),
                }
                log.warning("a2 consumer %d (pid %d) exited with %s", index, proc.pid,
                            proc.returncode)
                if st.params["restart_crashed_consumers"]:
                    st.consumers[index] = self._spawn_consumer(ctx, index)
                    event["new_pid"] = st.consumers[index].pid
                st.restarts.append(event)

    def _stored_offsets(self, st: _State) -> dict[int, int]:
        """Next offset per partition as committed in PostgreSQL (with the rows)."""
        with st.offsets_lock, st.offsets_conn.cursor() as cur:
            cur.execute("SELECT kafka_partition, next_offset FROM kafka_offsets")
            return {int(p): int(o) for p, o in cur.fetchall()}

    def _end_offsets(self, st: _State) -> dict[int, int]:
        # One client shared by the lag sampler and drain: librdkafka handles are
        # thread-safe, the lock only keeps the two from interleaving their requests.
        with st.offsets_lock:
            return st.ends()

    # ------------------------------------------------------------------- faults
    def kill(self, ctx: Any) -> dict[str, Any]:
        """Fault runs (sdsbench.faults): SIGKILL every consumer process at once. Their
        offsets live in PostgreSQL with the rows, so nothing committed is lost and nothing
        uncommitted was stored. The query runner is not state: it is left running."""
        st: _State = ctx.extra["a2"]
        from sdsbench.faults import kill_processes

        st.killed_pids = set(kill_processes(list(st.consumers)))
        return {"killed": "a2 consumers", "pids": sorted(st.killed_pids)}

    def restart(self, ctx: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        """Consumers back: the supervisor restarts dead ones (``restart_crashed_consumers``);
        when that is off, start them here. Returns once every consumer is a new live process
        (they then resume from the offsets stored in PostgreSQL)."""
        from sdsbench.faults import respawn_consumers

        st: _State = ctx.extra["a2"]
        waited = respawn_consumers(
            st.consumers, st.killed_pids, lambda index: self._spawn_consumer(ctx, index),
            bool(st.params["restart_crashed_consumers"]), timeout_s, "a2 consumers restarted")
        return {"pids": [p.pid for p in st.consumers], "respawn_wait_s": round(waited, 3)}

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
            stored, ends = self._stored_offsets(st), self._end_offsets(st)
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
            outputs.write_rejects(ctx.run_dir / "rejects.csv", rejects)
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
                "consumer_restarts": st.restarts,
                "stored_events": int(stored_events),
                "rejected": rejects,
                "final_count_rows": windows,
            },
        )

    # --------------------------------------------------------------------- stop
    def stop(self, ctx: Any) -> None:
        st: _State | None = ctx.extra.get("a2")
        if st is None:
            return
        st.stopping.set()
        if st.supervisor is not None:
            st.supervisor.join(timeout=5)
        if st.lag is not None:
            st.lag.stop()
        procs = [p for p in [*st.consumers, st.query_runner] if p is not None]
        codes = terminate(procs, float(st.params["stop_timeout_s"]))
        log.info("a2 stopped: return codes %s", codes)
        if st.ends is not None:
            st.ends.close()
        if st.offsets_conn is not None:
            st.offsets_conn.close()
        self._cleanup(ctx, st)

    def _cleanup(self, ctx: Any, st: _State) -> None:
        from engines.common import pg_schema

        if not st.params.get("keep_data"):
            pg_schema.drop_run_artifacts(ctx.services, ctx.run_id, st.schema, "a2")
