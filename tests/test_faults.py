"""Fault injection (issue 8): the injector, the faults group, the analysis, and real runs of
every pipeline killed with SIGKILL mid-run (plus one broker restart), checked against the
generator's truth: no window or event lost, nothing counted twice, no duplicate result
where the pipeline promises exactly-once.

The real runs take the session's services; Spark and Flink runs need their venvs
(``bash env/setup.sh spark|flink``) and take one to two minutes each.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sdsbench import faults as faults_mod
from sdsbench.analysis.faults import fault_row, faults_table, recovery, total_lag
from sdsbench.config import ConfigError, load_config
from sdsbench.experiments import FAULTS, expand_runs, run_groups
from sdsbench.paths import REPO_ROOT

REPO = REPO_ROOT


# ------------------------------------------------------------------ the faults group
@pytest.mark.parametrize("profiles", [("config.yaml",), ("config.yaml", "full.yaml")])
def test_faults_group_pairs_each_fault_with_a_reference_of_the_same_seed(profiles) -> None:
    config = load_config(*(REPO / "config" / f for f in profiles))
    runs, group = expand_runs(config), run_groups(config)[FAULTS]
    assert group, "the quick profile has a faults group"
    for run_id in group:
        spec = runs[run_id]
        if "reference_run" not in spec:  # a reference: a matrix run or <id>-nofault
            assert "fault" not in spec and "malformed" not in spec
            continue
        ref = runs[spec["reference_run"]]
        assert spec["seed"] == ref["seed"] and spec["arrival"] == ref["arrival"]
        assert spec["params"] == ref["params"] and spec["duration_s"] == ref["duration_s"]
        assert ("fault" in spec) != ("malformed" in spec)
    pipelines = {runs[r]["pipeline"] for r in group if runs[r].get("fault", {}).get("kind")
                 == "kill_sut"}
    # Quick kills A2 only (stated in its config and paper); full kills every SUT.
    assert pipelines == ({"a2"} if len(profiles) == 1 else {"a2", "a3", "spark", "flink"})
    assert any(runs[r].get("fault", {}).get("kind") == "broker_restart" for r in group)


def test_a_matrix_run_with_the_same_spec_is_the_reference_else_a_nofault_run() -> None:
    block = {"pipelines": ["a3"], "processes": ["spp"], "rates_eps": [20000],
             "injections": [{"kind": "kill_sut", "at_s": 8}]}
    config = load_config(overrides={"experiments": {"faults": {"duration_s": 35, "blocks": [
        block, {**block, "rates_eps": [7000]}]}}})
    runs, group = expand_runs(config), run_groups(config)[FAULTS]
    # event_time has a3-spp-r20000 (35 s): the same run, not run twice.
    assert runs["a3-spp-r20000-kill"]["reference_run"] == "a3-spp-r20000"
    assert runs["a3-spp-r20000-kill"]["seed"] == runs["a3-spp-r20000"]["seed"]
    assert "a3-spp-r20000" in group and "a3-spp-r20000-nofault" not in runs
    # No matrix run at 7000 ev/s: a reference run of its own.
    assert runs["a3-spp-r7000-kill"]["reference_run"] == "a3-spp-r7000-nofault"
    assert runs["a3-spp-r7000-kill"]["seed"] == runs["a3-spp-r7000-nofault"]["seed"]
    # Another duration is another spec: no sharing.
    config = load_config(overrides={"experiments": {"faults": {"duration_s": 30,
                                                               "blocks": [block]}}})
    assert expand_runs(config)["a3-spp-r20000-kill"]["reference_run"] == "a3-spp-r20000-nofault"


def test_a_fault_outside_the_run_names_the_key() -> None:
    bad = {"experiments": {"faults": {"duration_s": 10, "blocks": [
        {"pipelines": ["a2"], "processes": ["constant"], "rates_eps": [1000],
         "injections": [{"kind": "kill_sut", "at_s": 30}]}]}}}
    with pytest.raises(ConfigError, match=r"experiments\.faults\.blocks\.0\.injections\.0\.at_s"):
        expand_runs(load_config(overrides=bad))
    bad["experiments"]["faults"]["blocks"][0]["injections"] = [{"kind": "reboot", "at_s": 1}]
    with pytest.raises(ConfigError, match=r"experiments\.faults\.blocks\.0\.injections\.0"):
        load_config(overrides=bad)


# ------------------------------------------------------------------ the injector
class _FakePipeline:
    owns_generator = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def kill(self, ctx: Any) -> dict[str, Any]:
        self.calls.append("kill")
        return {"pids": [1]}

    def restart(self, ctx: Any) -> dict[str, Any]:
        self.calls.append("restart")
        return {"pids": [2]}


class _Ctx:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir


def test_injector_kills_then_restarts_and_records_each_step(tmp_path: Path) -> None:
    pipeline = _FakePipeline()
    injector = faults_mod.FaultInjector({"kind": "kill_sut", "at_s": 0.2}, pipeline,
                                        _Ctx(tmp_path), duration_s=5)
    injector.start()
    threading.Event().wait(0.5)
    record = injector.finish(timeout_s=5)
    assert pipeline.calls == ["kill", "restart"]
    steps = [e["step"] for e in record["events"]]
    assert steps == ["armed", "kill", "killed", "restart", "restarted"]
    times = [e["time_ms"] for e in record["events"]]
    assert times == sorted(times)
    assert json.loads((tmp_path / "metrics" / "faults.json").read_text())["injected"] is True


def test_injector_not_yet_due_is_cancelled_and_recorded_as_not_injected(tmp_path: Path) -> None:
    pipeline = _FakePipeline()
    injector = faults_mod.FaultInjector({"kind": "kill_sut", "at_s": 4}, pipeline,
                                        _Ctx(tmp_path), duration_s=5)
    injector.start()
    record = injector.finish(timeout_s=5)
    assert pipeline.calls == [] and record["injected"] is False and "reason" in record


def test_injector_failure_fails_the_run(tmp_path: Path) -> None:
    class Broken(_FakePipeline):
        def restart(self, ctx: Any) -> dict[str, Any]:
            raise RuntimeError("no checkpoint")

    injector = faults_mod.FaultInjector({"kind": "kill_sut", "at_s": 0.1}, Broken(),
                                        _Ctx(tmp_path), duration_s=5)
    injector.start()
    threading.Event().wait(0.4)
    with pytest.raises(RuntimeError, match="no checkpoint"):
        injector.finish(timeout_s=5)
    assert "no checkpoint" in json.loads((tmp_path / "metrics" / "faults.json").read_text())[
        "error"]


@pytest.mark.parametrize("fault", [{"kind": "reboot", "at_s": 1}, {"kind": "kill_sut"},
                                   {"kind": "broker_restart", "at_s": 9}])
def test_bad_faults_are_refused(fault: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="fault"):
        faults_mod.validate_fault(fault, duration_s=5)


# ------------------------------------------------------------------ recovery time
def test_recovery_is_when_lag_returns_to_its_level_before_the_fault() -> None:
    # 2 partitions; lag 600 before the fault at t=10 s, 20k at 12 s, back to 800 at 15 s.
    rows = []
    for t_s, lag in [(6, 600), (8, 500), (10, 600), (11, 9000), (12, 20000), (14, 4000),
                     (15, 800), (16, 300)]:
        rows += [{"time_ms": t_s * 1000, "partition": p, "lag": lag / 2} for p in (0, 1)]
    lag = total_lag(pd.DataFrame(rows))
    out = recovery(lag, fault_ms=10_500, back_ms=10_600)
    assert out["recovered"] and out["lag_before_fault"] == 600
    # 1000 records is the floor of the threshold: 800 at 15 s counts as caught up.
    assert out["recovery_s"] == pytest.approx(4.5)
    never = recovery(total_lag(pd.DataFrame(rows[:10])), fault_ms=10_500, back_ms=10_600)
    assert not never["recovered"] and math.isnan(never["recovery_s"])


# ------------------------------------------------------------------ real runs
def _venv_ready(engine: str) -> bool:
    return (REPO / ".venv" / engine / "bin" / "python").exists() and any(
        (REPO / ".deps" / f"{engine}-jars").glob("*.jar"))


def _fault_run(
    services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: str,
    fault: dict[str, Any], params: dict[str, Any] | None = None, own_stack: Path | None = None,
    rate: int = 2000, duration_s: float = 20,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one fault run on the session's services; (faults table row, faults.json)."""
    from conftest import TEST_SERVICES_CONFIG

    from sdsbench import runner
    from sdsbench.analysis.summarize import write_run_summary
    from sdsbench.experiments import make_spec

    if own_stack is not None:
        # The run must own the broker it restarts: the session's stack, not an external one.
        services_dir = own_stack
        service_cfg: dict[str, Any] = TEST_SERVICES_CONFIG
    else:
        services_dir = tmp_path / "services"
        service_cfg = {"postgres": {"dsn": services.pg_dsn},
                       "kafka": {"bootstrap_servers": services.kafka_bootstrap}}
    run_id = f"t-{pipeline}-{uuid.uuid4().hex[:6]}-fault"
    blocks = [{"pipelines": [pipeline], "processes": ["constant"], "rates_eps": [rate],
               "injections": [fault]}]
    config = load_config(overrides={
        "services": service_cfg, "run": {"drain_timeout_s": 150},
        "experiments": {"faults": {"duration_s": duration_s, "blocks": blocks}},
    })
    spec = make_spec(config, pipeline, "constant", rate, params=params, run_id=run_id,
                     duration_s=duration_s)
    spec["fault"] = fault
    raw, summary = tmp_path / "raw", tmp_path / "summary"
    out = runner.execute_run(config, spec, raw / run_id, services_dir)
    write_run_summary(out, config, summary / "runs" / f"{run_id}.json",
                      summary / "windows" / f"{run_id}.csv", summary / "series" / f"{run_id}.csv")
    from sdsbench.analysis.faults import fault_row

    row = fault_row(spec, config, summary, raw, None)
    return row, json.loads((out / "metrics" / "faults.json").read_text())


