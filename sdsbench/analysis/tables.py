"""Tables across runs, built from the per-run summary files only.

- ``runs``: one row per run of the matrix (group membership in ``groups``);
- ``search``: one row per trial of every t_h search, with the search's t_h;
- ``stress``: per pipeline and search: t_h, and the runs at multiples of t_h;
- ``correctness``: per run, the oracle's counts against the generator's truth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

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
    "search_id", "pipeline", "process", "rate_eps", "run_id", "sustainable", "sustainable_now",
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
                   "process": s["process"], "rate_eps": t["rate_eps"], "run_id": t["run_id"],
                   "sustainable": t["sustainable"], "sustainable_now": t["sustainable_now"],
                   "reasons": t["reasons"], "t_h_eps": s["t_h_eps"],
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
            for key in THRESHOLD_COLUMNS:
                row[f"x{multiple}_{key}"] = run.get(key, math.nan)
        out.append(row)
    return pd.DataFrame(out)


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
    raise ValueError(f"unknown table {name!r}")
