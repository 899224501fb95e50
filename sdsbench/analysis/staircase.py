"""Where a rate staircase stops being sustainable: the region of t_h from one run.

A staircase run offers ``rate_eps * step_factor ** i`` events/s during step i (each
``step_s`` seconds long; ``sdsbench.workload.arrivals``). A system that keeps up holds
its backlog at a level; once the offered rate passes its capacity the backlog grows for
the rest of the run, since every later step offers more. The analysis reads two backlog
signals, both in milliseconds:

- watermark backlog: (sample time - watermark) - the configured delay (A3, Spark, Flink;
  the latency above the delay a window ending now would see);
- input backlog: the consumer lag in events / the offered rate at that time x 1000 (how
  many ms of input wait unread).

The system is overloaded when a signal ends above ``latency_bound_ms`` (the growth never
came back). Its capacity C is then fitted to the signal: at offered rate r a fluid queue
served at C falls behind by 1000 (1 - C / r) ms per second (drains below C, never below
zero); the C of least absolute deviation (with a free offset, over a grid of C spaced by
``CAPACITY_GRID_FACTOR``) is taken, the smallest over the signals. The fit uses the
whole run, so the sawtooth of a micro-batch engine averages out. Steps offering more
than C fail, the steps before the first of them pass. A step in which the
generator missed its schedule (sent outside ``rate_tolerance`` of scheduled, or behind
by more than ``generator_behind_max_ms``) is invalid, as is every later one: the
staircase then says only that t_h is at least the last valid passing rate. When no
signal crosses, the last step is not judged (nothing after it shows growth) and t_h is
at least the rate of the step before it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.analysis import engine_metrics, flow
from sdsbench.analysis.rundata import RunData

#: Candidate capacities are spaced by this factor (a fraction of a step).
CAPACITY_GRID_FACTOR = 1.01


def step_rates(arrival: dict[str, Any], duration_s: float) -> list[tuple[float, float, float]]:
    """(start s, end s, rate) of every step of a staircase arrival, relative to the
    generator's start."""
    step_s = float(arrival["step_s"])
    n = max(1, math.ceil(duration_s / step_s - 1e-9))
    return [(i * step_s, min((i + 1) * step_s, duration_s),
             float(arrival["rate_eps"]) * float(arrival["step_factor"]) ** i) for i in range(n)]


def _crosses(values: np.ndarray, bound: float) -> bool:
    """Whether the signal ends above ``bound`` (the growth never came back)."""
    return len(values) > 0 and bool(values[-1] > bound)


def fitted_capacity(
    times_s: np.ndarray, values: np.ndarray, steps: list[tuple[float, float, float]],
) -> float:
    """The capacity C whose fluid backlog best explains the signal (least absolute
    deviation over a grid of C, with a free offset): at offered rate r the backlog grows
    by 1000 (1 - C / r) ms per second (the watermark falls behind real time, unread input
    piles up) and drains at the same pace below C, never below zero."""
    rates = np.array([_rate_at(steps, t) for t in times_s])
    dt = np.diff(times_s, prepend=times_s[0])
    lo, hi = steps[0][2] / 2, steps[-1][2] * 2
    grid = lo * CAPACITY_GRID_FACTOR ** np.arange(
        int(np.log(hi / lo) / np.log(CAPACITY_GRID_FACTOR)) + 1)
    best, best_cost = float(grid[-1]), math.inf
    for capacity in grid:
        free = np.cumsum(1000.0 * (1.0 - capacity / rates) * dt)
        backlog = free - np.minimum(0.0, np.minimum.accumulate(free))  # reflected at 0
        residual = values - backlog
        cost = float(np.abs(residual - np.median(residual)).sum())
        if cost < best_cost:
            best, best_cost = float(capacity), cost
    return best