def _assert_survived(row: dict[str, Any], record: dict[str, Any]) -> None:
    assert record["injected"], record
    steps = [e["step"] for e in record["events"]]
    assert steps[-1] in ("restarted", "broker_started"), steps
    assert row["lost_windows"] == 0, row
    assert row["lost_events"] == 0, row
    assert row["excess_events"] == 0, row
    if row["exactly_once"]:
        assert row["duplicate_records"] == 0 and row["changed_windows"] == 0, row
    assert row["survived"], row


def test_a2_consumers_killed_resume_from_postgres_offsets(services, tmp_path, monkeypatch):
    row, record = _fault_run(services, tmp_path, monkeypatch, "a2",
                             {"kind": "kill_sut", "at_s": 8})
    killed = next(e for e in record["events"] if e["step"] == "killed")
    assert len(killed["pids"]) == 2  # both consumers
    _assert_survived(row, record)
    assert row["exactly_once"] and row["recovered"]


def test_a3_watermark_stage_killed_resumes_and_fires_every_window(
    services, tmp_path, monkeypatch
):
    row, record = _fault_run(services, tmp_path, monkeypatch, "a3",
                             {"kind": "kill_sut", "at_s": 8})
    killed = next(e for e in record["events"] if e["step"] == "killed")
    assert len(killed["pids"]) == 3  # two consumers and the emitter
    _assert_survived(row, record)
    assert row["recovered"]


