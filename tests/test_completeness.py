"""A1/A2: completeness of the answers at query time, and the knee rule that counts only
points whose answers were complete (issue 13, item 5). Fabricated data only, no servers.
"""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from synthetic_runs import fabricate_run

from sdsbench.analysis import knee, oracle
from sdsbench.analysis.summarize import summarize_run
from sdsbench.config import load_config
from sdsbench.experiments import make_spec
from sdsbench.plots import a1_a2_throughput_latency
from sdsbench.plots.common import FigureContext
from sdsbench.report.paper_context import _baseline

W = 10_000


def _truth(rows):
    frame = pd.DataFrame(rows, columns=["campaign_id", "window_start_ms", "views", "clicks"])
    for c in ("purchases", "views_delayed", "clicks_delayed", "purchases_delayed"):
        frame[c] = 0
    return frame


def _answers(rows):
    return pd.DataFrame(rows, columns=["campaign_id", "window_start_ms", "clicks",
                                       "query_end_ms"])


def _at_query(truth, answers):
    _, per_window = oracle.check_results(truth, answers, ["clicks"], order="query_end_ms")
    return per_window


# ------------------------------------------------------------------ completeness
def test_a_window_with_half_its_events_at_query_time_is_half_complete():
    truth = _truth([(0, W, 40, 10)])
    per = oracle.completeness(_at_query(truth, _answers([(0, W, 5, 2 * W + 1000)])),
                              ["clicks"])
    assert per["completeness"].tolist() == [0.5]
    assert per["truth_events"].tolist() == [10] and per["present_events"].tolist() == [5]


def test_completeness_caps_surplus_counts_a_missing_answer_as_zero_and_skips_empty():
    truth = _truth([(0, W, 40, 10), (1, W, 40, 4), (2, W, 40, 0)])
    answers = _answers([(0, W, 12, 1), (2, W, 0, 1)])  # campaign 1 not in the answer
    per = oracle.completeness(_at_query(truth, answers), ["clicks"]).set_index("campaign_id")
    assert per.loc[0, "completeness"] == 1.0  # a surplus does not make up for anything
    assert per.loc[1, "completeness"] == 0.0
    assert 2 not in per.index or math.isnan(per.loc[2, "completeness"])


def test_run_keys_pool_the_campaigns_of_each_steady_query():
    truth = _truth([(0, W, 1, 10), (1, W, 1, 10), (0, 2 * W, 1, 10), (1, 2 * W, 1, 10),
                    (0, 0, 1, 10)])
    answers = _answers([(0, W, 10, 1), (1, W, 10, 1),      # complete
                        (0, 2 * W, 5, 2), (1, 2 * W, 5, 2),  # half
                        (0, 0, 0, 3)])                      # not steady
    windows = truth[["campaign_id", "window_start_ms"]].copy()
    windows["steady"] = windows["window_start_ms"] > 0
    out, keys = oracle.at_query_completeness(windows, _at_query(truth, answers), ["clicks"])
    assert keys["at_query_completeness_windows"] == 2
    assert keys["at_query_completeness_mean"] == pytest.approx(0.75)
    assert keys["at_query_completeness_min"] == pytest.approx(0.5)
    assert keys["at_query_complete_windows"] == 1
    assert keys["at_query_complete_share"] == pytest.approx(0.5)
    assert len(out) == len(windows)
    got = out.set_index(["campaign_id", "window_start_ms"])["at_query_completeness"]
    assert got[(0, 2 * W)] == 0.5 and got[(0, 0)] == 0.0


@pytest.fixture(scope="module")
def config():
    return load_config()


def test_summary_of_an_a2_run_whose_queries_saw_half_of_each_window(tmp_path, config):
    spec = make_spec(config, "a2", "constant", 100_000, duration_s=40)
    run = fabricate_run(tmp_path / "a2", spec, config)
    # Every event counted twice in the truth and in the final recount: each query's
    # answer holds exactly half of its window's clicks; the table is complete afterwards.
    for name in ("generator/truth.csv", "final_counts.csv"):
        frame = pd.read_csv(run / name)
        frame["clicks"] *= 2
        frame.to_csv(run / name, index=False)
    summary, windows, _ = summarize_run(run, config)
    assert summary["correct"] is True  # the recount after the run is complete
    assert summary["at_query_completeness_windows"] >= 2
    assert summary["at_query_completeness_mean"] == pytest.approx(0.5)
    assert summary["at_query_completeness_min"] == pytest.approx(0.5)
    assert summary["at_query_complete_share"] == 0.0
    assert summary["at_query_complete_windows"] == 0
    assert summary["at_query_deficit_events"] > 0  # the existing at-query check agrees
    assert (windows["at_query_completeness"] == 0.5).all()


