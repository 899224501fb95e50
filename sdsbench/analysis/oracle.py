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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.contract import WINDOW_MS

KEY = ["campaign_id", "window_start_ms"]


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
