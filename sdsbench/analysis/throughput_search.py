"""The automatic sustainable-throughput search: t_h of one pipeline under one arrival process.

One repetition of the search is:

1. a staircase run: one engine run whose offered rate starts at ``search.start_rate_eps``
   (or the pipeline's ``search.start_rates_eps``) and is multiplied by
   ``search.step_factor`` every ``search.step_s`` seconds for ``search.steps`` steps;
   ``sdsbench.analysis.staircase`` finds the step from which the backlog grows for good,
   giving the region [highest passing step, lowest failing step) in one job start;
2. steady confirmation trials (complete runs of ``search.trial_duration_s`` at one
   rate, judged by ``sdsbench.analysis.criterion``) at both ends of the region, moving it
   a step down or up when a trial disagrees, at most ``search.confirm_trials`` of them.

t_h of the repetition is the highest passing rate; the interval [t_h, lowest failing
rate) and why the search stopped are reported. A staircase that never fails gives t_h as
a lower bound. The workflow runs ``search.repetitions`` repetitions (interleaved with
the other pipelines' searches) and ``combine_repetitions`` reports their median and
spread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sdsbench.analysis.criterion import Criterion, sustainable

log = logging.getLogger("sdsbench.search")

#: Rates are rounded to this many events/s so run ids stay readable.
RATE_QUANTUM_EPS = 100


@dataclass(frozen=True)
class SearchSettings:
    """The search's shape (config section ``search``)."""

    start_rate_eps: float
    step_factor: float
    step_s: float
    steps: int
    confirm_trials: int
    trial_duration_s: float

    @classmethod
    def from_config(cls, search: dict[str, Any], pipeline: str) -> SearchSettings:
        start = (search.get("start_rates_eps") or {}).get(pipeline, search["start_rate_eps"])
        return cls(float(start), float(search["step_factor"]), float(search["step_s"]),
                   int(search["steps"]), int(search["confirm_trials"]),
                   float(search["trial_duration_s"]))


def quantize(rate: float) -> float:
    """Rates are rounded to RATE_QUANTUM_EPS so run ids stay readable."""
    return float(max(RATE_QUANTUM_EPS, round(rate / RATE_QUANTUM_EPS) * RATE_QUANTUM_EPS))


def _verdict(summary: dict[str, Any], criterion: Criterion) -> dict[str, Any]:
    if "failed" in summary:
        return {"verdict": "fail", "sustainable": False,
                "reasons": f"run failed: {summary['failed']}"}
    return sustainable(summary, criterion)


def confirm_region(
    run_trial: Callable[[float], dict[str, Any]],
    highest_pass: float,
    lowest_fail: float,
    step_factor: float,
    max_trials: int,
    criterion: Criterion,
) -> dict[str, Any]:
    """Steady trials at the staircase's highest passing rate and at its lowest failing
    one. A pass that fails moves both one step down, a fail that passes one step up,
    until a steady pass and a steady fail one step apart are seen, a trial is invalid,
    or ``max_trials`` have run."""
    trials: list[dict[str, Any]] = []
    lo, hi = highest_pass, lowest_fail
    passed: float | None = None
    failed: float | None = None
    reason = "confirmation trials exhausted"
    while len(trials) < max_trials:
        rate = lo if passed is None else hi
        summary = run_trial(rate)
        verdict = _verdict(summary, criterion)
        trials.append({"rate_eps": rate, "kind": "steady", **verdict, "summary": summary})
        log.info("steady trial at %.0f ev/s: %s %s", rate, verdict["verdict"].upper(),
                 verdict.get("reasons", ""))
        if verdict["verdict"] == "invalid":
            reason = f"trial at {rate:.0f} ev/s invalid: {verdict.get('reasons', '')}"
            break
        if rate == lo:
            if verdict["sustainable"]:
                passed = lo
            else:
                failed, hi, lo = lo, lo, quantize(lo / step_factor)
                continue
        else:
            if verdict["sustainable"]:
                passed, lo, hi = hi, hi, quantize(hi * step_factor)
                continue
            failed = hi
        if passed is not None and failed is not None:
            reason = "confirmed: steady pass and steady fail one step apart"
            break
    return {"highest_pass_eps": passed, "lowest_fail_eps": failed, "trials": trials,
            "reason": reason}


