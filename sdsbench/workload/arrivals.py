"""Arrival processes of the open-loop generator, as event counts per scheduling tick.

The generator sends in ticks of ``workload.batch_ms``; an arrival process decides how
many events belong to each tick. Processes (``spec["arrival"]["process"]``):

- ``constant``: exactly ``rate_eps`` events per second, spread evenly (the count of
  tick k is ``floor(rate*(k+1)*dt) - floor(rate*k*dt)``, so every prefix is exact).
- ``spp``: stationary Poisson process with intensity ``rate_eps``.
- ``mmpp``: 2-state Markov-modulated Poisson process. In state low the intensity is
  ``low_factor * rate_eps``, in state high ``high_factor * rate_eps``; the dwell time in
  low is exponential with rate ``low_to_high_per_s`` and in high with rate
  ``high_to_low_per_s``. The long-run mean intensity is
  ``(low * high_to_low + high * low_to_high) / (low_to_high + high_to_low)``, which is
  ``rate_eps`` when the switching rates are equal and the factors average to 1 (the
  defaults); ``ArrivalSpec.mean_rate_eps`` gives it in every case.
  With ``workload.mmpp.period_s`` set, the switching is deterministic instead: low for
  ``period_s/2``, then high for ``period_s/2``, and so on (one full cycle = ``period_s``);
  within each state arrivals stay Poisson.

A staircase of rates (the sustainable-throughput search, ``sdsbench.analysis.staircase``):
with ``step_factor`` and ``step_s`` in the arrival, every intensity above is multiplied
by ``step_factor ** floor(t / step_s)``: the rate steps up every ``step_s`` seconds.

Counts for a tick are Poisson with mean = the integral of the intensity over the tick, so
an MMPP switch inside a tick is accounted for exactly. Everything is drawn from seeded
numpy Generators passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sdsbench.config import ConfigError

ARRIVAL_PROCESSES: tuple[str, ...] = ("constant", "spp", "mmpp")
STATE_LOW, STATE_HIGH = "low", "high"


@dataclass(frozen=True)
class ArrivalSpec:
    """A validated arrival process (rates in events per second)."""

    process: str
    rate_eps: float
    low_rate_eps: float = 0.0  # mmpp only
    high_rate_eps: float = 0.0  # mmpp only
    low_to_high_per_s: float = 0.0  # mmpp only
    high_to_low_per_s: float = 0.0  # mmpp only
    period_s: float | None = None  # mmpp only: deterministic alternation
    step_factor: float = 1.0  # staircase: intensities x step_factor ** floor(t / step_s)
    step_s: float | None = None

    def step_multiplier(self, t_s: np.ndarray) -> np.ndarray:
        """The staircase's factor at times ``t_s`` (1 without a staircase)."""
        if self.step_s is None:
            return np.ones_like(np.asarray(t_s, dtype=float))
        return self.step_factor ** np.floor(np.asarray(t_s, dtype=float) / self.step_s + 1e-9)

    @property
    def mean_rate_eps(self) -> float:
        """The long-run mean intensity of the process."""
        if self.process != "mmpp":
            return self.rate_eps
        if self.period_s is not None:
            return (self.low_rate_eps + self.high_rate_eps) / 2
        q = self.low_to_high_per_s + self.high_to_low_per_s
        return (
            self.low_rate_eps * self.high_to_low_per_s + self.high_rate_eps * self.low_to_high_per_s
        ) / q

    def scaled(self, factor: float) -> ArrivalSpec:
        """The same process with all intensities multiplied (for one of N producer processes);
        the switching (the state path) is unchanged."""
        return replace(
            self,
            rate_eps=self.rate_eps * factor,
            low_rate_eps=self.low_rate_eps * factor,
            high_rate_eps=self.high_rate_eps * factor,
        )


def _number(value: Any, key: str, minimum: float | None = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"{key}: must be {relation} {minimum}, got {value!r}")
    return float(value)


