"""A4f: the CTR query on Flink SQL.

Fast tests (no Flink): the job config, the SQL built from the contract, the ad -> campaign
lookup, late-event accounting, the REST plan helper. One real run (the session
``services`` fixture's Kafka broker, a real Flink job in ``.venv/flink``) through
``sdsbench.runner.execute_run`` at 2000 ev/s for 20 s, parallelism 1, with a disorder (up
to 3 s) beyond the watermark delay (0.5 s) so the watermark makes events late:

- every output record parses with ``contract.parse_output_record`` and has exactly the
  contract's fields;
- every emitted window equals the generator's truth minus the late events the job
  reported (exact at parallelism 1); every window up to the final watermark is emitted,
  none after it;
- malformed records injected into the input topic mid-run are set aside with their
  reason (Flink's documented deviation: a value of the wrong type is ``missing_field``),
  and the job keeps running past them.
"""

from __future__ import annotations

import json
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

from engines.common.jvm_driver import engine_installed
from engines.flink import ctr_job, ctr_sql, job_config
from engines.flink.job_config import JobConfig
from engines.flink.metrics import window_vertex_id
from engines.flink.outputs import first_json_value, late_table
from sdsbench import contract
from sdsbench.config import load_config

FLINK_READY = engine_installed("flink", "connector-kafka")


# ------------------------------------------------------------------ fast tests
def _job_dict(**override: Any) -> dict[str, Any]:
    base = {
        "run_id": "r", "bootstrap": "127.0.0.1:9092", "input_topic": "i", "output_topic": "o",
        "dead_letter_topic": "d", "late_topic": "l", "group_id": "g", "campaigns": 10,
        "ads_per_campaign": 100, "jars": [], "parallelism": 1, "watermark_delay_ms": 2000,
        "idle_timeout_ms": 5000, "allowed_lateness_ms": 0, "watermark_interval_ms": 200,
        "buffer_timeout_ms": 10, "checkpoint_interval_ms": 5000, "state_backend": "hashmap",
        "delivery_guarantee": "at-least-once", "jobmanager_address": None, "rest_port": 8081,
        "metrics_interval_ms": 1000, "checkpoint_dir": "/tmp/cp", "not_json_dead_letters": True,
        "warmup_topic": None, "flink_options": {}, "session_warmup_topic": None,
    }
    return base | override


def test_job_config_names_the_bad_key() -> None:
    assert JobConfig.from_dict(_job_dict()).to_dict() == _job_dict()
    for key, value in (("state_backend", "memory"), ("delivery_guarantee", "maybe"),
                       ("parallelism", 0), ("watermark_delay_ms", -1),
                       ("watermark_delay_ms", 1_000_000), ("idle_timeout_ms", 0),
                       ("buffer_timeout_ms", 0),
                       ("not_json_dead_letters", "yes")):
        with pytest.raises(ValueError, match=key):
            JobConfig.from_dict(_job_dict(**{key: value}))
    with pytest.raises(ValueError, match="unknown keys"):
        JobConfig.from_dict(_job_dict(extra=1))
    with pytest.raises(ValueError, match="jars"):
        JobConfig.from_dict(_job_dict(jars=["/nonexistent/x.jar"]))


def test_config_section_is_validated() -> None:
    assert load_config()["flink"]["parallelism"] >= 1
    with pytest.raises(ValueError, match="flink"):
        load_config(overrides={"flink": {"state_backend": "memory"}})
    with pytest.raises(ValueError, match="flink"):
        load_config(overrides={"flink": {"jobmanager_address": "http://x"}})


def test_ddl_follows_the_contract() -> None:
    cfg = JobConfig.from_dict(_job_dict())
    source = ctr_sql.source_ddl(cfg)
    for name, kind in contract.EVENT_SCHEMA:
        assert f"`{name}` {ctr_sql.flink_type(kind)}" in source
    assert "WATERMARK FOR `ts` AS `ts` - INTERVAL '2.000' SECOND(3)" in source
    sink = ctr_sql.sink_ddl(cfg)
    for name, kind in contract.OUTPUT_SCHEMA:
        assert f"`{name}` {ctr_sql.flink_type(kind)}" in sink
    assert "upsert-kafka" not in sink
    assert "upsert-kafka" in ctr_sql.sink_ddl(JobConfig.from_dict(_job_dict(
        allowed_lateness_ms=1000)))
    # Every reason the job writes is a contract reason.
    sql = " ".join(ctr_sql.ddl_statements(cfg) + ctr_sql.insert_statements(cfg))
    written = {r for r in ("not_json", "missing_field", "bad_type", "bad_event_type",
                           "unknown_ad", "absurd_timestamp") if f"'{r}'" in sql}
    assert written <= set(contract.REJECT_REASONS)
    assert written == set(contract.REJECT_REASONS) - {"bad_type"}  # see the module doc
    no_raw = JobConfig.from_dict(_job_dict(not_json_dead_letters=False))
    assert "raw_events" not in " ".join(ctr_sql.ddl_statements(no_raw)
                                        + ctr_sql.insert_statements(no_raw))


