"""A4s: the CTR query on Spark Structured Streaming.

Fast tests (no Spark): the job config, progress rows, the checkpoint replay of the late-event
audit. One real run (the session ``services`` fixture's Kafka broker, a real Spark job in
``.venv/spark``) through ``sdsbench.runner.execute_run`` at 2000 ev/s for 20 s, with a
disorder (up to 8 s) far beyond the watermark delay (0) so the watermark drops events:

- every output record parses with ``contract.parse_output_record`` and has exactly the
  contract's fields;
- every emitted window equals the generator's truth minus the events the late audit says
  the watermark dropped, and the audit agrees with Spark's own numRowsDroppedByWatermark
  batch by batch; every window up to the final watermark is emitted, none after it;
- malformed records injected into the input topic mid-run are dead-lettered with the
  reason ``contract.validate_event`` gives, and the query keeps running past them.

Engine sessions (sdsbench.engine_session): two consecutive runs share one driver
JVM (the second's ready.json says reused, same server pid), both exact against the
truth; a kill fault run takes the whole session down and the next run starts a new one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from engine_helpers import (
    MalformedInjector,
    assert_windows_match_truth,
    read_raw_topic,
    window_end,
)

from engines.common.jvm_driver import engine_installed, venv_python
from engines.spark import late_audit
from engines.spark.ctr_query import catalog_values_sql
from engines.spark.job_config import JobConfig
from engines.spark.pipeline import watermark_rows
from sdsbench import contract
from sdsbench.config import load_config

SPARK_READY = engine_installed("spark", "spark-sql-kafka")
SPARK_RT_READY = SPARK_READY and venv_python("spark_rt").exists()


# ------------------------------------------------------------------ fast tests
def _job_dict(**override: Any) -> dict[str, Any]:
    base = {
        "run_id": "r", "bootstrap": "127.0.0.1:9092", "input_topic": "i", "output_topic": "o",
        "dead_letter_topic": "d", "campaigns": 10, "ads_per_campaign": 100, "jars": [],
        "master": "local[2]", "driver_memory": "2g", "execution": "micro_batch",
        "trigger_ms": 1000,
        "watermark_delay_ms": 0, "output_mode": "append",
        "shuffle_partitions": 2, "max_offsets_per_trigger": None,
        "campaign_lookup": "broadcast_join", "warmup_events": 0, "extra_conf": {},
    }
    return base | override


def test_job_config_names_the_bad_key() -> None:
    assert JobConfig.from_dict(_job_dict()).to_dict() == _job_dict()
    with pytest.raises(ValueError, match="output_mode"):
        JobConfig.from_dict(_job_dict(output_mode="complete"))
    with pytest.raises(ValueError, match="unknown keys"):
        JobConfig.from_dict(_job_dict(extra=1))
    with pytest.raises(ValueError, match="max_offsets_per_trigger"):
        JobConfig.from_dict(_job_dict(max_offsets_per_trigger=0))
    with pytest.raises(ValueError, match="extra_conf"):
        JobConfig.from_dict(_job_dict(extra_conf={"spark.x": 1}))
    with pytest.raises(ValueError, match="jars"):
        JobConfig.from_dict(_job_dict(jars=["/nonexistent/x.jar"]))


def test_real_time_mode_settings_are_checked_and_name_the_key() -> None:
    from engines.spark.pipeline import Pipeline, SparkRun, check_real_time_slots
    from sdsbench.config import ConfigError

    rt = {"execution": "real_time", "output_mode": "update", "trigger_ms": 5000}
    job = JobConfig.from_dict(_job_dict(**rt))
    with pytest.raises(ValueError, match="execution"):
        JobConfig.from_dict(_job_dict(execution="continuous"))
    with pytest.raises(ValueError, match="output_mode: real-time mode runs in update mode"):
        JobConfig.from_dict(_job_dict(**rt | {"output_mode": "append"}))
    with pytest.raises(ValueError, match="trigger_ms: real-time batches last at least 5000"):
        JobConfig.from_dict(_job_dict(**rt | {"trigger_ms": 1000}))
    # Spark's own minimum, lowered on purpose: Spark decides.
    JobConfig.from_dict(_job_dict(**rt | {"trigger_ms": 1000, "extra_conf": {
        "spark.sql.streaming.realTimeMode.minBatchDuration": "1s"}}))
    # A task slot per input partition and per shuffle partition, all held at once.
    with pytest.raises(ConfigError, match=r"spark.master: .* needs 6 task slots .*local\[6\]"):
        check_real_time_slots({"execution": "real_time", "master": "local[2]",
                               "shuffle_partitions": 2}, 4)
    check_real_time_slots({"execution": "real_time", "master": "local[6]",
                           "shuffle_partitions": 2}, 4)
    check_real_time_slots({"execution": "micro_batch", "master": "local[1]",
                           "shuffle_partitions": 2}, 4)
    # Another Spark, another virtualenv, another engine session.
    driver = Pipeline()
    assert driver.venv(SparkRun({}, None, job)) == "spark_rt"
    assert driver.venv(SparkRun({}, None, JobConfig.from_dict(_job_dict()))) == "spark"
    from engines.spark.job_config import session_settings

    assert session_settings(job) != session_settings(JobConfig.from_dict(_job_dict()))


def test_real_time_runs_are_named_by_their_settings() -> None:
    from sdsbench.experiments import make_spec

    config = load_config()
    spec = make_spec(config, "spark", "spp", 20000, params={
        "execution": "real_time", "output_mode": "update", "master": "local[6]",
        "trigger_ms": 5000})
    assert spec["run_id"] == "spark-spp-r20000-realtime-local6-update-trig5000"
    # Same workload, same seed: the micro-batch run of the spec gets the same input.
    assert spec["seed"] == make_spec(config, "spark", "spp", 20000)["seed"]


def test_catalog_inline_table_lists_every_ad_with_its_campaign() -> None:
    catalog = contract.ad_catalog(3, 4)
    sql = catalog_values_sql(catalog)
    pairs = re.findall(r"\('([^']*)', (\d+)L\)", sql)
    assert {ad: int(c) for ad, c in pairs} == catalog.campaign_of_ad
    assert len(pairs) == 12
    bad = contract.AdCatalog(1, 1, ("o'brien",), {"o'brien": 0})
    with pytest.raises(ValueError, match="SQL string literal"):
        catalog_values_sql(bad)


def test_config_section_is_validated() -> None:
    assert load_config()["spark"]["output_mode"] in ("append", "update")
    with pytest.raises(ValueError, match="spark"):
        load_config(overrides={"spark": {"master": "yarn"}})


def _write_checkpoint(root: Path, batches: list[tuple[int, dict[str, int]]]) -> None:
    """A checkpoint in Spark's layout: offsets/<n> = version, metadata, source offsets."""
    (root / "offsets").mkdir(parents=True)
    (root / "commits").mkdir()
    (root / "sources" / "0").mkdir(parents=True)
    (root / "sources" / "0" / "0").write_text('\x00v1\n{"t":{"0":0,"1":0}}')
    for n, (watermark, ends) in enumerate(batches):
        meta = json.dumps({"batchWatermarkMs": watermark, "batchTimestampMs": 1000 + n})
        offsets = json.dumps({"t": {str(p): o for p, o in ends.items()}})
        (root / "offsets" / str(n)).write_text(f"v1\n{meta}\n{offsets}")
        (root / "commits" / str(n)).write_text("v1\n{}")


