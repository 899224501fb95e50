"""Latency of window results: end-to-end per window, and A1/A2 query latency.

Definitions (as coded):

- visible time of a record: when a reader of the output could first see it
  (``sdsbench.analysis.engine_metrics.visible_times``). A3, Spark, Flink at-least-once:
  the broker's append time (the output topic uses LogAppendTime, so every engine is
  timed by the same clock); Flink exactly-once: the commit of the record's transaction
  (the completion of the first checkpoint completed at or after its append time);
  A1, A2: the end of the window query that returned it (``query_end_ms``).
- visible time of a window result (``visible_ms``): the visible time of the answer that
  counts, the window's final answer. The final answer is the last record of the
  (campaign, window) in output order (``order``: Kafka offset, else append time; A1/A2:
  query end), the record ``sdsbench.analysis.oracle`` judges; ``visible_ms`` is the
  visible time of the first record in output order whose counted fields (views and
  clicks; A1, A2: clicks) equal it. With re-emission (A3 ``lateness.policy: update``,
  Flink ``allowed_lateness_ms > 0``, Spark ``output_mode: update``) earlier records may
  be partial answers: ``records_before_final`` counts the window's records before that
  one, and ``first_visible_ms`` is the visible time of its first record, whatever its
  values (the first answer). If an answer equal to the final one appeared, changed and
  came back, its first appearance counts. Without re-emission both times are equal.
- ``latency_from_last_insertion_ms`` = visible time - the window's max insertion time
  (``max_insertion_ms``: when the generator handed the window's last event to the sink);
- ``latency_from_window_end_ms`` = visible time - window end (event time);
- ``latency_above_delay_ms`` = latency from window end - the configured delay: the
  watermark delay of A3, Spark and Flink, the query grace of A1 and A2. The delay is a
  cost the user chose; what lies above it is the system's own.
- Steady-state windows: those starting at or after generator start + warm-up (so the
  first, partial window is always left out) and ending by the horizon, the generator's
  end minus the configured delay: windows a watermark passes while input still flows.
  Tail windows fired at end of input would show a latency shorter than the delay and are
  left out. Statistics are over steady-state windows only. Percentiles are numpy's
  default (linear interpolation between order statistics).
- firings: the 10 campaigns of a window fire together, so their latencies are not
  independent samples. ``<latency>_firings`` = the number of distinct steady-state
  windows (firings) a statistic rests on; ``steady_windows_expected`` = the windows in
  the steady range; ``steady_windows_missing`` = those that never fired.
- query latency (A1, A2): wall time of one window query (execute + fetch), per query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.contract import WINDOW_MS

PERCENTILES: tuple[int, ...] = (50, 95, 99)
LATENCY_COLUMNS: tuple[str, ...] = (
    "latency_from_last_insertion_ms",
    "latency_from_window_end_ms",
    "latency_above_delay_ms",
)


def describe(values: Sequence[float] | np.ndarray | pd.Series, prefix: str) -> dict[str, float]:
    """count, mean, p50/p95/p99 and max of ``values`` (NaNs ignored) as ``prefix_*`` keys."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    out: dict[str, float] = {f"{prefix}_n": float(len(arr))}
    if len(arr) == 0:
        out.update({f"{prefix}_mean": math.nan, f"{prefix}_max": math.nan})
        out.update({f"{prefix}_p{p}": math.nan for p in PERCENTILES})
        return out
    out[f"{prefix}_mean"] = float(arr.mean())
    for p in PERCENTILES:
        out[f"{prefix}_p{p}"] = float(np.percentile(arr, p))
    out[f"{prefix}_max"] = float(arr.max())
    return out


