"""Checkpoints of the A4f job: the newest completed one (a fault run restarts from it),
and checkpoints triggered on demand through the REST API (the drain waits for them)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from engines.flink.metrics import FlinkRest, RestError

log = logging.getLogger("sdsbench.flink")


def latest_checkpoint(job_dir: Path) -> Path | None:
    """The newest completed checkpoint (``chk-<n>`` with its ``_metadata``) of a job's
    checkpoint directory, or None."""
    done = [(int(p.name[4:]), p) for p in job_dir.glob("chk-*")
            if p.name[4:].isdigit() and (p / "_metadata").exists()]
    return max(done)[1] if done else None


class CheckpointTrigger:
    """Checkpoints on demand through the REST API, one at a time: ``request`` triggers one
    unless one is in flight, and answers the state of the last (None before the first).
    A job manager that refuses (a Flink without the endpoint) leaves the periodic
    checkpoints to do the work: ``request`` then always answers None."""

    MIN_GAP_S = 0.5  # between two triggers: a failed one is retried, not hammered

    def __init__(self, rest: FlinkRest | None, job_id: str | None) -> None:
        self.rest, self.job_id = rest, job_id
        self.trigger_id: str | None = None
        self.state: str | None = None
        self.triggered = 0
        self.disabled = rest is None
        self._last = 0.0

    def reset(self) -> None:
        """Forget the last checkpoint: the next ``request`` triggers a new one."""
        self.trigger_id = self.state = None

    def request(self) -> str | None:
        if self.disabled or self.job_id is None:
            return None
        try:
            if self.trigger_id is not None and self.state == "IN_PROGRESS":
                self.state = self.rest.checkpoint_trigger_status(self.job_id, self.trigger_id)
                return self.state
            if self.state == "COMPLETED" and self.trigger_id is not None:
                # Completed but the caller still waits (e.g. the commit after it had not
                # arrived yet, or it covered too little): another one after a short gap.
                if time.monotonic() - self._last < 2 * self.MIN_GAP_S:
                    return self.state
            elif time.monotonic() - self._last < self.MIN_GAP_S:
                return self.state
            self.trigger_id = self.rest.trigger_checkpoint(self.job_id)
            self.state = "IN_PROGRESS"
            self.triggered += 1
            self._last = time.monotonic()
        except RestError as exc:
            log.warning("cannot trigger checkpoints through the REST API (%s): waiting for "
                        "the periodic ones", exc)
            self.disabled = True
            return None
        return self.state