def test_warmup_runs_the_same_plan_over_its_own_topic_into_blackholes() -> None:
    cfg = JobConfig.from_dict(_job_dict(warmup_topic="w"))
    warm = job_config.warmup_config(cfg)
    statements = ctr_sql.ddl_statements(warm, warmup=True)
    sql = " ".join(statements)
    assert "'topic' = 'w'" in sql and "'topic' = 'i'" not in sql
    assert sql.count("'scan.bounded.mode' = 'latest-offset'") == 2  # JSON and raw sources
    sinks = [s for s in statements if "`ctr_out`" in s or "`dead_letters`" in s
             or "`late_events`" in s]
    assert len(sinks) == 3 and all("'connector' = 'blackhole'" in s for s in sinks)
    assert "'connector' = 'kafka'" not in " ".join(sinks)
    assert "scan.bounded.mode" not in " ".join(ctr_sql.ddl_statements(cfg))
    assert "execution.checkpointing.interval" not in ctr_job.flink_settings(warm, False)
    with pytest.raises(ValueError):
        job_config.warmup_config(JobConfig.from_dict(_job_dict()))


def test_latency_knobs_become_flink_settings() -> None:
    settings = ctr_job.flink_settings(JobConfig.from_dict(_job_dict(watermark_interval_ms=50)))
    assert settings["execution.buffer-timeout.interval"] == "10 ms"
    assert settings["pipeline.auto-watermark-interval"] == "50 ms"
    default = ctr_job.flink_settings(JobConfig.from_dict(_job_dict(buffer_timeout_ms=None)))
    assert "execution.buffer-timeout.interval" not in default  # Flink's own default


def test_intervals_are_exact_milliseconds() -> None:
    assert ctr_sql.interval_ms(500) == "INTERVAL '0.500' SECOND(3)"
    assert ctr_sql.interval_ms(999_999) == "INTERVAL '999.999' SECOND(3)"
    with pytest.raises(ValueError):
        ctr_sql.interval_ms(1_000_000)


def _regex_lookup(table: str, ad: str) -> int | None:
    """What the SQL of ``ad_campaign`` computes (Java's \\Q...\\E quoting = re.escape)."""
    match = re.search("," + re.escape(ad) + ":([0-9]+)", table)
    return int(match.group(1)) if match else None


def test_ad_lookup_maps_every_ad_to_its_campaign_and_rejects_others() -> None:
    catalog = contract.ad_catalog(10, 100)
    table = ctr_sql.ad_table(catalog)
    sql = ctr_sql.ad_campaign(catalog)
    assert f"REGEXP_EXTRACT('{table}', CONCAT(',\\Q', `ad_id`, '\\E:([0-9]+)'), 1)" in sql
    for ad, campaign in catalog.campaign_of_ad.items():
        assert _regex_lookup(table, ad) == campaign
    # Not in the catalog: another id, a prefix, a suffix, two half ids around a separator.
    a, b = catalog.ad_ids[0], catalog.ad_ids[1]
    for other in ("no-such-ad", a[:-1], a[1:], a[18:] + ":0," + b[:17], str(uuid.uuid4()), ""):
        assert _regex_lookup(table, other) is None
    with pytest.raises(ValueError):
        ctr_sql.ad_table(contract.AdCatalog(1, 1, ("a:b",), {"a:b": 0}))


