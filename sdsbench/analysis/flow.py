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
- lag: records in the input topic not yet consumed (metrics/lag.csv, summed over
  partitions per sample). ``lag_slope_eps`` = least-squares slope of the lag over the
  second half of the generator's active period, in events per second;
  ``lag_final`` = the last sample at or before the generator's end; ``lag_max`` the
  largest sample during the run.
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


def lag_flow(lag: pd.DataFrame | None, gen_start_ms: float, gen_end_ms: float) -> dict[str, Any]:
    """Lag statistics over the generator's active period (NaN without a lag table)."""
    out: dict[str, Any] = {
        "lag_measured": False,
        "lag_max": math.nan,
        "lag_final": math.nan,
        "lag_slope_eps": math.nan,
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
    half = during[during["time_ms"] >= (gen_start_ms + gen_end_ms) / 2]
    if len(half) >= 2 and half["time_ms"].nunique() >= 2:
        slope_per_ms = np.polyfit(half["time_ms"].astype(float), half["lag"].astype(float), 1)[0]
        out["lag_slope_eps"] = float(slope_per_ms * 1000.0)
    return out
