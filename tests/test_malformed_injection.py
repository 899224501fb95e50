"""Malformed-input injection in the generator: setting, exact counts, determinism, truth."""

from __future__ import annotations

import copy
import csv
import json
import time
from collections import Counter
from typing import Any

import pytest

from sdsbench import contract
from sdsbench.config import ConfigError, load_config
from sdsbench.workload.events import Batch
from sdsbench.workload.generator import EventSource, default_start_ns, run_open_loop, run_process
from sdsbench.workload.launcher import merge_outputs
from sdsbench.workload.malformed import (
    MALFORMED_COLUMNS,
    MALFORMED_KINDS,
    REASON_OF_KIND,
    malformed_spec,
)

TYPE_COLUMN = {"view": "views", "click": "clicks", "purchase": "purchases"}


@pytest.fixture(scope="module")
def config() -> dict:
    cfg = load_config()
    cfg["workload"]["disorder"]["fraction"] = 0.1
    return cfg


def spec(fraction: float | None = 0.1, kinds=MALFORMED_KINDS, rate=4000.0, seed=7) -> dict:
    out: dict[str, Any] = {
        "run_id": "test-malformed",
        "arrival": {"process": "spp", "rate_eps": rate},
        "duration_s": 1.0,
        "seed": seed,
    }
    if fraction is not None:
        out["malformed"] = {"fraction": fraction, "kinds": list(kinds)}
    return out