def test_broker_restart_mid_run_loses_nothing(services, tmp_path, monkeypatch):
    import shutil
    import tempfile

    from sdsbench.services.stack import stop_services

    # A stack of its own: restarting the session's broker would leave the session's
    # Services object (used by later tests) with the old broker's pid.
    own_stack = Path(tempfile.mkdtemp(prefix="sdsbench-test-broker-restart-"))
    own_stack.chmod(0o755)  # the postgres user must traverse it when we are root
    try:
        row, record = _fault_run(services, tmp_path, monkeypatch, "a2",
                                 {"kind": "broker_restart", "at_s": 8, "down_s": 2},
                                 own_stack=own_stack)
    finally:
        stop_services(own_stack)
        shutil.rmtree(own_stack, ignore_errors=True)
    started = next(e for e in record["events"] if e["step"] == "broker_started")
    assert started["new_pid"] != started["old_pid"]
    _assert_survived(row, record)


@pytest.mark.jvm
@pytest.mark.skipif(not _venv_ready("spark"), reason="run `bash env/setup.sh spark`")
def test_spark_driver_killed_resumes_from_its_checkpoint(services, tmp_path, monkeypatch):
    row, record = _fault_run(services, tmp_path, monkeypatch, "spark",
                             {"kind": "kill_sut", "at_s": 8},
                             params={"warmup_events": 10_000, "keep_topics": False})
    restarted = next(e for e in record["events"] if e["step"] == "restarted")
    assert restarted["pid"] > 0
    _assert_survived(row, record)  # at-least-once sink: duplicates measured, not asserted


