"""Correctness of a pipeline's window results against the generator's exact truth.

The generator counts, per (campaign, 10 s event-time window), every event it really
handed to the broker or database (``generator/truth.csv``). A pipeline's results are
compared with it window by window on the counted fields (A3, Spark, Flink: views and
clicks; A1, A2: clicks).

Definitions (as coded in ``check_results``):

- expected window: a truth window with at least one counted event (a window holding only
  purchases has nothing to report);
- final result of a window: its last record in output order (a pipeline that accepts late
  data may emit updates; the last one is its final answer). The first record is its
  first answer;
- exact window: final result equal to the truth on every counted field;
- count error: a window present in the results whose final counts differ from the truth;
  ``count_error_events`` sums the absolute differences;
- missing window: an expected window with no result whose end is at or before the
  horizon (``sdsbench.analysis.engine_metrics.fire_horizon_ms``: no horizon for A1/A2 and
  for A3 once its input ended; Spark's final watermark; otherwise the generator's end
  minus the configured watermark delay). A missing window after the horizon is counted
  apart as ``unfired_tail_windows``: an engine whose watermark stops with its input
  cannot fire it;
- extra window: a result for a window that holds none of the counted events;
- duplicate window: a window with more than one result record; ``changed_windows`` are
  those whose records do not all agree (updates after late data);
- deficit / excess events: over expected windows, the events the final results lack or
  have in surplus (a missing window before the horizon lacks all its events);
- dropped events reported: late events the pipeline says it dropped (NaN when it does not
  say); ``unexplained_deficit_events`` = deficit - dropped reported;
- evaluable windows: expected windows up to the horizon plus those after it that the
  pipeline did report; ``exact_ratio`` = exact / evaluable;
- late-dropped window: the final result plus the late events the pipeline reports
  dropping in that window (per window: A3, Spark, Flink ``metrics/late.csv``) equals the
  truth (a window whose events all came late may have no result at all);
- ``correct``: every evaluable window is exact and nothing is extra;
- ``correct_where_not_dropped``: every evaluable window is exact or late-dropped and
  nothing is extra: the results match the truth exactly where no event was dropped.

Completeness at query time (A1, A2; ``at_query_completeness``). A1 and A2 query each
10 s window once, shortly after its end; their correctness above comes from the recount
of the complete table after the run. The answers the queries returned are checked as
well (the ``at_query_*`` keys of the check above), and their completeness is:

- completeness of a (campaign, window) at query time = the window's true counted events
  present in the answer its query returned (per counted field, the answer capped at the
  truth) / its true counted events; 0 for a window the answer lacked, NaN for a window
  with no true counted events. Per-window table: ``at_query_completeness``;
- completeness of a query (one 10 s window, every campaign) = present events / true
  events, summed over the window's campaigns;
- over the steady-state queries (windows in the latency statistics' steady range, see
  ``sdsbench.analysis.latency``) with at least one true counted event
  (``at_query_completeness_windows`` of them): ``at_query_completeness_mean`` and
  ``_min``; ``at_query_complete_windows`` = those of completeness at least
  ``COMPLETE_AT`` (0.99), ``at_query_complete_share`` = their share. A query that runs
  before the window's events have arrived (a consumer far behind) returns fast and
  incomplete: its latency says nothing about a complete answer. The threshold leaves
  room for the disordered events no grace waits for (an event whose event time lies
  further back than the time since its window's end plus the grace): about 0.1 % of a
  window with the default disorder, so a query that keeps up reads ~0.999.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.contract import WINDOW_MS

KEY = ["campaign_id", "window_start_ms"]
# A window's answer counts as complete when it holds at least this share of the window's
# true events (module docstring; disorder beyond the grace alone costs ~0.1 %).
COMPLETE_AT = 0.99


def final_and_first(
    results: pd.DataFrame, fields: Sequence[str], order: str | None
) -> pd.DataFrame:
    """One row per window: first and final values of ``fields``, record count, and whether
    the records disagree. ``order`` is the column giving output order (row order if None)."""
    if results.empty:
        cols = [*KEY, "records", "changed"]
        cols += [f"{f}_first" for f in fields] + [f"{f}_final" for f in fields]
        return pd.DataFrame(columns=cols)
    frame = results[[*KEY, *fields] + ([order] if order else [])].copy()
    frame["_row"] = np.arange(len(frame))
    frame = frame.sort_values(([order] if order else []) + ["_row"], kind="stable")
    grouped = frame.groupby(KEY, sort=True)
    first = grouped[list(fields)].first().add_suffix("_first")
    final = grouped[list(fields)].last().add_suffix("_final")
    records = grouped.size().rename("records")
    distinct = grouped[list(fields)].nunique().max(axis=1).rename("distinct")
    out = pd.concat([records, distinct, first, final], axis=1).reset_index()
    out["changed"] = out["distinct"] > 1
    return out.drop(columns="distinct")


def check_results(
    truth: pd.DataFrame,
    results: pd.DataFrame,
    fields: Sequence[str],
    *,
    order: str | None = None,
    horizon_ms: float = math.inf,
    dropped_reported: float = math.nan,
    dropped: pd.DataFrame | None = None,
    window_ms: int = WINDOW_MS,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Compare ``results`` with ``truth`` (see the module docstring).

    ``dropped``: late events the pipeline reports dropping, per window (campaign_id,
    window_start_ms, ``<field>_dropped``), when it reports them per window.

    Returns the summary (a flat dict) and a per-window table: every expected or reported
    window with truth counts, first/final results and a ``status`` of exact, late_dropped,
    count_error, missing, unfired_tail or extra.
    """
    fields = list(fields)
    truth_counts = truth[[*KEY, *fields]].groupby(KEY, as_index=False).sum()
    truth_counts = truth_counts[truth_counts[fields].sum(axis=1) > 0]
    got = final_and_first(results, fields, order)

    merged = truth_counts.rename(columns={f: f"{f}_truth" for f in fields}).merge(
        got, on=KEY, how="outer", indicator=True
    )
    if dropped is not None and len(dropped):
        cols = [f"{f}_dropped" for f in fields if f"{f}_dropped" in dropped.columns]
        per_window = dropped[[*KEY, *cols]].groupby(KEY, as_index=False).sum()
        merged = merged.merge(per_window, on=KEY, how="left")
    merged["window_end_ms"] = merged["window_start_ms"] + window_ms
    in_truth = merged["_merge"] != "right_only"
    in_results = merged["_merge"] != "left_only"
    before_horizon = merged["window_end_ms"] <= horizon_ms

    def values(suffix: str) -> np.ndarray:
        cols = merged[[f"{f}_{suffix}" for f in fields]].apply(pd.to_numeric, errors="coerce")
        return cols.fillna(0).to_numpy(dtype=float)

    truth_vals, final_vals, first_vals = values("truth"), values("final"), values("first")
    dropped_vals = np.column_stack([
        merged[f"{f}_dropped"].fillna(0).to_numpy(dtype=float) if f"{f}_dropped" in merged
        else np.zeros(len(merged)) for f in fields
    ]) if fields else np.zeros((len(merged), 0))
    diff = final_vals - truth_vals
    equal = (diff == 0).all(axis=1)
    # The result plus the late events the pipeline says it dropped equals the truth.
    explained = ~equal & (dropped_vals.sum(axis=1) > 0) & (
        final_vals + dropped_vals == truth_vals).all(axis=1)
    first_equal = (first_vals == truth_vals).all(axis=1)
    # A reported window with all-zero counts and no truth row says nothing wrong.
    extra = ~in_truth & (final_vals.sum(axis=1) > 0)

    status = np.select(
        [
            in_truth & in_results & equal,
            in_truth & explained & before_horizon,
            in_truth & in_results & ~equal,
            in_truth & ~in_results & before_horizon,
            in_truth & ~in_results & ~before_horizon,
            extra,
        ],
        ["exact", "late_dropped", "count_error", "missing", "unfired_tail", "extra"],
        default="empty",
    )
    merged["status"] = status
    merged["first_exact"] = in_truth & in_results & first_equal

    counted = in_truth & (in_results | before_horizon)  # windows whose events are owed
    deficit = float(np.clip(-diff[counted], 0, None).sum())
    excess = float(np.clip(diff[counted], 0, None).sum())
    n_expected = int(in_truth.sum())
    n_expected_horizon = int((in_truth & (before_horizon | in_results)).sum())
    exact = int((status == "exact").sum())
    late_dropped = int((status == "late_dropped").sum())
    count_errors = int((status == "count_error").sum())
    errors_after_horizon = int(((status == "count_error") & ~before_horizon).sum())
    missing = int((status == "missing").sum())
    extra_n = int(extra.sum())
    records = int(got["records"].sum()) if len(got) else 0
    delayed_cols = [f"{f}_delayed" for f in fields if f"{f}_delayed" in truth.columns]
    summary: dict[str, Any] = {
        "fields": ",".join(fields),
        "expected_windows": n_expected,
        "evaluable_windows": n_expected_horizon,
        "result_windows": int(len(got)),
        "result_records": records,
        "exact_windows": exact,
        "exact_ratio": exact / n_expected_horizon if n_expected_horizon else math.nan,
        "first_exact_windows": int(merged["first_exact"].sum()),
        "late_dropped_windows": late_dropped,
        "count_error_windows": count_errors,
        "count_error_events": float(np.abs(diff[in_truth & in_results]).sum()),
        "missing_windows": missing,
        "unfired_tail_windows": int((status == "unfired_tail").sum()),
        "extra_windows": extra_n,
        "duplicate_windows": int((got["records"] > 1).sum()) if len(got) else 0,
        "duplicate_records": records - int(len(got)),
        "changed_windows": int(got["changed"].sum()) if len(got) else 0,
        "deficit_events": deficit,
        "excess_events": excess,
        "truth_events": float(truth_vals[in_truth.to_numpy()].sum()),
        "delayed_events_sent": float(truth[delayed_cols].to_numpy().sum()) if delayed_cols else 0.0,
        "dropped_events_reported": float(dropped_reported),
        "unexplained_deficit_events": (
            deficit - dropped_reported if not math.isnan(dropped_reported) else math.nan
        ),
        "horizon_ms": float(horizon_ms),
        # Evaluable windows are exact, count errors or missing, so this is "all exact".
        "correct": bool(n_expected_horizon > 0 and exact == n_expected_horizon and extra_n == 0),
        # Exact wherever no event was dropped, and elsewhere off by exactly the events the
        # pipeline reports dropping.
        "correct_where_not_dropped": bool(
            n_expected_horizon > 0 and exact + late_dropped == n_expected_horizon
            and extra_n == 0
        ),
        "errors_after_horizon": errors_after_horizon,
    }
    per_window = merged.drop(columns="_merge")
    per_window = per_window[per_window["status"] != "empty"].sort_values(KEY)
    return summary, per_window.reset_index(drop=True)


