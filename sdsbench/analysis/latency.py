"""Latency of window results: end-to-end per window, and A1/A2 query latency.

Definitions (as coded):

- visible time of a window result: when a reader could first see it. A3, Spark, Flink:
  the broker's append time of the first output record of the (campaign, window)
  (the output topic uses LogAppendTime, so every engine is timed by the same clock).
  A1, A2: the end of the window query that returned it (``query_end_ms``).
- ``latency_from_last_insertion_ms`` = visible time - the window's max insertion time
  (``max_insertion_ms``: when the generator handed the window's last event to the sink);
- ``latency_from_window_end_ms`` = visible time - window end (event time);
- ``latency_above_delay_ms`` = latency from window end - the configured delay: the
  watermark delay of A3, Spark and Flink, the query grace of A1 and A2. The delay is a
  cost the user chose; what lies above it is the system's own.
- Statistics are over windows whose end lies in [generator start + warm-up, horizon], the
  horizon being the generator's end minus the configured delay: windows a watermark
  passes while input still flows. Tail windows fired at end of input would show a
  latency shorter than the delay and are left out. Percentiles are numpy's default
  (linear interpolation between order statistics).
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
) -> pd.DataFrame:
    """Per (campaign, window): the first result's visible time and the three latencies.

    ``results`` needs campaign_id, window_start_ms, max_insertion_ms and ``visible_column``.
    """
    cols = ["campaign_id", "window_start_ms", "window_end_ms", "visible_ms",
            "max_insertion_ms", *LATENCY_COLUMNS]
    if results.empty:
        return pd.DataFrame(columns=cols)
    frame = results.copy()
    frame["visible_ms"] = frame[visible_column].astype(float)
    first = (
        frame.sort_values("visible_ms", kind="stable")
        .groupby(["campaign_id", "window_start_ms"], as_index=False)
        .first()
    )
    first["window_end_ms"] = first["window_start_ms"] + window_ms
    first["latency_from_last_insertion_ms"] = first["visible_ms"] - first["max_insertion_ms"]
    first["latency_from_window_end_ms"] = first["visible_ms"] - first["window_end_ms"]
    first["latency_above_delay_ms"] = first["latency_from_window_end_ms"] - float(delay_ms)
    # A1/A2 results carry the wall time of the query that produced them.
    extra = [c for c in ("query_latency_ms",) if c in first.columns]
    return (
        first[cols + extra].sort_values(["window_start_ms", "campaign_id"]).reset_index(drop=True)
    )


def steady_mask(
    windows: pd.DataFrame, gen_start_ms: float, gen_end_ms: float, delay_ms: float,
    warmup_s: float = 0.0,
) -> pd.Series:
    """Windows counted in latency statistics (see the module docstring)."""
    end = windows["window_end_ms"].astype(float)
    return (end >= gen_start_ms + warmup_s * 1000.0) & (end <= gen_end_ms - float(delay_ms))


def latency_summary(windows: pd.DataFrame, mask: pd.Series | None = None) -> dict[str, float]:
    """Statistics of the three end-to-end latencies over the windows selected by ``mask``."""
    selected = windows if mask is None else windows[mask]
    out: dict[str, float] = {}
    for column in LATENCY_COLUMNS:
        out.update(describe(selected[column], column.removesuffix("_ms") + "_ms"))
    return out


def query_latency_summary(queries: pd.DataFrame | None) -> dict[str, Any]:
    """A1/A2: statistics of ``query_latency_ms`` (one row per window query) and of how
    late queries started (``start_delay_ms``); NaN without a queries table."""
    if queries is None or "query_latency_ms" not in queries:
        return describe([], "query_latency_ms") | describe([], "query_start_delay_ms")
    out = describe(queries["query_latency_ms"], "query_latency_ms")
    if "start_delay_ms" in queries:
        out |= describe(queries["start_delay_ms"], "query_start_delay_ms")
    else:
        out |= describe([], "query_start_delay_ms")
    return out
