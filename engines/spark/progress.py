"""Spark's own per-batch numbers, recorded by a StreamingQueryListener inside the job.

Every micro-batch of every query posts a progress event; ``ProgressRecorder`` appends one
row per event to ``metrics/spark_progress.csv`` (columns ``PROGRESS_COLUMNS``) and keeps
``spark/status.json`` (the latest row per query) for the driver, which uses it to drain
and to sample consumer lag. A listener sees every batch (polling ``lastProgress`` can
miss some). Rows are flushed one by one, so a killed job leaves complete rows.

Column notes:
- ``watermark_ms``: the event-time watermark the batch ran with (Spark's
  ``eventTime.watermark``: max event time of earlier batches minus the delay).
- ``rows_dropped_by_watermark``: Spark's ``numRowsDroppedByWatermark``, summed over the
  stateful operators. For an aggregation these are rows *after* partial aggregation (one
  per late (window, campaign) group per batch), not input events; the event count comes
  from ``engines.spark.late_audit``.
- ``observed_rejects``: the batch's reject counts per reason (JSON), observed by the CTR
  query before it drops the rejected records (``engines.spark.ctr_query.build``).
- ``jvm_cpu_ms``, ``jit_compile_ms``, ``gc_ms``, ``codegen_compilations``: cumulative
  counters of the job's JVM when the event arrived (``JvmCounters``): CPU time of the
  process (user + system, /proc, 10 ms ticks), JIT compilation time, GC time and Spark's
  generated-code compilations. Their differences between consecutive batches are what a
  batch cost, and whether code is generated again every batch.
- ``offsets_behind_latest``: sum over partitions of (latest offset seen when the batch was
  planned - the batch's end offset): backlog Spark left for later batches. Spark commits
  no consumer-group offsets, so the driver also samples lag against the topic's end
  offsets from outside (``metrics/lag.csv``).
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from engines.spark.job_config import REJECTS_OBSERVATION
from sdsbench.contract import SPARK_JVM_COUNTERS
from sdsbench.rundir import write_json_atomic

PROGRESS_COLUMNS: tuple[str, ...] = (
    "query", "batch_id", "batch_time_ms", "received_ms",
    "num_input_rows", "input_rows_per_second", "processed_rows_per_second",
    "batch_duration_ms", "trigger_execution_ms", "latest_offset_ms", "get_batch_ms",
    "query_planning_ms", "add_batch_ms", "wal_commit_ms", "commit_offsets_ms",
    "watermark_ms", "event_time_min_ms", "event_time_max_ms",
    "state_rows_total", "state_rows_updated", "state_rows_removed", "state_memory_bytes",
    "rows_dropped_by_watermark", "sink_output_rows",
    "offsets_behind_latest", "avg_offsets_behind_latest", "max_offsets_behind_latest",
    "start_offsets", "end_offsets", "latest_offsets", "observed_rejects",
    *SPARK_JVM_COUNTERS,
)


def iso_to_ms(text: str | None) -> int | None:
    """Spark's progress timestamps ("2026-11-24T09:31:00.123Z") as ms since the epoch."""
    if not text:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def partition_offsets(offsets: Any) -> dict[int, int]:
    """A Kafka source offset (``{"topic": {"0": 12, ...}}`` or its JSON) per partition."""
    if offsets is None:
        return {}
    if isinstance(offsets, str):
        offsets = json.loads(offsets)
    out: dict[int, int] = {}
    for per_partition in offsets.values():
        for partition, offset in per_partition.items():
            out[int(partition)] = int(offset)
    return out


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def observed_json(progress: dict[str, Any], name: str) -> str:
    """A ``Dataset.observe`` result of the batch as JSON ({} when the batch has none)."""
    metrics = (progress.get("observedMetrics") or {}).get(name) or {}
    return json.dumps(metrics, sort_keys=True)


def progress_row(progress: dict[str, Any], received_ms: int) -> dict[str, Any]:
    """One ``PROGRESS_COLUMNS`` row from a progress event's JSON (as a dict)."""
    durations = progress.get("durationMs") or {}
    event_time = progress.get("eventTime") or {}
    operators = progress.get("stateOperators") or []
    sources = progress.get("sources") or []
    source = sources[0] if sources else {}
    start = partition_offsets(source.get("startOffset"))
    end = partition_offsets(source.get("endOffset"))
    latest = partition_offsets(source.get("latestOffset"))
    metrics = source.get("metrics") or {}
    behind = sum(max(latest[p] - end.get(p, 0), 0) for p in latest) if latest else None
    return {
        "query": progress.get("name"),
        "batch_id": progress.get("batchId"),
        "batch_time_ms": iso_to_ms(progress.get("timestamp")),
        "received_ms": received_ms,
        "num_input_rows": progress.get("numInputRows"),
        "input_rows_per_second": _number(progress.get("inputRowsPerSecond")),
        "processed_rows_per_second": _number(progress.get("processedRowsPerSecond")),
        "batch_duration_ms": progress.get("batchDuration"),
        "trigger_execution_ms": durations.get("triggerExecution"),
        "latest_offset_ms": durations.get("latestOffset"),
        "get_batch_ms": durations.get("getBatch"),
        "query_planning_ms": durations.get("queryPlanning"),
        "add_batch_ms": durations.get("addBatch"),
        "wal_commit_ms": durations.get("walCommit"),
        "commit_offsets_ms": durations.get("commitOffsets"),
        "watermark_ms": iso_to_ms(event_time.get("watermark")),
        "event_time_min_ms": iso_to_ms(event_time.get("min")),
        "event_time_max_ms": iso_to_ms(event_time.get("max")),
        "state_rows_total": sum(op.get("numRowsTotal", 0) for op in operators),
        "state_rows_updated": sum(op.get("numRowsUpdated", 0) for op in operators),
        "state_rows_removed": sum(op.get("numRowsRemoved", 0) for op in operators),
        "state_memory_bytes": sum(op.get("memoryUsedBytes", 0) for op in operators),
        "rows_dropped_by_watermark": sum(op.get("numRowsDroppedByWatermark", 0)
                                         for op in operators),
        "sink_output_rows": (progress.get("sink") or {}).get("numOutputRows"),
        "offsets_behind_latest": behind,
        "avg_offsets_behind_latest": _number(metrics.get("avgOffsetsBehindLatest")),
        "max_offsets_behind_latest": _number(metrics.get("maxOffsetsBehindLatest")),
        "start_offsets": json.dumps(start, sort_keys=True),
        "end_offsets": json.dumps(end, sort_keys=True),
        "latest_offsets": json.dumps(latest, sort_keys=True),
        "observed_rejects": observed_json(progress, REJECTS_OBSERVATION),
    }


