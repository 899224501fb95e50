"""The analysis on small synthetic tables and fabricated run directories (no servers).

Each test builds input with a known defect (a missing window, a duplicate, a growing lag,
a latency above the bound) and checks that the analysis reports exactly that.
"""

import math

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import fabricate_run, fabricate_staircase_backlog

from sdsbench.analysis import flow, latency, oracle
from sdsbench.analysis.criterion import Criterion, sustainable
from sdsbench.analysis.knee import knee_index
from sdsbench.analysis.summarize import summarize_run
from sdsbench.config import ConfigError, load_config
from sdsbench.experiments import (
    expand_runs,
    make_spec,
    resolve_threshold_rate,
    run_groups,
    run_settings,
)

W = 10_000


def _truth(rows):
    frame = pd.DataFrame(rows, columns=["campaign_id", "window_start_ms", "views", "clicks"])
    frame["purchases"] = 1
    for c in ("views", "clicks", "purchases"):
        frame[f"{c}_delayed"] = 0
    return frame


def _results(rows):
    return pd.DataFrame(
        rows, columns=["campaign_id", "window_start_ms", "views", "clicks", "append_time_ms"]
    )


# ---------------------------------------------------------------------- oracle
def test_oracle_exact_results_are_correct():
    truth = _truth([(0, 0, 5, 1), (1, 0, 3, 2), (0, W, 4, 4)])
    results = _results([(0, 0, 5, 1, 1), (1, 0, 3, 2, 2), (0, W, 4, 4, 3)])
    summary, per_window = oracle.check_results(truth, results, ["views", "clicks"],
                                               order="append_time_ms")
    assert summary["correct"] is True
    assert summary["exact_windows"] == 3 == summary["evaluable_windows"]
    assert set(per_window["status"]) == {"exact"}


def test_oracle_finds_missing_error_extra_duplicate_and_tail():
    truth = _truth([(0, 0, 5, 1), (1, 0, 3, 2), (0, W, 4, 4), (0, 2 * W, 9, 9)])
    results = _results([
        (0, 0, 5, 1, 1),        # exact
        (0, 0, 5, 1, 2),        # identical duplicate
        (0, W, 4, 3, 3),        # one click short
        (7, 0, 1, 1, 4),        # a window the truth does not have
    ])
    # window (1, 0) is missing before the horizon; (0, 2W) ends after it: tail.
    summary, per_window = oracle.check_results(
        truth, results, ["views", "clicks"], order="append_time_ms", horizon_ms=2 * W
    )
    status = dict(zip(zip(per_window.campaign_id, per_window.window_start_ms, strict=True),
                      per_window.status, strict=True))
    assert status == {(0, 0): "exact", (1, 0): "missing", (0, W): "count_error",
                      (0, 2 * W): "unfired_tail", (7, 0): "extra"}
    assert summary["missing_windows"] == 1
    assert summary["unfired_tail_windows"] == 1
    assert summary["count_error_windows"] == 1
    assert summary["count_error_events"] == 1
    assert summary["extra_windows"] == 1
    assert summary["duplicate_windows"] == 1 and summary["changed_windows"] == 0
    assert summary["deficit_events"] == 3 + 2 + 1  # the missing window's events + one click
    assert summary["correct"] is False


def test_oracle_final_answer_is_the_last_update():
    truth = _truth([(0, 0, 5, 2)])
    results = _results([(0, 0, 5, 2, 9), (0, 0, 5, 1, 1)])  # file order != output order
    summary, _ = oracle.check_results(truth, results, ["views", "clicks"], order="append_time_ms")
    assert summary["exact_windows"] == 1 and summary["first_exact_windows"] == 0
    assert summary["changed_windows"] == 1 and summary["correct"] is True


def test_oracle_explains_deficit_by_reported_drops():
    truth = _truth([(0, 0, 5, 2)])
    results = _results([(0, 0, 4, 2, 1)])
    summary, _ = oracle.check_results(truth, results, ["views", "clicks"], dropped_reported=1)
    assert summary["deficit_events"] == 1 and summary["unexplained_deficit_events"] == 0


def test_oracle_ignores_windows_without_counted_events():
    # A window with only purchases, or a zero result for nothing, is not an error.
    truth = _truth([(0, 0, 0, 0), (1, 0, 2, 1)])
    results = _results([(1, 0, 2, 1, 1), (3, 0, 0, 0, 2)])
    summary, _ = oracle.check_results(truth, results, ["views", "clicks"])
    assert summary["expected_windows"] == 1 and summary["extra_windows"] == 0
    assert summary["correct"] is True