def test_checkpoint_replay_gives_batch_ranges_and_previous_batch_watermarks(
    tmp_path: Path,
) -> None:
    _write_checkpoint(tmp_path, [(0, {0: 0, 1: 0}), (0, {0: 5, 1: 3}), (7000, {0: 9, 1: 3}),
                                 (9000, {0: 9, 1: 3})])
    batches = late_audit.read_batches(tmp_path)
    assert [b.start for b in batches] == [{0: 0, 1: 0}, {0: 0, 1: 0}, {0: 5, 1: 3},
                                          {0: 9, 1: 3}]
    assert [b.end[0] for b in batches] == [0, 5, 9, 9]
    # Late rows are filtered with the previous batch's watermark (eviction uses the current).
    assert late_audit.late_watermarks_ms(batches) == [0, 0, 0, 7000]
    locator = late_audit._batch_locator(batches)
    assert locator[0] == ([5, 9], [1, 2]) and locator[1] == ([3], [1])


def _write_progress(path: Path, dropped_by_batch: dict[int, int]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "batch_id", "rows_dropped_by_watermark"])
        writer.writerows([["ctr", b, n] for b, n in dropped_by_batch.items()])


def test_audit_replays_unless_spark_reported_no_drop_in_every_batch(tmp_path: Path) -> None:
    checkpoint, metrics = tmp_path / "ckpt", tmp_path / "metrics"
    _write_checkpoint(checkpoint, [(0, {0: 0, 1: 0}), (0, {0: 5, 1: 3}), (7000, {0: 9, 1: 3})])
    metrics.mkdir()
    batches = late_audit.read_batches(checkpoint)
    assert late_audit.none_reported_dropped(batches, {0: 0, 1: 0, 2: 0})
    assert not late_audit.none_reported_dropped(batches, {0: 0, 1: 1, 2: 0})
    # A batch without a progress event (a killed job's) leaves it to the replay.
    assert not late_audit.none_reported_dropped(batches, {0: 0, 2: 0})
    assert not late_audit.none_reported_dropped([], {})

    _write_progress(metrics / "spark_progress.csv", {0: 0, 1: 0, 2: 0})
    # No broker at this address: a replay would fail, so passing shows none was tried.
    audit = late_audit.audit_late_events(checkpoint, "127.0.0.1:1", "t", contract.ad_catalog(),
                                         metrics)
    assert not audit["replayed"] and audit["records_replayed"] == 0
    assert audit["records"] == 12 and audit["dropped_events"] == 0
    assert audit["records_match_offsets"] is None
    rows = pd.read_csv(metrics / "spark_batches.csv")
    assert rows["input_records"].tolist() == [0, 8, 4]
    assert (rows["dropped_events"] == 0).all()
    assert pd.read_csv(metrics / "late.csv").empty


