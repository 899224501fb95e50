"""A3's watermark logic without servers: injector markers, per-partition and global low
watermark, monotonicity, idle partitions, absurd timestamps, lateness, CTR NULL."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from engines.a3.consumer import A3Consumer, assigned_partitions, split_lateness
from engines.a3.ctr_emitter import _ms, result_record
from engines.a3.watermark import (
    END_OF_INPUT_MS,
    Marker,
    MonotonicWatermark,
    PartitionWatermark,
    Reject,
    classify_lateness,
    classify_record,
    global_low_watermark_ms,
)
from sdsbench import contract

NOW_MS = 1_800_000_000_000
CATALOG = contract.ad_catalog(10, 100)


def event(event_time_ms: int, event_type: str = "view", ad: int = 0, **override) -> dict:
    record = {
        "user_id": "u",
        "page_id": "p",
        "ad_id": CATALOG.ad_ids[ad],
        "ad_type": "banner",
        "event_type": event_type,
        "event_time_ns": event_time_ms * 1_000_000,
        "insertion_time_ms": NOW_MS,
    }
    record.update(override)
    return record


def marker(watermark_ms: int, producer: int = 0) -> bytes:
    return json.dumps({"watermark_ns": watermark_ms * 1_000_000, "producer": producer}).encode()


# ------------------------------------------------------------ injector markers
def test_injector_watermark_is_min_over_producers_and_waits_for_all() -> None:
    part = PartitionWatermark(0, producers=2, last_heard_ms=NOW_MS)
    part.observe_marker(Marker(0, 5_000), NOW_MS)
    assert part.injector_ms is None and part.watermark_ms is None  # producer 1 not heard yet
    part.observe_marker(Marker(1, 3_000), NOW_MS)
    assert part.injector_ms == 3_000
    part.observe_marker(Marker(1, 9_000), NOW_MS)
    assert part.injector_ms == 5_000  # now producer 0 is the slowest


def test_a_producer_marker_never_moves_back() -> None:
    part = PartitionWatermark(0, producers=1, last_heard_ms=NOW_MS)
    part.observe_marker(Marker(0, 5_000), NOW_MS)
    part.observe_marker(Marker(0, 4_000), NOW_MS)  # reordered or replayed marker
    assert part.injector_ms == 5_000


def test_pending_events_hold_the_partition_back_until_durable() -> None:
    part = PartitionWatermark(0, producers=1, last_heard_ms=NOW_MS)
    part.observe_marker(Marker(0, 10_000), NOW_MS)
    part.observe_event(7_000, NOW_MS)
    part.observe_event(12_000, NOW_MS)
    assert part.watermark_ms == 7_000  # min(oldest pending, injector)
    part.mark_durable()
    assert part.watermark_ms == 10_000
    assert part.max_event_time_ms == 12_000


def test_injector_bound_from_generator_markers() -> None:
    """The generator's marker is (schedule time - bound): the watermark trails by the bound."""
    bound_ms = 2_000
    part = PartitionWatermark(0, producers=1, last_heard_ms=NOW_MS)
    record = classify_record(marker(NOW_MS - bound_ms), CATALOG, NOW_MS, producers=1)
    assert record == Marker(0, NOW_MS - bound_ms)
    part.observe_marker(record, NOW_MS)
    assert part.watermark_ms == NOW_MS - bound_ms


# ------------------------------------------------------------------ global
def test_global_is_min_over_partitions() -> None:
    assert global_low_watermark_ms([(5_000, False), (3_000, False), (9_000, False)]) == 3_000


def test_partition_without_watermark_holds_everything_back() -> None:
    assert global_low_watermark_ms([(5_000, False), (None, False)]) is None


def test_idle_partitions_leave_the_min_but_all_idle_proves_nothing() -> None:
    assert global_low_watermark_ms([(5_000, False), (None, True), (1_000, True)]) == 5_000
    assert global_low_watermark_ms([(5_000, True), (6_000, True)]) is None


def test_global_watermark_is_monotonic() -> None:
    wm = MonotonicWatermark()
    assert wm.advance(None) is None
    assert wm.advance(5_000) == 5_000
    assert wm.advance(4_000) == 5_000  # a partition restarted lower: no step back
    assert wm.advance(None) == 5_000
    assert wm.advance(6_000) == 6_000