def window_latencies(
    results: pd.DataFrame,
    visible_column: str,
    delay_ms: float,
    window_ms: int = WINDOW_MS,
    *,
    fields: Sequence[str] | None = None,
    order: str | None = None,
) -> pd.DataFrame:
    """Per (campaign, window): the visible time of its final answer, of its first record,
    the records before the final answer and the three latencies (module docstring).

    ``results`` needs campaign_id, window_start_ms, max_insertion_ms and ``visible_column``
    (a record's visible time). ``fields``: the counted fields compared with the final
    answer (default: those of views, clicks that ``results`` has). ``order``: the column
    giving output order, as for the oracle (default: ``offset``, else ``append_time_ms``,
    else ``visible_column``); ties keep row order. ``max_insertion_ms`` and A1/A2's
    ``query_latency_ms`` are those of the final-answer record.
    """
    cols = ["campaign_id", "window_start_ms", "window_end_ms", "visible_ms",
            "first_visible_ms", "records_before_final", "max_insertion_ms", *LATENCY_COLUMNS]
    if results.empty:
        return pd.DataFrame(columns=cols)
    key = ["campaign_id", "window_start_ms"]
    if fields is None:
        # A3, Spark, Flink: views and clicks; A1/A2 results have clicks only.
        fields = [f for f in ("views", "clicks") if f in results.columns]
    if order is None:
        order = next((c for c in ("offset", "append_time_ms") if c in results.columns),
                     visible_column)
    frame = results.copy()
    frame["visible_ms"] = frame[visible_column].astype(float)
    frame["_row"] = np.arange(len(frame))
    frame = frame.sort_values([order, "_row"], kind="stable")
    grouped = frame.groupby(key, sort=False)
    frame["records_before_final"] = grouped.cumcount()
    # The first record's visible time (NaN if it has none; "first" would skip NaNs).
    frame["first_visible_ms"] = (
        frame.assign(_first=frame["visible_ms"].where(frame["records_before_final"] == 0))
        .groupby(key, sort=False)["_first"].transform("max"))
    # The final answer per field as the oracle takes it (its last non-null value).
    final_equal = pd.Series(True, index=frame.index)
    for field in fields:
        final = grouped[field].transform("last")
        final_equal &= (frame[field] == final) | (frame[field].isna() & final.isna())
    chosen = frame[final_equal].drop_duplicates(key, keep="first")
    # Fields whose last non-null values come from different records: the last record.
    unmatched = frame.drop_duplicates(key, keep="last").merge(
        chosen[key], on=key, how="left", indicator=True)
    unmatched = unmatched[unmatched["_merge"] == "left_only"].drop(columns="_merge")
    first = pd.concat([chosen, unmatched], ignore_index=True) if len(unmatched) else chosen
    first = first.copy()
    first["records_before_final"] = first["records_before_final"].astype(int)
    first["window_end_ms"] = first["window_start_ms"] + window_ms
    first["latency_from_last_insertion_ms"] = first["visible_ms"] - first["max_insertion_ms"]
    first["latency_from_window_end_ms"] = first["visible_ms"] - first["window_end_ms"]
    first["latency_above_delay_ms"] = first["latency_from_window_end_ms"] - float(delay_ms)
    # A1/A2 results carry the wall time of the query that produced them.
    extra = [c for c in ("query_latency_ms",) if c in first.columns]
    return (
        first[cols + extra].sort_values(["window_start_ms", "campaign_id"]).reset_index(drop=True)
    )


def steady_range_ms(
    gen_start_ms: float, gen_end_ms: float, delay_ms: float, warmup_s: float = 0.0,
) -> tuple[float, float]:
    """[first steady window start, last steady window end] (see the module docstring)."""
    return gen_start_ms + warmup_s * 1000.0, gen_end_ms - float(delay_ms)


def steady_mask(
    windows: pd.DataFrame, gen_start_ms: float, gen_end_ms: float, delay_ms: float,
    warmup_s: float = 0.0, window_ms: int = WINDOW_MS,
) -> pd.Series:
    """Windows counted in latency statistics (see the module docstring)."""
    first_start, last_end = steady_range_ms(gen_start_ms, gen_end_ms, delay_ms, warmup_s)
    end = windows["window_end_ms"].astype(float)
    return (end - window_ms >= first_start) & (end <= last_end)


