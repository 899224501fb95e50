"""Latency of the answer that counts (issue 13 item 6), on fabricated frames and runs.

- A window's latency is taken at the first record equal to its final answer (the record
  the oracle judges), not at its first, possibly partial, record.
- Flink exactly-once results become visible when their transaction commits, at the
  completion of the first checkpoint completed at or after their append time; an
  at-least-once run keeps the broker's append time.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import fabricate_run

from sdsbench.analysis import engine_metrics, latency, oracle
from sdsbench.analysis.rundata import RunData, load_run
from sdsbench.analysis.summarize import _results_view, summarize_run
from sdsbench.config import load_config
from sdsbench.experiments import make_spec

W = 10_000


def _results(rows):
    """(campaign, window start, views, clicks, append time, offset) rows."""
    frame = pd.DataFrame(rows, columns=["campaign_id", "window_start_ms", "views", "clicks",
                                        "append_time_ms", "offset"])
    frame["max_insertion_ms"] = frame["window_start_ms"] + W - 10
    return frame


# ------------------------------------------------------------- the final answer
def test_a_partial_first_record_is_not_the_answer_that_counts():
    results = _results([
        (0, 0, 5, 1, 12_000, 0),   # first firing: partial
        (0, 0, 8, 2, 12_700, 1),   # update: the final answer
        (1, 0, 7, 3, 12_100, 2),   # a window emitted once
    ])
    windows = latency.window_latencies(results, "append_time_ms", delay_ms=2_000)
    w = windows.set_index("campaign_id")
    assert w.loc[0, "visible_ms"] == 12_700
    assert w.loc[0, "first_visible_ms"] == 12_000
    assert w.loc[0, "records_before_final"] == 1
    assert w.loc[0, "latency_from_window_end_ms"] == 2_700
    assert w.loc[0, "latency_above_delay_ms"] == 700
    assert w.loc[0, "latency_from_last_insertion_ms"] == 2_710
    # Emitted once: the first record is the final answer.
    assert w.loc[1, "visible_ms"] == w.loc[1, "first_visible_ms"] == 12_100
    assert w.loc[1, "records_before_final"] == 0
    # The columns kept, plus the two new ones.
    assert {"campaign_id", "window_start_ms", "window_end_ms", "visible_ms", "max_insertion_ms",
            *latency.LATENCY_COLUMNS, "first_visible_ms", "records_before_final"} <= set(
        windows.columns)


def test_the_first_of_equal_final_records_counts_and_output_order_is_the_offset():
    # Rows out of order; output order is the offset. Duplicates of the final answer (a
    # restart's replay, an identical re-emission) do not move its visible time.
    results = _results([
        (0, 0, 8, 2, 13_000, 2),   # duplicate of the final answer
        (0, 0, 8, 2, 12_500, 1),   # the final answer, first seen
        (0, 0, 6, 2, 12_000, 0),   # partial (views only differ)
    ])
    w = latency.window_latencies(results, "append_time_ms", delay_ms=2_000).iloc[0]
    assert (w["visible_ms"], w["first_visible_ms"], w["records_before_final"]) == (
        12_500, 12_000, 1)


def test_the_final_answer_is_the_record_the_oracle_judges():
    results = _results([
        (0, 0, 5, 1, 12_000, 0), (0, 0, 8, 2, 12_700, 1), (0, 0, 9, 2, 15_000, 2),
        (1, 0, 4, 4, 12_050, 3), (1, 0, 4, 4, 12_900, 4),
    ])
    final = oracle.final_and_first(results, ["views", "clicks"], "offset").set_index(
        "campaign_id")
    windows = latency.window_latencies(results, "append_time_ms", delay_ms=2_000)
    chosen = windows.merge(results, left_on=["campaign_id", "window_start_ms", "visible_ms"],
                           right_on=["campaign_id", "window_start_ms", "append_time_ms"])
    for _, row in chosen.iterrows():
        c = row["campaign_id"]
        assert (row["views"], row["clicks"]) == (final.loc[c, "views_final"],
                                                 final.loc[c, "clicks_final"])
    w = windows.set_index("campaign_id")
    assert w.loc[0, "visible_ms"] == 15_000 and w.loc[0, "records_before_final"] == 2
    assert w.loc[1, "visible_ms"] == 12_050 and w.loc[1, "records_before_final"] == 0


def test_a1_a2_compare_clicks_only_in_query_order():
    results = pd.DataFrame({
        "campaign_id": [0, 0], "window_start_ms": [0, 0], "clicks": [3, 4],
        "query_end_ms": [11_200, 12_400], "query_latency_ms": [20.0, 30.0],
        "max_insertion_ms": [9_990, 9_995],
    })
    w = latency.window_latencies(results, "query_end_ms", delay_ms=1_000).iloc[0]
    assert w["visible_ms"] == 12_400 and w["first_visible_ms"] == 11_200
    assert w["records_before_final"] == 1
    assert w["query_latency_ms"] == 30.0 and w["max_insertion_ms"] == 9_995


def test_no_records_gives_the_columns():
    empty = latency.window_latencies(_results([]), "append_time_ms", delay_ms=0)
    assert empty.empty
    assert {"visible_ms", "first_visible_ms", "records_before_final"} <= set(empty.columns)


# ------------------------------------------------------------- exactly-once Flink
def _checkpoints(rows):
    """(id, status, trigger_ms, ack_ms) rows as metrics/flink_checkpoints.csv has them."""
    frame = pd.DataFrame(rows, columns=["id", "status", "trigger_ms", "ack_ms"])
    frame["end_to_end_duration_ms"] = frame["ack_ms"] - frame["trigger_ms"]
    return frame


def _run(guarantee: str, results: pd.DataFrame, checkpoints: pd.DataFrame | None) -> RunData:
    metrics = {} if checkpoints is None else {"flink_checkpoints": checkpoints}
    return RunData(
        path=Path("synthetic"), truth=pd.DataFrame(), rate=pd.DataFrame(), generator={},
        provenance={"spec": {"pipeline": "flink", "run_id": "t", "params": {}},
                    "params": {"delivery_guarantee": guarantee}},
        results=results, metrics=metrics,
        metrics_json={"flink_summary": {"settings": {"delivery_guarantee": guarantee}}},
    )


CHECKPOINTS = _checkpoints([
    (1, "COMPLETED", 10_000, 10_040),
    (2, "FAILED", 15_000, 15_900),       # never committed anything: ignored
    (3, "COMPLETED", 20_000, 20_060),
    (4, "COMPLETED", 25_000, 25_050),
    (5, "IN_PROGRESS", 30_000, -1),
])


def test_commit_time_is_the_first_checkpoint_completion_at_or_after_the_append():
    completions = np.array([10_040.0, 20_060.0, 25_050.0])
    got = engine_metrics.commit_times([9_000, 10_040, 10_041, 19_000, 25_050, 26_000, np.nan],
                                      completions)
    assert list(got[:5]) == [10_040, 10_040, 20_060, 20_060, 25_050]
    assert np.isnan(got[5]) and np.isnan(got[6])  # no checkpoint after it; no time
    assert np.isnan(engine_metrics.commit_times([1.0], np.array([]))).all()


def test_exactly_once_flink_results_are_visible_at_the_commit_not_the_append():
    results = _results([
        (0, 0, 8, 2, 12_300, 0),    # appended in the transaction of checkpoint 3
        (1, 0, 7, 3, 16_000, 1),    # checkpoint 2 failed: committed with checkpoint 3
        (2, 0, 6, 1, 20_070, 2),    # after checkpoint 3 completed: checkpoint 4
    ])
    run = _run("exactly-once", results, CHECKPOINTS)
    assert engine_metrics.checkpoint_completions_ms(run).tolist() == [10_040, 20_060, 25_050]
    assert engine_metrics.visible_times(run).tolist() == [20_060, 20_060, 25_050]
    view, visible, order = _results_view(run)
    assert order == "offset"
    windows = latency.window_latencies(view, visible, delay_ms=2_000).set_index("campaign_id")
    assert windows["visible_ms"].tolist() == [20_060, 20_060, 25_050]
    assert windows.loc[0, "latency_from_window_end_ms"] == 10_060
    indicators = engine_metrics.indicators(run)
    # Waits for the commit: 7760, 4060 and 4980 ms.
    assert indicators["flink_commit_wait_ms_p50"] == 4_980
    assert indicators["flink_commit_wait_ms_max"] == 7_760
    assert indicators["flink_commit_unmapped_records"] == 0


def test_exactly_once_with_re_emission_takes_the_commit_of_the_final_answer():
    results = _results([(0, 0, 5, 1, 12_000, 0), (0, 0, 8, 2, 21_000, 1)])
    run = _run("exactly-once", results, CHECKPOINTS)
    view, visible, _ = _results_view(run)
    w = latency.window_latencies(view, visible, delay_ms=2_000).iloc[0]
    assert (w["first_visible_ms"], w["visible_ms"], w["records_before_final"]) == (
        20_060, 25_050, 1)


def test_at_least_once_flink_keeps_the_append_time():
    results = _results([(0, 0, 8, 2, 12_300, 0), (1, 0, 7, 3, 16_000, 1)])
    run = _run("at-least-once", results, CHECKPOINTS)
    assert engine_metrics.visible_times(run).tolist() == [12_300, 16_000]
    view, visible, _ = _results_view(run)
    windows = latency.window_latencies(view, visible, delay_ms=2_000)
    assert windows["visible_ms"].tolist() == [12_300, 16_000]
    assert "flink_commit_wait_ms_p50" not in engine_metrics.indicators(run)


def test_exactly_once_without_a_checkpoint_table_has_no_visible_time():
    run = _run("exactly-once", _results([(0, 0, 8, 2, 12_300, 0)]), None)
    assert engine_metrics.visible_times(run).isna().all()
    assert engine_metrics.indicators(run)["flink_commit_unmapped_records"] == 1


def test_the_delivery_guarantee_is_read_from_the_run():
    run = _run("exactly-once", _results([]), None)
    assert engine_metrics.delivery_guarantee(run) == "exactly-once"
    run.metrics_json = {}
    assert engine_metrics.delivery_guarantee(run) == "exactly-once"  # provenance params
    run.provenance = {"spec": {"pipeline": "flink", "params": {}}}
    assert engine_metrics.delivery_guarantee(run) == "at-least-once"


# ------------------------------------------------------------- a fabricated run
@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_summary_of_a_fabricated_flink_run(tmp_path, config, guarantee):
    spec = make_spec(config, "flink", "spp", 20_000, duration_s=40,
                     params={"delivery_guarantee": guarantee})
    run_dir = fabricate_run(tmp_path / "r", spec, config, latency_ms=400, delay_ms=2000)
    appended = load_run(run_dir).results
    # Checkpoints every 5 s, each completing 80 ms after its trigger, from well before
    # the first result to after the last.
    triggers = np.arange(appended["append_time_ms"].min() - 20_000,
                         appended["append_time_ms"].max() + 10_000, 5_000)
    _checkpoints([(i + 1, "COMPLETED", t, t + 80) for i, t in enumerate(triggers)]).to_csv(
        run_dir / "metrics" / "flink_checkpoints.csv", index=False)

    summary, windows, _ = summarize_run(run_dir, config)
    windows = windows.dropna(subset=["visible_ms"])
    assert len(windows) and (windows["records_before_final"] == 0).all()
    latency_ms = windows["latency_above_delay_ms"]
    if guarantee == "at-least-once":
        assert np.allclose(latency_ms, 400)
        assert "flink_commit_wait_ms_p50" not in summary
    else:
        completions = triggers + 80
        appended_at = windows["window_end_ms"].to_numpy() + 2_000 + 400
        expected = completions[np.searchsorted(completions, appended_at)]
        assert np.allclose(windows["visible_ms"], expected)
        assert (latency_ms > 400).all() and (latency_ms <= 400 + 5_000).all()
        assert summary["flink_commit_unmapped_records"] == 0
        assert summary["latency_above_delay_ms_p50"] > 400
    assert summary["correct"]