def test_late_table_counts_per_window_and_sets_aside_unknown_ads() -> None:
    catalog = contract.ad_catalog(10, 100)
    ad0, ad150 = catalog.ad_ids[0], catalog.ad_ids[150]
    records = [
        {"ad_id": ad0, "window_start_ms": 10_000, "event_type": "view", "verdict": "dropped"},
        {"ad_id": ad0, "window_start_ms": 10_000, "event_type": "click", "verdict": "dropped"},
        {"ad_id": ad150, "window_start_ms": 10_000, "event_type": "view",
         "verdict": "accepted"},
        {"ad_id": "nope", "window_start_ms": 10_000, "event_type": "view",
         "verdict": "dropped", "partition": 2, "offset": 7},
    ]
    for rec in records:
        rec.setdefault("partition", 0)
        rec.setdefault("offset", 0)
    rows, rejects = late_table(records, catalog, allowed_ms=5000)
    by_campaign = {r["campaign_id"]: r for r in rows}
    assert by_campaign[0]["views_dropped"] == 1 and by_campaign[0]["clicks_dropped"] == 1
    assert by_campaign[1]["views_accepted"] == 1 and by_campaign[1]["views_dropped"] == 0
    assert {r["policy"] for r in rows} == {"update"}
    assert [(r["reason"], r["count"], r["partition"], r["offset"]) for r in rejects] == [
        ("unknown_ad", 1, 2, 7)]


def test_not_json_is_what_flinks_json_format_skips() -> None:
    # Parsed by Flink (the first JSON value; trailing content ignored): not "not_json".
    assert first_json_value(b'{"a": 1}') == {"a": 1}
    assert first_json_value(b' {"a": 1}{"b": 2}') == {"a": 1}
    assert first_json_value(b"[1, 2]") == [1, 2]  # JSON, but not an object: rejected
    for raw in (b"this is not json {", b'{"a": 1', b"", b'{"a": NaN}', None, b"\xff"):
        with pytest.raises((ValueError, UnicodeDecodeError)):
            first_json_value(raw)


def test_window_vertex_is_the_first_level_aggregation() -> None:
    plan = {"plan": {"nodes": [
        {"id": "a", "description": "[35]:GlobalWindowAggregate(groupBy=[campaign_id], ..."},
        {"id": "b", "description": "[30]:GlobalWindowAggregate(groupBy=[ad_id], window=..."},
    ]}}
    assert window_vertex_id(plan) == "b"
    assert window_vertex_id({"plan": {"nodes": []}}) is None


# ------------------------------------------------------------------ a real run
def _malformed_records(now_ms: int) -> list[tuple[bytes, str]]:
    """Records to set aside, each with the reason the Flink job gives (the contract's,
    except a value of the wrong type, which Flink's JSON format turns into NULL)."""
    ad = contract.ad_catalog().ad_ids[0]
    good = {"user_id": "u", "page_id": "p", "ad_id": ad, "ad_type": "banner",
            "event_type": "click", "event_time_ns": now_ms * 10**6, "insertion_time_ms": now_ms}
    without_page = {k: v for k, v in good.items() if k != "page_id"}
    return [
        (b"this is not json {", "not_json"),
        (b"[1, 2]", "not_json"),
        (json.dumps(without_page).encode(), "missing_field"),
        (json.dumps(good | {"event_time_ns": "soon"}).encode(), "missing_field"),
        (json.dumps(good | {"event_type": "hover"}).encode(), "bad_event_type"),
        (json.dumps(good | {"ad_id": "no-such-ad"}).encode(), "unknown_ad"),
        (json.dumps(good | {"event_time_ns": (now_ms + 3_600_000) * 10**6}).encode(),
         "absurd_timestamp"),
    ]


def _assert_windows_match_truth(out: Path, final_wm: int) -> None:
    """The windows match the truth minus the late events (a window fires once the
    watermark reaches its last millisecond); results are stamped before their append."""
    results = assert_windows_match_truth(out, lambda start: window_end(start) - 1 <= final_wm)
    assert (results["result_time_ms"] <= results["append_time_ms"]).all()
    # The job's late report checked against the generator, not against itself: Flink's
    # watermark is the minimum over the partitions and every producer sends in order, so
    # only events the generator delayed can be late (per window and event type).
    key = ["campaign_id", "window_start_ms"]
    truth = pd.read_csv(out / "generator" / "truth.csv")
    late = pd.read_csv(out / "metrics" / "late.csv")
    both = late.merge(truth, on=key, how="left").fillna(0)
    for column in ("views", "clicks", "purchases"):
        assert (both[f"{column}_dropped"] <= both[f"{column}_delayed"]).all(), both


@pytest.mark.timeout(420)
@pytest.mark.jvm
@pytest.mark.skipif(not FLINK_READY, reason="no .venv/flink or connector jars: "
                    "run `bash env/setup.sh flink`")
