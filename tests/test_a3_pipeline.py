"""A3 against real PostgreSQL and Kafka (the session ``services`` fixture).

- the SQL watermark functions agree with the Python reference (engines/a3/watermark.py);
- real consumer and emitter processes fed by hand: a silent partition holds the watermark
  back (visible in metrics/watermark.csv), ``idle_timeout_ms`` releases it, bad records go
  to the dead letters without touching the watermark, a late event is counted;
- whole runs through ``execute_run`` with the open-loop generator and a watermark bound
  below the disorder (so late events exist): results match the generator's truth minus the
  dropped late events (policy drop), or exactly after the updates (policy update).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engines.a3.pipeline import Pipeline
from engines.a3.watermark import END_OF_INPUT_MS, global_low_watermark_ms
from sdsbench import contract
from sdsbench.config import load_config
from sdsbench.experiments import make_spec
from sdsbench.runner import RunContext

pytestmark = pytest.mark.timeout(120)


def _config(services: Any, workload: dict | None = None) -> dict[str, Any]:
    """The quick config pointed at the session's services (as external endpoints)."""
    overrides: dict[str, Any] = {
        "services": {
            "postgres": {"dsn": services.pg_dsn},
            "kafka": {"bootstrap_servers": services.kafka_bootstrap},
        }
    }
    if workload:
        overrides["workload"] = workload
    return load_config(overrides=overrides)


def _run_id(name: str) -> str:
    return f"t-a3-{name}-{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------- SQL functions
def test_sql_watermark_functions_match_the_python_reference(services: Any) -> None:
    from engines.a3 import sql as a3sql
    from engines.common import pg_schema

    schema = pg_schema.run_schema_name(_run_id("sql"))
    pg_schema.create_run_schema(services.pg_dsn, schema, contract.ad_catalog(), 3)
    a3sql.create_a3_objects(services.pg_dsn, schema, 3)
    cases = [
        [(None, False), (None, False), (None, False)],
        [(5_000, False), (None, False), (7_000, False)],
        [(5_000, False), (None, True), (7_000, False)],
        [(5_000, True), (3_000, False), (7_000, False)],
        [(5_000, True), (3_000, True), (None, True)],
        [(9_000, False), (8_000, False), (12_000, False)],
    ]
    try:
        with pg_schema.connect(services.pg_dsn, schema, autocommit=True) as conn:
            seen: list[int | None] = []
            for case in cases:
                for partition, (wm, idle) in enumerate(case):
                    conn.execute(
                        "UPDATE partition_watermarks SET watermark_ms = %s, idle = %s "
                        "WHERE kafka_partition = %s",
                        (wm, idle, partition),
                    )
                (low,) = conn.execute("SELECT low_watermark_ms()").fetchone()
                assert low == global_low_watermark_ms(case), case
                previous, now = conn.execute("SELECT * FROM advance_watermark()").fetchone()
                seen.append(now)
            # Held while a busy partition has none, then 5000; never back to 3000.
            assert seen == [None, None, 5_000, 5_000, 5_000, 8_000]
            (as_ts,) = conn.execute(
                "SELECT WATERMARK_NOW() = to_timestamp(8)::timestamptz"
            ).fetchone()
            assert as_ts
            with pytest.raises(Exception, match="must not move back"):
                conn.execute("UPDATE watermark SET watermark_ms = 1")
            conn.execute("UPDATE watermark SET end_of_input = true")
            assert conn.execute("SELECT * FROM advance_watermark()").fetchone()[1] == (
                END_OF_INPUT_MS
            )
            assert conn.execute("SELECT WATERMARK_NOW()::text").fetchone()[0] == "infinity"
    finally:
        pg_schema.drop_run_schema(services.pg_dsn, schema)


# ------------------------------------------------- hand-fed real processes
def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, value in records:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(10) == 0


def _event(event_time_ms: int, event_type: str, ad: int = 0, **override: Any) -> bytes:
    record = {
        "user_id": "u", "page_id": "p", "ad_id": contract.ad_catalog().ad_ids[ad],
        "ad_type": "banner", "event_type": event_type, "event_time_ns": event_time_ms * 10**6,
        "insertion_time_ms": time.time_ns() // 10**6,
    }
    record.update(override)
    return json.dumps(record).encode()


def _marker(watermark_ms: int) -> bytes:
    return json.dumps({"watermark_ns": watermark_ms * 10**6, "producer": 0}).encode()


@contextmanager
def _markers_every(bootstrap: str, topic: str, partition: int, watermark_ms: int,
                   interval_s: float = 0.2) -> Iterator[None]:
    """Keep ``partition`` speaking, as the generator does: the same marker again and again."""
    from confluent_kafka import Producer

    stop = threading.Event()

    def beat() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        while not stop.wait(interval_s):
            producer.produce(topic, _marker(watermark_ms), partition=partition)
            producer.poll(0)
        producer.flush(10)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)