def search_repetition(
    run_staircase: Callable[[SearchSettings], tuple[dict[str, Any], dict[str, Any]]],
    run_trial: Callable[[float], dict[str, Any]],
    settings: SearchSettings,
    criterion: Criterion,
) -> dict[str, Any]:
    """One repetition of the search: a staircase run finds the region, steady trials
    confirm it (module docstring). ``run_staircase(settings)`` returns the staircase
    run's summary and its analysis (``sdsbench.analysis.staircase``)."""
    summary, stair = run_staircase(settings)
    trials: list[dict[str, Any]] = [{
        "rate_eps": settings.start_rate_eps, "kind": "staircase",
        "verdict": "invalid" if "failed" in summary else "region",
        "sustainable": None, "reasons": summary.get("failed", stair.get("reason", "")),
        "summary": summary, "steps": stair.get("steps", [])}]
    low, high = stair.get("highest_pass_eps"), stair.get("lowest_fail_eps")
    stop = stair.get("reason", "staircase run failed")
    if low is not None and high is not None and settings.confirm_trials > 0:
        confirmed = confirm_region(run_trial, low, high, settings.step_factor,
                                   settings.confirm_trials, criterion)
        trials += confirmed["trials"]
        stop = f"{stop}; {confirmed['reason']}"
        low = confirmed["highest_pass_eps"] if confirmed["highest_pass_eps"] else low
        high = confirmed["lowest_fail_eps"] if confirmed["lowest_fail_eps"] else high
        if high is not None and low is not None and low >= high:
            low = quantize(high / settings.step_factor)
    return {
        "t_h_eps": low,
        "t_h_is_lower_bound": low is not None and high is None,
        "lowest_failing_rate_eps": high,
        "interval_eps": [low, high],
        "relative_gap": (high - low) / low if low and high else None,
        "stop_reason": stop,
        "trials": trials,
        "criterion": asdict(criterion),
        "settings": asdict(settings),
    }


def combine_repetitions(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The search result over its repetitions: t_h = the median of the repetitions' t_h
    (the lower of the two middle ones for an even count), its spread min-max, and the
    interval [highest pass, lowest fail) of the repetition that gave the median."""
    found = sorted((r for r in reps if r.get("t_h_eps")), key=lambda r: r["t_h_eps"])
    values = [r["t_h_eps"] for r in found]
    median = found[(len(found) - 1) // 2] if found else None
    first = reps[0]
    return {
        "search_id": first["search_id"], "pipeline": first["pipeline"],
        "process": first["process"], "trial_duration_s": first["trial_duration_s"],
        "t_h_eps": median["t_h_eps"] if median else None,
        "t_h_is_lower_bound": bool(median and median["t_h_is_lower_bound"]),
        "lowest_failing_rate_eps": median["lowest_failing_rate_eps"] if median else None,
        "lowest_rate_tried_eps": min((t["rate_eps"] for r in reps for t in r["trials"]),
                                     default=None),
        "interval_eps": median["interval_eps"] if median else [None, None],
        "relative_gap": median["relative_gap"] if median else None,
        "t_h_values_eps": [r.get("t_h_eps") for r in reps],
        "t_h_min_eps": min(values) if values else None,
        "t_h_max_eps": max(values) if values else None,
        "repetitions": len(reps),
        "stop_reason": "; ".join(f"rep {r['repetition']}: {r['stop_reason']}" for r in reps),
        "trials": [t | {"repetition": r["repetition"]} for r in reps for t in r["trials"]],
        "criterion": first["criterion"],
        "settings": first["settings"],
    }