# --------------------------------------------------------------------- latency
def test_window_latency_uses_the_first_emission_and_subtracts_the_delay():
    results = pd.DataFrame({
        "campaign_id": [0, 0, 1], "window_start_ms": [0, 0, 0],
        "max_insertion_ms": [9_990, 9_990, 9_800],
        "append_time_ms": [12_500, 12_000, 13_000],
    })
    windows = latency.window_latencies(results, "append_time_ms", delay_ms=2_000)
    first = windows.set_index("campaign_id")
    assert first.loc[0, "visible_ms"] == 12_000
    assert first.loc[0, "latency_from_window_end_ms"] == 2_000
    assert first.loc[0, "latency_above_delay_ms"] == 0
    assert first.loc[0, "latency_from_last_insertion_ms"] == 2_010
    assert first.loc[1, "latency_above_delay_ms"] == 1_000


def test_steady_windows_exclude_the_first_partial_window_warmup_and_the_tail():
    windows = pd.DataFrame({"window_end_ms": [10_000, 20_000, 30_000, 40_000]})
    # No warm-up: the window holding the generator's start is partial and left out.
    mask = latency.steady_mask(windows, gen_start_ms=5_000, gen_end_ms=35_000, delay_ms=2_000)
    assert list(mask) == [False, True, True, False]
    mask = latency.steady_mask(windows, gen_start_ms=5_000, gen_end_ms=35_000, delay_ms=2_000,
                               warmup_s=6)
    assert list(mask) == [False, False, True, False]
    assert latency.steady_window_starts(5_000, 35_000, 2_000) == [10_000, 20_000]
    assert latency.steady_window_starts(5_000, 35_000, 2_000, warmup_s=6) == [20_000]


def test_statistics_state_their_firings_not_their_rows():
    # 10 campaigns fire together: 20 rows of two windows are two firings.
    windows = pd.DataFrame({
        "campaign_id": list(range(10)) * 2,
        "window_start_ms": [10_000] * 10 + [20_000] * 10,
        **{c: np.arange(20, dtype=float) for c in latency.LATENCY_COLUMNS},
    })
    stats = latency.latency_summary(windows)
    assert stats["latency_above_delay_ms_n"] == 20
    assert stats["latency_above_delay_ms_firings"] == 2


def test_describe_percentiles_and_empty_input():
    stats = latency.describe(np.arange(1, 101, dtype=float), "x")
    assert stats["x_p50"] == pytest.approx(50.5) and stats["x_max"] == 100
    assert stats["x_p95"] == pytest.approx(95.05)
    assert math.isnan(latency.describe([], "y")["y_p95"])


# ------------------------------------------------------------------------ flow
def _lag(slope_eps, start=0, end=20_000, partitions=2):
    rows = []
    for t in range(start, end + 1, 1000):
        for p in range(partitions):
            rows.append((t, p, 0, 0, slope_eps * t / 1000 / partitions))
    return pd.DataFrame(rows, columns=["time_ms", "partition", "end_offset",
                                       "committed_offset", "lag"])


def test_lag_slope_over_the_steady_part():
    stats = flow.lag_flow(_lag(500.0), gen_start_ms=0, gen_end_ms=20_000)
    assert stats["lag_slope_eps"] == pytest.approx(500.0)
    assert stats["lag_slope_n"] == 20  # [start, end): the sample at the end is left out
    assert stats["lag_final"] == pytest.approx(10_000)
    assert flow.lag_flow(None, 0, 1)["lag_measured"] is False
    # The warm-up is left out of the slope: a lag that rises only during it has slope 0.
    warm = _lag(500.0).assign(lag=lambda f: f["lag"].clip(upper=1250.0))
    stats = flow.lag_flow(warm, gen_start_ms=0, gen_end_ms=20_000, warmup_s=5)
    assert stats["lag_slope_eps"] == pytest.approx(0.0) and stats["lag_slope_n"] == 15


def test_generator_flow_ratio():
    rate = pd.DataFrame({"second": [0, 1], "scheduled": [100, 100], "sent": [100, 98],
                         "behind_ms_max": [0.0, 3.0]})
    stats = flow.generator_flow(rate, 100)
    assert stats["achieved_ratio"] == pytest.approx(0.99)
    assert stats["generator_behind_ms_max"] == 3.0