# ------------------------------------------------------------- idleness
def test_silent_partition_holds_back_until_the_idle_timeout_releases_it() -> None:
    start = NOW_MS
    busy = PartitionWatermark(0, producers=1, last_heard_ms=start)
    silent = PartitionWatermark(1, producers=1, last_heard_ms=start)  # never delivers
    timeout_ms = 1_000

    def global_at(now_ms: int, idle_timeout_ms: int | None) -> int | None:
        busy.observe_marker(Marker(0, now_ms - 2_000), now_ms)
        return global_low_watermark_ms(
            (p.watermark_ms, p.is_idle(now_ms, idle_timeout_ms)) for p in (busy, silent)
        )

    # Without a timeout the silent partition holds the watermark for ever ...
    assert global_at(start + 500, None) is None
    assert global_at(start + 1_500, None) is None
    # ... with one, only until it has been silent for the timeout.
    assert global_at(start + 500, timeout_ms) is None
    assert global_at(start + 1_500, timeout_ms) == start + 1_500 - 2_000
    # It speaks again (a marker behind the global watermark): it is back in the min.
    silent.observe_marker(Marker(0, start - 10_000), start + 1_600)
    assert global_at(start + 1_700, timeout_ms) == start - 10_000


# -------------------------------------------------------- input records
@pytest.mark.parametrize(
    "event_time_ns",
    [0, -1_000_000, (NOW_MS + contract.MAX_FUTURE_SKEW_MS + 1_000) * 1_000_000],
    ids=["zero", "negative", "far-future"],
)
def test_absurd_event_times_are_rejected(event_time_ns: int) -> None:
    raw = json.dumps(event(0, event_time_ns=event_time_ns)).encode()
    assert classify_record(raw, CATALOG, NOW_MS, producers=1) == Reject("absurd_timestamp")


def test_absurd_or_foreign_markers_are_rejected() -> None:
    far = NOW_MS + contract.MAX_FUTURE_SKEW_MS + 1
    assert classify_record(marker(far), CATALOG, NOW_MS, 1) == Reject("absurd_timestamp")
    assert classify_record(marker(-5), CATALOG, NOW_MS, 1) == Reject("absurd_timestamp")
    assert classify_record(marker(NOW_MS, producer=3), CATALOG, NOW_MS, 2) == Reject("bad_type")
    assert classify_record(b'{"watermark_ns": 5}', CATALOG, NOW_MS, 1) == Reject("missing_field")
    assert classify_record(b'{"watermark_ns": "x", "producer": 0}', CATALOG, NOW_MS, 1) == (
        Reject("bad_type")
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_json"),
        (None, "not_json"),
        (json.dumps({k: v for k, v in event(NOW_MS).items() if k != "ad_id"}).encode(),
         "missing_field"),
        (json.dumps(event(NOW_MS, ad_id="no-such-ad")).encode(), "unknown_ad"),
        (json.dumps(event(NOW_MS, event_type="hover")).encode(), "bad_event_type"),
        # Contract-valid, but PostgreSQL could not store them (the batch would fail).
        (json.dumps(event(NOW_MS, insertion_time_ms=2**70)).encode(), "bad_type"),
        (json.dumps(event(NOW_MS, user_id="a\u0000b")).encode(), "bad_type"),
    ],
)
def test_malformed_records_are_set_aside_with_a_reason(raw: bytes | None, reason: str) -> None:
    assert classify_record(raw, CATALOG, NOW_MS, producers=1) == Reject(reason)


@dataclass
class FakeMessage:
    """The part of confluent_kafka.Message the consumer reads."""

    _partition: int
    _offset: int
    _value: bytes | None

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value


def _consumer() -> A3Consumer:
    settings = {
        "campaigns": 10, "ads_per_campaign": 100, "producers": 1, "partitions": 2,
        "consumers": 1, "idle_timeout_ms": None,
    }
    worker = A3Consumer(settings, index=0)
    worker.states = {
        p: PartitionWatermark(p, 1, last_heard_ms=NOW_MS) for p in worker.partitions
    }
    worker.idle = {p: False for p in worker.partitions}
    return worker