@pytest.mark.jvm
@pytest.mark.skipif(not _venv_ready("flink"), reason="run `bash env/setup.sh flink`")
def test_flink_exactly_once_job_killed_resumes_from_its_checkpoint(
    services, tmp_path, monkeypatch
):
    row, record = _fault_run(
        services, tmp_path, monkeypatch, "flink", {"kind": "kill_sut", "at_s": 8},
        params={"warmup_events": 10_000, "parallelism": 1, "checkpoint_interval_ms": 2000,
                "delivery_guarantee": "exactly-once"})
    restarted = next(e for e in record["events"] if e["step"] == "restarted")
    assert restarted["job_id"] != restarted["old_job_id"] and "chk-" in restarted["checkpoint"]
    assert row["exactly_once"]
    _assert_survived(row, record)  # exactly-once: no duplicate record either


def test_faults_table_reads_every_run_of_the_group(tmp_path: Path) -> None:
    # No runs on disk: the table cannot be built (it never invents a row).
    with pytest.raises(FileNotFoundError):
        faults_table(load_config(), tmp_path / "summary", tmp_path / "raw")


def _fabricated_fault_run(tmp_path: Path, run_id: str, row: dict[str, Any],
                          lag: list[tuple[int, int]]) -> None:
    """A kill run as the table reads it: its summary row, metrics/faults.json (kill at
    10 s, back at 12 s) and metrics/lag.csv (total lag per sample time)."""
    summary = tmp_path / "summary" / "runs"
    summary.mkdir(parents=True, exist_ok=True)
    (summary / f"{run_id}.json").write_text(json.dumps({"row": row}))
    metrics = tmp_path / "raw" / run_id / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "faults.json").write_text(json.dumps({"injected": True, "events": [
        {"step": "kill", "time_ms": 10_000}, {"step": "restarted", "time_ms": 12_000}]}))
    rows = "".join(f"{t},0,0,0,{n}\n" for t, n in lag)
    (metrics / "lag.csv").write_text("time_ms,partition,end_offset,committed_offset,lag\n" + rows)


