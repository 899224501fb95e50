"""Faults survived: each run of the faults group against the generator's truth and against
its reference run (the same spec and seed, no fault).

Inputs per run: its summary (``summary/runs/<id>.json``: the oracle's comparison with the
truth, see sdsbench.analysis.oracle), its per-window table (``summary/windows/<id>.csv``)
and, from the raw run, ``metrics/faults.json`` (sdsbench.faults) and ``metrics/lag.csv``.

Definitions (as coded):

- ``lost_windows``: truth windows without any result although their end lies before the
  pipeline's fire horizon (the oracle's ``missing_windows``); must be 0.
  ``lost_events``: events the final results lack (``deficit_events``), over all windows.
- ``excess_events``: events counted more than once in the final results (a replay stored
  or counted twice). ``duplicate_records``: result records beyond one per window (a window
  emitted again after a restart); ``changed_windows``: windows whose records disagree.
  A pipeline that promises exactly-once (A2 into PostgreSQL; Flink with the exactly-once
  sink) must have 0 of both; at-least-once outputs (A3's and Spark's Kafka sinks, Flink
  at-least-once) may repeat a record but never change a result.
- ``fault_ms``: when the fault began (SIGKILL sent; broker stop begun). ``down_s``: from
  then until the SUT (or broker) ran again (``restarted`` / ``broker_started``).
- ``recovery_s``: from ``fault_ms`` until the first consumer-lag sample (sum over
  partitions, ``metrics/lag.csv``), taken after the SUT ran again, whose lag is at most the
  largest lag sampled in the ``PRE_FAULT_S`` seconds before the fault (at least
  ``MIN_LAG_THRESHOLD`` records): the time until the pipeline had worked off the backlog
  the fault caused. NaN when the lag never came back down while it was sampled
  (``recovered`` false).
- ``first_result_after_fault_s``: from ``fault_ms`` until the first result visible after
  it (``visible_ms`` of the per-window table).
- vs the reference run: ``exact_ratio`` and end-to-end latency p95 of both runs. Event
  times follow the wall clock, so the two runs' windows are not the same windows: the
  comparison is of these aggregates, the window-by-window check is against each run's
  own exact truth.
- ``survived``: the fault was injected, no window or event was lost, no event counted
  twice, every evaluable window's final result is exact (or short by exactly the late
  events the pipeline reports dropping), and no duplicate record where exactly-once is
  promised. Malformed-input runs: the same on the valid events, bad records injected, and
  every one set aside under its reason (``passed`` of
  ``sdsbench.analysis.malformed.check_malformed``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

PRE_FAULT_S = 5.0
MIN_LAG_THRESHOLD = 1000  # records: below one batch, "caught up" is sampling noise

FAULT_COLUMNS = (
    "run_id", "pipeline", "injection", "reference_run", "offered_rate_eps", "injected",
    "fault_at_s", "down_s", "recovery_s", "recovered", "lag_before_fault",
    "first_result_after_fault_s", "lost_windows", "lost_events", "excess_events",
    "duplicate_records", "changed_windows", "exact_ratio", "reference_exact_ratio",
    "latency_from_window_end_ms_p95", "reference_latency_from_window_end_ms_p95",
    "generator_behind_ms_max", "rejected_events", "malformed_injected",
    "malformed_set_aside", "malformed_unjudged", "malformed_passed", "exactly_once",
    "survived",
)


def injection_of(spec: dict[str, Any]) -> str:
    fault = spec.get("fault")
    if fault and fault["kind"] == "broker_kill":
        return f"broker_kill ({fault.get('target', 'leader')})"
    if fault:
        return str(fault["kind"])
    if spec.get("malformed"):
        return "malformed"
    return "none"


def exactly_once(spec: dict[str, Any], config: dict[str, Any]) -> bool:
    """Does the pipeline promise each result exactly once (see the module doc)?"""
    pipeline = spec["pipeline"]
    if pipeline == "a2":
        return True
    if pipeline == "flink":
        from sdsbench.experiments import pipeline_params

        return pipeline_params(config, spec).get("delivery_guarantee") == "exactly-once"
    return False


def fault_times(faults: dict[str, Any]) -> tuple[float, float]:
    """(fault_ms, back_ms) from metrics/faults.json; NaN when not injected."""
    steps = {e["step"]: float(e["time_ms"]) for e in faults.get("events", [])}
    start = steps.get("kill", steps.get("broker_stop", math.nan))
    back = steps.get("restarted", steps.get("broker_started", math.nan))
    return start, back


def total_lag(lag: pd.DataFrame) -> pd.Series:
    """Lag summed over partitions per sample time (ms), in time order."""
    if lag is None or lag.empty:
        return pd.Series(dtype=float)
    return lag.groupby("time_ms")["lag"].sum().sort_index().astype(float)


def recovery(lag: pd.Series, fault_ms: float, back_ms: float) -> dict[str, Any]:
    """``recovery_s``, ``recovered`` and the pre-fault lag threshold (module doc)."""
    out: dict[str, Any] = {"recovery_s": math.nan, "recovered": False,
                           "lag_before_fault": math.nan}
    if lag.empty or math.isnan(fault_ms):
        return out
    before = lag[(lag.index < fault_ms) & (lag.index >= fault_ms - PRE_FAULT_S * 1000)]
    if before.empty:
        before = lag[lag.index < fault_ms].tail(1)
    threshold = max(float(before.max()) if len(before) else 0.0, MIN_LAG_THRESHOLD)
    out["lag_before_fault"] = float(before.max()) if len(before) else math.nan
    after = lag[(lag.index >= (back_ms if not math.isnan(back_ms) else fault_ms))]
    ok = after[after <= threshold]
    if len(ok):
        out["recovery_s"] = round((float(ok.index[0]) - fault_ms) / 1000, 3)
        out["recovered"] = True
    return out


def first_result_after(windows: pd.DataFrame | None, fault_ms: float) -> float:
    if windows is None or math.isnan(fault_ms) or "visible_ms" not in windows:
        return math.nan
    visible = pd.to_numeric(windows["visible_ms"], errors="coerce")
    later = visible[visible > fault_ms]
    return round((float(later.min()) - fault_ms) / 1000, 3) if len(later) else math.nan


def malformed_check(run_dir: Path) -> dict[str, Any]:
    """The malformed-input columns of a run (``sdsbench.analysis.malformed``): bad records
    injected, bad records set aside, and its verdict ``passed`` (every one set aside under
    its reason, and the valid events' results right)."""
    from sdsbench.analysis.malformed import check_malformed
    from sdsbench.analysis.rundata import RunDataError

    try:
        result = check_malformed(run_dir)
    except (RunDataError, OSError, KeyError) as exc:
        # Nothing to check against (e.g. no generator/malformed.csv): not passed.
        return {"malformed_injected": None, "malformed_set_aside": None,
                "malformed_unjudged": None, "malformed_passed": None,
                "malformed_error": str(exc)}
    return {"malformed_injected": result["injected_total"],
            "malformed_set_aside": result["set_aside_total"],
            # Flink decides unknown_ad when a window fires: bad records in windows past
            # the fire horizon are never judged (like the valid events there).
            "malformed_unjudged": sum(result["unjudged_after_horizon"].values()),
            "malformed_passed": bool(result["passed"])}


def fault_row(
    spec: dict[str, Any], config: dict[str, Any], summary_dir: Path, raw_dir: Path,
    reference: dict[str, Any] | None,
) -> dict[str, Any]:
    """One row of the faults table (see FAULT_COLUMNS and the module doc)."""
    from sdsbench.analysis.rundata import read_csv

    run_id = spec["run_id"]
    row_in = json.loads((summary_dir / "runs" / f"{run_id}.json").read_text())["row"]
    windows_path = summary_dir / "windows" / f"{run_id}.csv"
    windows = pd.read_csv(windows_path) if windows_path.exists() else None
    run_dir = raw_dir / run_id
    injection = injection_of(spec)
    faults_path = run_dir / "metrics" / "faults.json"
    faults = json.loads(faults_path.read_text()) if faults_path.exists() else {}
    fault_ms, back_ms = fault_times(faults)
    lag_path = run_dir / "metrics" / "lag.csv"
    lag = total_lag(read_csv(lag_path) if lag_path.exists() else None)
    eo = exactly_once(spec, config)
    out: dict[str, Any] = {
        "run_id": run_id, "pipeline": spec["pipeline"], "injection": injection,
        "reference_run": spec.get("reference_run", ""),
        "offered_rate_eps": row_in.get("offered_rate_eps"),
        "injected": bool(faults.get("injected")) if spec.get("fault") else injection != "none",
        "fault_at_s": (spec.get("fault") or {}).get("at_s", math.nan),
        "down_s": round((back_ms - fault_ms) / 1000, 3) if not math.isnan(back_ms) else math.nan,
        "first_result_after_fault_s": first_result_after(windows, fault_ms),
        "lost_windows": row_in.get("missing_windows"),
        "lost_events": row_in.get("deficit_events"),
        "excess_events": row_in.get("excess_events"),
        "duplicate_records": row_in.get("duplicate_records"),
        "changed_windows": row_in.get("changed_windows"),
        "exact_ratio": row_in.get("exact_ratio"),
        "latency_from_window_end_ms_p95": row_in.get("latency_from_window_end_ms_p95"),
        "generator_behind_ms_max": row_in.get("generator_behind_ms_max"),
        "rejected_events": row_in.get("rejected_events"),
        "exactly_once": eo,
        **recovery(lag, fault_ms, back_ms),
    }
    if reference is not None:
        out["reference_exact_ratio"] = reference.get("exact_ratio")
        out["reference_latency_from_window_end_ms_p95"] = reference.get(
            "latency_from_window_end_ms_p95")
    check_ok: bool | None = None
    if injection == "malformed":
        out |= malformed_check(run_dir)
        # A check that could not be made, or a run that injected nothing, is no survival.
        check_ok = bool(out["malformed_passed"]) and bool(out["malformed_injected"])
    dup_ok = not eo or (out["duplicate_records"] == 0 and out["changed_windows"] == 0)
    out["survived"] = bool(
        out["injected"]
        and out["lost_windows"] == 0 and out["lost_events"] == 0
        and out["excess_events"] == 0
        and bool(row_in.get("correct_where_not_dropped"))
        and dup_ok and check_ok is not False
    )
    if injection == "none":
        out["survived"] = None  # a reference run has nothing to survive
    return out


def faults_table(
    config: dict[str, Any], summary_dir: str | Path, raw_dir: str | Path
) -> pd.DataFrame:
    """One row per run of the faults group (references included, injection "none")."""
    from sdsbench.experiments import FAULTS, expand_runs, run_groups

    summary_dir, raw_dir = Path(summary_dir), Path(raw_dir)
    runs = expand_runs(config)
    rows = []
    for run_id in run_groups(config)[FAULTS]:
        spec = runs[run_id]
        reference = None
        if spec.get("reference_run"):
            ref_path = summary_dir / "runs" / f"{spec['reference_run']}.json"
            reference = json.loads(ref_path.read_text())["row"]
        rows.append(fault_row(spec, config, summary_dir, raw_dir, reference))
    return pd.DataFrame(rows, columns=list(FAULT_COLUMNS))
