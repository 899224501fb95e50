"""Consumer lag over time: committed offsets of a group vs the topic's end offsets.

``LagSampler`` is a thread that, once per ``interval_s``, reads the committed offsets
(from wherever the pipeline commits them: Kafka's group coordinator, or PostgreSQL for
A2's exactly-once sink) and the end offsets, and appends one row per partition to a CSV:

    time_ms, partition, end_offset, committed_offset, lag

``lag = end_offset - committed_offset`` (records produced but not yet durably consumed).
Committed offsets are read *before* end offsets, so a sample never understates the lag.
A partition with nothing committed yet counts from offset 0 (our topics are per run).
A failed sample (broker or database briefly unavailable) is logged and skipped, never
fatal: the sampler measures the run, it must not end it.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("sdsbench.lag")

LAG_COLUMNS = ("time_ms", "partition", "end_offset", "committed_offset", "lag")

OffsetsFn = Callable[[], dict[int, int]]


class KafkaEndOffsets:
    """End (high-watermark) offsets per partition, through one long-lived client."""

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 5.0) -> None:
        from confluent_kafka import Consumer

        self._topic = topic
        self._timeout_s = timeout_s
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"sdsbench-lag-{time.time_ns()}",
             "enable.auto.commit": False}
        )
        self._partitions: list[int] | None = None

    def partitions(self) -> list[int]:
        if self._partitions is None:
            meta = self._consumer.list_topics(self._topic, timeout=self._timeout_s)
            self._partitions = sorted(meta.topics[self._topic].partitions)
        return self._partitions

    def __call__(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        return {
            p: self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, p), timeout=self._timeout_s, cached=False
            )[1]
            for p in self.partitions()
        }

    def close(self) -> None:
        self._consumer.close()


class KafkaGroupCommitted:
    """Offsets a consumer group committed to Kafka (without joining the group)."""

    def __init__(self, bootstrap: str, group: str, topic: str, timeout_s: float = 5.0) -> None:
        from confluent_kafka import Consumer

        self._topic = topic
        self._timeout_s = timeout_s
        self._ends = KafkaEndOffsets(bootstrap, topic, timeout_s)
        # Same group.id, but never subscribe(): committed() only asks the coordinator.
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def __call__(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(self._topic, p) for p in self._ends.partitions()]
        committed = self._consumer.committed(tps, timeout=self._timeout_s)
        # A negative offset means "nothing committed yet" (OFFSET_INVALID).
        return {tp.partition: max(tp.offset, 0) for tp in committed}

    def close(self) -> None:
        self._consumer.close()
        self._ends.close()


def lag_rows(time_ms: int, ends: dict[int, int], committed: dict[int, int]) -> list[tuple]:
    """One CSV row per partition of ``ends``."""
    rows = []
    for partition in sorted(ends):
        done = committed.get(partition, 0)
        rows.append((time_ms, partition, ends[partition], done, max(ends[partition] - done, 0)))
    return rows


class LagSampler:
    """Thread appending ``LAG_COLUMNS`` rows to ``csv_path`` every ``interval_s``."""

    def __init__(
        self,
        csv_path: str | Path,
        end_offsets_fn: OffsetsFn,
        committed_fn: OffsetsFn,
        interval_s: float = 1.0,
    ) -> None:
        self._path = Path(csv_path)
        self._ends = end_offsets_fn
        self._committed = committed_fn
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: list[tuple[Any, ...]] = []  # the latest sample's rows
        self.samples = 0

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self._thread.start()

    def sample_once(self, writer: Any) -> None:
        now_ms = time.time_ns() // 1_000_000
        committed = self._committed()
        ends = self._ends()
        rows = lag_rows(now_ms, ends, committed)
        writer.writerows(rows)
        self.last = rows
        self.samples += 1

    def _run(self) -> None:
        with self._path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(LAG_COLUMNS)
            next_t = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.sample_once(writer)
                    fh.flush()
                except Exception as exc:  # noqa: BLE001 - a lost sample must not end the run
                    log.warning("lag sample failed: %s", exc)
                next_t += self._interval_s
                self._stop.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        """Stop sampling (safe to call when never started or already stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