def test_complete_answers_at_query_time_have_completeness_one(tmp_path, config):
    spec = make_spec(config, "a1", "constant", 10_000, duration_s=30)
    summary, windows, _ = summarize_run(fabricate_run(tmp_path / "a1", spec, config), config)
    assert summary["at_query_completeness_mean"] == 1.0
    assert summary["at_query_complete_share"] == 1.0
    assert (windows.loc[windows["steady"], "at_query_completeness"] == 1.0).all()


# ------------------------------------------------------------------ the knee rule
RATES = [10_000, 50_000, 100_000]
LATENCY = [20.0, 25.0, 2.0]  # 100k: fast because its queries counted little
SHARE = [1.0, 1.0, 0.3]


def test_the_knee_excludes_an_incomplete_fast_point():
    assert knee.knee_index(RATES, LATENCY) == 2  # without the filter: the wrong point
    assert knee.knee_index(RATES, LATENCY, SHARE) == 1
    excluded = knee.knee_exclusions(RATES, LATENCY, SHARE)
    assert list(excluded) == [2]
    assert "30 per cent" in excluded[2] and "below 95 per cent" in excluded[2]
    # Unknown completeness does not qualify a point either; a stricter threshold may
    # leave no point at all.
    assert knee.knee_index(RATES, LATENCY, [1.0, None, float("nan")]) == 0
    assert "not measured" in knee.knee_exclusions(RATES, LATENCY, [1.0, None, 1.0])[1]
    assert knee.knee_index(RATES, LATENCY, [0.9, 0.9, 0.3]) is None
    assert knee.knee_index(RATES, LATENCY, [0.9, 0.9, 0.3], min_complete_share=0.5) == 1


def test_the_knee_rule_text_states_the_thresholds():
    assert f"{100 * knee.MIN_COMPLETE_SHARE:.0f} per cent" in knee.KNEE_RULE
    assert f"{100 * oracle.COMPLETE_AT:g} per cent" in knee.KNEE_RULE
    doc = knee.knee_index.__doc__.replace("\n", " ")
    assert "oracle.COMPLETE_AT" in doc  # the threshold is named, not restated
    assert f"({knee.MIN_COMPLETE_SHARE:g})" in doc


def _rows():
    rows = []
    for pipeline in ("a1", "a2"):
        for rate, lat, share in zip(RATES, LATENCY, SHARE, strict=True):
            if pipeline == "a1":
                lat, share = lat + 10, 1.0
            rows.append({"run_id": f"{pipeline}-constant-r{rate}", "pipeline": pipeline,
                         "offered_rate_eps": float(rate), "achieved_rate_eps": float(rate),
                         "achieved_ratio": 1.0, "query_latency_ms_mean": lat,
                         "at_query_complete_share": share,
                         "at_query_completeness_mean": share * 1.01 if share < 1 else 1.0})
    return rows


def test_the_paper_knee_is_complete_and_the_excluded_point_is_named():
    rows = _rows()
    base = _baseline(rows, [r["run_id"] for r in rows], 0.02)
    assert base["knees"]["a2"]["run_id"] == "a2-constant-r50000"
    assert base["knees"]["a1"]["run_id"] == "a1-constant-r100000"
    excluded = base["knee_excluded"]["a2"]
    assert [e["run"]["run_id"] for e in excluded] == ["a2-constant-r100000"]
    assert "complete at query time" in excluded[0]["reason"]
    assert base["knee_excluded"]["a1"] == []
    assert [r["run_id"] for r in base["incomplete_at_query"]] == ["a2-constant-r100000"]
    assert base["min_complete_share"] == knee.MIN_COMPLETE_SHARE


