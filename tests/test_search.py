"""The t_h search: staircase region, steady confirmation, repetitions; identical input
for every pipeline (fabricated runs, no engines)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import T0_MS, fabricate_run

from sdsbench.analysis.criterion import Criterion
from sdsbench.analysis.rundata import load_run
from sdsbench.analysis.staircase import analyse_staircase, step_rates
from sdsbench.analysis.throughput_search import (
    SearchSettings,
    combine_repetitions,
    quantize,
    search_repetition,
)
from sdsbench.config import load_config
from sdsbench.experiments import expand_runs, make_spec

ARRIVAL = {"process": "spp", "rate_eps": 10_000.0, "step_factor": 1.1, "step_s": 4.0}


@pytest.fixture(scope="module")
def config():
    return load_config()


def _staircase_run(tmp_path, config, capacity_eps, *, generator_fails_from=None):
    """A staircase run of 12 steps whose backlog grows once the rate exceeds capacity:
    the watermark falls behind by (rate - capacity) / rate of every second."""
    spec = make_spec(config, "flink", "spp", 10_000, run_id="flink-spp-staircase",
                     duration_s=48)
    spec["arrival"] |= {"step_factor": 1.1, "step_s": 4.0}
    run_dir = fabricate_run(tmp_path / "stair", spec, config, delay_ms=2000)
    steps = step_rates(spec["arrival"], 48)
    times = np.arange(T0_MS, T0_MS + 48_000, 250, dtype=float)
    rng = np.random.default_rng(1)
    behind, backlog = 0.0, []
    for t in times:
        rate = next(r for lo, hi, r in steps if lo <= (t - T0_MS) / 1000 < hi)
        behind = max(0.0, behind + 250 * (rate - capacity_eps) / rate)
        backlog.append(behind + rng.uniform(0, 300))  # sawtooth of a micro-batch engine
    pd.DataFrame({"time_ms": times, "watermark_ms": times - 2000 - np.array(backlog)}).to_csv(
        run_dir / "metrics" / "watermark.csv", index=False)
    lag = pd.read_csv(run_dir / "metrics" / "lag.csv")
    lag["lag"] = 10
    lag.to_csv(run_dir / "metrics" / "lag.csv", index=False)
    rate = pd.read_csv(run_dir / "generator" / "rate.csv")  # the schedule follows the steps
    nominal = [next(r for lo, hi, r in steps if lo <= s < hi) for s in rate["second"]]
    rate["scheduled"] = rate["sent"] = rng.poisson(nominal)
    rate.to_csv(run_dir / "generator" / "rate.csv", index=False)
    if generator_fails_from is not None:
        rate = pd.read_csv(run_dir / "generator" / "rate.csv")
        late = rate["second"] >= generator_fails_from * 4
        rate.loc[late, "sent"] = (rate.loc[late, "scheduled"] * 0.9).astype(int)
        rate.to_csv(run_dir / "generator" / "rate.csv", index=False)
    return load_run(run_dir)


@pytest.mark.parametrize(("last_pass", "position"), [(5, 0.5), (2, 0.2), (8, 0.9)])
def test_staircase_finds_the_step_where_the_backlog_starts_to_grow(
    tmp_path, config, last_pass, position
):
    rates = [r for _, _, r in step_rates(ARRIVAL, 48)]
    # Capacity between step last_pass and the next (a noisy sawtooth on top).
    capacity = rates[last_pass] + position * (rates[last_pass + 1] - rates[last_pass])
    run = _staircase_run(tmp_path, config, capacity)
    stair = analyse_staircase(run, None, 2000, Criterion())
    assert stair["highest_pass_eps"] == pytest.approx(rates[last_pass])
    assert stair["lowest_fail_eps"] == pytest.approx(rates[last_pass + 1])
    verdicts = [s["verdict"] for s in stair["steps"]]
    assert verdicts == ["pass"] * (last_pass + 1) + ["fail"] * (11 - last_pass)
    assert stair["fitted_capacity_eps"]["watermark"] == pytest.approx(capacity, rel=0.02)
    assert "grew for good" in stair["reason"]


def test_staircase_that_keeps_up_gives_a_lower_bound(tmp_path, config):
    stair = analyse_staircase(_staircase_run(tmp_path, config, 1e9), None, 2000, Criterion())
    assert stair["lowest_fail_eps"] is None
    # The last step is not judged: nothing after it could show its backlog growing.
    assert stair["highest_pass_eps"] == pytest.approx(10_000 * 1.1 ** 10)
    assert stair["steps"][-1]["verdict"] == "unjudged"
    assert "not judged" in stair["reason"]


def test_staircase_steps_where_the_generator_fell_behind_are_invalid(tmp_path, config):
    run = _staircase_run(tmp_path, config, 1e9, generator_fails_from=8)
    stair = analyse_staircase(run, None, 2000, Criterion())
    verdicts = [s["verdict"] for s in stair["steps"]]
    assert verdicts == ["pass"] * 8 + ["invalid"] * 4
    assert stair["lowest_fail_eps"] is None  # not a failure of the system under test
    assert "generator could not keep its schedule" in stair["reason"]


def test_events_sent_late_across_a_step_boundary_do_not_void_the_step():
    from sdsbench.analysis.staircase import generator_on_schedule

    # The generator of a real staircase (make quick, 2026-12-04): its step at 110k ev/s
    # (seconds 4-7) ended 63 ms behind, so 5.4k of its events went out in second 8.
    rate = pd.DataFrame({"second": range(12),
                         "scheduled": [100_000] * 4 + [110_000] * 4 + [121_000] * 4,
                         "sent": [100_000] * 4 + [110_000] * 3 + [104_600]
                         + [126_400] + [121_000] * 3,
                         "behind_ms_max": [10.0] * 7 + [63.0] + [55.0] + [10.0] * 3})
    assert generator_on_schedule(rate, 4, 8, 0.01, 500) == (True, "")
    assert generator_on_schedule(rate, 8, 12, 0.01, 500) == (True, "")
    # A real shortfall: 5 % of a step never sent, the generator only slightly late.
    short = rate.assign(sent=[100_000] * 4 + [104_500] * 4 + [121_000] * 4,
                        behind_ms_max=10.0)
    ok, why = generator_on_schedule(short, 4, 8, 0.01, 500)
    assert not ok and why == "generator sent 0.950 of its schedule"
    late = rate.assign(behind_ms_max=[10.0] * 5 + [800.0] + [10.0] * 6)
    assert generator_on_schedule(late, 4, 8, 0.01, 500) == (
        False, "generator behind its schedule by 800 ms")


def _fake_trials(capacity):
    calls = []

    def run_trial(rate):
        calls.append(rate)
        p95 = 100.0 if rate <= capacity else 5_000.0
        return {"offered_rate_eps": rate, "latency_above_delay_ms_p95": p95,
                "lag_slope_eps": 0.0, "lag_final": 0.0, "lag_max": 0.0,
                "achieved_ratio": 1.0, "generator_behind_ms_max": 1.0,
                "generator_blocked_ms": 0.0, "steady_windows_missing": 0.0,
                "watermark_lag_slope_ms_per_s": 0.0, "latency_trend_ms_per_s": 0.0,
                "latency_above_delay_ms_firings": 5.0, "lag_measured": True}

    return run_trial, calls


SETTINGS = SearchSettings(start_rate_eps=10_000, step_factor=1.1, step_s=4, steps=12,
                          confirm_trials=4, trial_duration_s=30)


def test_confirmation_moves_the_region_down_when_the_pass_fails():
    run_trial, calls = _fake_trials(capacity=20_000)
    region = {"highest_pass_eps": 21_000.0, "lowest_fail_eps": 23_100.0, "reason": "x"}
    result = search_repetition(lambda s: ({"run_id": "stair"}, region), run_trial, SETTINGS,
                               Criterion())
    assert calls == [21_000.0, quantize(21_000 / 1.1)]
    assert result["t_h_eps"] == quantize(21_000 / 1.1)
    assert result["interval_eps"] == [quantize(21_000 / 1.1), 21_000.0]
    assert "confirmed" in result["stop_reason"]


def test_confirmation_agrees_with_the_staircase():
    run_trial, calls = _fake_trials(capacity=22_000)
    region = {"highest_pass_eps": 21_000.0, "lowest_fail_eps": 23_100.0, "reason": "x"}
    result = search_repetition(lambda s: ({"run_id": "stair"}, region), run_trial, SETTINGS,
                               Criterion())
    assert calls == [21_000.0, 23_100.0]
    assert result["interval_eps"] == [21_000.0, 23_100.0]
    assert result["relative_gap"] == pytest.approx(0.1)


def test_repetitions_combine_to_their_median_and_spread():
    reps = [{"search_id": "a3-spp", "pipeline": "a3", "process": "spp", "repetition": k,
             "trial_duration_s": 30, "t_h_eps": th, "t_h_is_lower_bound": False,
             "lowest_failing_rate_eps": th * 1.1, "interval_eps": [th, th * 1.1],
             "relative_gap": 0.1, "stop_reason": "ok", "criterion": {}, "settings": {},
             "trials": [{"rate_eps": 10_000}]}
            for k, th in enumerate([30_000, 25_000, 33_000], start=1)]
    combined = combine_repetitions(reps)
    assert combined["t_h_eps"] == 30_000
    assert (combined["t_h_min_eps"], combined["t_h_max_eps"]) == (25_000, 33_000)
    assert combined["interval_eps"] == [30_000, 33_000]
    assert combined["repetitions"] == 3 and len(combined["trials"]) == 3


# ------------------------------------------------------------------ identical input
def test_every_pipeline_gets_the_same_input_at_the_same_spec(config):
    runs = expand_runs(config)
    by_pipeline = {p: runs[f"{p}-spp-r20000"] for p in ("a3", "spark", "flink")}
    assert len({s["seed"] for s in by_pipeline.values()}) == 1
    assert len({str(s["arrival"]) for s in by_pipeline.values()}) == 1
    # Settings of the pipeline never change its input; a repetition does.
    assert runs["flink-spp-r20000-p1"]["seed"] == by_pipeline["flink"]["seed"]
    assert runs["flink-spp-r20000-rep2"]["seed"] == runs["a3-spp-r20000-rep2"]["seed"]
    assert runs["flink-spp-r20000-rep2"]["seed"] != by_pipeline["flink"]["seed"]
    # Runs at k x t_h share the MMPP state path across pipelines (rates differ).
    assert runs["a3-mmpp-th2x"]["seed"] == runs["flink-mmpp-th2x"]["seed"]


def test_repetitions_are_runs_of_their_own(config):
    runs = expand_runs(config)
    reps = [r for r in runs.values() if r["base_run_id"] == "a3-spp-r20000"]
    assert sorted(r["repetition"] for r in reps) == [1, 2, 3]
    assert {r["run_id"] for r in reps} == {"a3-spp-r20000", "a3-spp-r20000-rep2",
                                           "a3-spp-r20000-rep3"}


def test_a3_spark_and_flink_at_one_spec_receive_identical_truth(tmp_path, config):
    from sdsbench.workload.generator import run_process

    # One schedule start for all three (event times follow the schedule, not the clock);
    # in the past, so the open loop sends at once.
    start_ns = (time.time_ns() // 10**10 - 1) * 10**10
    truths = []
    for pipeline in ("a3", "spark", "flink"):
        spec = make_spec(config, pipeline, "mmpp", 3_000, duration_s=1.0)
        run_process(spec, config, {"kind": "null"}, tmp_path / pipeline, start_ns=start_ns,
                    progress=None)
        truths.append((tmp_path / pipeline / "parts" / "p0" / "truth.csv").read_text())
    assert truths[0] == truths[1] == truths[2] and len(truths[0].splitlines()) > 1


def test_staircase_fails_from_where_every_window_fires_above_the_bound(tmp_path, config):
    run = _staircase_run(tmp_path, config, 1e9)  # the backlog never grows
    # One firing per 10 s, visible mid-step: steps 1, 4, 6, 9, 11. Above the bound once
    # at step 4 (a level wavering around the bound), then for good from step 9.
    fired = {1: 600.0, 4: 1200.0, 6: 900.0, 9: 1500.0, 11: 1900.0}
    windows = pd.DataFrame([
        {"campaign_id": c, "window_start_ms": 10_000 * k, "steady": True,
         "visible_ms": T0_MS + (step * 4 + 2) * 1000, "latency_above_delay_ms": latency - c}
        for k, (step, latency) in enumerate(fired.items()) for c in range(3)])
    stair = analyse_staircase(run, windows, 2000, Criterion())
    assert [s["verdict"] for s in stair["steps"]] == ["pass"] * 9 + ["fail"] * 3
    assert stair["steps"][4]["window_latency_above_delay_ms_max"] == 1200.0
    assert "every window from step 9 on" in stair["reason"]