def validate_arrival(spec: Mapping[str, Any], workload: Mapping[str, Any]) -> ArrivalSpec:
    """Check ``spec["arrival"]`` (and the workload's mmpp section it needs) and build an
    ArrivalSpec; a ConfigError (a ValueError) names the offending key."""
    if not isinstance(spec, Mapping) or "arrival" not in spec:
        raise ConfigError("spec key arrival: missing")
    arrival = spec["arrival"]
    if not isinstance(arrival, Mapping):
        raise ConfigError(f"spec key arrival: expected a mapping, got {arrival!r}")
    for key in ("process", "rate_eps"):
        if key not in arrival:
            raise ConfigError(f"spec key arrival.{key}: missing")
    process = arrival["process"]
    if process not in ARRIVAL_PROCESSES:
        raise ConfigError(
            f"spec key arrival.process: unknown arrival process {process!r}; "
            f"expected one of {ARRIVAL_PROCESSES}"
        )
    unknown = sorted(set(arrival) - {"process", "rate_eps", "step_factor", "step_s"})
    if unknown:
        raise ConfigError(f"spec key arrival.{unknown[0]}: unknown key")
    rate = _number(arrival["rate_eps"], "spec key arrival.rate_eps")
    steps: dict[str, Any] = {}
    if "step_factor" in arrival or "step_s" in arrival:
        for key in ("step_factor", "step_s"):
            if key not in arrival:
                raise ConfigError(f"spec key arrival.{key}: missing (a staircase needs both)")
        steps = {
            "step_factor": _number(arrival["step_factor"], "spec key arrival.step_factor",
                                   minimum=0.0, strict=True),
            "step_s": _number(arrival["step_s"], "spec key arrival.step_s", strict=True),
        }
    if process != "mmpp":
        return ArrivalSpec(process, rate, **steps)

    mmpp = workload.get("mmpp") if isinstance(workload, Mapping) else None
    if not isinstance(mmpp, Mapping):
        raise ConfigError("config key workload.mmpp: missing")
    names = ("low_factor", "high_factor", "low_to_high_per_s", "high_to_low_per_s", "period_s")
    for key in names:
        if key not in mmpp:
            raise ConfigError(f"config key workload.mmpp.{key}: missing")
    low = _number(mmpp["low_factor"], "config key workload.mmpp.low_factor")
    high = _number(mmpp["high_factor"], "config key workload.mmpp.high_factor")
    if low > high:
        raise ConfigError("config key workload.mmpp.low_factor: must be <= high_factor")
    up = _number(
        mmpp["low_to_high_per_s"], "config key workload.mmpp.low_to_high_per_s", strict=True
    )
    down = _number(
        mmpp["high_to_low_per_s"], "config key workload.mmpp.high_to_low_per_s", strict=True
    )
    period = mmpp["period_s"]
    if period is not None:
        period = _number(period, "config key workload.mmpp.period_s", strict=True)
    return ArrivalSpec("mmpp", rate, low * rate, high * rate, up, down, period, **steps)


# ------------------------------------------------------------------ state paths
@dataclass(frozen=True, eq=False)
class StatePath:
    """A piecewise-constant MMPP state path: state ``high[i]`` from ``t_start_s[i]`` until
    the next start (the last one until ``end_s``)."""

    t_start_s: np.ndarray  # float64, t_start_s[0] == 0, increasing
    high: np.ndarray  # bool
    end_s: float

    def dwell_times_s(self) -> np.ndarray:
        return np.diff(np.append(self.t_start_s, self.end_s))

    def high_time_until(self, t_s: np.ndarray) -> np.ndarray:
        """Time spent in state high in [0, t) for each t (exact, piecewise linear)."""
        knots = np.append(self.t_start_s, self.end_s)
        in_high = np.where(self.high, np.diff(knots), 0.0)
        cumulative = np.concatenate(([0.0], np.cumsum(in_high)))
        # Between knots the high time grows with slope 1 in high states, 0 in low
        # states; np.interp on (knot, cumulative) is exactly that piecewise-linear curve.
        return np.interp(t_s, knots, cumulative)

    def csv_text(self) -> str:
        lines = ["t_start_s,state"]
        for start, high in zip(self.t_start_s.tolist(), self.high.tolist(), strict=True):
            lines.append(f"{start:.6f},{STATE_HIGH if high else STATE_LOW}")
        return "\n".join(lines) + "\n"


def mmpp_state_path(
    low_to_high_per_s: float, high_to_low_per_s: float, duration_s: float, rng: np.random.Generator
) -> StatePath:
    """A random state path over [0, duration_s); the first state is drawn from the
    stationary distribution so the process is stationary from t = 0."""
    p_high = low_to_high_per_s / (low_to_high_per_s + high_to_low_per_s)
    high = bool(rng.random() < p_high)
    starts, states, t = [], [], 0.0
    while t < duration_s:
        starts.append(t)
        states.append(high)
        t += rng.exponential(1.0 / (high_to_low_per_s if high else low_to_high_per_s))
        high = not high
    return StatePath(np.asarray(starts, dtype=float), np.asarray(states, dtype=bool), duration_s)


def alternating_state_path(period_s: float, duration_s: float) -> StatePath:
    """Deterministic alternation: low for period_s/2, high for period_s/2, repeated."""
    half = period_s / 2
    n = max(1, math.ceil(duration_s / half))
    starts = np.arange(n, dtype=float) * half
    return StatePath(starts, np.arange(n) % 2 == 1, duration_s)


# ------------------------------------------------------------------ tick counts
def n_ticks_for(duration_s: float, batch_ms: int) -> int:
    """Number of scheduling ticks covering duration_s (the run lasts n_ticks * batch_ms)."""
    return max(1, round(duration_s * 1000 / batch_ms))


def constant_counts(rate_eps: float, batch_ms: int, n_ticks: int) -> np.ndarray:
    """Exact evenly spread counts: the first k ticks hold floor(rate * k * dt) events."""
    # Cumulative counts in integer-safe float arithmetic; the tiny epsilon keeps
    # e.g. 1000 eps * 0.005 s * 3 = 14.999999... from flooring to 14.
    ends = np.arange(n_ticks + 1, dtype=np.float64) * (batch_ms / 1000.0)
    cumulative = np.floor(rate_eps * ends + 1e-9).astype(np.int64)
    return np.diff(cumulative)


