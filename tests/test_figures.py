"""The figures draw sample size and spread (issue 13): a small fabricated profile (TEST-ONLY
run directories, see tests/synthetic_runs.py) with 3 repetitions of the event-time and
parallelism runs, summarized by the real analysis; each figure is drawn from the
summaries the way scripts/plot.py draws it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from synthetic_runs import fabricate_run

from sdsbench.analysis.summarize import write_run_summary
from sdsbench.analysis.tables import build_table
from sdsbench.config import load_config
from sdsbench.experiments import expand_runs, resolve_threshold_rate, run_groups, searches
from sdsbench.plots import common
from sdsbench.plots.common import FigureContext, by_configuration, figure_inputs, save

REPS = 3
PROFILE = {
    "profile": "figures",
    "run": {"duration_s": 40},
    "experiments": {
        "warmup_s": 0, "repetitions": 1, "generator_bench": {"enabled": False},
        "groups": {
            "baseline": [{"pipelines": ["a1", "a2"], "processes": ["constant"],
                          "rates_eps": [10000]}],
            "event_time": [{"pipelines": ["a3", "spark", "flink"], "processes": ["spp"],
                            "rates_eps": [20000], "repetitions": REPS}],
            "parallelism": [
                {"pipelines": ["spark"], "processes": ["spp"], "rates_eps": [20000],
                 "repetitions": REPS,
                 "vary": [{"master": "local[1]", "shuffle_partitions": 1},
                          {"master": "local[2]", "shuffle_partitions": 2}]},
                {"pipelines": ["flink"], "processes": ["spp"], "rates_eps": [20000],
                 "repetitions": REPS, "vary": {"parallelism": [1, 2]}}],
            # The default delay is the event_time run: its 3 repetitions; 500 ms once.
            "watermark_delay": [{"pipelines": ["spark"], "processes": ["spp"],
                                 "rates_eps": [20000],
                                 "vary": {"watermark_delay_ms": [500, 2000]}}],
        },
        "at_threshold": {"pipelines": ["flink"], "process": "mmpp", "search_process": "spp",
                         "multiples": [1, 2], "repetitions": 2},
        "faults": {"blocks": []},
    },
    "search": {"pipelines": ["flink"], "processes": ["spp"], "repetitions": REPS,
               "start_rate_eps": 20000, "start_rates_eps": {"flink": 20000},
               "step_factor": 1.2, "step_s": 5, "steps": 6, "confirm_trials": 2},
}
#: A pass-through ceiling (sdsbench.ceiling's summary.json, engines part).
CEILING = {"flink": {"raw": {"eps_median": 900e3, "eps_min": 800e3, "eps_max": 950e3},
                     "parse": {"eps_median": 400e3, "eps_min": 380e3, "eps_max": 450e3}}}
#: Latency above the delay of every window of repetition k (fabricate_run's latency_ms).
LATENCY_BY_REP = {1: 300.0, 2: 500.0, 3: 350.0}
COMPARING = ("a1_a2_throughput_latency", "parallelism", "watermark_delay", "e2e_latency_all",
             "latency_vs_rate", "cpu_cost")
ONE_RUN_EACH = ("event_time_spp", "event_time_mmpp", "latency_over_time_a1_a2",
                "latency_over_time_event_time", "mmpp_latency_over_time")


# ------------------------------------------------------------ the fabricated profile
def _step(i: int, rate: float, verdict: str, backlog: float) -> dict:
    return {"step": i, "start_s": 5.0 * i, "end_s": 5.0 * (i + 1), "rate_eps": rate,
            "verdict": verdict, "generator": "on schedule",
            "window_latency_above_delay_ms_max": None,
            "watermark_backlog_ms_max": backlog, "input_backlog_ms_max": backlog / 2}


#: Per repetition: the verdict of each of the 6 steps (rates 20k x 1.2^i).
STAIRS = {
    1: ["pass", "pass", "pass", "fail", "fail", "fail"],      # t_h 28.8k
    2: ["pass", "pass", "pass", "pass", "fail", "fail"],      # t_h 34.56k
    3: ["pass", "pass", "invalid", "invalid", "invalid", "invalid"],  # t_h 24k, lower bound
}


def _search_summary(sid: str, pipeline: str, process: str) -> dict:
    """A combined, re-analysed search (summary/search/<sid>.json) of 3 staircase
    repetitions and two steady trials of repetition 1, written directly (the search
    functions have their own tests)."""
    rates = [20000 * 1.2 ** i for i in range(6)]
    trials, per_rep = [], {}
    for rep, verdicts in STAIRS.items():
        steps = [_step(i, r, v, 40.0 if v == "pass" else 1500.0 * (i - 2) if v == "fail"
                       else 80.0) for i, (r, v) in enumerate(zip(rates, verdicts, strict=True))]
        passes = [s["rate_eps"] for s in steps if s["verdict"] == "pass"]
        fails = [s["rate_eps"] for s in steps if s["verdict"] == "fail"]
        per_rep[rep] = (max(passes), min(fails) if fails else None)
        trials.append({"rate_eps": 20000.0, "kind": "staircase", "verdict": "region",
                       "sustainable": None, "reasons": "", "repetition": rep, "steps": steps,
                       "run_id": f"{sid}-stair-rep{rep}", "verdict_now": "region",
                       "sustainable_now": None, "reasons_now": "", "steps_now": steps,
                       "row": {"latency_from_last_insertion_ms_p95": 9999.0}})
    lo, hi = per_rep[1]
    for rate, verdict, lag in ((lo, "pass", 2100.0), (hi, "fail", 6000.0)):
        trials.append({"rate_eps": rate, "kind": "steady", "verdict": verdict,
                       "sustainable": verdict == "pass", "reasons": "", "repetition": 1,
                       "run_id": f"{sid}-r{int(rate)}", "verdict_now": verdict,
                       "sustainable_now": verdict == "pass", "reasons_now": "",
                       "row": {"watermark_lag_ms_max": lag, "configured_delay_ms": 2000.0,
                               "latency_from_last_insertion_ms_p95": 2500.0,
                               "latency_above_delay_ms_p95": lag - 2000.0}})
    values = [per_rep[r][0] for r in sorted(per_rep)]
    median_rep = sorted(per_rep, key=lambda r: per_rep[r][0])[1]
    th, fail = per_rep[median_rep]
    return {"search_id": sid, "pipeline": pipeline, "process": process,
            "trial_duration_s": 40.0, "t_h_eps": th, "t_h_is_lower_bound": fail is None,
            "lowest_failing_rate_eps": fail, "lowest_rate_tried_eps": 20000.0,
            "interval_eps": [th, fail], "relative_gap": (fail - th) / th if fail else None,
            "t_h_values_eps": values, "t_h_min_eps": min(values), "t_h_max_eps": max(values),
            "repetitions": REPS, "stop_reason": "; ".join(f"rep {r}: fabricated"
                                                         for r in per_rep),
            "trials": trials, "criterion": {}, "settings": {}, "verdicts_changed": [],
            "provenance": None}


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> tuple[FigureContext, dict]:
    """Summaries (runs, windows, series, search, tables) of the fabricated profile."""
    tmp = tmp_path_factory.mktemp("figures")
    config = load_config(overrides=PROFILE)
    summary = tmp / "summary"
    (summary / "search").mkdir(parents=True)
    results = {}
    for sid, s in searches(config).items():
        results[sid] = _search_summary(sid, s["pipeline"], s["process"])
        (summary / "search" / f"{sid}.json").write_text(json.dumps(results[sid]))
    for run_id, spec in expand_runs(config).items():
        if spec.get("rate_of"):
            spec = resolve_threshold_rate(spec, results[spec["rate_of"]["search"]])
        rep = int(spec["repetition"])
        run = fabricate_run(tmp / "raw" / run_id, spec, config, seed=rep,
                            latency_ms=LATENCY_BY_REP[rep])
        write_run_summary(run, config, summary / "runs" / f"{run_id}.json",
                          summary / "windows" / f"{run_id}.csv",
                          summary / "series" / f"{run_id}.csv")
    for table in ("runs", "stress", "headline", "cpu"):
        build_table(table, summary, config).to_csv(summary / f"{table}.csv", index=False)
    ceiling = tmp / "bench" / "ceiling"
    ceiling.mkdir(parents=True)
    (ceiling / "summary.json").write_text(json.dumps({"events": 1000, "exact": True,
                                                      "engines": CEILING}))
    return FigureContext.from_config(summary, config), config


def _draw(ctx: FigureContext, name: str, tmp_path: Path):
    """Draw the figure as scripts/plot.py does; return the figure (saved, still open)."""
    import importlib

    fig = importlib.import_module(f"sdsbench.plots.{name}").draw(ctx)
    for ax in fig.axes:  # plot.py saves it: rendering must work
        ax.figure.canvas.draw()
    fig.savefig(tmp_path / f"{name}.png", dpi=50)
    return fig


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _bar_segments(ax) -> int:
    """Vertical error bars drawn on ``ax`` (one segment per configuration and series)."""
    n = 0
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            n += len(c.lines[2][-1].get_segments()) if c.lines[2] else 0
    return n


# ------------------------------------------------------------ the aggregation helper
def test_by_configuration_median_min_max_and_pooled_firings():
    rows = pd.DataFrame([
        {"run_id": "x-rep3", "base_run_id": "x", "repetition": 3, "pipeline": "flink",
         "parallelism": 2, "m_p95": 30.0, "m_firings": 4.0, "other": 1.0},
        {"run_id": "x", "base_run_id": "x", "repetition": 1, "pipeline": "flink",
         "parallelism": 2, "m_p95": 10.0, "m_firings": 3.0, "other": 2.0},
        {"run_id": "x-rep2", "base_run_id": "x", "repetition": 2, "pipeline": "flink",
         "parallelism": 2, "m_p95": 50.0, "m_firings": 2.0, "other": math.nan},
        {"run_id": "y", "base_run_id": "y", "repetition": 1, "pipeline": "spark",
         "parallelism": 1, "m_p95": math.nan, "m_firings": 0.0, "other": 7.0},
        # No base_run_id / repetition (an older summary): its own configuration.
        {"run_id": "z", "pipeline": "a3", "parallelism": 1, "m_p95": 5.0, "m_firings": 1.0},
    ])
    rows.loc[4, ["base_run_id", "repetition"]] = [math.nan, math.nan]
    conf = by_configuration(rows, ["m_p95", "other", "missing_metric"]).set_index("base_run_id")
    x = conf.loc["x"]
    assert x["run_id"] == "x" and x["n_runs"] == 3  # the first repetition's settings
    assert x["run_ids"] == ("x", "x-rep2", "x-rep3")
    assert (x["m_p95_median"], x["m_p95_min"], x["m_p95_max"]) == (30.0, 10.0, 50.0)
    assert x["m_p95_values"] == (10.0, 50.0, 30.0)
    assert x["m_p95_n"] == 3 and x["m_p95_firings"] == 9.0  # pooled: 3 + 2 + 4
    assert (x["other_median"], x["other_n"]) == (1.5, 2)  # a missing value is left out
    assert math.isnan(x["other_firings"])  # not a latency statistic: no firings
    y = conf.loc["y"]
    assert y["m_p95_n"] == 0 and math.isnan(y["m_p95_median"]) and y["m_p95_firings"] == 0
    assert conf.loc["z", "n_runs"] == 1 and conf.loc["z", "m_p95_median"] == 5.0
    assert math.isnan(conf.loc["z", "missing_metric_median"])
    assert common.sample_text(3, 9.0) == "n = 3 runs, 9 firings"
    assert common.sample_text(2, 5.0, of=3) == "n = 2 of 3 runs, 5 firings"
    assert common.sample_text(1, math.nan) == "n = 1 run"


def test_aggregation_of_real_summaries_matches_the_headline_table(profile):
    ctx, _ = profile
    rows = ctx.configuration_rows("parallelism")
    metric = "latency_above_delay_ms_p95"
    conf = by_configuration(rows, [metric]).set_index("base_run_id")
    assert len(conf) == 4 and set(conf["n_runs"]) == {REPS}
    lat = sorted(LATENCY_BY_REP.values())
    headline = ctx.table("headline").set_index("subject")
    for base, c in conf.iterrows():
        reps = rows[rows["base_run_id"] == base]
        assert c["n_runs"] == len(reps) == REPS
        assert c[f"{metric}_median"] == pytest.approx(lat[1])
        assert (c[f"{metric}_min"], c[f"{metric}_max"]) == pytest.approx((lat[0], lat[-1]))
        firings = reps["latency_above_delay_ms_firings"].sum()
        assert firings > REPS and c[f"{metric}_firings"] == firings
        h = headline.loc[base]
        assert (h["median"], h["lo"], h["hi"], h["firings"], h["n_repetitions"]) \
            == pytest.approx((c[f"{metric}_median"], c[f"{metric}_min"], c[f"{metric}_max"],
                              c[f"{metric}_firings"], REPS))
    # The sweep's default point is the event_time run: all its repetitions count.
    wm = by_configuration(ctx.configuration_rows("watermark_delay"), [metric])
    assert dict(zip(wm["base_run_id"], wm["n_runs"], strict=True)) == {
        "spark-spp-r20000-wm500": 1, "spark-spp-r20000": REPS}


# ------------------------------------------------------------ which runs a figure reads
def test_one_run_figures_read_repetition_one_and_comparisons_the_tables(profile):
    ctx, config = profile
    runs, groups = expand_runs(config), run_groups(config)
    assert "flink-spp-r20000-rep3" in groups["event_time"]
    assert "flink-mmpp-th2x-rep2" in groups["at_threshold"]
    inputs = figure_inputs("S", runs, groups, searches(config))
    for name in ONE_RUN_EACH:
        assert inputs[name], name
        assert not [f for f in inputs[name] if "-rep" in f], name
    assert inputs["event_time_mmpp"] == [f"S/{k}/flink-mmpp-th1x.{e}" for k, e in
                                         (("runs", "json"), ("windows", "csv"),
                                          ("series", "csv"))]
    assert {f.split("/")[-1] for f in inputs["mmpp_latency_over_time"]} >= {
        "flink-mmpp-th1x.json", "flink-mmpp-th2x.json"}
    for name in ("parallelism", "watermark_delay", "a1_a2_throughput_latency"):
        assert inputs[name] == ["S/runs.csv"]
    assert inputs["latency_vs_rate"] == ["S/search/flink-spp.json"]
    assert ctx.first_repetitions(groups["event_time"]) == [
        "a3-spp-r20000", "spark-spp-r20000", "flink-spp-r20000"]
    assert ctx.which_run("flink-spp-r20000") == "run 1 of 3"
    assert ctx.which_run("a1-constant-r10000") == ""


# ------------------------------------------------------------ every figure renders
@pytest.mark.parametrize("name", COMPARING + ONE_RUN_EACH)
def test_each_figure_renders_from_the_summaries(profile, name, tmp_path):
    ctx, _ = profile
    fig = _draw(ctx, name, tmp_path)
    assert (tmp_path / f"{name}.png").stat().st_size > 3000
    assert not any(t.startswith("profile ") for t in _texts(fig))  # not common.empty_figure
    plt.close(fig)


def test_plot_script_draws_a_figure(profile, tmp_path):
    ctx, config = profile
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import plot

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(PROFILE))  # JSON is YAML
    png = tmp_path / "parallelism.png"
    assert plot.main(["parallelism", "--config", str(Path(__file__).resolve().parent.parent
                                                    / "config" / "config.yaml"),
                      "--config", str(cfg), "--summary-dir", str(ctx.summary_dir),
                      "--png", str(png)]) == 0
    assert png.stat().st_size > 5000


def test_parallelism_draws_one_bar_and_one_sample_size_per_configuration(profile, tmp_path):
    ctx, _ = profile
    fig = _draw(ctx, "parallelism", tmp_path)
    ax_lat, ax_lag, ax_cpu = fig.axes[:3]
    configurations = 4  # spark local[1], local[2]; flink 1, 2
    assert _bar_segments(ax_lat) == 2 * configurations  # p95 and p50
    assert _bar_segments(ax_lag) == _bar_segments(ax_cpu) == configurations
    rows = ctx.configuration_rows("parallelism")
    notes = [t for t in _texts(fig) if t.startswith("n = ")]
    expected = sorted(f"n = {REPS} runs, {int(part['latency_above_delay_ms_firings'].sum())}"
                      " firings" for _, part in rows.groupby("base_run_id"))
    assert sorted(notes) == expected
    # The median is drawn where the headline table has it, with its min-max bar.
    lat = sorted(LATENCY_BY_REP.values())
    p95 = next(c for c in ax_lat.containers if isinstance(c, ErrorbarContainer)
               and "p95" in str(c.get_label()))
    assert list(p95.lines[0].get_ydata()) == pytest.approx([lat[1]] * 2)
    (segments,) = [p95.lines[2][-1].get_segments()]
    assert [v for s in segments for v in (s[0][1], s[1][1])] == pytest.approx(
        [lat[0], lat[-1]] * 2)
    assert "median of 3 runs, bars: min-max" in ax_lat.get_ylabel()
    # Every repetition as a small point: 3 per configuration and statistic.
    small = [ln for ln in ax_lat.get_lines() if ln.get_marker() == "."]
    assert sum(len(ln.get_xdata()) for ln in small) == 2 * configurations * REPS
    plt.close(fig)


def test_watermark_delay_and_e2e_state_their_sample_base(profile, tmp_path):
    ctx, _ = profile
    fig = _draw(ctx, "watermark_delay", tmp_path)
    notes = sorted(t for t in _texts(fig) if t.startswith("n = "))
    assert [n.split(",")[0] for n in notes] == ["n = 1 run", "n = 3 runs"]
    assert "median of 1-3 runs" in fig.axes[0].get_ylabel()
    plt.close(fig)
    fig = _draw(ctx, "e2e_latency_all", tmp_path)
    notes = [t for t in _texts(fig) if t.startswith("n = ")]
    # baseline 2, event_time 3, parallelism 2 more, watermark 1 more, at t_h 2
    assert len(notes) == 10
    assert sum(n.startswith("n = 2 runs") for n in notes) == 2  # the MMPP runs at k x t_h
    ax = fig.axes[0]
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert [len(ln.get_xdata()) for ln in crosses] == [2]  # steady trials, no staircase
    plt.close(fig)


def test_latency_vs_rate_draws_every_staircase_step_and_the_spread_of_t_h(profile, tmp_path):
    ctx, _ = profile
    fig = _draw(ctx, "latency_vs_rate", tmp_path)
    ax = fig.axes[0]
    s = ctx.search("flink-spp")
    marks = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 1]
    small = [m for m in marks if m.get_markersize() == 5]
    large = [m for m in marks if m.get_markersize() == 11]
    assert len(small) == sum(len(v) for v in STAIRS.values())  # every step of every rep
    assert len(large) == 2  # the steady trials
    by_marker = {m: sum(1 for ln in small if ln.get_marker() == m) for m in ("o", "X", "s")}
    assert by_marker == {"o": 9, "X": 5, "s": 4}
    # t_h: the median line, min-max band and the interval's bracket.
    assert any(list(ln.get_xdata()) == [s["t_h_eps"] / 1000] * 2 for ln in ax.get_lines())
    band = [p for p in ax.patches if p.get_alpha() == pytest.approx(0.15)]
    assert len(band) == 1
    xs = [band[0].get_x(), band[0].get_x() + band[0].get_width()]
    assert (min(xs), max(xs)) == pytest.approx((s["t_h_min_eps"] / 1000,
                                               s["t_h_max_eps"] / 1000))
    text = " ".join(_texts(fig))
    assert f"t_h = {s['t_h_eps'] / 1000:,.3g}k" in text
    assert "median of 3 of 3 repetitions" in text and "interval [" in text
    assert "3 staircases, 2 steady trials" in ax.get_title()
    plt.close(fig)


def test_a_figure_of_one_run_each_shows_repetition_one(profile, tmp_path):
    ctx, _ = profile
    fig = _draw(ctx, "latency_over_time_event_time", tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 and all("run 1 of 3" in t for t in titles)
    assert all("steady firings" in t for t in titles)
    plt.close(fig)
    fig = _draw(ctx, "mmpp_latency_over_time", tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 and all("run 1 of 2" in t for t in titles)
    assert any("MMPP 2x t_h" in t for t in titles)
    plt.close(fig)


def test_save_writes_png_and_pdf(profile, tmp_path):
    ctx, _ = profile
    import importlib

    fig = importlib.import_module("sdsbench.plots.latency_vs_rate").draw(ctx)
    save(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 5000 and (tmp_path / "f.pdf").exists()


def test_cpu_cost_draws_the_ceiling_beside_t_h(profile, tmp_path):
    ctx, _ = profile
    fig = _draw(ctx, "cpu_cost", tmp_path)
    ax = fig.axes[3]
    assert ax.get_title() == "Pass-through ceiling and t_h"
    heights = sorted(round(p.get_height()) for p in ax.patches)
    assert heights == [400_000, 900_000]
    t_h = ctx.search("flink-spp")["t_h_eps"]
    lower = ctx.search("flink-spp")["t_h_is_lower_bound"]
    markers = [line for line in ax.lines if line.get_marker() == ("^" if lower else "D")]
    assert [float(m.get_ydata()[0]) for m in markers] == [t_h]
    plt.close(fig)