def test_consumer_sets_bad_records_aside_and_they_never_touch_the_watermark() -> None:
    worker = _consumer()
    now = time.time_ns() // 1_000_000  # read() checks plausibility against the real clock
    good = event(now - 5_000)
    messages = [
        FakeMessage(0, 0, marker(now - 3_000)),
        FakeMessage(0, 1, json.dumps(good).encode()),
        FakeMessage(0, 2, json.dumps(event(0, event_time_ns=0)).encode()),
        FakeMessage(0, 3, json.dumps(event(0, event_time_ns=(now + 10**9) * 10**6)).encode()),
        FakeMessage(0, 4, marker(now + 10**9)),  # far-future marker: must not advance
        FakeMessage(0, 5, b"garbage"),
        FakeMessage(1, 0, json.dumps(event(now, ad_id="nope")).encode()),
    ]
    batch = worker.read(messages)
    assert batch.events == [good]
    assert sorted(r[2] for r in batch.rejects) == [
        "absurd_timestamp", "absurd_timestamp", "absurd_timestamp", "not_json", "unknown_ad",
    ]
    assert batch.next_offsets == {0: 6, 1: 1}
    state = worker.states[0]
    assert state.injector_ms == now - 3_000
    assert state.watermark_ms == now - 5_000  # the pending good event holds it back
    state.mark_durable()
    assert state.watermark_ms == now - 3_000
    assert state.max_event_time_ms == now - 5_000
    assert worker.states[1].watermark_ms is None  # rejects alone give no watermark


def test_partition_assignment_covers_every_partition_once() -> None:
    parts = [assigned_partitions(7, 3, i) for i in range(3)]
    assert sorted(p for ps in parts for p in ps) == list(range(7))


# ---------------------------------------------------------------- lateness
def test_late_means_the_window_already_fired() -> None:
    assert classify_lateness(20_000, None, "drop", 0) == "on_time"
    assert classify_lateness(20_000, 19_999, "drop", 0) == "on_time"
    assert classify_lateness(20_000, 20_000, "drop", 0) == "late_dropped"
    assert classify_lateness(20_000, 20_000, "drop", 10_000) == "late_dropped"
    assert classify_lateness(20_000, 29_999, "update", 10_000) == "late_accepted"
    assert classify_lateness(20_000, 30_000, "update", 10_000) == "late_dropped"
    assert classify_lateness(20_000, 25_000, "update", 0) == "late_dropped"


def test_split_lateness_counts_late_events_per_window_and_type() -> None:
    events = [
        event(15_000, "view"), event(15_001, "click"), event(16_000, "purchase"),
        event(25_000, "view"), event(5_000, "view", ad=150),
    ]
    rows, late = split_lateness(events, 21_000, "drop", 0, CATALOG)
    assert len(rows) == 1 and rows[0][contract.EVENT_FIELDS.index("event_time_ns")] == 25 * 10**9
    assert late == {(0, 10_000): [1, 1, 1, 0, 0, 0], (1, 0): [1, 0, 0, 0, 0, 0]}
    rows, late = split_lateness(events, 21_000, "update", 5_000, CATALOG)
    assert len(rows) == 4  # window [10 s, 20 s) still within allowed lateness
    assert late == {(0, 10_000): [0, 0, 0, 1, 1, 1], (1, 0): [1, 0, 0, 0, 0, 0]}


# ---------------------------------------------------------------- output
def test_ctr_is_null_when_a_window_has_no_views() -> None:
    record = result_record((3, 10_000, 0, 4, 100, 200), result_time_ms=300)
    assert record["ctr"] is None and record["clicks"] == 4
    parsed = contract.parse_output_record(json.dumps(record))
    assert parsed["ctr"] is None and parsed["window_end_ms"] == 20_000
    assert result_record((3, 10_000, 8, 2, 100, 200), 300)["ctr"] == 0.25


def test_end_of_input_never_reaches_the_metric_column_as_a_number() -> None:
    assert _ms(END_OF_INPUT_MS) == "" and _ms(None) == "" and _ms(5) == "5"
