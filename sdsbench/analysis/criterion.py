"""Whether a run at one offered rate is sustainable: the criterion of the t_h search.

Following Karimov et al. (ICDE 2018), a system sustains an offered rate when neither its
latency nor its backlog grows for ever. A run of finite length can only show trends, so
every growth test bounds a least-squares slope over the run's steady part (from the
generator's start + ``experiments.warmup_s`` to the generator's end) by the same
fraction ``growth_max_fraction`` of the load: a system overloaded by x % builds a
backlog of x % of the offered rate per second and falls behind real time by x % (x * 10
ms per second). A trial in which the generator itself could not keep its schedule says
nothing about the system under test: it is invalid, not a failure.

The series the slopes come from are computed by ``sdsbench.analysis.flow``
(``lag_slope_eps``, ``watermark_lag_slope_ms_per_s``) and ``sdsbench.analysis.latency``
(``latency_trend_ms_per_s``); ``sustainable`` reads them from a run summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sdsbench.numbers import as_number

#: The latency statistic the criterion bounds (a key of a run summary).
LATENCY_STATISTIC = "latency_above_delay_ms_p95"
#: The latency trend is tested only on at least this many steady firings.
TREND_MIN_FIRINGS = 3
#: Pipelines without an event-time watermark.
NO_WATERMARK_PIPELINES = ("a1", "a2")


@dataclass(frozen=True)
class Criterion:
    """The thresholds of ``sustainable`` (config section ``search``)."""

    latency_bound_ms: float = 1000.0
    growth_max_fraction: float = 0.01
    rate_tolerance: float = 0.01
    generator_behind_max_ms: float = 500.0

    @classmethod
    def from_config(cls, search: dict[str, Any]) -> Criterion:
        return cls(
            latency_bound_ms=float(search["latency_bound_ms"]),
            growth_max_fraction=float(search["growth_max_fraction"]),
            rate_tolerance=float(search["rate_tolerance"]),
            generator_behind_max_ms=float(search["generator_behind_max_ms"]),
        )


def _num(summary: dict[str, Any], key: str) -> float:
    return as_number(summary.get(key))


def _count(value: float) -> str:
    return "?" if math.isnan(value) else f"{value:.0f}"


def _generator(summary: dict[str, Any], criterion: Criterion) -> list[str]:
    """Why the generator could not keep its schedule (empty: it could)."""
    problems = []
    ratio = _num(summary, "achieved_ratio")
    if math.isnan(ratio):
        problems.append("recorded no schedule")
    elif abs(ratio - 1.0) > criterion.rate_tolerance:
        problems.append(f"sent {ratio:.4f} of its schedule on time "
                        f"(tolerance {criterion.rate_tolerance:g})")
    behind = _num(summary, "generator_behind_ms_max")
    if not math.isnan(behind) and behind > criterion.generator_behind_max_ms:
        problems.append(f"fell {behind:.0f} ms behind it "
                        f"(at most {criterion.generator_behind_max_ms:.0f} ms)")
    blocked = _num(summary, "generator_blocked_ms")
    if not math.isnan(blocked) and blocked > 0:
        problems.append(f"was held back {blocked:.0f} ms by the producer's full local queue")
    return problems


def sustainable(summary: dict[str, Any], criterion: Criterion) -> dict[str, Any]:
    """A run is sustainable (verdict "pass") when the generator kept its schedule and all
    five tests hold, with g = ``growth_max_fraction``, r = the offered rate (events/s) and
    the steady part = [generator start + warm-up, generator end):

    1. latency: the p95 over steady windows of (latency from window end - the configured
       delay) is at most ``latency_bound_ms``;
    2. backlog: the least-squares slope of the consumer lag (events) over the steady
       part is at most g x r events/s per second (the backlog gained over the steady
       part is at most g x the events offered in it);
    3. watermark: the least-squares slope of the watermark lag (sample time - watermark)
       over the steady part is at most g x 1000 ms per second (A3, Spark, Flink; a run
       with fewer than two watermark samples in the steady part, as every A1 and A2
       run, passes it, noted in the reasons);
    4. latency trend: the least-squares slope of the per-firing latency from window end
       (mean over the firing's campaigns) against the window end, over the steady
       windows, is at most g x 1000 ms per second; tested only with at least 3 steady
       firings (else it passes, noted in the reasons);
    5. windows: every window in the steady range fired (``steady_windows_missing`` = 0).

    The trial is invalid (verdict "invalid", neither pass nor fail: the system under
    test is not judged) when the generator could not keep its schedule: its events sent
    on schedule are not within ``rate_tolerance`` of its events scheduled (|sent /
    scheduled - 1| > rate_tolerance), or it fell more than ``generator_behind_max_ms``
    behind its schedule, or the producer's full local queue held events back (blocked
    time > 0). Otherwise a run that fails any test fails ("fail"). A run without window
    results, without a lag measurement or without a count of its steady windows fails
    (nothing shows that it is sustainable).

    Returns ``verdict``, ``sustainable`` (verdict is pass), ``valid``, one boolean per
    test (``latency_ok``, ``lag_ok``, ``watermark_ok``, ``trend_ok``, ``windows_ok``,
    ``generator_ok``) and ``reasons``: every failed test with its numbers, then notes on
    tests not applied.
    """
    g = criterion.growth_max_fraction
    offered = _num(summary, "offered_rate_eps")
    failed: list[str] = []
    notes: list[str] = []

    problems = _generator(summary, criterion)
    generator_ok = not problems
    if problems:
        failed.append("generator could not keep its schedule: it " + ", ".join(problems))

    latency = _num(summary, LATENCY_STATISTIC)
    latency_ok = not math.isnan(latency) and latency <= criterion.latency_bound_ms
    if math.isnan(latency):
        failed.append("no window latency measured")
    elif not latency_ok:
        failed.append(f"p95 latency above delay {latency:.0f} ms > "
                      f"{criterion.latency_bound_ms:.0f} ms")

    slope = _num(summary, "lag_slope_eps")
    bound = g * offered
    lag_ok = not math.isnan(slope) and slope <= bound
    if math.isnan(slope):
        if summary.get("lag_measured") and _num(summary, "lag_samples") > 0:
            failed.append("lag slope not measurable "
                          f"({_count(_num(summary, 'lag_slope_n'))} lag samples in the "
                          "steady part)")
        else:
            failed.append("lag not measured")
    elif not lag_ok:
        failed.append(f"backlog grows {slope:.0f} events/s per s > {g:g} x {offered:.0f} "
                      f"events/s = {bound:.0f} (lag {_count(_num(summary, 'lag_final'))} "
                      "events at the generator's end)")

    wm_slope = _num(summary, "watermark_lag_slope_ms_per_s")
    trend_bound = g * 1000.0
    watermark_ok = math.isnan(wm_slope) or wm_slope <= trend_bound
    if math.isnan(wm_slope):
        samples = _num(summary, "watermark_lag_slope_n")
        if summary.get("pipeline") in NO_WATERMARK_PIPELINES or not samples > 0:
            notes.append("no watermark")
        else:
            notes.append(f"watermark trend not tested ({_count(samples)} samples)")
    elif not watermark_ok:
        failed.append(f"watermark falls behind {wm_slope:.1f} ms per s > {g:g} x 1000 = "
                      f"{trend_bound:.1f} ms per s")

    trend = _num(summary, "latency_trend_ms_per_s")
    firings = _num(summary, "latency_trend_firings")
    if math.isnan(firings):
        firings = _num(summary, "latency_from_window_end_ms_firings")
    tested = not math.isnan(trend) and not (firings < TREND_MIN_FIRINGS)
    trend_ok = not tested or trend <= trend_bound
    if not tested:
        notes.append(f"latency trend not tested ({_count(firings)} firings)")
    elif not trend_ok:
        failed.append(f"latency grows {trend:.1f} ms per s > {g:g} x 1000 = "
                      f"{trend_bound:.1f} ms per s ({_count(firings)} firings)")

    missing = _num(summary, "steady_windows_missing")
    windows_ok = missing == 0
    if math.isnan(missing):
        failed.append("steady windows not counted")
    elif not windows_ok:
        failed.append(f"{missing:.0f} of {_count(_num(summary, 'steady_windows_expected'))} "
                      "steady windows never fired")

    passed = latency_ok and lag_ok and watermark_ok and trend_ok and windows_ok
    verdict = "invalid" if not generator_ok else ("pass" if passed else "fail")
    return {
        "verdict": verdict,
        "sustainable": verdict == "pass",
        "valid": generator_ok,
        "latency_ok": latency_ok,
        "lag_ok": lag_ok,
        "watermark_ok": watermark_ok,
        "trend_ok": trend_ok,
        "windows_ok": windows_ok,
        "generator_ok": generator_ok,
        "reasons": "; ".join(failed + notes),
    }
