"""Tables across runs, built from the per-run summary files only.

- ``runs``: one row per run of the matrix (group membership in ``groups``);
- ``search``: one row per trial of every t_h search, with the search's t_h;
- ``stress``: per pipeline and search: t_h, and the runs at multiples of t_h;
- ``correctness``: per run, the oracle's counts against the generator's truth;
- ``headline``: the numbers the paper compares, each over its repetitions (median, min,
  max, the values, the steady-state firings it rests on); the reproducibility check
  (``sdsbench.analysis.reproducibility``) compares two such tables;
- ``cpu``: where the CPU goes (``sdsbench.analysis.cpu_cost``): per configuration and
  scope, CPU microseconds per event over its repetitions; per pipeline, the fit of its CPU
  into a fixed part, a part per event and (Spark) per micro-batch; Spark's batch phases.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from sdsbench.analysis import cpu_cost
from sdsbench.analysis.rundata import is_real_time
from sdsbench.contract import SPARK_JVM_COUNTERS
from sdsbench.numbers import as_number

CORRECTNESS_COLUMNS = (
    "run_id", "pipeline", "process", "offered_rate_eps", "correctness_source", "fields",
    "expected_windows", "evaluable_windows", "exact_windows", "exact_ratio",
    "first_exact_windows", "late_dropped_windows", "count_error_windows", "count_error_events",
    "missing_windows",
    "unfired_tail_windows", "extra_windows", "duplicate_windows", "changed_windows",
    "truth_events", "deficit_events", "excess_events", "delayed_events_sent",
    "dropped_events_reported", "unexplained_deficit_events", "rejected_events", "correct",
    "correct_where_not_dropped",
)
SEARCH_COLUMNS = (
    "search_id", "pipeline", "process", "repetition", "kind", "rate_eps", "run_id", "verdict",
    "verdict_now", "sustainable", "sustainable_now",
    "reasons", "latency_above_delay_ms_p50", "latency_above_delay_ms_p95",
    "latency_above_delay_ms_p99", "latency_from_window_end_ms_p95",
    "latency_from_last_insertion_ms_p95", "lag_slope_eps", "lag_final", "achieved_ratio",
    "t_h_eps", "t_h_is_lower_bound",
)
THRESHOLD_COLUMNS = (
    "offered_rate_eps", "rate_basis", "latency_above_delay_ms_p50", "latency_above_delay_ms_p95",
    "latency_above_delay_ms_p99", "latency_from_last_insertion_ms_p95", "lag_slope_eps",
    "lag_max", "lag_final", "achieved_ratio", "generator_behind_ms_max",
    "watermark_lag_ms_p50", "watermark_lag_ms_max", "cpu_sut_mean_percent",
    "criterion_sustainable", "correct", "spark_batch_duration_ms_p95",
    "flink_backpressured_ms_per_s_mean", "flink_checkpoint_ms_max",
)
# Beside every latency statistic: what it rests on; beside every rate: what was realised.
STEADY_COLUMNS = (
    "latency_above_delay_ms_firings", "steady_windows_missing", "achieved_rate_eps",
    "mmpp_high_share",
)
HEADLINE_COLUMNS = (
    "key", "metric", "subject", "group", "pipeline", "unit", "median", "lo", "hi",
    "n_repetitions", "pooled", "firings", "interval_lo", "interval_hi", "lower_bound", "values",
)
HEADLINE_GROUPS = ("event_time", "parallelism", "watermark_delay")
CPU_COLUMNS = (
    "key", "kind", "subject", "pipeline", "parallelism", "scope", "metric", "unit", "rate_eps",
    "median", "lo", "hi", "n", "residual_rms", "runs",
)
# The runs whose CPU the cpu table reads: the matrix without fault injections.
CPU_GROUPS = ("baseline", "event_time", "parallelism", "watermark_delay", "knobs",
              "at_threshold")
HEADLINE_LATENCY = "latency_above_delay"


def load_run_summaries(summary_dir: str | Path, run_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for run_id in run_ids:
        data = json.loads((Path(summary_dir) / "runs" / f"{run_id}.json").read_text())
        out.append(data["row"])
    return out


def load_searches(summary_dir: str | Path, search_ids: list[str]) -> list[dict[str, Any]]:
    return [
        json.loads((Path(summary_dir) / "search" / f"{sid}.json").read_text())
        for sid in search_ids
    ]


def runs_table(rows: list[dict[str, Any]], groups: dict[str, list[str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    membership = {
        run_id: ",".join(g for g, ids in groups.items() if run_id in ids)
        for run_id in frame.get("run_id", [])
    }
    if len(frame):
        frame.insert(1, "groups", frame["run_id"].map(membership))
    return frame


def search_table(searches: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for s in searches:
        for t in s["trials"]:
            row = {"search_id": s["search_id"], "pipeline": s["pipeline"],
                   "process": s["process"], "repetition": t.get("repetition", 1),
                   "kind": t.get("kind", "steady"), "rate_eps": t["rate_eps"],
                   "run_id": t["run_id"], "verdict": t.get("verdict"),
                   "verdict_now": t.get("verdict_now"),
                   "sustainable": t["sustainable"], "sustainable_now": t["sustainable_now"],
                   "reasons": t.get("reasons_now") or t["reasons"], "t_h_eps": s["t_h_eps"],
                   "t_h_is_lower_bound": s["t_h_is_lower_bound"]}
            for key in SEARCH_COLUMNS:
                if key not in row:
                    row[key] = (t["row"] or {}).get(key, math.nan)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(SEARCH_COLUMNS))


def stress_table(
    searches: list[dict[str, Any]], rows: list[dict[str, Any]], groups: dict[str, list[str]]
) -> pd.DataFrame:
    """Per search: t_h and how it was found; per at-threshold run of the same pipeline:
    the measurements at k x t_h (columns prefixed ``x<k>_``)."""
    by_id = {r["run_id"]: r for r in rows}
    out = []
    for s in searches:
        row: dict[str, Any] = {
            "search_id": s["search_id"], "pipeline": s["pipeline"], "process": s["process"],
            "t_h_eps": s["t_h_eps"], "t_h_is_lower_bound": s["t_h_is_lower_bound"],
            "t_h_min_eps": s.get("t_h_min_eps"), "t_h_max_eps": s.get("t_h_max_eps"),
            "repetitions": s.get("repetitions", 1),
            "lowest_failing_rate_eps": s["lowest_failing_rate_eps"],
            "relative_gap": s["relative_gap"], "trials": len(s["trials"]),
            "stop_reason": s["stop_reason"],
            "trial_duration_s": s.get("trial_duration_s"),
        }
        for run_id in groups.get("at_threshold", []):
            run = by_id.get(run_id)
            if run is None or run["pipeline"] != s["pipeline"]:
                continue
            basis_search = run_id.rsplit("-th", 1)
            multiple = basis_search[1].removesuffix("x")
            row[f"x{multiple}_run_id"] = run_id
            row[f"x{multiple}_process"] = run["process"]
            for key in THRESHOLD_COLUMNS + STEADY_COLUMNS:
                row[f"x{multiple}_{key}"] = run.get(key, math.nan)
        out.append(row)
    return pd.DataFrame(out)


def spread_of(values: list[Any]) -> dict[str, Any]:
    """Median, min, max and count of the values that are numbers (NaN and None left out)."""
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not clean:
        return {"median": math.nan, "lo": math.nan, "hi": math.nan, "n_repetitions": 0,
                "values": ""}
    return {"median": float(pd.Series(clean).median()), "lo": min(clean), "hi": max(clean),
            "n_repetitions": len(clean), "values": ";".join(f"{v:g}" for v in clean)}


def headline_table(
    searches: list[dict[str, Any]], rows: list[dict[str, Any]], groups: dict[str, list[str]],
    windows: dict[str, pd.DataFrame],
) -> pd.DataFrame:
    """The headline numbers (module docstring): t_h of every search, and the p95 latency
    above the delay of every run of the event_time, parallelism and watermark_delay
    groups over its repetitions. ``median``/``lo``/``hi`` are over the repetitions'
    own values; ``pooled`` is the p95 over the steady windows of all repetitions together
    and ``firings`` the number of window firings it rests on."""
    out = []
    for s in searches:
        interval = s.get("interval_eps") or [None, None]
        values = s.get("t_h_values_eps") or [s["t_h_eps"]]
        out.append({"key": f"t_h/{s['search_id']}", "metric": "t_h_eps",
                    "subject": s["search_id"], "group": "search", "pipeline": s["pipeline"],
                    "unit": "ev/s", **spread_of(values) | {"median": s["t_h_eps"]},
                    "pooled": math.nan,
                    "firings": math.nan, "interval_lo": interval[0], "interval_hi": interval[1],
                    "lower_bound": bool(s["t_h_is_lower_bound"])})
    member = {r for g in HEADLINE_GROUPS for r in groups.get(g, [])}
    for base, reps in _base_groups([r for r in rows if r["run_id"] in member]).items():
        group = next(g for g in HEADLINE_GROUPS if reps[0]["run_id"] in groups.get(g, []))
        steady = [w[w["steady"].astype(bool)] for r in reps
                  if (w := windows.get(r["run_id"])) is not None and "steady" in w]
        pooled = pd.concat(steady) if steady else pd.DataFrame()
        column = f"{HEADLINE_LATENCY}_ms"
        has = len(pooled) and column in pooled and pooled[column].notna().any()
        firings = sum(float(r.get(f"{column}_firings") or 0) for r in reps)
        out.append({"key": f"p95_above_delay/{base}", "metric": f"{column}_p95",
                    "subject": base, "group": group, "pipeline": reps[0]["pipeline"],
                    "unit": "ms", **spread_of([r.get(f"{column}_p95") for r in reps]),
                    "pooled": float(pooled[column].quantile(0.95)) if has else math.nan,
                    "firings": firings, "interval_lo": math.nan, "interval_hi": math.nan,
                    "lower_bound": False})
    return pd.DataFrame(out, columns=list(HEADLINE_COLUMNS))


def _base_groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_base: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_base.setdefault(row.get("base_run_id") or row["run_id"], []).append(row)
    return by_base


def _us_per_event(row: dict[str, Any], scope: str) -> float:
    """CPU-us per event of one scope, or of all sampled scopes together (``total``)."""
    if scope != "total":
        return as_number(row.get(f"cpu_{scope}_us_per_event"))
    parts = [_us_per_event(row, s) for s in cpu_cost.SCOPES]
    parts = [p for p in parts if not math.isnan(p)]
    return sum(parts) if parts else math.nan


def cpu_table(rows: list[dict[str, Any]], groups: dict[str, list[str]]) -> pd.DataFrame:
    """The ``cpu`` table (module docstring); the runs each fit uses:
    ``cpu_cost.fit_runs``."""
    member = {r for g in CPU_GROUPS for r in groups.get(g, [])}
    rows = [r for r in rows if r["run_id"] in member]
    out: list[dict[str, Any]] = []

    def add(**row: Any) -> None:
        out.append({k: row.get(k, math.nan) for k in CPU_COLUMNS})

    for base, reps in _base_groups(rows).items():
        first = reps[0]
        common = {"subject": base, "pipeline": first["pipeline"],
                  "parallelism": first.get("parallelism"),
                  "rate_eps": spread_of([r.get("cpu_span_eps") for r in reps])["median"]}
        for scope in (*cpu_cost.SCOPES, "total"):
            spread = spread_of([_us_per_event(r, scope) for r in reps])
            add(key=f"cpu/{base}/{scope}", kind="per_event", scope=scope,
                metric="us_per_event", unit="CPU-us per event", n=spread["n_repetitions"],
                **common, **{k: spread[k] for k in ("median", "lo", "hi")})
        # Micro-batch phases; a real-time-mode batch is one long-running job of trigger_ms.
        if first["pipeline"] == "spark" and not is_real_time(first):
            for phase in ("batches_per_s", "batch_input_rows_p50",
                          *(f"{p}_ms_p50" for p in cpu_cost.SPARK_PHASES),
                          *(f"{c}_per_batch_mean" for c in SPARK_JVM_COUNTERS)):
                spread = spread_of([r.get(f"spark_{phase}") for r in reps])
                add(key=f"spark_phase/{base}/{phase}", kind="spark_phase", scope="sut",
                    metric=phase, unit="ms" if phase.endswith("_ms_p50") else "",
                    n=spread["n_repetitions"], **common,
                    **{k: spread[k] for k in ("median", "lo", "hi")})
    for pipeline in sorted({r["pipeline"] for r in rows}):
        mine = cpu_cost.fit_runs(rows, pipeline)
        names = cpu_cost.regressors_of(pipeline)
        fit = cpu_cost.fit_cost(mine, names)
        for name in names:
            add(key=f"fit/{pipeline}/{name}", kind="fit", subject=pipeline, pipeline=pipeline,
                parallelism=mine[0].get("parallelism") if mine else math.nan, scope="sut",
                metric=name, unit=cpu_cost.REGRESSORS[name], median=fit[name],
                lo=fit[f"{name}_lo"], hi=fit[f"{name}_hi"], n=fit["n_runs"],
                residual_rms=fit["residual_rms"], runs=fit["runs"])
    return pd.DataFrame(out, columns=list(CPU_COLUMNS))


def correctness_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{k: r.get(k, math.nan) for k in CORRECTNESS_COLUMNS} for r in rows],
                        columns=list(CORRECTNESS_COLUMNS))


def build_table(name: str, summary_dir: str | Path, config: dict[str, Any]) -> pd.DataFrame:
    """The table ``name`` (module docstring) of the profile in ``config``."""
    from sdsbench.experiments import expand_runs, run_groups, searches

    run_ids = list(expand_runs(config))
    groups = run_groups(config)
    search_ids = list(searches(config))
    if name == "runs":
        return runs_table(load_run_summaries(summary_dir, run_ids), groups)
    if name == "search":
        return search_table(load_searches(summary_dir, search_ids))
    if name == "stress":
        return stress_table(load_searches(summary_dir, search_ids),
                            load_run_summaries(summary_dir, run_ids), groups)
    if name == "correctness":
        return correctness_table(load_run_summaries(summary_dir, run_ids))
    if name == "headline":
        windows = {r: pd.read_csv(Path(summary_dir) / "windows" / f"{r}.csv")
                   for g in HEADLINE_GROUPS for r in groups.get(g, [])}
        return headline_table(load_searches(summary_dir, search_ids),
                              load_run_summaries(summary_dir, run_ids), groups, windows)
    if name == "cpu":
        return cpu_table(load_run_summaries(summary_dir, run_ids), groups)
    raise ValueError(f"unknown table {name!r}")