def test_watermark_rows_come_from_the_ctr_query_only(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "batch_id", "batch_time_ms", "watermark_ms"])
        writer.writerows([["ctr", 0, 100, 0], ["dead_letter", 0, 100, ""], ["ctr", 1, 200, 50]])
    assert watermark_rows(path) == [
        {"time_ms": "100", "watermark_ms": "0", "batch_id": "0"},
        {"time_ms": "200", "watermark_ms": "50", "batch_id": "1"},
    ]


def test_observed_rejects_sum_batches_and_count_a_rerun_batch_once(tmp_path: Path) -> None:
    from engines.spark.pipeline import observed_rejects

    path = tmp_path / "progress.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "batch_id", "observed_rejects"])
        writer.writerows([
            ["ctr", 0, json.dumps({"not_json": 1, "unknown_ad": 0})],
            ["ctr", 1, json.dumps({"not_json": 2, "unknown_ad": 1})],
            ["ctr", 1, json.dumps({"not_json": 2, "unknown_ad": 1})],  # run again: once
            ["ctr", 2, ""],  # a batch without observed metrics (an older job)
        ])
    totals = observed_rejects(path)
    assert set(totals) == set(contract.REJECT_REASONS)
    assert totals["not_json"] == 3 and totals["unknown_ad"] == 1
    assert sum(totals.values()) == 4


def progress_queries(run_dir: Path) -> list[str]:
    return list(pd.read_csv(run_dir / "metrics" / "spark_progress.csv")["query"].unique())


