"""The MillWheel-style low watermark of A3, as pure logic (no servers).

MillWheel defines the low watermark of a stage as

    low_watermark(stage) = min(oldest work of the stage not yet finished,
                               low watermarks of the stages feeding it)

A3 has two stages: the injector (the generator) and the Kafka -> PostgreSQL consumer.

- Injector. Every producer ``i`` writes in-band markers ``{"watermark_ns": W, "producer": i}``
  into every partition: "producer i will send no more events with event time < W". Markers
  are ordered with the events of their partition, so after the consumer has read partition
  ``p`` up to some offset, the injector watermark of ``p`` is

      injector(p) = min over producers i of (latest marker of i read from p)

  and is undefined (holds everything back) until every producer has spoken in ``p``.
- Consumer. Work not finished = events fetched from ``p`` but not yet durable in PostgreSQL:

      watermark(p) = min(oldest event time pending in p, injector(p))

  The consumer publishes ``watermark(p)`` only in the transaction that makes a batch durable,
  i.e. with nothing of ``p`` pending any more, so a published ``watermark(p)`` comes with every
  event read before it already in the events table.
- Global (what ``WATERMARK_NOW()`` returns):

      candidate = min over partitions p not idle of watermark(p)   (undefined if any is,
                                                                    or if all are idle)
      WATERMARK_NOW = max(previous WATERMARK_NOW, candidate)       (monotonic)

  and +infinity (END_OF_INPUT_MS) once the driver has seen every record of the input topic
  stored after the generator exited (engines/a3/pipeline.py, drain).

Idle partitions. A partition that has delivered nothing (no marker, no event) has no
watermark and holds the global watermark back for ever: that is the MillWheel behaviour and
it is visible (``held_partitions`` in metrics/watermark.csv). With ``a3.idle_timeout_ms`` set,
a partition from which the consumer has read nothing for that long is left out of the min
until it delivers a record again. Risk: a partition that is silent only because its producer
or the network is slow is then overtaken, and its next events can be late (counted, not lost
silently).

Nothing but markers moves the watermark forward: an event can only hold it back (while it is
pending), and an absurd event time (<= 0 or far in the future) or an absurd marker is
rejected before it reaches this state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sdsbench import contract

# Event time +infinity: the input has ended (all partitions consumed to their end offsets
# after the generator stopped), so every window can fire. Fits a PostgreSQL bigint.
END_OF_INPUT_MS = 2**62

LatePolicy = Literal["drop", "update"]
Lateness = Literal["on_time", "late_accepted", "late_dropped"]


# ------------------------------------------------------------------ input records
@dataclass(frozen=True)
class Marker:
    """An injector watermark marker read from one partition."""

    producer: int
    watermark_ms: int


@dataclass(frozen=True)
class Reject:
    reason: str  # one of contract.REJECT_REASONS


def classify_record(
    raw: bytes | str | None, catalog: contract.AdCatalog, now_ms: int, producers: int
) -> dict[str, Any] | Marker | Reject:
    """One Kafka record -> a valid event (dict), a watermark Marker, or a Reject.

    Markers are recognised by their ``watermark_ns`` key (they have no ``event_type``); a
    marker must name a known producer and carry a plausible time, otherwise a far-future
    marker would push the watermark past data still to come.
    """
    if raw is None:
        return Reject("not_json")
    text = raw if isinstance(raw, str) else None
    probe = raw if isinstance(raw, bytes) else raw.encode()
    if b'"watermark_ns"' not in probe:  # cheap test; events are the hot path
        event, reason = contract.validate_event(raw, catalog, now_ms)
        if event is None:
            return Reject(reason or "not_json")
        if not _storable(event):
            return Reject("bad_type")
        return event
    try:
        record = json.loads(text if text is not None else probe)
    except (ValueError, UnicodeDecodeError):
        return Reject("not_json")
    if not isinstance(record, dict) or "producer" not in record:
        return Reject("missing_field")
    watermark_ns, producer = record["watermark_ns"], record["producer"]
    for value in (watermark_ns, producer):
        if not isinstance(value, int) or isinstance(value, bool):
            return Reject("bad_type")
    if not 0 <= producer < producers:
        return Reject("bad_type")
    if not contract.is_plausible_event_time(watermark_ns, now_ms):
        return Reject("absurd_timestamp")
    return Marker(producer, watermark_ns // 1_000_000)


_BIGINT_MAX = 2**63 - 1


def _storable(event: dict[str, Any]) -> bool:
    """Valid by the contract but not storable in PostgreSQL (would fail the whole batch):
    an integer beyond bigint or a NUL character in a text field."""
    if not -_BIGINT_MAX <= event["insertion_time_ms"] <= _BIGINT_MAX:
        return False
    return not any("\x00" in event[name] for name, kind in contract.EVENT_SCHEMA
                   if kind == "string")


# --------------------------------------------------------------- per partition
@dataclass
class PartitionWatermark:
    """Watermark state of one input partition, kept by the consumer that reads it."""

    partition: int
    producers: int
    last_heard_ms: int  # wall time of the last record read (or of the assignment)
    marks_ms: list[int | None] = field(default_factory=list)
    pending_min_ms: int | None = None  # oldest event time fetched, not yet durable
    pending_events: int = 0
    max_event_time_ms: int | None = None  # newest event time made durable
    _pending_max_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.marks_ms:
            self.marks_ms = [None] * self.producers

    def heard(self, now_ms: int) -> None:
        """Any record (event, marker or reject) shows the partition is not idle."""
        self.last_heard_ms = max(self.last_heard_ms, now_ms)

    def observe_marker(self, marker: Marker, now_ms: int) -> None:
        self.heard(now_ms)
        previous = self.marks_ms[marker.producer]
        # A producer's promise never weakens: keep the highest marker seen.
        if previous is None or marker.watermark_ms > previous:
            self.marks_ms[marker.producer] = marker.watermark_ms

    def observe_event(self, event_time_ms: int, now_ms: int) -> None:
        """An event fetched but not yet durable: it holds the watermark back."""
        self.heard(now_ms)
        self.pending_events += 1
        if self.pending_min_ms is None or event_time_ms < self.pending_min_ms:
            self.pending_min_ms = event_time_ms
        if self._pending_max_ms is None or event_time_ms > self._pending_max_ms:
            self._pending_max_ms = event_time_ms

    def mark_durable(self) -> None:
        """Everything pending has been committed to PostgreSQL."""
        if self._pending_max_ms is not None and (
            self.max_event_time_ms is None or self._pending_max_ms > self.max_event_time_ms
        ):
            self.max_event_time_ms = self._pending_max_ms
        self.pending_min_ms = self._pending_max_ms = None
        self.pending_events = 0

    @property
    def injector_ms(self) -> int | None:
        """min over producers of their latest marker; None until all have spoken."""
        if any(mark is None for mark in self.marks_ms):
            return None
        return min(self.marks_ms)  # type: ignore[type-var]

    @property
    def watermark_ms(self) -> int | None:
        """min(oldest pending event time, injector watermark); None = unknown (holds back)."""
        injector = self.injector_ms
        if injector is None:
            return None
        if self.pending_min_ms is None:
            return injector
        return min(injector, self.pending_min_ms)

    def is_idle(self, now_ms: int, idle_timeout_ms: int | None) -> bool:
        return idle_timeout_ms is not None and now_ms - self.last_heard_ms >= idle_timeout_ms


# ---------------------------------------------------------------------- global
def global_low_watermark_ms(partitions: Iterable[tuple[int | None, bool]]) -> int | None:
    """Candidate global watermark from ``(watermark_ms, idle)`` of every partition.

    None (do not advance) when a partition that is not idle has no watermark yet, or when
    every partition is idle (silence everywhere proves nothing about the data to come).
    The SQL function ``low_watermark_ms()`` in engines/a3/sql.py computes the same thing.
    """
    active = [wm for wm, idle in partitions if not idle]
    if not active or any(wm is None for wm in active):
        return None
    return min(active)  # type: ignore[type-var]


@dataclass
class MonotonicWatermark:
    """The published global watermark: it only moves forward."""

    value_ms: int | None = None

    def advance(self, candidate_ms: int | None) -> int | None:
        if candidate_ms is not None and (self.value_ms is None or candidate_ms > self.value_ms):
            self.value_ms = candidate_ms
        return self.value_ms


# -------------------------------------------------------------------- lateness
def window_end_ms(event_time_ms: int, window_ms: int = contract.WINDOW_MS) -> int:
    return contract.window_start_ms(event_time_ms, window_ms) + window_ms


def classify_lateness(
    window_end: int, watermark_ms: int | None, policy: LatePolicy, allowed_ms: int
) -> Lateness:
    """Is an event of the window ending at ``window_end`` late when it reaches PostgreSQL?

    Late = its window has already fired (window_end <= WATERMARK_NOW()). ``drop`` ignores
    every late event; ``update`` accepts it while the watermark is still before
    window_end + allowed_ms (the window's result is then emitted again) and drops it after.
    """
    if watermark_ms is None or window_end > watermark_ms:
        return "on_time"
    if policy == "update" and watermark_ms < window_end + allowed_ms:
        return "late_accepted"
    return "late_dropped"