def completeness(per_window: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    """Per window of a ``check_results`` per-window table: ``truth_events``,
    ``present_events`` (the final answer, per field capped at the truth and at 0) and
    ``completeness`` = present / truth (NaN without true events; module docstring)."""
    fields = list(fields)
    out = per_window[KEY].copy()
    truth = np.zeros(len(per_window))
    present = np.zeros(len(per_window))
    for f in fields:
        t = pd.to_numeric(per_window[f"{f}_truth"], errors="coerce").fillna(0).to_numpy(float)
        a = pd.to_numeric(per_window[f"{f}_final"], errors="coerce").fillna(0).to_numpy(float)
        truth += t
        present += np.minimum(np.clip(a, 0, None), t)
    out["truth_events"] = truth
    out["present_events"] = present
    out["completeness"] = np.divide(present, truth, out=np.full(len(truth), np.nan),
                                    where=truth > 0)
    return out.reset_index(drop=True)


def at_query_completeness(
    windows: pd.DataFrame, at_query: pd.DataFrame, fields: Sequence[str],
    threshold: float = COMPLETE_AT,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """A1/A2: completeness of the answers returned at query time (module docstring).

    ``windows``: the run's per-window table with its ``steady`` flag; ``at_query``: the
    ``check_results`` per-window table of the query-time answers. Returns ``windows`` with
    a column ``at_query_completeness`` and the run-summary keys ``at_query_completeness_*``,
    ``at_query_complete_windows`` and ``at_query_complete_share``.
    """
    per = completeness(at_query, fields)
    out = windows.drop(columns=["at_query_completeness"], errors="ignore").merge(
        per[[*KEY, "completeness"]].rename(columns={"completeness": "at_query_completeness"}),
        on=KEY, how="left")
    steady_keys = out.loc[out["steady"].astype(bool), KEY] if len(out) else out[KEY]
    steady = per.merge(steady_keys, on=KEY, how="inner")
    queries = steady.groupby("window_start_ms")[["truth_events", "present_events"]].sum()
    queries = queries[queries["truth_events"] > 0]
    share = (queries["present_events"] / queries["truth_events"]).to_numpy(float)
    complete = int((share >= threshold).sum())
    n = len(share)
    summary = {
        "at_query_completeness_windows": float(n),
        "at_query_completeness_mean": float(share.mean()) if n else math.nan,
        "at_query_completeness_min": float(share.min()) if n else math.nan,
        "at_query_complete_windows": float(complete),
        "at_query_complete_share": complete / n if n else math.nan,
    }
    return out, summary
