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

Each signal is fitted with a fluid queue of capacity C (``fluid_backlog``): at offered
rate r (the events the generator scheduled in that second, so MMPP bursts count) its
backlog grows by 1000 (1 - C / r) ms per second, drains at that pace below C
and never falls below zero; the C of least absolute deviation, with a free offset (the
signal's level, e.g. the sampling delay of the watermark), over a grid of C spaced by
``CAPACITY_GRID_FACTOR`` is taken. The fit uses the whole run, so the sawtooth of a
micro-batch engine averages out. The system is overloaded when a fit attributes growth of
at least ``latency_bound_ms`` to the overload by the end of the run; its capacity is
the smallest such C. Steps offering more than C fail, as do the steps from the first one
after which every steady window fired more than ``latency_bound_ms`` above the delay
(the latency bound, exceeded for good; a level that wavers around the bound is left to
the steady confirmation trials); the steps before the first failing one pass. A step in which the
generator missed its schedule (sent outside ``rate_tolerance`` of scheduled, beyond the
events its reported lateness carried across the step's boundaries, or behind by more than
``generator_behind_max_ms``) is invalid, as is every later one: the
staircase then says only that t_h is at least the last valid passing rate. When no step
fails, the last step is not judged (nothing after it shows growth) and t_h is at least
the rate of the step before it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.analysis import engine_metrics, flow
from sdsbench.analysis.criterion import Criterion
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


def fluid_backlog(times_s: np.ndarray, rates: np.ndarray, capacity: float) -> np.ndarray:
    """Backlog (ms) of a fluid queue served at ``capacity`` under the offered ``rates``:
    it grows by 1000 (1 - C / r) ms per second (the watermark falls behind real time,
    unread input piles up) and drains at that pace below C, never below zero."""
    dt = np.diff(times_s, prepend=times_s[0])
    free = np.cumsum(1000.0 * (1.0 - capacity / rates) * dt)
    return free - np.minimum(0.0, np.minimum.accumulate(free))  # reflected at 0


def fitted_capacity(
    times_s: np.ndarray, values: np.ndarray, rates: np.ndarray,
    steps: list[tuple[float, float, float]],
) -> tuple[float, float]:
    """The capacity C whose fluid backlog (plus a free offset: the signal's level) best
    explains the signal, by least absolute deviation over a grid of C; and the backlog
    growth that fit attributes to overload by the end of the run (ms). ``rates`` is the
    offered rate at each sample time."""
    lo, hi = steps[0][2] / 2, steps[-1][2] * 2
    grid = lo * CAPACITY_GRID_FACTOR ** np.arange(
        int(np.log(hi / lo) / np.log(CAPACITY_GRID_FACTOR)) + 1)
    best, best_cost, best_end = float(grid[-1]), math.inf, 0.0
    for capacity in grid:
        backlog = fluid_backlog(times_s, rates, capacity)
        residual = values - backlog
        cost = float(np.abs(residual - np.median(residual)).sum())
        if cost < best_cost:
            best, best_cost, best_end = float(capacity), cost, float(backlog[-1])
    return best, best_end


def offered_rates(run: RunData, steps: list[tuple[float, float, float]],
                  times_s: np.ndarray) -> np.ndarray:
    """The offered rate at each time (s after the generator's start): the events the
    generator scheduled in that second (so MMPP bursts and Poisson noise count), else the
    step's nominal rate."""
    rate = run.rate
    per_second = dict(zip(rate["second"].astype(int), rate["scheduled"].astype(float),
                          strict=True))
    out = []
    for t in times_s:
        scheduled = per_second.get(int(math.floor(t)), 0.0)
        out.append(scheduled if scheduled > 0 else _rate_at(steps, t))
    return np.array(out, dtype=float)


def _signals(run: RunData, start_ms: float, end_ms: float, delay_ms: float,
             steps: list[tuple[float, float, float]],
             ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each backlog signal (module docstring) as (sample times in s after the generator's
    start, backlog in ms, offered rate at those times)."""
    out = {}
    wm = engine_metrics.watermark_series(run)
    wm = wm[(wm["time_ms"] >= start_ms) & (wm["time_ms"] <= end_ms)]
    if len(wm):
        t = wm["time_ms"].to_numpy(dtype=float)
        t_s = (t - start_ms) / 1000.0
        out["watermark"] = (t_s, t - wm["watermark_ms"].to_numpy(dtype=float) - delay_ms,
                            offered_rates(run, steps, t_s))
    lag = flow.total_lag(run.metric("lag"))
    lag = lag[(lag["time_ms"] >= start_ms) & (lag["time_ms"] <= end_ms)]
    if len(lag):
        t_s = (lag["time_ms"].to_numpy(dtype=float) - start_ms) / 1000.0
        rate = offered_rates(run, steps, t_s)
        out["input"] = (t_s, lag["lag"].to_numpy(dtype=float) / rate * 1000.0, rate)
    return out


def _step_of(steps: list[tuple[float, float, float]], t_s: float) -> int | None:
    """The index of the step holding time ``t_s`` (None outside the staircase)."""
    return next((i for i, (lo, hi, _) in enumerate(steps) if lo <= t_s < hi), None)


def _rate_at(steps: list[tuple[float, float, float]], t_s: float) -> float:
    index = _step_of(steps, t_s)
    return steps[-1 if index is None else index][2]


def generator_on_schedule(rate: pd.DataFrame, lo_s: float, hi_s: float, tolerance: float,
                          behind_max_ms: float) -> tuple[bool, str]:
    """Did the generator keep its schedule in step [lo_s, hi_s)? (ok, why not).

    Its sent and scheduled counts per second are compared over the step, allowing the
    events that crossed the step's two boundaries within the lateness the generator
    reported there: a step that ends 60 ms behind at 110k ev/s sends 6.6k of its events
    in the next second (1.5 % of a 4 s step) without missing its schedule."""
    first, last = math.floor(lo_s), math.ceil(hi_s) - 1
    part = rate[(rate["second"] >= first) & (rate["second"] <= last)]
    scheduled = float(part["scheduled"].sum())
    sent = float(part["sent"].sum())
    behind = float(part["behind_ms_max"].max()) if len(part) else 0.0

    def carried(second: int) -> float:  # events scheduled in ``second``, sent in the next
        row = rate[rate["second"] == second]
        return float((row["behind_ms_max"] * row["scheduled"]).sum()) / 1000.0

    if scheduled and abs(sent - scheduled) > tolerance * scheduled + carried(first - 1) + \
            carried(last):
        return False, f"generator sent {sent / scheduled:.3f} of its schedule"
    if behind > behind_max_ms:
        return False, f"generator behind its schedule by {behind:.0f} ms"
    return True, ""


def window_latency_by_step(
    windows: pd.DataFrame, start_ms: float, steps: list[tuple[float, float, float]],
) -> dict[int, float]:
    """The largest latency above the delay (max over a firing's campaigns) of the steady
    windows that fired during each step, by step index."""
    if windows is None or windows.empty or "latency_above_delay_ms" not in windows:
        return {}
    steady = windows[windows["steady"].astype(bool)] if "steady" in windows else windows
    fired = steady.dropna(subset=["latency_above_delay_ms", "visible_ms"])
    out: dict[int, float] = {}
    for _, firing in fired.groupby("window_start_ms"):
        index = _step_of(steps, (float(firing["visible_ms"].median()) - start_ms) / 1000.0)
        if index is not None:
            out[index] = max(out.get(index, -math.inf),
                             float(firing["latency_above_delay_ms"].max()))
    return out


def analyse_staircase(
    run: RunData, windows: pd.DataFrame | None, delay_ms: float, criterion: Criterion,
) -> dict[str, Any]:
    """Per-step verdicts of a staircase run and the region [highest pass, lowest fail).
    ``windows`` is the run's per-window table (``sdsbench.analysis.summarize``): a step
    during which a steady window fired more than ``latency_bound_ms`` above the delay
    fails too."""
    latency_bound_ms = criterion.latency_bound_ms
    gen = run.generator
    start_ms, end_ms = gen["start_ns"] / 1e6, gen["schedule_end_ns"] / 1e6
    steps = step_rates(run.spec["arrival"], float(run.spec["duration_s"]))
    signals = _signals(run, start_ms, end_ms, delay_ms, steps)
    fits = {name: fitted_capacity(t_s, v, rates, steps)
            for name, (t_s, v, rates) in signals.items()}
    # Overloaded: the fit explains growth of at least the latency bound by the end.
    capacities = {name: c for name, (c, grown) in fits.items() if grown >= latency_bound_ms}
    capacity = min(capacities.values()) if capacities else None
    growth_from = next((i for i, (_, _, rate) in enumerate(steps)
                        if capacity is not None and rate > capacity), None)
    latency = window_latency_by_step(windows, start_ms, steps)
    # Above the bound for good: from this step on every firing was (a level that wavers
    # around the bound is left to the steady confirmation trials).
    late_from = None
    for i in sorted(latency, reverse=True):
        if latency[i] <= latency_bound_ms:
            break
        late_from = i
    fail_from = min((i for i in (growth_from, late_from) if i is not None), default=None)
    rows, invalid_from = [], None
    for i, (lo, hi, rate) in enumerate(steps):
        ok, why = generator_on_schedule(run.rate, lo, hi, criterion.rate_tolerance,
                                        criterion.generator_behind_max_ms)
        if invalid_from is None and not ok:
            invalid_from = i
        if invalid_from is not None and (fail_from is None or fail_from > i):
            verdict = "invalid"
        elif fail_from is not None and i >= fail_from:
            verdict = "fail"
        else:
            verdict = "pass"
        peak = {name: float(np.max(v[(t_s >= lo) & (t_s < hi)], initial=-math.inf))
                for name, (t_s, v, _) in signals.items()}
        rows.append({"step": i, "start_s": lo, "end_s": hi, "rate_eps": rate,
                     "verdict": verdict, "generator": why or "on schedule",
                     "window_latency_above_delay_ms_max": latency.get(i),
                     **{f"{name}_backlog_ms_max": (None if math.isinf(x) else x)
                        for name, x in peak.items()}})
    if fail_from is None and invalid_from is None and len(rows) > 1:
        # Nothing after the last step shows whether its backlog would have grown.
        rows[-1]["verdict"] = "unjudged"
    passes = [r["rate_eps"] for r in rows if r["verdict"] == "pass"]
    fails = [r["rate_eps"] for r in rows if r["verdict"] == "fail"]
    if not signals:
        reason = "no backlog signal measured (no watermark, no lag)"
    elif fail_from is not None:
        reason = "; ".join(
            text for text, i in (
                (f"backlog grew for good from step {growth_from}", growth_from),
                (f"every window from step {late_from} on fired more than "
                 f"{latency_bound_ms:.0f} ms above the delay", late_from),
            ) if i is not None)
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
