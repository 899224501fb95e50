"""The open loop, exact truth bookkeeping, producer processes, and a real Kafka round trip."""

from __future__ import annotations

import copy
import csv
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdsbench import contract
from sdsbench.config import ConfigError, load_config
from sdsbench.workload.events import Batch
from sdsbench.workload.generator import EventSource, default_start_ns, process_seed, run_open_loop
from sdsbench.workload.launcher import GeneratorError, launch_generators
from sdsbench.workload.truth import RATE_COLUMNS, TRUTH_COLUMNS

TYPE_COLUMN = {"view": "views", "click": "clicks", "purchase": "purchases"}


@pytest.fixture(scope="module")
def config() -> dict:
    cfg = load_config()
    cfg["workload"]["disorder"]["fraction"] = 0.2  # plenty of delayed events
    return cfg


def spec(process: str = "constant", rate: float = 4000.0, duration_s: float = 1.0, seed=42):
    return {
        "run_id": "test",
        "arrival": {"process": process, "rate_eps": rate},
        "duration_s": duration_s,
        "seed": seed,
    }


class RecordingSink:
    """Keeps every event (with its batch's due time); can push back to test retries."""

    kind = "recording"

    def __init__(self, refuse_first: int = 0, accept_part: int | None = None) -> None:
        self.events: list[tuple[dict, int]] = []  # (event, due_ns)
        self.markers: list[tuple[int, int]] = []  # (watermark_ns, events sent before it)
        self.refuse_first = refuse_first  # offers answered with 0 accepted
        self.accept_part = accept_part  # accept only this many of the first full offer
        self.offers = 0
        self.waits = 0

    def offer(self, batch: Batch, insertion_ms: int) -> int:
        self.offers += 1
        if self.offers <= self.refuse_first:
            return 0
        n = len(batch)
        if self.accept_part is not None and n > self.accept_part:
            n, self.accept_part = self.accept_part, None
        for line in batch.json_lines(insertion_ms)[:n]:
            self.events.append((json.loads(line), batch.due_ns))
        return n

    def wait_for_space(self, timeout_s: float) -> None:
        self.waits += 1
        time.sleep(timeout_s)

    def idle(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def send_markers(self, watermark_ns: int) -> int:
        self.markers.append((watermark_ns, len(self.events)))
        return 0

    def close(self, timeout_s: float) -> dict[str, Any]:
        return {"kind": self.kind, "messages": len(self.events)}


def recount_truth(events: list[dict], delayed: list[bool], catalog) -> list[tuple]:
    """Truth rows recomputed independently from events as a consumer would see them."""
    counts: dict[tuple[int, int], Counter] = {}
    for event, late in zip(events, delayed, strict=True):
        key = (
            catalog.campaign_of_ad[event["ad_id"]],
            contract.event_window_start_ms(event["event_time_ns"]),
        )
        c = counts.setdefault(key, Counter())
        c[TYPE_COLUMN[event["event_type"]]] += 1
        if late:
            c[TYPE_COLUMN[event["event_type"]] + "_delayed"] += 1
    return [(*key, *(counts[key][col] for col in TRUTH_COLUMNS[2:])) for key in sorted(counts)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def truth_tuples(path: Path) -> list[tuple]:
    return [tuple(int(r[c]) for c in TRUTH_COLUMNS) for r in read_csv(path)]


# --------------------------------------------------------------- the open loop
@pytest.mark.parametrize("process", ["constant", "spp", "mmpp"])
def test_truth_equals_a_recount_of_the_sent_events(config: dict, process: str) -> None:
    source = EventSource(spec(process), config)
    source.start_ns = default_start_ns(0.05)
    sink = RecordingSink()
    result = run_open_loop(source, sink, progress=None)
    events = [e for e, _ in sink.events]
    delayed = [e["event_time_ns"] < due for e, due in sink.events]
    assert result.rate.total_sent == len(events) == int(source.schedule.counts.sum())
    assert result.truth.total_events == len(events)
    assert result.truth.rows() == recount_truth(events, delayed, source.factory.catalog)
    assert 0.1 < sum(delayed) / len(delayed) < 0.3  # the configured 20 % disorder
    for event, due in sink.events:
        # on time: event time = scheduled send time; handed over at or after it
        assert event["event_time_ns"] <= due
        assert event["insertion_time_ms"] >= due // 1_000_000
    rows = result.rate.rows()
    assert sum(r[1] for r in rows) == sum(r[2] for r in rows) == len(events)


def test_back_pressure_is_retried_restamped_and_reported(config: dict) -> None:
    source = EventSource(spec("constant", 2000.0, 0.5), config)
    source.start_ns = default_start_ns(0.05)
    sink = RecordingSink(refuse_first=3, accept_part=4)
    result = run_open_loop(source, sink, progress=None)
    assert sink.waits >= 4
    assert result.rate.total_sent == len(sink.events) == 1000
    assert result.rate.blocked_ms_total >= 4 * 5 * 0.9  # four waits of 5 ms
    assert result.rate.behind_ms_max >= 15
    first_batch = [e for e, due in sink.events if due == source.start_ns]
    stamps = [e["insertion_time_ms"] for e in first_batch]
    assert len(first_batch) == 10
    assert stamps[4] > stamps[3]  # the rest was stamped when it was really handed over
    delayed = [e["event_time_ns"] < due for e, due in sink.events]
    events = [e for e, _ in sink.events]
    assert result.truth.rows() == recount_truth(events, delayed, source.factory.catalog)


def test_markers_keep_their_promise_and_end_with_the_schedule(config: dict) -> None:
    cfg = copy.deepcopy(config)
    bound_ms = cfg["workload"]["disorder"]["max_delay_ms"]  # covers every delay
    source = EventSource(spec("spp", 3000.0, 1.0), cfg)
    source.start_ns = default_start_ns(0.05)
    sink = RecordingSink()
    run_open_loop(source, sink, marker_interval_ms=50, watermark_bound_ms=bound_ms, progress=None)
    assert len(sink.markers) >= 15
    values = [w for w, _ in sink.markers]
    assert values == sorted(values)
    assert values[-1] == source.end_ns and sink.markers[-1][1] == len(sink.events)
    times = np.array([e["event_time_ns"] for e, _ in sink.events])
    for watermark, sent_before in sink.markers:
        later = times[sent_before:]
        assert len(later) == 0 or later.min() >= watermark


def test_event_source_is_reproducible_and_processes_differ(config: dict) -> None:
    def first_lines(index: int, processes: int) -> list[bytes]:
        source = EventSource(spec("spp", 1000.0), config, index, processes)
        source.start_ns = 1_795_000_000_000_000_000
        return [line for b in list(source)[:5] for line in b.json_lines(0)]

    assert first_lines(0, 2) == first_lines(0, 2)
    assert first_lines(0, 2) != first_lines(1, 2)
    assert process_seed(42, 0) != process_seed(42, 1)
    halves = [EventSource(spec("constant", 1000.0), config, i, 2) for i in range(2)]
    assert sum(int(h.schedule.counts.sum()) for h in halves) == 1000
    mmpp = [EventSource(spec("mmpp", 1000.0, 30.0), config, i, 2) for i in range(2)]
    paths = [m.schedule.state_path for m in mmpp]
    assert paths[0] is not None and paths[1] is not None
    assert paths[0].csv_text() == paths[1].csv_text()  # one shared state path


def test_rows_for_in_process_use(config: dict) -> None:
    source = EventSource(spec("constant", 1000.0), config)
    batch = next(iter(source))
    rows = batch.rows(123)
    assert len(rows) == len(batch) == 5 and len(rows[0]) == len(contract.EVENT_FIELDS)
    assert rows[0][5] <= batch.due_ns and rows[0][6] == 123


# ------------------------------------------------------------ producer processes
def test_launch_generators_merges_per_process_files(config: dict, tmp_path: Path) -> None:
    cfg = copy.deepcopy(config)
    cfg["workload"]["producer_processes"] = 2
    out = tmp_path / "generator"
    group = launch_generators(spec("mmpp", 3000.0, 1.5), cfg, {"kind": "null"}, out, quiet=True)
    assert len(group.processes) == 2
    summary = group.wait()
    truth = truth_tuples(out / "truth.csv")
    total = sum(sum(r[2:5]) for r in truth)
    assert total == summary["events_sent"] == summary["events_scheduled"] > 0
    parts = [truth_tuples(out / "parts" / f"p{i}" / "truth.csv") for i in range(2)]
    assert total == sum(sum(r[2:5]) for p in parts for r in p)
    rate = read_csv(out / "rate.csv")
    assert tuple(rate[0]) == RATE_COLUMNS
    assert sum(int(r["sent"]) for r in rate) == total
    assert len(set(summary["seeds"])) == 2
    states = (out / "mmpp_states.csv").read_text().splitlines()
    assert states[0] == "t_start_s,state" and len(states) >= 2


def test_bad_input_fails_before_anything_starts(config: dict, tmp_path: Path) -> None:
    out = tmp_path / "generator"
    with pytest.raises(ConfigError, match=r"arrival\.process"):
        launch_generators(spec("gamma"), config, {"kind": "null"}, out)
    with pytest.raises(ConfigError, match=r"arrival\.rate_eps"):
        launch_generators(spec("spp", -5.0), config, {"kind": "null"}, out)
    with pytest.raises(ConfigError, match="sink key kind"):
        launch_generators(spec(), config, {"kind": "pigeon"}, out)
    with pytest.raises(ConfigError, match="spec key seed"):
        launch_generators(
            {k: v for k, v in spec().items() if k != "seed"}, config, {"kind": "null"}, out
        )
    assert not out.exists()


def test_stopped_generators_leave_no_merged_result(config: dict, tmp_path: Path) -> None:
    out = tmp_path / "generator"
    group = launch_generators(
        spec("constant", 1000.0, 60.0), config, {"kind": "null"}, out, quiet=True
    )
    time.sleep(3.0)
    group.stop()
    with pytest.raises(GeneratorError, match="failed"):
        group.wait()
    assert not (out / "truth.csv").exists()
    assert json.loads((out / "parts" / "p0" / "summary.json").read_text())["status"] == (
        "interrupted"
    )


def test_a_producer_dying_before_ready_is_reported(tmp_path: Path) -> None:
    import subprocess
    import sys

    from sdsbench.workload.launcher import _wait_ready

    def child(code: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    ok = [child("print('ready', flush=True)"), child("print('ready', flush=True)")]
    _wait_ready(ok, 30)
    for proc in ok:
        proc.wait()
    dying = [child("print('ready', flush=True)"), child("import sys; sys.exit(3)")]
    with pytest.raises(GeneratorError, match="process 1 exited with code 3"):
        _wait_ready(dying, 30)
    for proc in dying:
        proc.wait()
        proc.stdout.close()
    for proc in ok:
        proc.stdout.close()


# ------------------------------------------------------------ real Kafka round trip
def read_topic(bootstrap: str, topic: str) -> list[tuple[int, dict]]:
    from confluent_kafka import Consumer, TopicPartition

    from sdsbench.services.kafka import end_offsets

    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    out: list[tuple[int, dict]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < sum(ends.values()) and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error() is None:
                    out.append((msg.partition(), json.loads(msg.value())))
    finally:
        consumer.close()
    assert len(out) == sum(ends.values())
    return out


@pytest.mark.parametrize("idle_partitions", [[], [3]])
def test_kafka_round_trip_matches_truth_exactly(
    services: Any, config: dict, tmp_path: Path, idle_partitions: list[int]
) -> None:
    from sdsbench.services.kafka import create_topic, delete_topics

    cfg = copy.deepcopy(config)
    cfg["workload"]["producer_processes"] = 2
    topic = f"ysb-gen-test-{len(idle_partitions)}-{time.time_ns()}"
    create_topic(services.kafka_bootstrap, topic, 4)
    sink = {
        "kind": "kafka",
        "bootstrap": services.kafka_bootstrap,
        "topic": topic,
        "watermark_markers": True,
        "marker_interval_ms": 200,
        "watermark_bound_ms": 2000,
        "idle_partitions": idle_partitions,
    }
    out = tmp_path / "generator"
    try:
        summary = launch_generators(spec("spp", 2500.0, 2.0), cfg, sink, out, quiet=True).wait()
        records = read_topic(services.kafka_bootstrap, topic)
    finally:
        delete_topics(services.kafka_bootstrap, [topic])
    markers = [(p, r) for p, r in records if "watermark_ns" in r]
    events = [(p, r) for p, r in records if "watermark_ns" not in r]
    assert len(events) == summary["events_sent"] > 3000
    catalog = contract.ad_catalog(cfg["workload"]["campaigns"], cfg["workload"]["ads_per_campaign"])
    # On-time events carry a due time on the tick grid; delayed ones lie off it.
    tick_ns = cfg["workload"]["batch_ms"] * 1_000_000
    start = summary["start_ns"]
    delayed = [(r["event_time_ns"] - start) % tick_ns != 0 for _, r in events]
    recount = recount_truth([r for _, r in events], delayed, catalog)
    assert recount == truth_tuples(out / "truth.csv")
    for _, r in events:
        assert contract.validate_event(json.dumps(r), catalog, r["insertion_time_ms"])[1] is None
    # Markers from both producers in every partition, the last one the schedule's end.
    for partition in range(4):
        for producer in range(2):
            values = [
                r["watermark_ns"]
                for p, r in markers
                if p == partition and r["producer"] == producer
            ]
            assert len(values) >= 5
            assert values == sorted(values) and values[-1] == summary["schedule_end_ns"]
    assert {p for p, _ in events} == set(range(4)) - set(idle_partitions)


def test_missing_topic_fails_before_anything_starts(
    services: Any, config: dict, tmp_path: Path
) -> None:
    sink = {"kind": "kafka", "bootstrap": services.kafka_bootstrap, "topic": "no-such-topic"}
    out = tmp_path / "generator"
    with pytest.raises(ConfigError, match="sink key topic"):
        launch_generators(spec(), config, sink, out)
    assert not out.exists()