# ------------------------------------------------------------------------ knee
def test_knee_is_the_point_of_highest_power():
    assert knee_index([10, 50, 100], [10, 20, 100]) == 1  # powers 1, 2.5, 1
    assert knee_index([10, 50], [float("nan"), 5]) == 1
    assert knee_index([], []) is None


# --------------------------------------------------------- t_h criterion/search
CRIT = Criterion(latency_bound_ms=1000, growth_max_fraction=0.01, rate_tolerance=0.01,
                 generator_behind_max_ms=500)


def _summary(**kw):
    base = {"offered_rate_eps": 10_000, "latency_above_delay_ms_p95": 500.0,
            "lag_measured": True, "lag_samples": 20, "lag_slope_eps": 0.0, "lag_final": 0.0,
            "watermark_lag_slope_ms_per_s": 0.0, "latency_trend_ms_per_s": 0.0,
            "latency_trend_firings": 5.0, "steady_windows_missing": 0.0,
            "achieved_ratio": 1.0, "generator_behind_ms_max": 2.0,
            "generator_blocked_ms": 0.0}
    return base | kw


@pytest.mark.parametrize(
    ("change", "ok", "failing"),
    [
        ({}, True, None),
        ({"latency_above_delay_ms_p95": 1001.0}, False, "latency_ok"),
        ({"latency_above_delay_ms_p95": float("nan")}, False, "latency_ok"),
        ({"lag_slope_eps": 500.0, "lag_final": 20_000.0}, False, "lag_ok"),
        # No OR with the final lag any more: 5 % of the rate per s fails however it ends.
        ({"lag_slope_eps": 500.0, "lag_final": 5_000.0}, False, "lag_ok"),
        ({"lag_slope_eps": 90.0}, True, None),
        ({"lag_slope_eps": float("nan"), "lag_final": float("nan")}, False, "lag_ok"),
        ({"watermark_lag_slope_ms_per_s": 30.0}, False, "watermark_ok"),
        ({"latency_trend_ms_per_s": 30.0}, False, "trend_ok"),
        ({"steady_windows_missing": 1.0}, False, "windows_ok"),
        ({"achieved_ratio": 0.985}, False, "generator_ok"),  # invalid, not a failure
    ],
)
def test_sustainability_criterion(change, ok, failing):
    verdict = sustainable(_summary(**change), CRIT)
    assert verdict["sustainable"] is ok
    if failing:
        assert verdict[failing] is False and verdict["reasons"]


# ------------------------------------------------------------- run directories
@pytest.fixture(scope="module")
def config():
    return load_config()


def test_summary_of_a_fabricated_contract_run(tmp_path, config):
    spec = make_spec(config, "flink", "spp", 20_000, duration_s=40)
    fabricate_run(tmp_path / "r", spec, config, latency_ms=400, delay_ms=2000, drop_windows=1,
                  duplicate_windows=1, lag_growth_eps=50_000)
    summary, windows, series = summarize_run(tmp_path / "r", config)
    assert summary["latency_above_delay_ms_p95"] == pytest.approx(400)
    assert summary["latency_from_window_end_ms_p50"] == pytest.approx(2400)
    assert summary["missing_windows"] == 1 and summary["duplicate_windows"] == 1
    assert summary["correct"] is False
    assert summary["criterion_sustainable"] is False  # the lag grows by 2.5 x the rate per s
    assert "criterion" not in summary["criterion_reasons"] and "lag" in summary[
        "criterion_reasons"]
    assert {"lag", "watermark_ms", "sent_eps"} <= set(series["metric"])
    assert (windows["status"] == "missing").sum() == 1


def test_summary_of_a1_uses_the_final_recount(tmp_path, config):
    spec = make_spec(config, "a1", "constant", 10_000, duration_s=30)
    fabricate_run(tmp_path / "a1", spec, config, drop_windows=2)
    summary, _, _ = summarize_run(tmp_path / "a1", config)
    # Two windows were missed at query time, but the table holds every event.
    assert summary["at_query_missing_windows"] == 2
    assert summary["correct"] is True and summary["correctness_source"].startswith("final")
    assert summary["query_latency_ms_mean"] == pytest.approx(20.0)