def test_flink_run_matches_truth_minus_late_events(
    run_services_dir: Path, services: Any, tmp_path: Path
) -> None:
    from sdsbench.experiments import make_spec
    from sdsbench.runner import execute_run
    from sdsbench.services.kafka import delete_topics
    from sdsbench.topics import delete_run_topics

    config = load_config(overrides={
        "services": {"postgres": {"dsn": services.pg_dsn},
                     "kafka": {"bootstrap_servers": services.kafka_bootstrap}},
        # Disorder beyond the watermark delay: some events arrive after their window fired.
        "workload": {"disorder": {"fraction": 0.2, "max_delay_ms": 3000}},
        "run": {"drain_timeout_s": 120},
    })
    # No JIT warm-up (its SQL is checked above): it adds ~20-40 s of start-up here.
    params = {"watermark_delay_ms": 500, "parallelism": 1, "checkpoint_interval_ms": 1000,
              "keep_topics": True, "warmup_events": 0, "session": {"reuse": False}}
    run_id = f"t-flink-{uuid.uuid4().hex[:6]}"
    spec = make_spec(config, "flink", "constant", 2000, params=params, run_id=run_id,
                     duration_s=20)
    injector = MalformedInjector(services.kafka_bootstrap, contract.input_topic(run_id),
                                 _malformed_records)
    injector.start()
    try:
        out = execute_run(config, spec, tmp_path / "run", run_services_dir)
        injector.join(timeout=10)
        assert injector.error is None, injector.error
        raw_output = read_raw_topic(services.kafka_bootstrap, contract.output_topic(run_id))
    finally:
        delete_run_topics(services, run_id)
        delete_topics(services.kafka_bootstrap, [job_config.late_topic(run_id)])

    summary = json.loads((out / "metrics" / "flink_summary.json").read_text())
    assert summary["drained"], summary
    final_wm = summary["final_watermark_ms"]

    # Records: the contract's fields exactly, from this pipeline.
    assert raw_output
    for raw in raw_output:
        record = contract.parse_output_record(raw)
        assert set(record) == set(contract.OUTPUT_FIELDS)
        assert record["pipeline"] == "flink"
        assert record["window_end_ms"] - record["window_start_ms"] == contract.WINDOW_MS
        assert record["ctr"] == contract.ctr(record["clicks"], record["views"])
        assert record["min_insertion_ms"] <= record["max_insertion_ms"] <= record["result_time_ms"]

    # Windows: truth minus the reported late events, every window up to the watermark.
    results = pd.read_csv(out / "results.csv")
    assert len(results) == len(raw_output)
    late = pd.read_csv(out / "metrics" / "late.csv")
    assert late["views_dropped"].sum() + late["clicks_dropped"].sum() > 0, (
        "the disorder must make events late")
    _assert_windows_match_truth(out, final_wm)

    # Malformed input: set aside with its reason; the job kept going past it.
    rejects = pd.read_csv(out / "rejects.csv").set_index("reason")["count"].to_dict()
    wanted = {reason: 0 for reason in contract.REJECT_REASONS}
    for _raw, reason in injector.sent:
        wanted[reason] += 1
    assert rejects == wanted
    letters = pd.read_csv(out / "flink" / "dead_letters.csv")
    not_json = set(letters.loc[letters["reason"] == "not_json", "raw"])
    assert not_json == {raw.decode() for raw, reason in injector.sent if reason == "not_json"}
    # The job counted them (records in - records parsed), the driver listed them.
    assert summary["skipped_by_json_format"] == summary["not_json_found_by_scan"] == 2
    assert injector.sent_at_ms is not None and final_wm > injector.sent_at_ms

    # Engine indicators sampled from outside: watermark, vertices, checkpoints, lag, CPU.
    watermark = pd.read_csv(out / "metrics" / "watermark.csv")
    assert len(watermark) >= 5 and watermark["watermark_ms"].is_monotonic_increasing
    assert watermark["watermark_ms"].iloc[-1] == final_wm
    vertices = pd.read_csv(out / "metrics" / "flink_vertices.csv")
    assert vertices["busy_ms_per_s_max"].notna().any()
    checkpoints = pd.read_csv(out / "metrics" / "flink_checkpoints.csv")
    assert (checkpoints["status"] == "COMPLETED").sum() >= 5
    lag = pd.read_csv(out / "metrics" / "lag.csv")
    assert len(lag) and (lag["lag"] >= 0).all()
    resources = pd.read_csv(out / "metrics" / "resources.csv")
    assert (resources["name"] == "java").any()  # the Flink JVM was sampled