class RawSink:
    """Keeps every record as sent (bytes); may accept only part of one offer."""

    kind = "raw"

    def __init__(self, accept_part: int | None = None) -> None:
        self.records: list[bytes] = []
        self.accept_part = accept_part

    def offer(self, batch: Batch, insertion_ms: int) -> int:
        lines = batch.json_lines(insertion_ms)
        n = len(batch)
        assert len(lines) == n
        if self.accept_part is not None and batch.bad is not None and n > self.accept_part:
            # Refuse in the middle of the bad records: the rest is offered again.
            n, self.accept_part = batch.n_valid + len(batch.bad) // 2, None
        self.records.extend(lines[:n])
        return n

    def wait_for_space(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def idle(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def send_markers(self, watermark_ns: int) -> int:
        return 0

    def close(self, timeout_s: float) -> dict[str, Any]:
        return {"kind": self.kind, "messages": len(self.records)}


def run_recorded(cfg: dict, run_spec: dict, sink: RawSink | None = None):
    source = EventSource(run_spec, cfg)
    source.start_ns = default_start_ns(0.05)
    sink = sink or RawSink()
    return source, sink, run_open_loop(source, sink, progress=None)


# ------------------------------------------------------------------ the setting
def test_setting_comes_from_the_spec_else_the_config(config: dict) -> None:
    assert malformed_spec(spec(None), config).fraction == 0.0  # config default
    cfg = copy.deepcopy(config)
    cfg["workload"]["malformed"] = {"fraction": 0.3, "kinds": ["unknown_ad"]}
    assert malformed_spec(spec(None), cfg).kinds == ("unknown_ad",)
    assert malformed_spec(spec(0.05, ["not_json"]), cfg).fraction == 0.05
    del cfg["workload"]["malformed"]
    assert not malformed_spec(spec(None), cfg).enabled


@pytest.mark.parametrize(
    "bad",
    [{"fraction": 1.5, "kinds": ["not_json"]}, {"fraction": 0.1, "kinds": ["bad_type"]},
     {"fraction": 0.1, "kinds": []}, {"fraction": "x", "kinds": ["not_json"]},
     {"fraction": 0.1, "kinds": ["not_json", "not_json"]}],
)
def test_bad_settings_fail_naming_the_key(config: dict, bad: dict) -> None:
    run_spec = spec(None) | {"malformed": bad}
    with pytest.raises(ConfigError, match="spec key malformed"):
        EventSource(run_spec, config)


# --------------------------------------------------------- counts and truth
def test_every_bad_record_is_rejected_with_its_kinds_reason_and_truth_has_valid_only(
    config: dict,
) -> None:
    source, sink, result = run_recorded(config, spec(0.1))
    catalog = source.factory.catalog
    now_ms = time.time_ns() // 1_000_000
    reasons: Counter = Counter()
    valid: list[dict] = []
    for raw in sink.records:
        event, reason = contract.validate_event(raw, catalog, now_ms)
        if event is None:
            reasons[reason] += 1
        else:
            valid.append(event)
    injected = result.malformed.by_kind()
    expected = Counter({REASON_OF_KIND[k]: n for k, n in injected.items() if n})
    assert reasons == expected
    assert all(injected[k] > 0 for k in MALFORMED_KINDS)  # ~100 of each in 4000 events
    scheduled = int(source.schedule.counts.sum())
    assert result.rate.total_sent == len(sink.records) == scheduled
    assert result.truth.total_events == len(valid) == scheduled - result.malformed.total
    assert 0.08 < result.malformed.total / scheduled < 0.12
    assert result.bookkeeping_error is None
    # truth counts exactly the valid events
    counts: Counter = Counter()
    for e in valid:
        key = (catalog.campaign_of_ad[e["ad_id"]], contract.event_window_start_ms(
            e["event_time_ns"]), TYPE_COLUMN[e["event_type"]])
        counts[key] += 1
    rows = result.truth.rows()
    assert sum(r[2] + r[3] + r[4] for r in rows) == len(valid)
    for campaign, window, views, clicks, purchases, *_ in rows:
        assert (views, clicks, purchases) == tuple(
            counts[(campaign, window, t)] for t in ("views", "clicks", "purchases"))


def test_counts_per_window_follow_the_replaced_events_window(config: dict) -> None:
    cfg = copy.deepcopy(config)
    cfg["workload"]["disorder"] = {**cfg["workload"]["disorder"], "fraction": 0.3,
                                   "max_delay_ms": 8000}
    run_spec = spec(0.1, ["unknown_ad"]) | {"duration_s": 3.0}
    _, sink, result = run_recorded(cfg, run_spec)
    seen: Counter = Counter()
    for raw in sink.records:
        record = json.loads(raw)
        if record["ad_id"] not in contract.ad_catalog().campaign_of_ad:
            seen[("unknown_ad", contract.event_window_start_ms(record["event_time_ns"]))] += 1
    assert dict(seen) == result.malformed.counts
    assert len(seen) >= 2  # the delayed events reach into an earlier window


def test_only_the_configured_kinds_are_injected(config: dict) -> None:
    _, _, result = run_recorded(config, spec(0.05, ["unknown_ad", "absurd_timestamp"]))
    injected = result.malformed.by_kind()
    assert injected["not_json"] == injected["missing_field"] == 0
    assert injected["unknown_ad"] > 0 and injected["absurd_timestamp"] > 0


def test_back_pressure_inside_the_bad_records_keeps_counts_exact(config: dict) -> None:
    sink = RawSink(accept_part=1)
    source, sink, result = run_recorded(config, spec(0.2), sink)
    assert result.rate.total_sent == len(sink.records) == int(source.schedule.counts.sum())
    assert result.bookkeeping_error is None
    assert sink.accept_part is None  # the partial acceptance happened


# ----------------------------------------------------------------- determinism
def batches_as_bytes(cfg: dict, run_spec: dict) -> list[list[bytes]]:
    source = EventSource(run_spec, cfg)
    source.start_ns = 1_700_000_000_000_000_000
    return [b.json_lines(123) for b in source.batches()]


def test_injection_is_seeded_and_deterministic(config: dict) -> None:
    first = batches_as_bytes(config, spec(0.1))
    assert first == batches_as_bytes(config, spec(0.1))
    assert first != batches_as_bytes(config, spec(0.1, seed=8))


def test_without_injection_the_events_are_unchanged_and_bad_records_replace_events(
    config: dict,
) -> None:
    plain = batches_as_bytes(config, spec(None))
    assert plain == batches_as_bytes(config, spec(0.0))
    injected = batches_as_bytes(config, spec(0.1))
    assert [len(b) for b in plain] == [len(b) for b in injected]  # same load per tick
    for clean, mixed in zip(plain, injected, strict=True):
        valid = [line for line in mixed if line in set(clean)]
        # the valid events of a tick are the same draws, in the same order
        assert valid == [line for line in clean if line in set(valid)]


# ------------------------------------------------- files of producer processes
def test_processes_write_and_merge_malformed_csv(config: dict, tmp_path) -> None:
    run_spec = spec(0.05, rate=2000.0)
    start = default_start_ns(0.05)
    summaries = [
        run_process(run_spec, config, {"kind": "null"}, tmp_path, i, 2, start, progress=None)
        for i in range(2)
    ]
    merged = merge_outputs(tmp_path, 2)
    with open(tmp_path / "malformed.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == MALFORMED_COLUMNS
    by_kind = dict.fromkeys(MALFORMED_KINDS, 0)
    for r in rows:
        assert r["reason"] == REASON_OF_KIND[r["kind"]]
        by_kind[r["kind"]] += int(r["count"])
    assert by_kind == {k: sum(s["malformed_by_kind"][k] for s in summaries)
                       for k in MALFORMED_KINDS}
    assert merged["events_malformed"] == sum(by_kind.values()) > 0
    assert merged["events_sent"] == merged["events_in_truth"] + merged["events_malformed"]
    assert merged["malformed"] == {"fraction": 0.05, "kinds": list(MALFORMED_KINDS)}
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["malformed_by_kind"] == by_kind