def test_search_reuses_completed_trials(tmp_path, config):
    from sdsbench.search import run_search

    executed = []

    def execute(cfg, spec, out):
        executed.append(spec["run_id"])
        run = fabricate_run(out, spec, cfg)
        return fabricate_staircase_backlog(run, spec, capacity_eps=35_000)

    cfg = {**config, "search": {**config["search"], "start_rates_eps": {"a3": 10_000},
                                "step_factor": 2.0, "steps": 4, "confirm_trials": 2}}
    first = run_search(cfg, "a3", "spp", tmp_path / "trials", execute=execute)
    again = run_search(cfg, "a3", "spp", tmp_path / "trials", execute=execute)
    # The staircase (10k, 20k, 40k, 80k) and two steady trials (20k passes, 40k fails).
    assert executed == ["a3-spp-staircase", "a3-spp-r20000", "a3-spp-r40000"]
    assert first["interval_eps"] == again["interval_eps"] == [20_000, 40_000]


# ------------------------------------------------------------------ the matrix
def test_run_ids_say_what_a_run_is(config):
    runs = expand_runs(config)
    assert "a2-constant-r100000" in runs
    assert "spark-spp-r20000-local1-sp1" in runs  # local[1]: no brackets in paths
    th = runs["flink-mmpp-th2x"]
    assert th["arrival"]["rate_eps"] is None
    resolved = resolve_threshold_rate(th, {"t_h_eps": 30_000})
    assert resolved["arrival"]["rate_eps"] == 60_000
    groups = run_groups(config)
    assert set(groups["parallelism"]) <= set(runs)


def test_a_typo_in_a_varied_setting_names_the_key():
    bad = {"experiments": {"groups": {"parallelism": [
        {"pipelines": ["spark"], "processes": ["spp"], "rates_eps": [1000],
         "vary": {"paralelism": [1, 2]}}]}}}
    with pytest.raises(ConfigError, match=r"experiments\.groups\.parallelism\.0\.vary\.paralelism"):
        expand_runs(load_config(overrides=bad))


def test_changing_a_pipeline_section_changes_only_its_runs_settings(config):
    changed = load_config(overrides={"spark": {"trigger_ms": 500}})
    before, after = expand_runs(config), expand_runs(changed)
    differs = {r for r in before
               if run_settings(config, before[r]) != run_settings(changed, after[r])}
    assert differs and all(r.startswith("spark-") for r in differs)


def test_a_sweep_point_equal_to_the_default_is_the_default_run(config):
    groups = run_groups(config)
    default = "spark-spp-r20000"
    assert config["spark"]["master"] == "local[2]"  # the quick sweep names local[2] too
    assert default in groups["parallelism"] and default in groups["event_time"]
    assert not any(r.startswith("spark-spp-r20000-local2") for r in expand_runs(config))


def test_a_resolved_threshold_spec_is_accepted_by_the_generator(config):
    from sdsbench.workload.generator import validate_spec

    spec = resolve_threshold_rate(expand_runs(config)["a3-mmpp-th2x"], {"t_h_eps": 10_000})
    run = validate_spec(spec, config)  # raises on an arrival key it does not know
    assert run.arrival.rate_eps == 20_000 and spec["rate_basis"] == "t_h"


def test_oracle_counts_windows_off_by_exactly_the_reported_late_drops():
    truth = _truth([(0, 0, 5, 2), (1, 0, 3, 3), (2, 0, 4, 4)])
    results = _results([(0, 0, 4, 2, 1), (1, 0, 2, 3, 2)])  # (2, 0): all its events late
    dropped = pd.DataFrame({"campaign_id": [0, 1, 2], "window_start_ms": [0, 0, 0],
                            "views_dropped": [1, 0, 4], "clicks_dropped": [0, 0, 4]})
    summary, per_window = oracle.check_results(truth, results, ["views", "clicks"],
                                               dropped=dropped)
    assert list(per_window["status"]) == ["late_dropped", "count_error", "late_dropped"]
    assert summary["late_dropped_windows"] == 2
    assert summary["correct"] is False and summary["correct_where_not_dropped"] is False
    results.loc[1, "views"] = 3
    summary, _ = oracle.check_results(truth, results, ["views", "clicks"], dropped=dropped)
    assert summary["correct_where_not_dropped"] is True


def test_a_run_that_emitted_nothing_is_all_missing_not_a_crash(tmp_path, config):
    spec = make_spec(config, "flink", "spp", 20_000, duration_s=30)
    run = fabricate_run(tmp_path / "r", spec, config, delay_ms=2000)
    header = (run / "results.csv").read_text().splitlines()[0]
    (run / "results.csv").write_text(header + "\n")
    summary, _, _ = summarize_run(run, config)
    assert summary["result_windows"] == 0 and summary["missing_windows"] > 0
    assert math.isnan(summary["latency_above_delay_ms_p95"])
    assert summary["criterion_sustainable"] is False