def steady_window_starts(
    gen_start_ms: float, gen_end_ms: float, delay_ms: float, warmup_s: float = 0.0,
    window_ms: int = WINDOW_MS,
) -> list[int]:
    """Starts of every window in the steady range, fired or not."""
    first_start, last_end = steady_range_ms(gen_start_ms, gen_end_ms, delay_ms, warmup_s)
    start = math.ceil(first_start / window_ms) * window_ms
    return list(range(int(start), int(last_end) - window_ms + 1, window_ms))


def firings(windows: pd.DataFrame, column: str) -> int:
    """Distinct windows (firings) with a value in ``column``."""
    if windows.empty:
        return 0
    return int(windows.loc[windows[column].notna(), "window_start_ms"].nunique())


def latency_summary(windows: pd.DataFrame, mask: pd.Series | None = None) -> dict[str, float]:
    """Statistics of the three end-to-end latencies over the windows selected by ``mask``,
    each with the number of firings it rests on (``<name>_firings``)."""
    selected = windows if mask is None else windows[mask]
    out: dict[str, float] = {}
    for column in LATENCY_COLUMNS:
        prefix = column.removesuffix("_ms") + "_ms"
        out.update(describe(selected[column], prefix))
        out[f"{prefix}_firings"] = float(firings(selected, column))
    return out


def query_latency_summary(
    queries: pd.DataFrame | None, steady_starts: list[int] | None = None
) -> dict[str, Any]:
    """A1/A2: statistics of ``query_latency_ms`` (one row per window query) and of how
    late queries started (``start_delay_ms``) over the queries of steady-state windows
    (``steady_starts``; all queries when None); NaN without a queries table.
    ``query_latency_ms_firings`` is the number of queries (one per window)."""
    if queries is None or "query_latency_ms" not in queries:
        return (describe([], "query_latency_ms") | describe([], "query_start_delay_ms")
                | {"query_latency_ms_firings": 0.0})
    if steady_starts is not None and "window_start_ms" in queries:
        queries = queries[queries["window_start_ms"].astype(float).isin(
            [float(s) for s in steady_starts])]
    out = describe(queries["query_latency_ms"], "query_latency_ms")
    out["query_latency_ms_firings"] = out["query_latency_ms_n"]
    if "start_delay_ms" in queries:
        out |= describe(queries["start_delay_ms"], "query_start_delay_ms")
    else:
        out |= describe([], "query_start_delay_ms")
    return out


def latency_trend(
    windows: pd.DataFrame, mask: pd.Series | None = None, t0_ms: float = -math.inf,
    t1_ms: float = math.inf, min_firings: int = 3,
) -> dict[str, float]:
    """Whether latency grows during the run: ``latency_trend_ms_per_s`` = the
    least-squares slope of the per-firing latency from window end (the mean over the
    firing's campaigns) against the window end, in ms per second of window end, over the
    windows selected by ``mask`` (the steady-state windows in a run summary) whose end
    lies in [t0_ms, t1_ms); ``latency_trend_firings`` = the firings it rests on. NaN with
    fewer than ``min_firings`` firings. In a system that falls behind real time by x %,
    the latency grows by x * 10 ms per second of window end."""
    from sdsbench.analysis.flow import slope_per_s

    column = "latency_from_window_end_ms"
    selected = windows if mask is None else windows[mask]
    if selected.empty:
        per_firing = pd.Series(dtype=float)
    else:
        ends = selected["window_end_ms"].astype(float)
        inside = selected[(ends >= t0_ms) & (ends < t1_ms) & selected[column].notna()]
        per_firing = inside.groupby(inside["window_end_ms"].astype(float))[column].mean()
    n = int(len(per_firing))
    slope = math.nan
    if n >= min_firings:
        slope, _ = slope_per_s(per_firing.index.to_numpy(), per_firing.to_numpy())
    return {"latency_trend_ms_per_s": slope, "latency_trend_firings": float(n)}