# ------------------------------------------------------------------ a real run
def _malformed_records(now_ms: int) -> list[tuple[bytes, str]]:
    """One record per reject reason (the valid fields are those of a real event)."""
    ad = contract.ad_catalog().ad_ids[0]
    good = {"user_id": "u", "page_id": "p", "ad_id": ad, "ad_type": "banner",
            "event_type": "click", "event_time_ns": now_ms * 10**6, "insertion_time_ms": now_ms}
    without_page = {k: v for k, v in good.items() if k != "page_id"}
    raws = [
        b"this is not json {",
        json.dumps(without_page).encode(),
        json.dumps(good | {"event_time_ns": "soon"}).encode(),
        json.dumps(good | {"event_type": "hover"}).encode(),
        json.dumps(good | {"ad_id": "no-such-ad"}).encode(),
        json.dumps(good | {"event_time_ns": (now_ms + 3_600_000) * 10**6}).encode(),
    ]
    catalog = contract.ad_catalog()
    # The reason the contract gives each (the Spark job classifies as the contract does).
    return [(raw, contract.validate_event(raw, catalog, now_ms)[1]) for raw in raws]


def _assert_truth_minus_drops(out: Path, summary: dict[str, Any],
                              updates: bool = False) -> pd.DataFrame:
    """The windows match the truth minus the events the late audit says the watermark
    dropped (append mode: a window is emitted once the watermark reaches its end), and the
    audit agrees with Spark's own counts. Returns results.csv."""
    late = pd.read_csv(out / "metrics" / "late.csv")
    audit = summary["late_audit"]
    if audit["replayed"]:
        assert audit["records_match_offsets"] and audit["matches_reported"], audit
    else:  # Spark reported no dropped row in any batch: nothing was late
        assert audit["rows_dropped_reported"] == audit["dropped_events"] == 0, audit
    assert late[["views_dropped", "clicks_dropped", "purchases_dropped"]].sum().sum() == (
        audit["dropped_events"])
    final_wm = summary["final_watermark_ms"]
    return assert_windows_match_truth(out, lambda start: window_end(start) <= final_wm,
                                      updates)


# Small warm-ups: the session's once-only one and each run's own.
SESSION_PARAMS = {"warmup_events": 10_000, "trigger_ms": 500,
                  "session": {"reuse": True, "idle_timeout_s": 300, "warmup_events": 10_000}}


def _services_config(services: Any, **more: Any) -> dict[str, Any]:
    return load_config(overrides={
        "services": {"postgres": {"dsn": services.pg_dsn},
                     "kafka": {"bootstrap_servers": services.kafka_bootstrap}},
        "run": {"drain_timeout_s": 150}, **more,
    })


@pytest.mark.timeout(360)
@pytest.mark.jvm
@pytest.mark.skipif(not SPARK_READY, reason="no .venv/spark or connector jars: "
                    "run `bash env/setup.sh spark`")