class JvmCounters:
    """The ``SPARK_JVM_COUNTERS`` of the job's JVM (module docstring), read through py4j (a few
    round trips) and /proc; ``read`` gives None for all when they cannot be read."""

    def __init__(self, jvm: Any) -> None:
        try:
            management = jvm.java.lang.management.ManagementFactory
            self._stat: Path | None = Path(
                f"/proc/{jvm.java.lang.ProcessHandle.current().pid()}/stat")
            self._jit = management.getCompilationMXBean()
            self._gcs = list(management.getGarbageCollectorMXBeans())
            self._codegen = jvm.org.apache.spark.metrics.source.CodegenMetrics \
                .METRIC_COMPILATION_TIME()
        except Exception:  # noqa: BLE001 - counters are extra; the progress row is not
            self._stat = None

    def read(self) -> dict[str, int | None]:
        if self._stat is None:
            return dict.fromkeys(SPARK_JVM_COUNTERS)
        try:
            # Fields 14 and 15 of /proc/<pid>/stat (after the command in parentheses).
            fields = self._stat.read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            return {"jvm_cpu_ms": ticks * 1000 // os.sysconf("SC_CLK_TCK"),
                    "jit_compile_ms": int(self._jit.getTotalCompilationTime()),
                    "gc_ms": sum(int(b.getCollectionTime()) for b in self._gcs),
                    "codegen_compilations": int(self._codegen.getCount())}
        except Exception:  # noqa: BLE001
            return dict.fromkeys(SPARK_JVM_COUNTERS)


class _JsonProgressBridge:
    """The Java side of the listener (a py4j callback object), reduced to what we use.

    PySpark's own bridge converts every progress event into Python objects field by field,
    about a hundred py4j round trips per event (a JFR profile of a 10k ev/s run showed 8 %
    of the JVM's samples in py4j and the listener thread). This one asks the JVM for the
    event's JSON only: two round trips.
    """

    def __init__(self, recorder: ProgressRecorder, counters: JvmCounters) -> None:
        self.recorder = recorder
        self.counters = counters

    def onQueryStarted(self, jevent: Any) -> None:
        pass

    def onQueryProgress(self, jevent: Any) -> None:
        self.recorder.record(json.loads(jevent.progress().json()), self.counters.read())

    def onQueryIdle(self, jevent: Any) -> None:
        pass

    def onQueryTerminated(self, jevent: Any) -> None:
        pass

    class Java:
        implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]


class ProgressRecorder(StreamingQueryListener):
    """Appends every progress event to a CSV; keeps the latest per query in a JSON file."""

    def __init__(self, csv_path: Path, status_path: Path) -> None:
        super().__init__()
        self._status_path = status_path
        self._lock = threading.Lock()  # events may arrive on different threads
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not csv_path.exists() or csv_path.stat().st_size == 0
        # Append: a job restarted from its checkpoint continues the same file.
        self._fh = csv_path.open("a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=PROGRESS_COLUMNS)
        if new_file:
            self._writer.writeheader()
            self._fh.flush()
        self._status: dict[str, Any] = {}

    def onQueryStarted(self, event: Any) -> None:
        pass

    @property
    def _jlistener(self) -> Any:
        # addListener registers this JVM object; see _JsonProgressBridge for why it is ours.
        if not hasattr(self, "_bridge"):
            from pyspark import SparkContext

            jvm = SparkContext._jvm
            self._bridge = jvm.PythonStreamingQueryListenerWrapper(
                _JsonProgressBridge(self, JvmCounters(jvm)))
        return self._bridge

    def onQueryProgress(self, event: Any) -> None:
        # Only reached through PySpark's own bridge (if a PySpark version ignores ours).
        self.record(json.loads(event.progress.json))

    def record(self, progress: dict[str, Any],
               counters: dict[str, int | None] | None = None) -> None:
        received_ms = time.time_ns() // 1_000_000
        row = progress_row(progress, received_ms) | (counters or dict.fromkeys(SPARK_JVM_COUNTERS))
        with self._lock:
            if self._fh.closed:
                return
            self._writer.writerow(row)
            self._fh.flush()
            self._status[row["query"]] = {
                "batch_id": row["batch_id"],
                "received_ms": received_ms,
                "num_input_rows": row["num_input_rows"],
                "watermark_ms": row["watermark_ms"],
                "end_offsets": json.loads(row["end_offsets"]),
            }
            if self._status_path.parent.exists():  # else the run's directory is gone
                write_json_atomic(self._status_path, self._status)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()
