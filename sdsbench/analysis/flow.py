"""What went in and whether the system kept up: the generator's achieved rate and the
consumer lag over time.

Definitions (as coded):

- offered rate: the run spec's ``rate_eps`` (the arrival process's nominal intensity);
- scheduled / sent events: totals of ``generator/rate.csv`` (events due by the schedule,
  events handed to the sink);
- ``achieved_ratio`` = sent / scheduled; the generator kept up when it is within
  ``rate_tolerance`` of 1 (for SPP and MMPP the schedule itself is random, so the test
  is against what was scheduled, not against the nominal rate);
- ``achieved_rate_eps`` = sent / the schedule's length in seconds;
- steady part of a run: [generator start + ``experiments.warmup_s``, generator end);
- slope over a time range [t0, t1) (``slope_per_s``): the least-squares slope of a
  series' samples with t0 <= sample time < t1 against their time, in the series' unit
  per second, with the number of samples it rests on (undefined with fewer than two
  distinct sample times);
- lag: records in the input topic not yet consumed (metrics/lag.csv, summed over
  partitions per sample). ``lag_slope_eps`` = the slope of the lag over the steady part,
  in events per second per second (``lag_slope_n`` samples): a system that keeps up
  holds it near 0, one overloaded by x % gains about x % of the offered rate per second;
  ``lag_final`` = the last sample at or before the generator's end; ``lag_max`` the
  largest sample during the generator's active period;
- watermark lag: sample time - the pipeline's watermark (A3, Spark, Flink; metrics/
  watermark.csv). ``watermark_lag_slope_ms_per_s`` = its slope over the steady part, in
  ms per second (``watermark_lag_slope_n`` samples): near 0 when the watermark keeps
  pace with processing time, x * 10 ms per s when the system falls x % behind; NaN for
  pipelines without a watermark.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def generator_flow(rate: pd.DataFrame, offered_rate_eps: float) -> dict[str, Any]:
    """Scheduled vs sent totals and rates from ``generator/rate.csv``."""
    scheduled = float(rate["scheduled"].sum())
    sent = float(rate["sent"].sum())
    active = rate[rate["scheduled"] > 0]
    seconds = float(len(active)) if len(active) else math.nan
    return {
        "offered_rate_eps": float(offered_rate_eps),
        "events_scheduled": scheduled,
        "events_sent": sent,
        "achieved_ratio": sent / scheduled if scheduled else math.nan,
        "scheduled_rate_eps": scheduled / seconds if seconds else math.nan,
        "achieved_rate_eps": sent / seconds if seconds else math.nan,
        "generator_behind_ms_max": float(rate["behind_ms_max"].max()) if len(rate) else math.nan,
        "generator_blocked_ms": (
            float(rate["blocked_ms"].sum()) if "blocked_ms" in rate else math.nan
        ),
    }


def total_lag(lag: pd.DataFrame) -> pd.DataFrame:
    """Lag summed over partitions per sample time: columns time_ms, lag."""
    if lag is None or lag.empty:
        return pd.DataFrame(columns=["time_ms", "lag"])
    return lag.groupby("time_ms", as_index=False)["lag"].sum().sort_values("time_ms")


def slope_per_s(
    times_ms: Any, values: Any, t0_ms: float = -math.inf, t1_ms: float = math.inf,
) -> tuple[float, int]:
    """Least-squares slope of ``values`` against ``times_ms`` over the samples with
    t0_ms <= time < t1_ms (NaNs ignored), in the values' unit per second, and the number
    of samples it rests on; the slope is NaN with fewer than two distinct sample times.
    Works on any range of a run (its steady part, one step of a staircase)."""
    t = np.asarray(times_ms, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = (t >= t0_ms) & (t < t1_ms) & ~np.isnan(t) & ~np.isnan(v)
    t, v = t[keep], v[keep]
    n = int(len(t))
    if n < 2 or float(np.ptp(t)) == 0.0:
        return math.nan, n
    centred = t - t.mean()
    slope_per_ms = float(np.dot(centred, v - v.mean()) / np.dot(centred, centred))
    return slope_per_ms * 1000.0, n


def lag_flow(
    lag: pd.DataFrame | None, gen_start_ms: float, gen_end_ms: float, warmup_s: float = 0.0,
) -> dict[str, Any]:
    """Lag statistics over the generator's active period, its slope over the steady part
    [gen_start_ms + warmup_s, gen_end_ms) (NaN without a lag table)."""
    out: dict[str, Any] = {
        "lag_measured": False,
        "lag_max": math.nan,
        "lag_final": math.nan,
        "lag_slope_eps": math.nan,
        "lag_slope_n": 0,
        "lag_samples": 0,
    }
    if lag is None or "lag" not in lag or lag.empty:
        return out
    series = total_lag(lag)
    during = series[(series["time_ms"] >= gen_start_ms) & (series["time_ms"] <= gen_end_ms)]
    out["lag_measured"] = True
    out["lag_samples"] = int(len(during))
    if during.empty:
        return out
    out["lag_max"] = float(during["lag"].max())
    out["lag_final"] = float(during["lag"].iloc[-1])
    out["lag_slope_eps"], out["lag_slope_n"] = slope_per_s(
        during["time_ms"], during["lag"], gen_start_ms + warmup_s * 1000.0, gen_end_ms)
    return out


def watermark_lag_slope(
    watermark: pd.DataFrame | None, t0_ms: float, t1_ms: float,
) -> dict[str, Any]:
    """Slope of the watermark lag (sample time - watermark, ms) over [t0_ms, t1_ms) in ms
    per second, from a watermark series (columns time_ms, watermark_ms; e.g.
    ``engine_metrics.watermark_series``): ``watermark_lag_slope_ms_per_s`` and the
    samples it rests on, ``watermark_lag_slope_n`` (NaN and 0 without a series)."""
    if watermark is None or watermark.empty or "watermark_ms" not in watermark:
        return {"watermark_lag_slope_ms_per_s": math.nan, "watermark_lag_slope_n": 0}
    times = watermark["time_ms"].astype(float)
    slope, n = slope_per_s(times, times - watermark["watermark_ms"].astype(float),
                           t0_ms, t1_ms)
    return {"watermark_lag_slope_ms_per_s": slope, "watermark_lag_slope_n": n}


def mmpp_flow(states: pd.DataFrame | None, duration_s: float) -> dict[str, Any]:
    """MMPP runs: the share of the run spent in state high (``mmpp_high_share``) and the
    number of state switches, from ``generator/mmpp_states.csv``; NaN for other runs.
    The realised rate is ``achieved_rate_eps`` (events sent on schedule / duration)."""
    if states is None or states.empty or not duration_s:
        return {"mmpp_high_share": math.nan, "mmpp_switches": math.nan}
    starts = states["t_start_s"].astype(float).to_numpy()
    ends = np.append(starts[1:], float(duration_s))
    high = (states["state"] == "high").to_numpy()
    dwell = np.clip(ends, None, duration_s) - starts
    return {"mmpp_high_share": float(dwell[high].sum() / duration_s),
            "mmpp_switches": float(max(len(starts) - 1, 0))}