def poisson_counts(
    rate_eps: float, batch_ms: int, n_ticks: int, rng: np.random.Generator
) -> np.ndarray:
    return rng.poisson(rate_eps * batch_ms / 1000.0, size=n_ticks).astype(np.int64)


def modulated_counts(
    path: StatePath,
    low_rate_eps: float,
    high_rate_eps: float,
    batch_ms: int,
    n_ticks: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Poisson counts whose mean is the intensity integrated over each tick."""
    dt_s = batch_ms / 1000.0
    edges = np.arange(n_ticks + 1, dtype=np.float64) * dt_s
    high_s = np.diff(path.high_time_until(edges))
    mean = low_rate_eps * dt_s + (high_rate_eps - low_rate_eps) * high_s
    return rng.poisson(np.maximum(mean, 0.0)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class TickSchedule:
    """Events per tick for one producer process; tick k is due at start + k * batch_ms."""

    counts: np.ndarray  # int64, one entry per tick
    batch_ms: int
    state_path: StatePath | None  # mmpp only

    @property
    def n_ticks(self) -> int:
        return len(self.counts)

    @property
    def duration_s(self) -> float:
        return self.n_ticks * self.batch_ms / 1000.0

    def scheduled_per_second(self) -> np.ndarray:
        """Scheduled events per second of the run (by due time)."""
        seconds = (np.arange(self.n_ticks, dtype=np.int64) * self.batch_ms) // 1000
        return np.bincount(seconds, weights=self.counts, minlength=int(seconds[-1]) + 1).astype(
            np.int64
        )


def state_path_for(
    arrival: ArrivalSpec, duration_s: float, rng: np.random.Generator
) -> StatePath | None:
    """The MMPP state path (None for other processes). Producer processes of one run all
    use the same path (same rng seed), so their sum is an MMPP with the configured switching."""
    if arrival.process != "mmpp":
        return None
    if arrival.period_s is not None:
        return alternating_state_path(arrival.period_s, duration_s)
    return mmpp_state_path(arrival.low_to_high_per_s, arrival.high_to_low_per_s, duration_s, rng)


def tick_schedule(
    arrival: ArrivalSpec,
    batch_ms: int,
    duration_s: float,
    rng: np.random.Generator,
    state_path: StatePath | None = None,
) -> TickSchedule:
    """Per-tick counts for ``arrival`` over ``duration_s`` (rounded to whole ticks).

    For mmpp pass the run's shared ``state_path`` (from ``state_path_for``); without one
    a path is drawn from ``rng``."""
    n_ticks = n_ticks_for(duration_s, batch_ms)
    if arrival.step_s is not None:
        return _staircase_schedule(arrival, batch_ms, n_ticks, rng, state_path)
    if arrival.process == "constant":
        return TickSchedule(constant_counts(arrival.rate_eps, batch_ms, n_ticks), batch_ms, None)
    if arrival.process == "spp":
        return TickSchedule(
            poisson_counts(arrival.rate_eps, batch_ms, n_ticks, rng), batch_ms, None
        )
    if arrival.process == "mmpp":
        path = state_path or state_path_for(arrival, n_ticks * batch_ms / 1000.0, rng)
        assert path is not None
        counts = modulated_counts(
            path, arrival.low_rate_eps, arrival.high_rate_eps, batch_ms, n_ticks, rng
        )
        return TickSchedule(counts, batch_ms, path)
    raise ConfigError(f"spec key arrival.process: unknown arrival process {arrival.process!r}")


def _staircase_schedule(
    arrival: ArrivalSpec, batch_ms: int, n_ticks: int, rng: np.random.Generator,
    state_path: StatePath | None,
) -> TickSchedule:
    """Counts of a staircase: the process's intensity x the step multiplier of each tick
    (steps change on tick boundaries when step_s is a multiple of batch_ms)."""
    dt_s = batch_ms / 1000.0
    edges = np.arange(n_ticks + 1, dtype=np.float64) * dt_s
    factor = arrival.step_multiplier(edges[:-1])
    path = None
    if arrival.process == "mmpp":
        path = state_path or state_path_for(arrival, n_ticks * dt_s, rng)
        assert path is not None
        high_s = np.diff(path.high_time_until(edges))
        mean = arrival.low_rate_eps * dt_s + (arrival.high_rate_eps - arrival.low_rate_eps) * high_s
    else:
        mean = np.full(n_ticks, arrival.rate_eps * dt_s)
    mean = mean * factor
    if arrival.process == "constant":
        cumulative = np.floor(np.concatenate(([0.0], np.cumsum(mean))) + 1e-9).astype(np.int64)
        return TickSchedule(np.diff(cumulative), batch_ms, None)
    return TickSchedule(rng.poisson(np.maximum(mean, 0.0)).astype(np.int64), batch_ms, path)
