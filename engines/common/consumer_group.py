"""The consumer processes of A2 and A3: one Kafka consumer group whose members store their
rows and their offsets in PostgreSQL in one transaction (``kafka_offsets`` of the run's
schema), supervised while the run goes on.

    start    spawn the consumers, sample consumer lag (the offsets in PostgreSQL against
             the topic's end offsets: ``metrics/lag.csv``), supervise
    supervise  a consumer that dies (crash, kill -9) is reported once and, with
             ``restart_crashed_consumers``, started again: it resumes from what it stored
    kill / respawn   fault runs: SIGKILL the consumers (and the pipeline's other state
             processes), then wait until every consumer is a new live process
    stop     end the supervisor and the sampler, terminate the processes

Each pipeline supplies its consumer module and job file; everything else is here.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from engines.common import pg_schema
from engines.common.processes import spawn_module, terminate
from sdsbench.measurement.lag import KafkaEndOffsets, LagSampler
from sdsbench.process_control import kill_processes, wait_until

log = logging.getLogger("sdsbench.consumers")


class ConsumerGroup:
    """A run's consumer processes (see module doc)."""

    def __init__(self, ctx: Any, name: str, module: str, job_path: Path, count: int,
                 restart_crashed: bool, log_prefix: str) -> None:
        self.ctx = ctx
        self.name = name  # "a2" | "a3": in logs and thread names
        self.module = module
        self.job_path = job_path
        self.count = count
        self.restart_crashed = restart_crashed
        self.log_prefix = log_prefix  # logs/<prefix><index>.log
        self.consumers: list[subprocess.Popen] = []
        self.restarts: list[dict[str, Any]] = []  # every consumer that died, once
        self.killed_pids: set[int] = set()  # of the last fault-run kill
        self.offsets_lock = threading.Lock()
        self.offsets_conn: Any = None
        self._ends: KafkaEndOffsets | None = None
        self._lag: LagSampler | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def start(self, schema: str, topic: str, lag_interval_s: float = 1.0) -> None:
        ctx = self.ctx
        for index in range(self.count):
            self.consumers.append(self.spawn(index))
        self.offsets_conn = pg_schema.connect(ctx.services.pg_dsn, schema, autocommit=True)
        self._ends = KafkaEndOffsets(ctx.services.kafka_bootstrap, topic)
        self._lag = LagSampler(ctx.run_dir / "metrics" / "lag.csv", self.end_offsets,
                               self.stored_offsets, interval_s=lag_interval_s)
        self._lag.start()
        self._supervisor = threading.Thread(target=self._supervise,
                                            name=f"{self.name}-supervisor", daemon=True)
        self._supervisor.start()

    def spawn(self, index: int) -> subprocess.Popen:
        proc = spawn_module(self.module, ["--job", str(self.job_path), "--index", str(index)],
                            self.ctx.run_dir / "logs" / f"{self.log_prefix}{index}.log")
        self.ctx.processes.append(proc)
        return proc

    def _supervise(self) -> None:
        reported: set[int] = set()
        while not self._stopping.wait(0.5):
            for index, proc in enumerate(self.consumers):
                if proc.poll() is None or proc.pid in reported or self._stopping.is_set():
                    continue
                reported.add(proc.pid)
                event = {"consumer": index, "pid": proc.pid, "returncode": proc.returncode,
                         "time_ms": time.time_ns() // 1_000_000,
                         "restarted": self.restart_crashed}
                log.warning("%s consumer %d (pid %d) exited with %s", self.name, index,
                            proc.pid, proc.returncode)
                if self.restart_crashed:
                    self.consumers[index] = self.spawn(index)
                    event["new_pid"] = self.consumers[index].pid
                self.restarts.append(event)

    def stored_offsets(self) -> dict[int, int]:
        """Next offset per partition as committed in PostgreSQL with the rows."""
        with self.offsets_lock, self.offsets_conn.cursor() as cur:
            cur.execute("SELECT kafka_partition, next_offset FROM kafka_offsets")
            return {int(p): int(o) for p, o in cur.fetchall()}

    def end_offsets(self) -> dict[int, int]:
        # One client shared by the lag sampler and the drain: librdkafka handles are
        # thread-safe, the lock only keeps the two from interleaving their requests.
        with self.offsets_lock:
            return self._ends()

    # ------------------------------------------------------------------- faults
    def kill(self, others: list[subprocess.Popen] = ()) -> list[int]:
        """SIGKILL every consumer and ``others`` at once; the pids killed."""
        pids = kill_processes([*self.consumers, *others])
        self.killed_pids = set(pids)
        return pids

    def respawn(self, timeout_s: float) -> float:
        """Every killed consumer back: the supervisor replaces them when it restarts
        crashed consumers, else they are started here. Waits until every consumer is a
        live process other than the killed ones (the supervisor may have replaced one
        before this is called); the seconds it waited."""
        if not self.restart_crashed:
            for index, proc in enumerate(self.consumers):
                if proc.poll() is not None:
                    self.consumers[index] = self.spawn(index)
        return wait_until(
            lambda: all(p.pid not in self.killed_pids and p.poll() is None
                        for p in list(self.consumers)),
            timeout_s, f"{self.name} consumers restarted")

    # --------------------------------------------------------------------- stop
    def stop(self, timeout_s: float, others: list[subprocess.Popen | None] = ()) -> list:
        """End the supervisor and the lag sampler, terminate the consumers and
        ``others``; their return codes."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        if self._lag is not None:
            self._lag.stop()
        codes = terminate([p for p in [*self.consumers, *others] if p is not None], timeout_s)
        if self._ends is not None:
            self._ends.close()
        if self.offsets_conn is not None:
            self.offsets_conn.close()
        return codes


def stop_run(ctx: Any, pipeline: str, group: ConsumerGroup | None,
             others: list[subprocess.Popen | None], params: dict[str, Any],
             schema: str) -> None:
    """The end of an A2/A3 run, whatever state it reached: the consumers (if started) and
    the pipeline's other processes stopped, then the run's schema and topics dropped
    (unless ``keep_data``)."""
    timeout_s = float(params["stop_timeout_s"])
    if group is not None:
        codes = group.stop(timeout_s, others)
    else:
        codes = terminate([p for p in others if p is not None], timeout_s)
    log.info("%s stopped: return codes %s", pipeline, codes)
    if not params.get("keep_data"):
        pg_schema.drop_run_artifacts(ctx.services, ctx.run_id, schema, pipeline)