# ------------------------------------------------------------------ engine sessions
def _session_config(services: Any, **overrides: Any) -> dict[str, Any]:
    return load_config(overrides={
        "services": {"postgres": {"dsn": services.pg_dsn},
                     "kafka": {"bootstrap_servers": services.kafka_bootstrap}},
        "run": {"drain_timeout_s": 120}, **overrides,
    })


def _session_params(**params: Any) -> dict[str, Any]:
    # A key of their own (idle_timeout_s): the tests' first runs start fresh sessions.
    return {"warmup_events": 10_000, "parallelism": 1, "checkpoint_interval_ms": 1000,
            "session": {"reuse": True, "idle_timeout_s": 321, "warmup_events": 10_000}} | params


def _ready(out: Path) -> dict[str, Any]:
    return json.loads((out / "flink" / "ready.json").read_text())


@pytest.mark.timeout(600)
@pytest.mark.jvm
@pytest.mark.skipif(not FLINK_READY, reason="no .venv/flink or connector jars")
def test_two_runs_share_one_session_with_their_own_job_settings(
    run_services_dir, services: Any, tmp_path: Path
) -> None:
    from sdsbench.engine_session import pid_alive
    from sdsbench.experiments import make_spec
    from sdsbench.runner import execute_run

    config = _session_config(services)
    outs = []
    # The second run changes what is set per job (parallelism, checkpoint interval, REST
    # port, an extra Flink option): read back from its own mini-cluster.
    for n, params in enumerate([
        _session_params(),
        _session_params(parallelism=2, checkpoint_interval_ms=2000, buffer_timeout_ms=25,
                        watermark_interval_ms=150,
                        flink_options={"execution.checkpointing.timeout": "77 s"}),
    ]):
        run_id = f"t-flink-session{n}-{uuid.uuid4().hex[:6]}"
        # 18 s: with the 2 s delay a run fires windows up to ~16 s after its start, which
        # always includes 10 s of input of one window (10 s runs fired none ~20 % of the time).
        spec = make_spec(config, "flink", "constant", 2000, params=params, run_id=run_id,
                         duration_s=18)
        outs.append(execute_run(config, spec, tmp_path / run_id, run_services_dir))
    first, second = (_ready(out)["session"] for out in outs)
    assert not first["reused"] and first["runs_served_before"] == 0
    assert first["session_warmup_s"] is not None and first["warmup_s"] is not None
    assert second["reused"] and second["runs_served_before"] == 1
    assert second["server_pid"] == first["server_pid"] and second["key"] == first["key"]
    assert second["session_warmup_s"] is None and second["warmup_s"] is not None
    assert pid_alive(second["server_pid"])  # idle again, waiting for the next run
    assert _ready(outs[0])["rest_url"] != _ready(outs[1])["rest_url"]

    for out, parallelism, interval, timeout, buffer_ms, watermark_ms in (
            (outs[0], 1, 1000, 600_000, 10, 200), (outs[1], 2, 2000, 77_000, 25, 150)):
        summary = json.loads((out / "metrics" / "flink_summary.json").read_text())
        assert summary["drained"] and summary["session"]["key"] == first["key"], summary
        _assert_windows_match_truth(out, summary["final_watermark_ms"])
        plan = json.loads((out / "flink" / "job_plan.json").read_text())
        assert {node["parallelism"] for node in plan["plan"]["nodes"]} == {parallelism}
        checkpoints = json.loads((out / "flink" / "job_checkpoint_config.json").read_text())
        assert checkpoints["interval"] == interval and checkpoints["timeout"] == timeout
        execution = json.loads((out / "flink" / "job_execution_config.json").read_text())
        assert execution["execution-config"]["job-parallelism"] == parallelism
        cluster = {e["key"]: e["value"] for e in json.loads(
            (out / "flink" / "job_cluster_config.json").read_text())}
        assert cluster["execution.buffer-timeout.interval"] == f"{buffer_ms} ms"
        assert cluster["pipeline.auto-watermark-interval"] == f"{watermark_ms} ms"
        # The run's part of the session's logs, and only that part.
        job_log = (out / "flink" / "job.log").read_text()
        assert f"run {out.name}" in job_log
        assert all(f"run {other.name}" not in job_log for other in outs if other != out)
        assert any(p.stat().st_size for p in (out / "flink" / "logs").iterdir())


