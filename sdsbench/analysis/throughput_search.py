"""The automatic sustainable-throughput search: t_h of one pipeline under one arrival process.

A trial is a complete run (``sdsbench.runner.execute_run``) at one offered rate, for
``search.trial_duration_s`` seconds, analysed like any run (``sdsbench.analysis.summarize``).
The search ramps the rate up (x2) from ``search.start_rate_eps`` until a trial fails,
or down (/2) until one passes, then bisects between the highest passing and the lowest
failing rate until (fail - pass) / pass <= ``search.tolerance`` or ``search.max_trials``
trials have run. t_h is the highest passing rate below the lowest failing one. A search
that passes at ``search.max_rate_eps`` reports t_h as a lower bound; one that fails at
``search.min_rate_eps`` reports none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("sdsbench.search")

#: The latency statistic the criterion bounds (a key of a run summary).
LATENCY_STATISTIC = "latency_above_delay_ms_p95"
#: Rates are rounded to this many events/s so run ids stay readable.
RATE_QUANTUM_EPS = 100


@dataclass(frozen=True)
class Criterion:
    """The thresholds of ``sustainable`` (config section ``search``)."""

    latency_bound_ms: float = 1000.0
    lag_slope_max_fraction: float = 0.01
    final_lag_max_s: float = 1.0
    rate_tolerance: float = 0.01

    @classmethod
    def from_config(cls, search: dict[str, Any]) -> Criterion:
        return cls(
            latency_bound_ms=float(search["latency_bound_ms"]),
            lag_slope_max_fraction=float(search["lag_slope_max_fraction"]),
            final_lag_max_s=float(search["final_lag_max_s"]),
            rate_tolerance=float(search["rate_tolerance"]),
        )


def sustainable(summary: dict[str, Any], criterion: Criterion) -> dict[str, Any]:
    """A run is sustainable when all three hold:

    1. latency: the p95 over windows of (latency from window end - the configured
       watermark delay) is at most ``latency_bound_ms``;
    2. lag does not grow: the least-squares slope of the consumer lag over the second
       half of the generator's run is at most ``lag_slope_max_fraction`` x the offered
       rate (events/s per second), OR the lag at the generator's end is at most
       ``final_lag_max_s`` x the offered rate (at most that many seconds of input behind);
    3. the generator kept up: events sent are within ``rate_tolerance`` of events
       scheduled (|sent / scheduled - 1| <= rate_tolerance).

    A run without window results, or without a lag measurement, is not sustainable
    (nothing shows that it is).
    """
    offered = float(summary["offered_rate_eps"])
    latency = float(summary.get(LATENCY_STATISTIC, math.nan))
    latency_ok = not math.isnan(latency) and latency <= criterion.latency_bound_ms
    slope = float(summary.get("lag_slope_eps", math.nan))
    final = float(summary.get("lag_final", math.nan))
    slope_ok = not math.isnan(slope) and slope <= criterion.lag_slope_max_fraction * offered
    final_ok = not math.isnan(final) and final <= criterion.final_lag_max_s * offered
    lag_ok = slope_ok or final_ok
    ratio = float(summary.get("achieved_ratio", math.nan))
    rate_ok = not math.isnan(ratio) and abs(ratio - 1.0) <= criterion.rate_tolerance
    reasons = []
    if not latency_ok:
        reasons.append(
            "no window latency measured" if math.isnan(latency)
            else f"p95 latency above delay {latency:.0f} ms > {criterion.latency_bound_ms:.0f} ms"
        )
    if not lag_ok:
        reasons.append(
            "lag not measured" if math.isnan(slope) and math.isnan(final)
            else f"lag grows ({slope:.0f} ev/s per s) and ends at {final:.0f} events"
        )
    if not rate_ok:
        reasons.append(f"generator sent {ratio:.4f} of its schedule")
    return {
        "sustainable": latency_ok and lag_ok and rate_ok,
        "latency_ok": latency_ok,
        "lag_ok": lag_ok,
        "rate_ok": rate_ok,
        "reasons": "; ".join(reasons),
    }


@dataclass(frozen=True)
class SearchSettings:
    start_rate_eps: float
    min_rate_eps: float
    max_rate_eps: float
    tolerance: float
    max_trials: int

    @classmethod
    def from_config(cls, search: dict[str, Any]) -> SearchSettings:
        return cls(
            float(search["start_rate_eps"]), float(search["min_rate_eps"]),
            float(search["max_rate_eps"]), float(search["tolerance"]), int(search["max_trials"]),
        )


def _quantize(rate: float) -> float:
    return float(max(RATE_QUANTUM_EPS, round(rate / RATE_QUANTUM_EPS) * RATE_QUANTUM_EPS))


def search_threshold(
    run_trial: Callable[[float], dict[str, Any]],
    settings: SearchSettings,
    criterion: Criterion,
) -> dict[str, Any]:
    """Ramp and bisect (module docstring). ``run_trial(rate)`` returns a run summary, or a
    dict with ``failed: <message>`` when the run itself broke (counted as not sustainable).
    """
    trials: list[dict[str, Any]] = []
    best_pass: float | None = None
    lowest_fail: float | None = None
    start = max(settings.start_rate_eps, settings.min_rate_eps)
    rate = _quantize(min(start, settings.max_rate_eps))
    stop_reason = "max_trials reached"
    while len(trials) < settings.max_trials:
        summary = run_trial(rate)
        if "failed" in summary:
            verdict = {"sustainable": False, "latency_ok": False, "lag_ok": False,
                       "rate_ok": False, "reasons": f"run failed: {summary['failed']}"}
        else:
            verdict = sustainable(summary, criterion)
        trials.append({"rate_eps": rate, **verdict, "summary": summary})
        log.info("trial %d at %.0f ev/s: %s %s", len(trials), rate,
                 "PASS" if verdict["sustainable"] else "FAIL", verdict["reasons"])
        if verdict["sustainable"]:
            best_pass = rate if best_pass is None else max(best_pass, rate)
        else:
            lowest_fail = rate if lowest_fail is None else min(lowest_fail, rate)
        if best_pass is not None and lowest_fail is not None and lowest_fail <= best_pass:
            # Non-monotonic (noise): trust the failure, search below it again.
            best_pass = max((t["rate_eps"] for t in trials
                             if t["sustainable"] and t["rate_eps"] < lowest_fail), default=None)
        if lowest_fail is None:  # ramp up
            if rate >= settings.max_rate_eps:
                stop_reason = "sustainable at max_rate_eps (t_h is a lower bound)"
                break
            rate = _quantize(min(rate * 2, settings.max_rate_eps))
        elif best_pass is None:  # ramp down
            if rate <= settings.min_rate_eps:
                stop_reason = "not sustainable at min_rate_eps"
                break
            rate = _quantize(max(rate / 2, settings.min_rate_eps))
        else:  # bisect
            if (lowest_fail - best_pass) / best_pass <= settings.tolerance:
                stop_reason = "tolerance reached"
                break
            nxt = _quantize((best_pass + lowest_fail) / 2)
            if nxt in (best_pass, lowest_fail):
                stop_reason = "rate resolution reached"
                break
            rate = nxt
    return {
        "t_h_eps": best_pass,
        "t_h_is_lower_bound": best_pass is not None and lowest_fail is None,
        "lowest_failing_rate_eps": lowest_fail,
        "lowest_rate_tried_eps": min(t["rate_eps"] for t in trials) if trials else None,
        "relative_gap": (
            (lowest_fail - best_pass) / best_pass
            if best_pass is not None and lowest_fail is not None else None
        ),
        "stop_reason": stop_reason,
        "trials": trials,
        "criterion": asdict(criterion),
        "settings": asdict(settings),
    }


# ------------------------------------------------------------- driving real runs
def trial_key(config: dict[str, Any], spec: dict[str, Any]) -> str:
    """What a trial's result depends on: a completed trial with the same key is reused
    when an interrupted search is rerun."""
    from sdsbench.experiments import pipeline_params

    material = {
        "spec": spec,
        "pipeline": pipeline_params(config, spec),
        "workload": config["workload"],
        "run": config["run"],
        "warmup_s": config["experiments"]["warmup_s"],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run_search(
    config: dict[str, Any],
    pipeline: str,
    process: str,
    trials_dir: str | Path,
    execute: Callable[[dict[str, Any], dict[str, Any], Path], Path] | None = None,
) -> dict[str, Any]:
    """Search t_h of ``pipeline`` under ``process`` with real runs in ``trials_dir``."""
    from sdsbench.analysis.summarize import summarize_run
    from sdsbench.experiments import make_spec, search_id
    from sdsbench.rundir import is_complete

    if execute is None:
        from sdsbench.runner import execute_run as execute
    trials_dir = Path(trials_dir)
    trials_dir.mkdir(parents=True, exist_ok=True)
    search = config["search"]
    sid = search_id(pipeline, process)

    def run_trial(rate: float) -> dict[str, Any]:
        run_id = f"{sid}-r{int(rate)}"
        spec = make_spec(config, pipeline, process, rate, run_id=run_id,
                         duration_s=float(search["trial_duration_s"]))
        out = trials_dir / run_id
        key_file = trials_dir / f"{run_id}.key"
        key = trial_key(config, spec)
        if is_complete(out) and key_file.exists() and key_file.read_text() == key:
            log.info("reusing completed trial %s", run_id)
        else:
            key_file.unlink(missing_ok=True)
            try:
                execute(config, spec, out)
            except Exception as exc:  # noqa: BLE001 - a broken trial is a failed trial
                log.exception("trial %s failed", run_id)
                return {"failed": f"{type(exc).__name__}: {exc}", "run_id": run_id,
                        "offered_rate_eps": rate}
            key_file.write_text(key)
        summary, _, _ = summarize_run(out, config)
        return summary

    result = search_threshold(
        run_trial, SearchSettings.from_config(search), Criterion.from_config(search)
    )
    result.update({"search_id": sid, "pipeline": pipeline, "process": process,
                   "trial_duration_s": float(search["trial_duration_s"])})
    return result
