"""Flink's own indicators, sampled from outside the job through its REST API.

The local mini-cluster serves the REST API on the port the driver picks (``rest.port``;
``engines.flink.ctr_job.flink_settings``), a remote cluster on its JobManager address.
``RestSampler`` is a thread that, once per ``interval_s``, reads for every job vertex
(a chain of operators run by one task):

- its input watermark: the minimum over its subtasks of ``currentInputWatermark``;
- busy / backpressured / idle time in ms per second (max and average over subtasks) and
  records in/out per second (summed over subtasks);

and the checkpoint history. It writes under the run's ``metrics/``:

- ``flink_vertices.csv`` (``VERTEX_COLUMNS``), one row per vertex and tick;
- ``watermark.csv`` (``time_ms, watermark_ms``): the input watermark of the first window
  aggregation (per ad; the one that drops late events) -- the job's event-time progress
  the analysis plots against processing time;
- ``flink_checkpoints.csv`` (``CHECKPOINT_COLUMNS``) when stopped: every checkpoint seen,
  with its end-to-end duration and sizes (Flink keeps the last ``web.checkpoints.history``
  ones; sampling every second keeps them all). ``trigger_ms`` and ``ack_ms`` (the latest
  acknowledgement, = trigger + ``end_to_end_duration_ms``: when the checkpoint can
  complete) of completed checkpoints time the commits of an exactly-once run's
  transactions (``sdsbench.analysis.engine_metrics.visible_times``).

A failed request is logged and the tick skipped: the sampler measures the run, it must
never end it. Rows are flushed every tick, so a killed run keeps what was sampled.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sdsbench.rundir import write_csv_atomic

log = logging.getLogger("sdsbench.flink.metrics")

VERTEX_COLUMNS = (
    "time_ms", "vertex", "name", "parallelism", "watermark_ms", "busy_ms_per_s_max",
    "busy_ms_per_s_avg", "backpressured_ms_per_s_max", "idle_ms_per_s_avg",
    "records_in_per_s", "records_out_per_s",
)
WATERMARK_COLUMNS = ("time_ms", "watermark_ms")
CHECKPOINT_COLUMNS = (
    "id", "status", "trigger_ms", "ack_ms", "end_to_end_duration_ms", "state_size_bytes",
    "checkpointed_size_bytes", "processed_data_bytes", "alignment_buffered_bytes",
)
LOAD_METRICS = ("busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond",
                "numRecordsInPerSecond", "numRecordsOutPerSecond")
NO_WATERMARK = -(2**63)  # Long.MIN_VALUE: no watermark received yet
# The first-level window aggregation (per ad) in the job graph's node descriptions:
# window TVF ("GlobalWindowAggregate(groupBy=[ad_id]") or legacy group window
# ("GroupWindowAggregate(groupBy=[ad_id]").
WINDOW_OPERATOR_MARK = "WindowAggregate(groupBy=[ad_id]"
CURRENT_OFFSET = re.compile(r"\.partition\.(\d+)\.currentOffset$")


class RestError(RuntimeError):
    """The REST API did not answer or answered with an error."""


class FlinkRest:
    """A few read-only calls of Flink's REST API (JSON over HTTP, standard library only)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RestError(f"GET {self.url}{path}: {exc}") from exc

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"},
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RestError(f"POST {self.url}{path}: {exc}") from exc

    def trigger_checkpoint(self, job_id: str) -> str:
        """Ask for a checkpoint now (Flink >= 1.19: ``POST /jobs/:jobid/checkpoints``);
        the trigger id to follow it with ``checkpoint_trigger_status``."""
        return str(self.post(f"/jobs/{job_id}/checkpoints",
                             {"checkpointType": "CONFIGURED"})["request-id"])

    def checkpoint_trigger_status(self, job_id: str, trigger_id: str) -> str:
        """IN_PROGRESS, COMPLETED or FAILED (completed, but without a checkpoint id: the
        checkpoint was declined or expired)."""
        answer = self.get(f"/jobs/{job_id}/checkpoints/{trigger_id}")
        if answer.get("status", {}).get("id") != "COMPLETED":
            return "IN_PROGRESS"
        operation = answer.get("operation") or {}
        return "COMPLETED" if operation.get("checkpointId") is not None else "FAILED"

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/jobs/{job_id}")

    def all_running(self, job_id: str) -> bool:
        """True when the job and every vertex run (the sources have their splits)."""
        try:
            job = self.job(job_id)
        except RestError:
            return False
        return job.get("state") == "RUNNING" and all(
            v.get("status") == "RUNNING" for v in job.get("vertices", []))

    def watermark_ms(self, job_id: str, vertex_id: str) -> int | None:
        """The vertex's input watermark (minimum over subtasks); None before the first."""
        entries = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/watermarks")
        values = [int(e["value"]) for e in entries if e.get("id", "").endswith(
            "currentInputWatermark")]
        if not values or min(values) == NO_WATERMARK:
            return None
        return min(values)

    def load(self, job_id: str, vertex_id: str) -> dict[str, dict[str, float]]:
        """Busy/backpressure/idle time and record rates, aggregated over subtasks."""
        query = ",".join(LOAD_METRICS)
        rows = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"
                        f"?get={query}&agg=max,avg,sum")
        return {row["id"]: row for row in rows}

    def operator_metric_sum(self, job_id: str, vertex_id: str, suffix: str) -> float | None:
        """Sum over subtasks of the operator metric whose name ends with ``suffix``
        (e.g. ``events.numRecordsOut``); None if the vertex has no such metric."""
        names = {m["id"].split(".", 1)[1] for m in
                 self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics")
                 if "." in m["id"]}
        matching = sorted(n for n in names if n.endswith(suffix))
        if not matching:
            return None
        rows = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"
                        f"?get={matching[0]}&agg=sum")
        return float(rows[0]["sum"]) if rows else None

    def consumed_offsets(self, job_id: str, vertex_id: str) -> dict[int, int]:
        """Next offset to read per input partition of the Kafka source in ``vertex_id``:
        its ``KafkaSourceReader...partition.<p>.currentOffset`` gauge (the offset of the
        last record it emitted) + 1; partitions without a record yet are left out."""
        names = [m["id"] for m in self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics")
                 if CURRENT_OFFSET.search(m["id"]) and "KafkaSourceReader" in m["id"]]
        if not names:
            return {}
        rows = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics?get={','.join(names)}")
        out: dict[int, int] = {}
        for row in rows:
            match = CURRENT_OFFSET.search(row["id"])
            value = int(float(row.get("value", -1)))
            if match and value >= 0:
                partition = int(match.group(1))
                out[partition] = max(out.get(partition, 0), value + 1)
        return out

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/jobs/{job_id}/checkpoints")

    def plan(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/jobs/{job_id}/plan")


def window_vertex_id(plan: dict[str, Any]) -> str | None:
    """The job vertex holding the first-level window aggregation (see module doc)."""
    for node in plan.get("plan", plan).get("nodes", []):
        if WINDOW_OPERATOR_MARK in node.get("description", ""):
            return node["id"]
    return None


def checkpoint_row(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": entry.get("id"),
        "status": entry.get("status"),
        "trigger_ms": entry.get("trigger_timestamp"),
        "ack_ms": entry.get("latest_ack_timestamp"),
        "end_to_end_duration_ms": entry.get("end_to_end_duration"),
        "state_size_bytes": entry.get("state_size"),
        "checkpointed_size_bytes": entry.get("checkpointed_size"),
        "processed_data_bytes": entry.get("processed_data"),
        "alignment_buffered_bytes": entry.get("alignment_buffered"),
    }


class RestSampler:
    """Thread sampling the job's vertices and checkpoints (see module doc)."""

    def __init__(self, rest: FlinkRest, job_id: str, metrics_dir: Path,
                 interval_s: float = 1.0) -> None:
        self.rest = rest
        self.job_id = job_id
        self.metrics_dir = Path(metrics_dir)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._vertices: list[dict[str, Any]] = []
        self._window_vertex: str | None = None
        self._checkpoints: dict[int, dict[str, Any]] = {}
        self.samples = 0
        self.watermark_ms: int | None = None  # latest of the window vertex
        self.watermark_changed_at = time.monotonic()  # when it last moved

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="flink-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and write the checkpoint table (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self._sample_checkpoints()
        except RestError:
            pass  # the job may be gone; keep what was sampled
        write_csv_atomic(self.metrics_dir / "flink_checkpoints.csv", CHECKPOINT_COLUMNS,
                         self.checkpoint_rows())

    def follow_job(self, job_id: str) -> None:
        """Sample ``job_id`` from now on (a fault run restarted the job from a checkpoint):
        its vertices are looked up again; rows and checkpoints sampled so far are kept."""
        with self._lock:
            self.job_id = job_id
            self._vertices = []
            self._window_vertex = None

    # -------------------------------------------------------------- results
    def checkpoint_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [checkpoint_row(self._checkpoints[i]) for i in sorted(self._checkpoints)]

    def completed_checkpoint_after(self, trigger_after_ms: int) -> bool:
        """True once a checkpoint triggered after ``trigger_after_ms`` completed."""
        with self._lock:
            return any(c.get("status") == "COMPLETED"
                       and int(c.get("trigger_timestamp") or 0) > trigger_after_ms
                       for c in self._checkpoints.values())

    def refresh_watermark(self) -> None:
        """Read the window vertex's watermark now: the drain watches it more often than
        the sampler's interval (``watermark_changed_at`` then has the REST API's own
        resolution, ``metrics.fetcher.update-interval``)."""
        vertex, job_id = self._window_vertex, self.job_id
        if vertex is None:
            return
        try:
            wm = self.rest.watermark_ms(job_id, vertex)
        except RestError:
            return
        self._note_watermark(wm)

    def _note_watermark(self, wm: int | None) -> None:
        with self._lock:
            if wm is not None and wm != self.watermark_ms:
                self.watermark_ms = wm
                self.watermark_changed_at = time.monotonic()

    # -------------------------------------------------------------- sampling
    def _discover(self) -> None:
        if not self._vertices:
            self._vertices = self.rest.job(self.job_id).get("vertices", [])
            self._window_vertex = window_vertex_id(self.rest.plan(self.job_id))
            if self._window_vertex is None:
                log.warning("no window aggregation vertex found: watermark.csv stays empty")

    def _sample_vertices(self, now_ms: int) -> tuple[list[dict[str, Any]], int | None]:
        rows = []
        window_wm = None
        for index, vertex in enumerate(self._vertices):
            vid = vertex["id"]
            wm = self.rest.watermark_ms(self.job_id, vid)
            load = self.rest.load(self.job_id, vid)

            def value(name: str, agg: str, load: dict = load) -> float | None:
                return (load.get(name) or {}).get(agg)

            rows.append({
                "time_ms": now_ms, "vertex": index, "name": vertex.get("name", "")[:120],
                "parallelism": vertex.get("parallelism"), "watermark_ms": wm,
                "busy_ms_per_s_max": value("busyTimeMsPerSecond", "max"),
                "busy_ms_per_s_avg": value("busyTimeMsPerSecond", "avg"),
                "backpressured_ms_per_s_max": value("backPressuredTimeMsPerSecond", "max"),
                "idle_ms_per_s_avg": value("idleTimeMsPerSecond", "avg"),
                "records_in_per_s": value("numRecordsInPerSecond", "sum"),
                "records_out_per_s": value("numRecordsOutPerSecond", "sum"),
            })
            if vid == self._window_vertex:
                window_wm = wm
        return rows, window_wm

    def _sample_checkpoints(self) -> None:
        history = self.rest.checkpoints(self.job_id).get("history", [])
        with self._lock:
            for entry in history:
                self._checkpoints[int(entry["id"])] = entry

    def _run(self) -> None:
        vertex_path = self.metrics_dir / "flink_vertices.csv"
        watermark_path = self.metrics_dir / "watermark.csv"
        with vertex_path.open("w", newline="") as vfh, watermark_path.open("w", newline="") as wfh:
            vertices = csv.DictWriter(vfh, fieldnames=VERTEX_COLUMNS)
            watermarks = csv.writer(wfh)
            vertices.writeheader()
            watermarks.writerow(WATERMARK_COLUMNS)
            next_t = time.monotonic()
            while not self._stop.is_set():
                try:
                    self._discover()
                    now_ms = time.time_ns() // 1_000_000
                    rows, window_wm = self._sample_vertices(now_ms)
                    vertices.writerows(rows)
                    if window_wm is not None:
                        watermarks.writerow((now_ms, window_wm))
                    self._note_watermark(window_wm)
                    self._sample_checkpoints()
                    vfh.flush()
                    wfh.flush()
                    self.samples += 1
                except (RestError, KeyError, ValueError) as exc:
                    log.warning("Flink REST sample failed: %s", exc)
                next_t += self.interval_s
                self._stop.wait(max(0.0, next_t - time.monotonic()))