@pytest.mark.timeout(600)
@pytest.mark.jvm
@pytest.mark.skipif(not FLINK_READY, reason="no .venv/flink or connector jars")
def test_a_kill_ends_the_session_and_the_next_run_starts_a_new_one(
    run_services_dir, services: Any, tmp_path: Path
) -> None:
    from sdsbench.engine_session import pid_alive
    from sdsbench.experiments import make_spec
    from sdsbench.runner import execute_run

    fault = {"kind": "kill_sut", "at_s": 8}
    blocks = [{"pipelines": ["flink"], "processes": ["constant"], "rates_eps": [2000],
               "injections": [fault]}]
    config = _session_config(
        services, experiments={"faults": {"duration_s": 20, "blocks": blocks}})
    params = _session_params(delivery_guarantee="exactly-once", checkpoint_interval_ms=2000,
                             session={"reuse": True, "idle_timeout_s": 322,
                                      "warmup_events": 10_000})
    spec = make_spec(config, "flink", "constant", 2000, params=params,
                     run_id=f"t-flink-kill-{uuid.uuid4().hex[:6]}-fault", duration_s=20)
    spec["fault"] = fault
    killed_out = execute_run(config, spec, tmp_path / spec["run_id"], run_services_dir)
    # The restart renamed the session's ready.json (ready-0.json).
    session = json.loads((killed_out / "flink" / "ready-0.json").read_text())["session"]
    record = json.loads((killed_out / "metrics" / "faults.json").read_text())
    killed = next(e for e in record["events"] if e["step"] == "killed")
    assert session["server_pid"] in killed["pids"] and not pid_alive(session["server_pid"])
    assert any(e["step"] == "restarted" for e in record["events"])
    assert "session" not in _ready(killed_out)  # the restart is a private job process
    summary = json.loads((killed_out / "metrics" / "flink_summary.json").read_text())
    assert summary["drained"], summary
    _assert_windows_match_truth(killed_out, summary["final_watermark_ms"])

    spec = make_spec(config, "flink", "constant", 2000, params=params,
                     run_id=f"t-flink-after-kill-{uuid.uuid4().hex[:6]}", duration_s=10)
    after_out = execute_run(config, spec, tmp_path / spec["run_id"], run_services_dir)
    after = _ready(after_out)["session"]
    assert not after["reused"] and after["server_pid"] != session["server_pid"]


@pytest.mark.timeout(180)
@pytest.mark.jvm
@pytest.mark.skipif(not FLINK_READY, reason="no .venv/flink or connector jars")
def test_a_failed_run_leaves_the_session_serving(tmp_path: Path) -> None:
    import os

    from engines.common.jvm_driver import engine_jars, engine_python
    from engines.flink.pipeline import jvm_args
    from sdsbench import engine_session as es

    jars = engine_jars("flink", "connector-kafka")
    first = tmp_path / "first.json"
    first.write_text(json.dumps(_job_dict(jars=jars)))
    env = dict(os.environ, PYTHONPATH=str(es.REPO_ROOT), JVM_ARGS=jvm_args(512))
    cmd = [str(engine_python("flink")), "-m", "engines.flink.ctr_job", "--config", str(first)]
    session = es.open_session("flink", {"idle_timeout_s": 60, "test": "failed runs"}, cmd,
                              env, es.sessions_root(None), 120)
    assert session is not None and not session.reused
    try:
        for n in range(2):
            bad = tmp_path / f"bad{n}.json"
            bad.write_text(json.dumps(_job_dict(jars=jars, extra=1)))
            (tmp_path / f"bad{n}" / "flink").mkdir(parents=True)
            session.submit(f"bad{n}", bad, tmp_path / f"bad{n}")
            report = session.wait_done(f"bad{n}", 60)
            assert report is not None and report["code"] == 1, report
            assert report["runs_served"] == n + 1 and session.poll() is None
            session.copy_log(tmp_path / f"bad{n}.log")
            assert f"run bad{n} failed" in (tmp_path / f"bad{n}.log").read_text()
        # A run whose directory is gone (the runner gave up on it): not served, not recreated.
        session.submit("gone", first, tmp_path / "gone")
        report = session.wait_done("gone", 60)
        assert report is not None and report["code"] == 1 and session.poll() is None
        assert not (tmp_path / "gone").exists()
    finally:
        session.kill()