def test_the_figure_draws_the_incomplete_point_hollow_and_no_star_on_it(tmp_path):
    rows = pd.DataFrame(_rows())
    rows.to_csv(tmp_path / "runs.csv", index=False)
    ctx = FigureContext(tmp_path, {"profile": "test"}, {}, {"baseline": list(rows["run_id"])},
                        {})
    fig = a1_a2_throughput_latency.draw(ctx)
    ax = fig.axes[0]
    a2 = to_rgba(a1_a2_throughput_latency.color("a2"))
    hollow, stars = [], []
    for line in ax.get_lines():
        xs, ys = list(line.get_xdata()), list(line.get_ydata())
        if line.get_marker() == "o" and line.get_markerfacecolor() == "white" and xs:
            hollow += list(zip(xs, ys, strict=True))
        if line.get_marker() == "*" and to_rgba(line.get_color()) == a2:
            stars += list(zip(xs, ys, strict=True))
    assert hollow == [(100.0, 2.0)]
    assert stars == [(50.0, 25.0)]
    assert len(fig.axes) == 2  # the completeness panel
    plt.close(fig)


# ------------------------------------------------------------------ the paper
BASELINE_ONLY = {
    "profile": "completeness", "run": {"duration_s": 40},
    "experiments": {
        "warmup_s": 0, "repetitions": 1, "generator_bench": {"enabled": False},
        "groups": {"baseline": [{"pipelines": ["a1", "a2"], "processes": ["constant"],
                                 "rates_eps": RATES}],
                   "event_time": [], "parallelism": [], "watermark_delay": []},
        "at_threshold": {"pipelines": [], "process": "mmpp", "search_process": "spp",
                         "multiples": [1]},
        "faults": {"blocks": []},
    },
    "search": {"pipelines": [], "processes": []},
}


def test_the_paper_shows_completeness_at_query_time_and_the_excluded_point(tmp_path):
    from sdsbench.analysis.summarize import write_run_summary
    from sdsbench.analysis.tables import build_table
    from sdsbench.experiments import expand_runs
    from sdsbench.plots.common import save
    from sdsbench.report.paper_context import build_context
    from sdsbench.report.paper_format import Latex, Markdown, render

    config = load_config(overrides=BASELINE_ONLY)
    summary_dir = tmp_path / "summary"
    for run_id, spec in expand_runs(config).items():
        run = fabricate_run(tmp_path / "raw" / run_id, spec, config)
        if run_id == "a2-constant-r100000":
            # The consumer far behind: each query counts about 30 per cent of its window,
            # and fast.
            for name, column in (("results.csv", "clicks"),
                                 ("metrics/queries.csv", None)):
                frame = pd.read_csv(run / name)
                if column:
                    frame[column] = (frame[column] * 0.3).round().astype(int)
                frame["query_latency_ms"] = 2.0
                frame.to_csv(run / name, index=False)
        write_run_summary(run, config, summary_dir / "runs" / f"{run_id}.json",
                          summary_dir / "windows" / f"{run_id}.csv",
                          summary_dir / "series" / f"{run_id}.csv")
    for table in ("runs", "correctness"):
        build_table(table, summary_dir, config).to_csv(summary_dir / f"{table}.csv",
                                                       index=False)
    figures = tmp_path / "figures"
    ctx = FigureContext.from_config(summary_dir, config)
    save(a1_a2_throughput_latency.draw(ctx), figures / "a1_a2_throughput_latency.png")
    out = tmp_path / "paper"
    out.mkdir()
    context = build_context(summary_dir, figures, out, config)
    assert context["baseline"]["knees"]["a2"]["run_id"] != "a2-constant-r100000"
    templates = Path(__file__).resolve().parent.parent / "paper" / "templates"
    md = render(templates, "paper.md.j2", Markdown(), context)
    render(templates, "paper.tex.j2", Latex(), context)
    assert "| complete at query time |" in md
    assert "Not a knee candidate: A2 Kafka + PostgreSQL at 100,000 events/s offered" in md
    assert "answers complete at query time in 0 per cent of its steady-state windows" in md
    assert "the answers at query time were incomplete for A2 Kafka + PostgreSQL at 100,000" in md