def _signals(run: RunData, start_ms: float, end_ms: float, delay_ms: float,
             steps: list[tuple[float, float, float]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    wm = engine_metrics.watermark_series(run)
    wm = wm[(wm["time_ms"] >= start_ms) & (wm["time_ms"] <= end_ms)]
    if len(wm):
        t = wm["time_ms"].to_numpy(dtype=float)
        out["watermark"] = (t, t - wm["watermark_ms"].to_numpy(dtype=float) - delay_ms)
    lag = flow.total_lag(run.metric("lag"))
    lag = lag[(lag["time_ms"] >= start_ms) & (lag["time_ms"] <= end_ms)]
    if len(lag):
        t = lag["time_ms"].to_numpy(dtype=float)
        rate = np.array([_rate_at(steps, (x - start_ms) / 1000.0) for x in t])
        out["input"] = (t, lag["lag"].to_numpy(dtype=float) / rate * 1000.0)
    return out


def _rate_at(steps: list[tuple[float, float, float]], t_s: float) -> float:
    for lo, hi, rate in steps:
        if lo <= t_s < hi:
            return rate
    return steps[-1][2]


def _generator_valid(rate: pd.DataFrame, lo_s: float, hi_s: float, tolerance: float,
                     behind_max_ms: float) -> tuple[bool, str]:
    part = rate[(rate["second"] >= math.floor(lo_s)) & (rate["second"] < math.ceil(hi_s))]
    scheduled = float(part["scheduled"].sum())
    sent = float(part["sent"].sum())
    behind = float(part["behind_ms_max"].max()) if len(part) else 0.0
    if scheduled and abs(sent / scheduled - 1.0) > tolerance:
        return False, f"generator sent {sent / scheduled:.3f} of its schedule"
    if behind > behind_max_ms:
        return False, f"generator behind its schedule by {behind:.0f} ms"
    return True, ""


def analyse_staircase(
    run: RunData, delay_ms: float, latency_bound_ms: float, rate_tolerance: float,
    generator_behind_max_ms: float,
) -> dict[str, Any]:
    """Per-step verdicts of a staircase run and the region [highest pass, lowest fail)."""
    gen = run.generator
    start_ms, end_ms = gen["start_ns"] / 1e6, gen["schedule_end_ns"] / 1e6
    steps = step_rates(run.spec["arrival"], float(run.spec["duration_s"]))
    signals = _signals(run, start_ms, end_ms, delay_ms, steps)
    capacities = {
        name: fitted_capacity((t - start_ms) / 1000.0, v, steps)
        for name, (t, v) in signals.items() if _crosses(v, latency_bound_ms)
    }
    capacity = min(capacities.values()) if capacities else None
    onset_s = next((lo for lo, _, rate in steps if capacity is not None and rate > capacity),
                   None)
    rows, invalid_from = [], None
    for i, (lo, hi, rate) in enumerate(steps):
        ok, why = _generator_valid(run.rate, lo, hi, rate_tolerance, generator_behind_max_ms)
        if invalid_from is None and not ok:
            invalid_from = i
        if invalid_from is not None and (onset_s is None or onset_s >= lo):
            verdict = "invalid"
        elif onset_s is not None and onset_s < hi:
            verdict = "fail"
        else:
            verdict = "pass"
        peak = {name: float(np.max(v[(t >= start_ms + lo * 1000) & (t < start_ms + hi * 1000)],
                                   initial=-math.inf))
                for name, (t, v) in signals.items()}
        rows.append({"step": i, "start_s": lo, "end_s": hi, "rate_eps": rate,
                     "verdict": verdict, "generator": why or "on schedule",
                     **{f"{name}_backlog_ms_max": (None if math.isinf(x) else x)
                        for name, x in peak.items()}})
    if onset_s is None and invalid_from is None and len(rows) > 1:
        # Nothing after the last step shows whether its backlog would have grown.
        rows[-1]["verdict"] = "unjudged"
    passes = [r["rate_eps"] for r in rows if r["verdict"] == "pass"]
    fails = [r["rate_eps"] for r in rows if r["verdict"] == "fail"]
    if not signals:
        reason = "no backlog signal measured (no watermark, no lag)"
    elif fails:
        reason = "backlog grew for good from step " + str(
            next(r["step"] for r in rows if r["verdict"] == "fail"))
    elif invalid_from is not None:
        reason = f"generator could not keep its schedule from step {invalid_from}"
    else:
        reason = "sustainable through the staircase (its last step is not judged)"
    return {
        "steps": rows,
        "highest_pass_eps": max(passes) if passes and signals else None,
        "lowest_fail_eps": min(fails) if fails else None,
        "fitted_capacity_eps": capacities,
        "reason": reason,
    }