def test_fault_row_judges_a_kill_by_what_was_lost_and_repeated(tmp_path: Path) -> None:
    config = load_config()
    clean = {"missing_windows": 0, "deficit_events": 0, "excess_events": 0,
             "duplicate_records": 0, "changed_windows": 0, "exact_ratio": 1.0,
             "correct_where_not_dropped": True, "offered_rate_eps": 10_000}
    # Lag 500 before the kill, 30k while down, back under the pre-fault level at 17 s.
    lag = [(6_000, 500), (9_000, 400), (13_000, 30_000), (15_000, 8_000), (17_000, 300)]
    cases = {
        "ok": (clean, True),
        "lost-window": (clean | {"missing_windows": 1, "deficit_events": 3412,
                                 "correct_where_not_dropped": False}, False),
        "replayed": (clean | {"excess_events": 12}, False),
        "duplicate-record": (clean | {"duplicate_records": 10}, False),
    }
    for name, (row, survives) in cases.items():
        run_id = f"a2-constant-r10000-{name}-kill"
        _fabricated_fault_run(tmp_path, run_id, row, lag)
        spec = {"run_id": run_id, "pipeline": "a2", "fault": {"kind": "kill_sut", "at_s": 8}}
        out = fault_row(spec, config, tmp_path / "summary", tmp_path / "raw",
                        {"exact_ratio": 1.0})
        assert out["survived"] is survives, (name, out)
        assert out["lost_windows"] == row["missing_windows"]
        assert out["lost_events"] == row["deficit_events"]
        assert out["down_s"] == 2.0 and out["recovered"] and out["recovery_s"] == 7.0
        assert out["lag_before_fault"] == 500.0 and out["exactly_once"]  # A2 promises it
    # At-least-once (Spark): a repeated record is allowed, a lost window never.
    spark = {"run_id": "a2-constant-r10000-duplicate-record-kill", "pipeline": "spark",
             "fault": {"kind": "kill_sut", "at_s": 8}}
    assert fault_row(spark, config, tmp_path / "summary", tmp_path / "raw", None)["survived"]


# ------------------------------------------------------------------ interrupted workflow
def test_interrupted_workflow_leaves_no_run_that_counts_as_done_and_a_rerun_resumes(
    services, tmp_path
):
    """Ctrl-C (SIGINT to snakemake's process group) in the middle of an engine run: the
    run directory never appears (only <run>.partial or .failed), the SUT's processes are
    gone, the next dry run plans the run again, and a rerun completes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    import yaml

    profile = "interrupt"
    run_id = "a2-constant-r2000-nofault"
    config = {"profile": profile,
              "services": {"postgres": {"dsn": services.pg_dsn},
                           "kafka": {"bootstrap_servers": services.kafka_bootstrap}},
              "run": {"drain_timeout_s": 30},
              "experiments": {"faults": {"duration_s": 15, "blocks": [
                  {"pipelines": ["a2"], "processes": ["constant"], "rates_eps": [2000],
                   "injections": [{"kind": "kill_sut", "at_s": 5}]}]}}}
    config_path = tmp_path / "interrupt.yaml"
    config_path.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    raw = work / "data" / profile / "raw"
    target = f"data/{profile}/raw/{run_id}"
    env = dict(os.environ, SDSBENCH_SERVICES_DIR=str(tmp_path / "svc-state"))
    cmd = [str(Path(sys.executable).parent / "snakemake"), target, "--configfile",
           str(config_path), "-d", str(work), "--cores", "1", "--resources", "bench_slot=1",
           "--no-hooks"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (raw / f"{run_id}.partial" / "generator").exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run never started its generator"
        time.sleep(0.2)
    time.sleep(3)  # mid-run: the generator is sending, the consumers are storing
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert not (raw / run_id).exists()
    assert not list(raw.rglob("COMPLETE"))
    # Nothing of the run is left running (consumers, query runner, generator).
    time.sleep(2)
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if any(str(work) in part for part in (p.info["cmdline"] or []))]
    assert not left, left

    plan = subprocess.run([*cmd, "-n"], cwd=REPO, env=env, capture_output=True, text=True)
    assert re.search(rf"run_id={run_id}$", plan.stdout, flags=re.MULTILINE), plan.stdout

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (raw / run_id / "COMPLETE").exists()
    assert not (raw / f"{run_id}.partial").exists() and not (raw / f"{run_id}.failed").exists()