def _wait_for(fn: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = fn()
    return value


@pytest.mark.parametrize("idle_timeout_ms", [None, 1000], ids=["no-timeout", "timeout-1s"])
def test_silent_partition_holds_the_watermark_and_idle_timeout_releases_it(
    services: Any, tmp_path: Path, idle_timeout_ms: int | None
) -> None:
    from engines.common import pg_schema

    config = _config(services)
    params = {"partitions": 2, "idle_timeout_ms": idle_timeout_ms, "fire_interval_ms": 50}
    spec = make_spec(config, "a3", "constant", 1, params=params, run_id=_run_id("idle"))
    ctx = RunContext(spec["run_id"], spec, config, services, tmp_path)
    pipeline = Pipeline()
    pipeline.prepare(ctx)
    st = ctx.extra["a3"]
    topic = st.topics["input"]
    now = time.time_ns() // 10**6
    w0 = contract.window_start_ms(now) - 30_000  # a window well in the past
    far_future = (now + 10 * contract.MAX_FUTURE_SKEW_MS) * 10**6
    try:
        pipeline.start(ctx)
        # Partition 0 speaks; partition 1 stays silent (no marker, no event).
        _produce(services.kafka_bootstrap, topic, [
            (0, _event(w0 + 1_000, "view")),
            (0, _event(w0 + 2_000, "view")),
            (0, _event(w0 + 3_000, "click")),
            (0, _event(w0 + 4_000, "click", ad=100)),  # campaign 1: clicks, no views
            (0, _event(w0, "view", event_time_ns=far_future)),  # absurd: dead letter
            (0, _event(w0, "view", event_time_ns=0)),  # absurd
            (0, b"{oops"),
            (0, _event(w0, "view", ad_id="not-an-ad")),
            (0, _marker(w0 + 10_500)),
        ])
        with (
            _markers_every(services.kafka_bootstrap, topic, 0, w0 + 10_500),
            pg_schema.connect(services.pg_dsn, st.schema, autocommit=True) as conn,
        ):
            def watermark() -> int | None:
                return conn.execute("SELECT WATERMARK_NOW_MS()").fetchone()[0]

            def p0_watermark() -> int | None:
                return conn.execute(
                    "SELECT watermark_ms FROM partition_watermarks WHERE kafka_partition = 0"
                ).fetchone()[0]

            assert _wait_for(p0_watermark, 20) == w0 + 10_500
            if idle_timeout_ms is None:
                time.sleep(1.5)  # > a timeout that would have released it
                assert watermark() is None
                last = pd.read_csv(tmp_path / "metrics" / "watermark.csv").iloc[-1]
                assert last["held_partitions"] == 1 and last["idle_partitions"] == 0
                assert conn.execute("SELECT count(*) FROM fired_windows").fetchone()[0] == 0
            else:
                # Released: the watermark is partition 0's, the window has fired ...
                assert _wait_for(lambda: watermark() == w0 + 10_500, 10)
                assert _wait_for(
                    lambda: conn.execute("SELECT count(*) FROM fired_windows").fetchone()[0], 5
                ) == 2
                # ... so an event of that window arriving now is late: counted, dropped.
                _produce(services.kafka_bootstrap, topic, [(0, _event(w0 + 5_000, "view"))])
                assert _wait_for(
                    lambda: conn.execute(
                        "SELECT dropped_views FROM late_windows WHERE window_start_ms = %s",
                        (w0,),
                    ).fetchone(),
                    10,
                ) == (1,)
                # Partition 1 speaks again: back in the min; its marker is behind, the
                # watermark stays where it was (monotonic).
                _produce(services.kafka_bootstrap, topic, [(1, _marker(w0 + 2_000))])
                assert _wait_for(
                    lambda: conn.execute(
                        "SELECT NOT idle FROM partition_watermarks WHERE kafka_partition = 1"
                    ).fetchone()[0],
                    10,
                )
                assert watermark() == w0 + 10_500
        pipeline.drain(ctx, timeout_s=20)
        pipeline.collect(ctx)
    finally:
        pipeline.stop(ctx)

    assert st.drain["caught_up"] and st.drain["fired_all"]
    results = pd.read_csv(tmp_path / "results.csv")
    assert sorted(results["campaign_id"]) == [0, 1]
    by_campaign = results.set_index("campaign_id")
    assert (by_campaign.loc[0, "views"], by_campaign.loc[0, "clicks"]) == (2, 1)
    assert by_campaign.loc[0, "ctr"] == pytest.approx(0.5)
    assert by_campaign.loc[1, "views"] == 0 and math.isnan(by_campaign.loc[1, "ctr"])
    assert (results["window_start_ms"] == w0).all()
    rejects = pd.read_csv(tmp_path / "rejects.csv").set_index("reason")["count"]
    assert rejects["absurd_timestamp"] == 2 and rejects["not_json"] == 1
    assert rejects["unknown_ad"] == 1
    dead = pd.read_csv(tmp_path / "a3" / "dead_letters.csv")
    assert sorted(dead["reason"]) == [
        "absurd_timestamp", "absurd_timestamp", "not_json", "unknown_ad"
    ]
    assert "{oops" in set(dead["raw"]) and (dead["partition"] == 0).all()
    summary = json.loads((tmp_path / "metrics" / "a3.json").read_text())
    assert summary["lateness_policy"] == "drop"
    assert summary["late_dropped_events"] == (0 if idle_timeout_ms is None else 1)
    # No absurd time ever reached a watermark: every value is within the run's times.
    marks = pd.read_csv(tmp_path / "metrics" / "watermark.csv")
    assert marks["end_of_input"].iloc[-1] == 1
    assert (marks["watermark_ms"].dropna() <= now).all()


def test_killed_consumer_resumes_without_loss_or_double_count(
    services: Any, tmp_path: Path
) -> None:
    import os
    import signal

    from engines.common import pg_schema

    config = _config(services)
    params = {"partitions": 2, "consumers": 1, "fire_interval_ms": 50}
    spec = make_spec(config, "a3", "constant", 1, params=params, run_id=_run_id("kill"))
    ctx = RunContext(spec["run_id"], spec, config, services, tmp_path)
    pipeline = Pipeline()
    pipeline.prepare(ctx)
    st = ctx.extra["a3"]
    topic = st.topics["input"]
    w0 = contract.window_start_ms(time.time_ns() // 10**6) - 30_000

    def batch(first_ms: int, marker_ms: int) -> list[tuple[int, bytes]]:
        records = [
            (i % 2, _event(first_ms + i, "view" if i % 3 else "click", ad=i % 7))
            for i in range(400)
        ]
        return records + [(0, _marker(marker_ms)), (1, _marker(marker_ms))]

    try:
        pipeline.start(ctx)
        with pg_schema.connect(services.pg_dsn, st.schema, autocommit=True) as conn:
            def stored() -> int:
                return conn.execute("SELECT sum(next_offset) FROM kafka_offsets").fetchone()[0]

            _produce(services.kafka_bootstrap, topic, batch(w0 + 1_000, w0 + 5_000))
            assert _wait_for(lambda: stored() == 402, 20)
            victim = st.group.consumers[0]
            os.kill(victim.pid, signal.SIGKILL)
            _produce(services.kafka_bootstrap, topic, batch(w0 + 6_000, w0 + 10_500))
            assert _wait_for(lambda: st.group.restarts, 10)
            assert _wait_for(lambda: stored() == 804, 20)
            assert _wait_for(
                lambda: conn.execute("SELECT WATERMARK_NOW_MS()").fetchone()[0] == w0 + 10_500,
                10,
            )
        pipeline.drain(ctx, timeout_s=20)
        pipeline.collect(ctx)
    finally:
        pipeline.stop(ctx)

    assert st.group.restarts[0]["pid"] == victim.pid and st.group.restarts[0]["restarted"]
    results = pd.read_csv(tmp_path / "results.csv")
    assert not results.duplicated(["campaign_id", "window_start_ms"]).any()
    assert (results["window_start_ms"] == w0).all()
    # 2 x 400 events: i % 3 == 0 are clicks (134 per batch), the rest views.
    assert results["clicks"].sum() == 2 * 134 and results["views"].sum() == 2 * 266
    assert json.loads((tmp_path / "metrics" / "a3.json").read_text())["stored_events"] == 800


# ------------------------------------------------------------------- whole runs
def _execute(
    run_services_dir: Path, services: Any, tmp_path: Path, monkeypatch: Any, name: str,
    params: dict[str, Any],
) -> tuple[Path, dict[str, Any]]:
    import sdsbench.runner as runner

    # 20 % of events delayed up to 2 s, watermark bound 300 ms: some arrive after their
    # window fired.
    config = _config(
        services,
        {"disorder": {"fraction": 0.2, "distribution": "uniform", "max_delay_ms": 2000}},
    )
    params = {"watermark_bound_ms": 300, **params}
    spec = make_spec(
        config, "a3", "spp", 2000, params=params, run_id=_run_id(name), duration_s=12
    )
    out = runner.execute_run(config, spec, tmp_path / "run", run_services_dir)
    return out, spec


def _truth_vs_results(out: Path) -> pd.DataFrame:
    truth = pd.read_csv(out / "generator" / "truth.csv")
    truth = truth[truth["views"] + truth["clicks"] > 0]
    results = pd.read_csv(out / "results.csv")
    late = pd.read_csv(out / "metrics" / "late.csv")
    merged = truth.merge(late, on=["campaign_id", "window_start_ms"], how="left").fillna(0)
    latest = results.sort_values("offset").groupby(["campaign_id", "window_start_ms"]).last()
    return merged.merge(
        latest.reset_index(), on=["campaign_id", "window_start_ms"], how="outer",
        suffixes=("_truth", "_result"), indicator=True,
    )


def _assert_watermark_monotonic(out: Path) -> None:
    marks = pd.read_csv(out / "metrics" / "watermark.csv")
    values = marks["watermark_ms"].where(marks["end_of_input"] == 0, math.inf).dropna()
    assert len(values) > 10
    assert values.is_monotonic_increasing
    assert values.iloc[-1] == math.inf  # end of input reached at drain


def test_run_with_policy_drop_matches_truth_minus_dropped_late_events(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    out, _ = _execute(run_services_dir, services, tmp_path, monkeypatch, "drop", {})
    results = pd.read_csv(out / "results.csv")
    for raw in results[list(contract.OUTPUT_FIELDS)].to_dict("records"):
        contract.parse_output_record(json.dumps(raw))
    assert not results.duplicated(["campaign_id", "window_start_ms"]).any(), "emitted twice"
    assert (results["pipeline"] == "a3").all()

    both = _truth_vs_results(out)
    # A window whose every event was late has no result; all others must have one.
    missing = both[both["_merge"] == "left_only"]
    assert (missing["views_truth"] == missing["views_dropped"]).all()
    assert (missing["clicks_truth"] == missing["clicks_dropped"]).all()
    assert (both["_merge"] != "right_only").all(), "result for a window the generator never made"
    ok = both[both["_merge"] == "both"]
    assert (ok["views_result"] + ok["views_dropped"] == ok["views_truth"]).all()
    assert (ok["clicks_result"] + ok["clicks_dropped"] == ok["clicks_truth"]).all()
    # Only events the generator delayed can be late.
    assert (both["views_dropped"] <= both["views_delayed"]).all()

    summary = json.loads((out / "metrics" / "a3.json").read_text())
    late = pd.read_csv(out / "metrics" / "late.csv")
    dropped = int(late[["views_dropped", "clicks_dropped", "purchases_dropped"]].sum().sum())
    assert dropped == summary["late_dropped_events"] > 0, "the setup should produce late events"
    assert summary["late_accepted_events"] == 0 and summary["lateness_policy"] == "drop"
    assert summary["drain"]["caught_up"] and summary["drain"]["fired_all"]
    _assert_watermark_monotonic(out)
    lag = pd.read_csv(out / "metrics" / "lag.csv")
    assert len(lag) > 0 and (lag["lag"] >= 0).all()
    sample = pd.read_csv(out / "metrics" / "events_sample.csv")
    assert 0 < len(sample) <= summary["stored_events"]
    assert sample["event_time_ms"].between(
        both["window_start_ms"].min(), both["window_start_ms"].max() + contract.WINDOW_MS
    ).all()


def test_run_with_policy_update_reemits_windows_and_ends_exact(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    out, _ = _execute(
        run_services_dir,
        services, tmp_path, monkeypatch, "update",
        {"lateness": {"policy": "update", "allowed_ms": 10_000}},
    )
    both = _truth_vs_results(out)
    assert (both["_merge"] == "both").all()
    # Allowed lateness (10 s) exceeds the disorder (2 s): every late event is accepted and
    # the last record of each window is exact.
    assert (both["views_result"] == both["views_truth"]).all()
    assert (both["clicks_result"] == both["clicks_truth"]).all()
    assert (both[["views_dropped", "clicks_dropped"]] == 0).all().all()

    results = pd.read_csv(out / "results.csv")
    emissions = results.groupby(["campaign_id", "window_start_ms"]).size()
    late = pd.read_csv(out / "metrics" / "late.csv")
    updated = late[late["views_accepted"] + late["clicks_accepted"] > 0]
    assert len(updated) > 0, "the setup should produce late events"
    updated_keys = set(zip(updated["campaign_id"], updated["window_start_ms"], strict=True))
    for key, count in emissions.items():
        assert (count > 1) == (key in updated_keys), key
    summary = json.loads((out / "metrics" / "a3.json").read_text())
    assert summary["lateness_policy"] == "update" and summary["late_accepted_events"] > 0
    assert summary["emissions"] == len(results)
    _assert_watermark_monotonic(out)
