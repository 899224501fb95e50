"""Fault injection during a run: kill -9 the system under test, restart the broker, or
kill -9 a Kafka broker.

A run spec may carry ``fault`` (see ``validate_fault``)::

    {"kind": "kill_sut", "at_s": 12.0}
    {"kind": "broker_restart", "at_s": 12.0, "down_s": 2.0}
    {"kind": "broker_kill", "at_s": 12.0, "down_s": 5.0, "target": "leader"}

``FaultInjector`` is started by the runner right before the generator(s); ``at_s`` counts
from that moment. At ``at_s``:

- ``kill_sut``: ``pipeline.kill(ctx)`` sends SIGKILL to the processes that hold the
  pipeline's state (A2: every consumer; A3: every consumer and the CTR emitter, i.e. all
  that computes the low watermark and fires windows; Spark: the driver, Python and JVM;
  Flink: the job's process with its mini-cluster JVM), waits until they are gone, then
  ``pipeline.restart(ctx)`` starts them again from what they committed (PostgreSQL
  offsets, Spark's checkpointLocation, Flink's last completed checkpoint) and returns once
  the restarted SUT runs.
- ``broker_restart``: a clean stop (SIGTERM, controlled shutdown) of the run's Kafka
  broker, ``down_s`` seconds down, then a start on the same ports and data
  (``sdsbench.services.stack.restart_broker``). Producers, consumers and engines must
  ride through it on their own.
- ``broker_kill``: SIGKILL of one Kafka node (a crash: nothing flushed), ``down_s``
  seconds down, then a start on its ports and data. ``target``: ``leader``, the node
  leading partition 0 of the run's input topic (the generator's writes to it move to
  another replica), or ``controller``, the active controller of the quorum (a new one is
  elected while the generator produces). With one broker it is the broker.

Every step is stamped (wall clock, ms) into ``metrics/faults.json``::

    {"fault": {...spec...}, "injected": true, "events": [
        {"step": "kill", "time_ms": ..., ...}, {"step": "killed", ...},
        {"step": "restart", ...}, {"step": "restarted", "time_ms": ..., ...}]}

A fault whose ``at_s`` lies after the generator finished is not injected
(``"injected": false``, with the reason): the analysis reports such a run as invalid,
never as survived.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from sdsbench.rundir import write_json_atomic

log = logging.getLogger("sdsbench.faults")

FAULT_KINDS = ("kill_sut", "broker_restart", "broker_kill")
KILL_TARGETS = ("leader", "controller")
FAULTS_FILE = Path("metrics") / "faults.json"
DEFAULT_DOWN_S = 2.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def validate_fault(fault: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """The fault with defaults filled in; ValueError naming the bad key otherwise."""
    kind = fault.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault.kind: {kind!r} is not one of {FAULT_KINDS}")
    at_s = float(fault.get("at_s", -1))
    if not 0 < at_s < duration_s:
        raise ValueError(f"fault.at_s: {at_s} must lie inside the run (0, {duration_s}) s")
    out = {"kind": kind, "at_s": at_s}
    if kind in ("broker_restart", "broker_kill"):
        out["down_s"] = float(fault.get("down_s", DEFAULT_DOWN_S))
        if out["down_s"] < 0:
            raise ValueError("fault.down_s: must be >= 0")
    if kind == "broker_kill":
        out["target"] = fault.get("target", "leader")
        if out["target"] not in KILL_TARGETS:
            raise ValueError(f"fault.target: {out['target']!r} is not one of {KILL_TARGETS}")
    return out


class FaultInjector:
    """Injects one fault into a running pipeline on a thread (see the module doc)."""

    def __init__(self, fault: dict[str, Any], pipeline: Any, ctx: Any,
                 duration_s: float) -> None:
        self.fault = validate_fault(fault, duration_s)
        self.pipeline = pipeline
        self.ctx = ctx
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None
        self.injected = False
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.events.append({"step": "armed", "time_ms": now_ms()})
        self._thread.start()

    def _stamp(self, step: str, **info: Any) -> None:
        event = {"step": step, "time_ms": now_ms(), **info}
        log.info("fault %s: %s", self.fault["kind"], event)
        self.events.append(event)

    def _run(self) -> None:
        if self._cancel.wait(max(0.0, self._t0 + self.fault["at_s"] - time.monotonic())):
            return
        try:
            if self.fault["kind"] == "kill_sut":
                self._kill_and_restart()
            else:
                self._restart_broker()
        except Exception as exc:  # noqa: BLE001 - recorded; the runner fails the run
            self.error = f"{type(exc).__name__}: {exc}"
            self._stamp("error", error=self.error, traceback=traceback.format_exc()[-3000:])

    def _kill_and_restart(self) -> None:
        self.injected = True
        self._stamp("kill")
        self._stamp("killed", **(self.pipeline.kill(self.ctx) or {}))
        self._stamp("restart")
        self._stamp("restarted", **(self.pipeline.restart(self.ctx) or {}))

    def _restart_broker(self) -> None:
        from sdsbench.services.stack import restart_broker

        self.injected = True
        kill = self.fault["kind"] == "broker_kill"
        node = self._target_node() if kill else None
        self._stamp("broker_stop", node=node)
        info = restart_broker(
            self.ctx.services, self.fault["down_s"], node=node, kill=kill,
            on_stopped=lambda: self._stamp("broker_stopped"),
        )
        self._stamp("broker_started", **info)

    def _target_node(self) -> int | None:
        """The cluster node ``target`` names (None: the stack has a single broker)."""
        from sdsbench import contract
        from sdsbench.services.kafka_cluster import quorum_leader
        from sdsbench.services.stack import kafka_leaders

        svc = self.ctx.services
        if "kafka" in svc.pids:
            return None
        if self.fault["target"] == "controller":
            node = quorum_leader(Path(svc.state_dir) / "kafka")
        else:
            node = kafka_leaders(svc, contract.input_topic(self.ctx.run_id)).get(0)
        if node is None or node < 0:
            raise RuntimeError(f"no {self.fault['target']} node found to kill")
        return node

    def finish(self, timeout_s: float) -> dict[str, Any]:
        """Wait for a fault in progress (a restart may take a while), cancel one not yet
        due, write ``metrics/faults.json``; raises if the fault itself failed."""
        if self.injected or self._thread.is_alive() and self._due():
            self._thread.join(timeout_s)
        self._cancel.set()
        self._thread.join(5)
        record = {"fault": self.fault, "injected": self.injected, "events": self.events}
        if not self.injected:
            record["reason"] = "the generator finished before at_s"
        if self._thread.is_alive():
            self.error = self.error or f"fault still in progress after {timeout_s} s"
        if self.error:
            record["error"] = self.error
        write_json_atomic(self.ctx.run_dir / FAULTS_FILE, record)
        if self.error:
            raise RuntimeError(f"fault injection failed: {self.error}")
        return record

    def cancel(self) -> None:
        self._cancel.set()

    def _due(self) -> bool:
        return time.monotonic() >= self._t0 + self.fault["at_s"]