def test_spark_run_matches_truth_minus_watermark_drops(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdsbench import runner
    from sdsbench.experiments import make_spec
    from sdsbench.topics import delete_run_topics

    # execute_run records the (external) endpoints in a state directory; a private one
    # keeps this session apart from another one running in the same tree.

    # Disorder far beyond the watermark delay: Spark must drop late events.
    config = _services_config(services,
                              workload={"disorder": {"fraction": 0.2, "max_delay_ms": 8000}})
    # Batches of at most 3 s of input: the watermark trails by a few seconds, less than
    # the disorder, whether Spark keeps up or not (a busy machine makes batches slow).
    params = {**SESSION_PARAMS, "watermark_delay_ms": 0, "max_offsets_per_trigger": 6000,
              "keep_topics": True}
    run_id = f"t-spark-{uuid.uuid4().hex[:6]}"
    spec = make_spec(config, "spark", "constant", 2000, params=params, run_id=run_id,
                     duration_s=20)
    injector = MalformedInjector(services.kafka_bootstrap, contract.input_topic(run_id),
                                 _malformed_records)
    injector.start()
    try:
        out = runner.execute_run(config, spec, tmp_path / "run", run_services_dir)
        injector.join(timeout=10)
        assert injector.error is None, injector.error
        raw_output = read_raw_topic(services.kafka_bootstrap, contract.output_topic(run_id))
    finally:
        delete_run_topics(services, run_id)

    summary = json.loads((out / "metrics" / "spark_summary.json").read_text())
    assert summary["drained"], summary
    final_wm = summary["final_watermark_ms"]
    assert summary["session"] is not None  # served by an engine session (reuse: true)

    # Records: the contract's fields exactly, from this pipeline.
    assert raw_output
    for raw in raw_output:
        record = contract.parse_output_record(raw)
        assert set(record) == set(contract.OUTPUT_FIELDS)
        assert record["pipeline"] == "spark"
        assert record["window_end_ms"] - record["window_start_ms"] == contract.WINDOW_MS
        assert record["ctr"] == contract.ctr(record["clicks"], record["views"])
        assert record["min_insertion_ms"] <= record["max_insertion_ms"] <= record["result_time_ms"]

    # Windows: truth minus the audited drops, every window up to the final watermark.
    results = _assert_truth_minus_drops(out, summary)
    assert len(results) == len(raw_output)
    audit = summary["late_audit"]
    assert audit["dropped_events"] > 0, "the disorder must make Spark drop late events"
    assert audit["rows_dropped_reported"] == audit["dropped_groups"] > 0

    # Malformed input: dead-lettered with the contract's reason; the query kept going.
    rejects = pd.read_csv(out / "rejects.csv").set_index("reason")["count"].to_dict()
    wanted = {reason: 0 for reason in contract.REJECT_REASONS}
    for _raw, reason in injector.sent:
        wanted[reason] += 1
    assert rejects == wanted
    with (out / "spark" / "dead_letters.csv").open(newline="") as fh:
        letters = {(row["raw"], row["reason"]) for row in csv.DictReader(fh)}
    assert letters == {(raw.decode(), reason) for raw, reason in injector.sent}
    # One read per record: the CTR query counted the same rejects while dropping them,
    # and the set-aside after the run read every record of the input topic.
    assert summary["rejected_observed_by_reason"] == wanted
    assert summary["set_aside"]["rejected_by_reason"] == wanted
    assert audit["replayed"]  # Spark dropped rows: the audit read the input again
    assert summary["set_aside"]["records"] == audit["records_replayed"]
    assert set(progress_queries(out)) == {"ctr"}
    assert injector.sent_at_ms is not None and final_wm > injector.sent_at_ms

    # The warm-up ran in private topics and left nothing behind.
    from sdsbench.services.kafka import list_topics

    assert not [t for t in list_topics(services.kafka_bootstrap) if run_id in t]
    assert json.loads((out / "spark" / "ready.json").read_text())["warmed_up"]

    # Spark's own indicators and the samplers' files.
    progress = pd.read_csv(out / "metrics" / "spark_progress.csv")
    ctr = progress[progress["query"] == "ctr"]
    assert ctr["num_input_rows"].sum() == audit["records_replayed"]
    assert (ctr["batch_duration_ms"] > 0).all()
    assert ctr["rows_dropped_by_watermark"].sum() == audit["rows_dropped_reported"]
    # The JVM's cumulative counters, read at every batch: they only grow, and the CPU does.
    for counter in contract.SPARK_JVM_COUNTERS:
        assert ctr[counter].notna().all() and ctr[counter].is_monotonic_increasing, counter
    assert ctr["jvm_cpu_ms"].iloc[-1] > ctr["jvm_cpu_ms"].iloc[0]
    lag = pd.read_csv(out / "metrics" / "lag.csv")
    assert len(lag) and (lag["lag"] >= 0).all()
    resources = pd.read_csv(out / "metrics" / "resources.csv")
    assert (resources["name"] == "java").any()  # the Spark JVM was sampled


def _ready(out: Path, name: str = "ready.json") -> dict[str, Any]:
    return json.loads((out / "spark" / name).read_text())


def _run(run_services_dir, config: dict[str, Any], tmp_path: Path, name: str,
         fault: dict[str, Any] | None = None, duration_s: float = 12,
         **params: Any) -> tuple[Path, dict[str, Any]]:
    from sdsbench import runner
    from sdsbench.experiments import make_spec

    run_id = f"t-spark-{name}-{uuid.uuid4().hex[:6]}"
    spec = make_spec(config, "spark", "constant", 2000, params=SESSION_PARAMS | params,
                     run_id=run_id, duration_s=duration_s)
    if fault is not None:
        spec["fault"] = fault
    out = runner.execute_run(config, spec, tmp_path / run_id, run_services_dir)
    return out, json.loads((out / "metrics" / "spark_summary.json").read_text())


@pytest.mark.timeout(420)
@pytest.mark.jvm
@pytest.mark.skipif(not SPARK_READY, reason="no .venv/spark or connector jars: "
                    "run `bash env/setup.sh spark`")
def test_two_runs_share_one_session_and_both_match_truth(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdsbench.engine_session import pid_alive

    config = _services_config(services)
    first, first_summary = _run(run_services_dir, config, tmp_path, "first")
    # The second run changes per-run settings (the session stays): read back from Spark.
    second, second_summary = _run(run_services_dir, config, tmp_path, "second",
                                  trigger_ms=750, shuffle_partitions=1)
    assert _ready(first)["engine_reported"] == {
        "master": "local[2]", "trigger": "ProcessingTimeTrigger(500)", "shuffle_partitions": "2"}
    assert _ready(second)["engine_reported"] == {
        "master": "local[2]", "trigger": "ProcessingTimeTrigger(750)", "shuffle_partitions": "1"}

    one, two = _ready(first)["session"], _ready(second)["session"]
    assert two["reused"] and two["runs_served_before"] == one["runs_served_before"] + 1
    assert two["server_pid"] == one["server_pid"] and two["key"] == one["key"]
    assert two["session_warmup_s"] is None  # the session warm-up runs once per session
    if not one["reused"]:  # a fresh session (no earlier test left one): it ran the warm-up
        assert one["session_warmup_events"] == 10_000 and one["session_warmup_s"] > 0
    assert pid_alive(two["server_pid"])  # idle again, waiting for the next run
    assert second_summary["session"] == two
    for out, summary in ((first, first_summary), (second, second_summary)):
        assert summary["drained"], summary
        _assert_truth_minus_drops(out, summary)
        assert _ready(out)["warmed_up"]
        # Nothing malformed: the set-aside pass is skipped, the files are as usual.
        assert summary["set_aside"]["skipped"]
        assert summary["set_aside"]["records"] == summary["late_audit"]["records"]
        assert not any(summary["rejected_observed_by_reason"].values())
        rejects = pd.read_csv(out / "rejects.csv")
        assert set(rejects["reason"]) == set(contract.REJECT_REASONS)
        assert (rejects["count"] == 0).all()
        letters = pd.read_csv(out / "spark" / "dead_letters.csv")
        assert list(letters.columns) == ["reason", "partition", "offset", "kafka_time_ms",
                                         "raw"] and letters.empty
    # Each run's job log holds its own part of the server log only (the JVM's cached Kafka
    # producer may still name the first run's deleted topics in its warnings: not checked).
    log = (second / "spark" / "job.log").read_text()
    assert f"run {second.name}: serving" in log and f"run {first.name}: serving" not in log
    assert f"run {first.name}: serving" in (first / "spark" / "job.log").read_text()

    # A run the server cannot serve (its job config is bad) is reported failed; the server
    # goes on serving (the protocol by hand: the session is idle, its lock free).
    from sdsbench import engine_session as es

    sdir = Path(os.environ[es.SESSIONS_ENV]) / f"spark-{two['key']}"
    lock = es._try_lock(sdir / "lock")
    assert lock is not None
    handle = es.EngineSession("spark", two["key"], sdir, two["server_pid"], True, {}, lock)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    handle.submit("t-bad", bad, tmp_path / "bad-run")
    report = handle.wait_done("t-bad", 60)
    handle.release()
    assert report is not None and report["code"] == 1 and "missing keys" in report["error"]
    assert pid_alive(two["server_pid"])
    assert json.loads((sdir / "server.json").read_text())["runs_served"] == (
        two["runs_served_before"] + 2)


@pytest.mark.timeout(420)
@pytest.mark.jvm
@pytest.mark.skipif(not SPARK_READY, reason="no .venv/spark or connector jars: "
                    "run `bash env/setup.sh spark`")
def test_kill_fault_takes_the_session_down_and_the_next_run_starts_a_new_one(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdsbench.engine_session import pid_alive

    config = _services_config(services, experiments={"faults": {"duration_s": 12, "blocks": [
        {"pipelines": ["spark"], "processes": ["constant"], "rates_eps": [2000],
         "injections": [{"kind": "kill_sut", "at_s": 6}]}]}})
    faulted, fault_summary = _run(run_services_dir, config, tmp_path, "kill",
                                  {"kind": "kill_sut", "at_s": 6})
    served = _ready(faulted, "ready-0.json")["session"]  # the first start: in the session
    assert served is not None and fault_summary["session"] == served
    record = json.loads((faulted / "metrics" / "faults.json").read_text())
    killed = next(e for e in record["events"] if e["step"] == "killed")
    assert served["server_pid"] in killed["pids"] and not pid_alive(served["server_pid"])
    assert _ready(faulted)["session"] is None  # the restart: a private job process
    assert fault_summary["restarts"] == 1 and fault_summary["drained"]
    assert "skipped" not in fault_summary["set_aside"]  # restarted: the set-aside ran

    after, after_summary = _run(run_services_dir, config, tmp_path, "after")
    fresh = _ready(after)["session"]
    assert not fresh["reused"] and fresh["server_pid"] != served["server_pid"]
    assert fresh["session_warmup_s"] is not None
    _assert_truth_minus_drops(after, after_summary)


@pytest.mark.timeout(420)
@pytest.mark.jvm
@pytest.mark.skipif(not SPARK_RT_READY, reason="no .venv/spark_rt: "
                    "run `bash env/setup.sh spark_rt`")
def test_real_time_mode_run_matches_truth_minus_watermark_drops(
    run_services_dir, services: Any, tmp_path: Path
) -> None:
    """The same query in Spark 4.3.0's Real-Time Mode: the settings reach Spark, every
    window's last update equals the truth minus the audited drops, and the audit agrees
    with Spark's count of dropped input rows (real-time mode counts events)."""
    # Disorder beyond two 5 s batches, so real-time batches see late events.
    config = _services_config(services,
                              workload={"disorder": {"fraction": 0.3, "max_delay_ms": 20000}})
    out, summary = _run(run_services_dir, config, tmp_path, "rt", duration_s=20,
                        execution="real_time", output_mode="update", master="local[6]",
                        trigger_ms=5000, watermark_delay_ms=0)
    ready = _ready(out)
    assert ready["spark_version"].startswith("4.3")
    assert ready["engine_reported"] == {"master": "local[6]", "shuffle_partitions": "2",
                                        "trigger": "RealTimeTrigger(5000)"}
    assert summary["drained"], summary
    audit = summary["late_audit"]
    assert audit["reported_unit"] == "events"
    assert audit["dropped_events"] > 0, "the disorder must make Spark drop late events"
    results = _assert_truth_minus_drops(out, summary, updates=True)
    # Update mode: one record per change of a window, many per window.
    assert summary["output_records"] > 10 * len(results)
    assert not any(summary["rejected_observed_by_reason"].values())
