"""Arrival processes: exact constant counts, Poisson statistics, MMPP dwell times and
over-dispersion, deterministic alternation, and validation (fixed seeds throughout)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdsbench.config import ConfigError, load_config
from sdsbench.workload.arrivals import (
    ArrivalSpec,
    alternating_state_path,
    constant_counts,
    mmpp_state_path,
    tick_schedule,
    validate_arrival,
)


@pytest.fixture(scope="module")
def workload() -> dict:
    return load_config()["workload"]


def mmpp_spec(rate: float, up: float, down: float, low=0.5, high=1.5, period=None):
    return ArrivalSpec("mmpp", rate, low * rate, high * rate, up, down, period)


# ------------------------------------------------------------------- constant
@pytest.mark.parametrize(("rate", "batch_ms"), [(1000, 5), (333, 5), (12345.5, 7), (1, 5)])
def test_constant_counts_are_exact_for_every_prefix(rate: float, batch_ms: int) -> None:
    n = 4000
    counts = constant_counts(rate, batch_ms, n)
    assert counts.min() >= 0
    prefix = np.concatenate(([0], np.cumsum(counts)))
    expected = [math.floor(rate * k * batch_ms / 1000 + 1e-9) for k in range(n + 1)]
    assert prefix.tolist() == expected


def test_constant_1000_eps_in_5ms_ticks_is_5_per_tick() -> None:
    sched = tick_schedule(ArrivalSpec("constant", 1000.0), 5, 10.0, np.random.default_rng(0))
    assert sched.n_ticks == 2000
    assert set(sched.counts.tolist()) == {5}
    assert sched.scheduled_per_second().tolist() == [1000] * 10


# ------------------------------------------------------------------------ SPP
def test_spp_mean_and_index_of_dispersion() -> None:
    rate, batch_ms = 2000.0, 5
    sched = tick_schedule(ArrivalSpec("spp", rate), batch_ms, 2000.0, np.random.default_rng(11))
    counts = sched.counts
    lam = rate * batch_ms / 1000  # 10 per tick
    n = len(counts)
    # Mean within 4 standard errors; variance/mean of a Poisson count is 1 (the
    # sample index of dispersion has sd ~ sqrt(2/n)).
    assert abs(counts.mean() - lam) < 4 * math.sqrt(lam / n)
    assert abs(counts.var(ddof=1) / counts.mean() - 1) < 4 * math.sqrt(2 / n)
    per_second = sched.scheduled_per_second()
    assert abs(per_second.var(ddof=1) / per_second.mean() - 1) < 4 * math.sqrt(2 / len(per_second))


def test_spp_is_reproducible_with_a_seed() -> None:
    a = tick_schedule(ArrivalSpec("spp", 500.0), 5, 5.0, np.random.default_rng(3)).counts
    b = tick_schedule(ArrivalSpec("spp", 500.0), 5, 5.0, np.random.default_rng(3)).counts
    c = tick_schedule(ArrivalSpec("spp", 500.0), 5, 5.0, np.random.default_rng(4)).counts
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


# ----------------------------------------------------------------------- MMPP
def _ks_exponential(samples: np.ndarray, rate: float) -> float:
    x = np.sort(samples)
    n = len(x)
    cdf = 1 - np.exp(-rate * x)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))


def test_mmpp_dwell_times_are_exponential_with_the_configured_rates() -> None:
    up, down = 0.2, 0.5
    path = mmpp_state_path(up, down, 40_000.0, np.random.default_rng(5))
    dwell = path.dwell_times_s()[1:-1]  # the first and last dwell are cut by the window
    high = path.high[1:-1]
    assert np.all(path.high[1:] != path.high[:-1])  # states alternate
    for samples, rate in ((dwell[~high], up), (dwell[high], down)):
        n = len(samples)
        assert n > 1000
        assert abs(samples.mean() - 1 / rate) < 4 * (1 / rate) / math.sqrt(n)
        # Kolmogorov-Smirnov distance to the exponential, 1% critical value.
        assert _ks_exponential(samples, rate) < 1.63 / math.sqrt(n)


def test_mmpp_mean_rate_and_overdispersion() -> None:
    rate = 1000.0
    spec = mmpp_spec(rate, 0.2, 0.2)
    assert spec.mean_rate_eps == pytest.approx(rate)
    sched = tick_schedule(spec, 5, 4000.0, np.random.default_rng(8))
    per_second = sched.scheduled_per_second()
    # The mean over many cycles approaches the long-run mean (dwell ~5 s, 4000 s).
    assert per_second.mean() == pytest.approx(rate, rel=0.03)
    # Markov modulation makes counts over-dispersed: variance well above the mean.
    assert per_second.var(ddof=1) > 10 * per_second.mean()


def test_mmpp_mean_rate_with_asymmetric_switching() -> None:
    spec = mmpp_spec(1000.0, 0.1, 0.3)  # high 25% of the time
    assert spec.mean_rate_eps == pytest.approx(0.75 * 500 + 0.25 * 1500)
    sched = tick_schedule(spec, 5, 8000.0, np.random.default_rng(9))
    assert sched.counts.sum() / sched.duration_s == pytest.approx(spec.mean_rate_eps, rel=0.04)


def test_mmpp_counts_follow_the_state_path() -> None:
    spec = mmpp_spec(2000.0, 0.2, 0.2)
    sched = tick_schedule(spec, 5, 1000.0, np.random.default_rng(10))
    path = sched.state_path
    assert path is not None
    tick_mid = (np.arange(sched.n_ticks) + 0.5) * 0.005
    state_index = np.searchsorted(path.t_start_s, tick_mid, side="right") - 1
    high = path.high[state_index]
    assert sched.counts[high].mean() == pytest.approx(3000 * 0.005, rel=0.02)
    assert sched.counts[~high].mean() == pytest.approx(1000 * 0.005, rel=0.02)


def test_high_time_is_integrated_exactly() -> None:
    path = alternating_state_path(2.0, 10.0)  # low [0,1), high [1,2), low [2,3), ...
    t = np.array([0.0, 0.5, 1.0, 1.25, 2.0, 3.5, 10.0])
    assert path.high_time_until(t).tolist() == pytest.approx([0, 0, 0, 0.25, 1.0, 1.5, 5.0])


def test_deterministic_alternation() -> None:
    spec = mmpp_spec(1000.0, 0.2, 0.2, period=10.0)
    assert spec.mean_rate_eps == pytest.approx(1000.0)
    sched = tick_schedule(spec, 5, 60.0, np.random.default_rng(1))
    path = sched.state_path
    assert path is not None
    assert path.t_start_s.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]
    assert path.high.tolist() == [False, True] * 6
    per_second = sched.scheduled_per_second()
    low = np.concatenate([per_second[i : i + 5] for i in range(0, 60, 10)])
    high = np.concatenate([per_second[i + 5 : i + 10] for i in range(0, 60, 10)])
    assert low.mean() == pytest.approx(500, rel=0.05)
    assert high.mean() == pytest.approx(1500, rel=0.05)
    assert path.csv_text().splitlines()[:3] == ["t_start_s,state", "0.000000,low", "5.000000,high"]


def test_scaled_keeps_switching_and_divides_rates() -> None:
    spec = mmpp_spec(1000.0, 0.2, 0.4).scaled(0.25)
    assert (spec.rate_eps, spec.low_rate_eps, spec.high_rate_eps) == (250, 125, 375)
    assert (spec.low_to_high_per_s, spec.high_to_low_per_s) == (0.2, 0.4)


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("arrival", "key"),
    [
        ({"process": "gamma", "rate_eps": 10}, "arrival.process"),
        ({"process": "spp", "rate_eps": -1}, "arrival.rate_eps"),
        ({"process": "spp", "rate_eps": "fast"}, "arrival.rate_eps"),
        ({"process": "spp", "rate_eps": float("nan")}, "arrival.rate_eps"),
        ({"rate_eps": 10}, "arrival.process"),
        ({"process": "constant"}, "arrival.rate_eps"),
        ({"process": "constant", "rate_eps": 1, "burst": 2}, "arrival.burst"),
    ],
)
def test_bad_arrival_is_rejected_naming_the_key(workload: dict, arrival: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_arrival({"arrival": arrival}, workload)


def test_missing_arrival_and_mmpp_keys_are_named(workload: dict) -> None:
    with pytest.raises(ValueError, match="spec key arrival: missing"):
        validate_arrival({}, workload)
    broken = {**workload, "mmpp": {k: v for k, v in workload["mmpp"].items() if k != "period_s"}}
    with pytest.raises(ConfigError, match=r"workload\.mmpp\.period_s"):
        validate_arrival({"arrival": {"process": "mmpp", "rate_eps": 10}}, broken)
    zero = {**workload, "mmpp": {**workload["mmpp"], "high_to_low_per_s": 0}}
    with pytest.raises(ConfigError, match=r"workload\.mmpp\.high_to_low_per_s"):
        validate_arrival({"arrival": {"process": "mmpp", "rate_eps": 10}}, zero)


def test_valid_mmpp_spec_uses_the_config(workload: dict) -> None:
    spec = validate_arrival({"arrival": {"process": "mmpp", "rate_eps": 100}}, workload)
    m = workload["mmpp"]
    assert spec.low_rate_eps == pytest.approx(100 * m["low_factor"])
    assert spec.high_rate_eps == pytest.approx(100 * m["high_factor"])
    assert spec.low_to_high_per_s == m["low_to_high_per_s"]
