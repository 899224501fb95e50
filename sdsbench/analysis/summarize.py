"""One summary per run: what went in, what came out, how fast, how correct.

``summarize_run(run_dir, config)`` returns

- the summary: one flat dict (one row of the runs table; keys documented in
  ``sdsbench.analysis.flow``, ``.latency``, ``.oracle`` and ``.throughput_search``);
- the per-window table: latencies and correctness status of every window;
- the time series (long format: time_ms, metric, value) the figures draw: scheduled and
  sent events per second, generator lateness, consumer lag, watermark, CPU and memory,
  MMPP state.

Figures and tables read only these files, never the raw run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from sdsbench.analysis import cpu_cost, engine_metrics, flow, latency, oracle, staircase
from sdsbench.analysis.criterion import Criterion, sustainable
from sdsbench.analysis.rundata import RunData, RunDataError, load_run
from sdsbench.contract import WINDOW_MS

SERIES_COLUMNS = ("time_ms", "metric", "value")


def _counted_fields(pipeline: str) -> tuple[str, ...]:
    # A1 and A2 count clicks only; the CTR pipelines count views and clicks.
    return ("clicks",) if pipeline in ("a1", "a2") else ("views", "clicks")


def _generator_times_ms(run: RunData) -> tuple[float, float]:
    gen = run.generator
    try:
        return gen["start_ns"] / 1e6, gen["schedule_end_ns"] / 1e6
    except KeyError as exc:
        raise RunDataError(f"run {run.path}: generator/summary.json lacks {exc}") from exc


def _sent_on_schedule(run: RunData) -> float:
    """Events handed over before the schedule's end (a generator that falls behind and
    catches up later did not achieve the offered rate)."""
    duration_s = float(run.generator.get("scheduled_duration_s", math.inf))
    on_time = run.rate[run.rate["second"] < math.ceil(duration_s)]
    return float(on_time["sent"].sum())


def _results_view(run: RunData) -> tuple[pd.DataFrame, str, str | None]:
    """The results table, its visible-time column and its output-order column. The
    visible time of every record (``visible_ms``) is ``engine_metrics.visible_times``:
    the append time (A3, Spark, Flink at-least-once), the query end (A1, A2) or the
    commit of its transaction (Flink exactly-once)."""
    results = run.results
    if run.pipeline in engine_metrics.CONTRACT_PIPELINES:
        needed = ("campaign_id", "window_start_ms", "views", "clicks", "max_insertion_ms",
                  "append_time_ms")
        order = "offset" if "offset" in results.columns else "append_time_ms"
    else:
        needed = ("campaign_id", "window_start_ms", "clicks", "max_insertion_ms",
                  "query_end_ms")
        order = "query_end_ms"
    missing = [c for c in needed if c not in results.columns]
    if missing:
        raise RunDataError(f"run {run.path}: results.csv lacks columns {missing}")
    results = results.assign(visible_ms=engine_metrics.visible_times(run, results))
    return results, "visible_ms", order


def _resource_stats(run: RunData, start_ms: float, end_ms: float) -> dict[str, float]:
    res = run.metric("resources")
    out = {"cpu_sut_mean_percent": math.nan, "cpu_sut_max_percent": math.nan,
           "rss_sut_max_mb": math.nan, "cpu_machine_mean_percent": math.nan}
    if res is None or "scope" not in res:
        return out
    during = res[(res["time_ms"] >= start_ms) & (res["time_ms"] <= end_ms)]
    sut = during[during["scope"] == "sut"]
    machine = during[during["scope"] == "machine"]
    if len(sut):
        out["cpu_sut_mean_percent"] = float(sut["cpu_percent"].mean())
        out["cpu_sut_max_percent"] = float(sut["cpu_percent"].max())
        out["rss_sut_max_mb"] = float(sut["rss_mb"].max())
    if len(machine):
        out["cpu_machine_mean_percent"] = float(machine["cpu_percent"].mean())
    return out


def _watermark_stats(run: RunData, start_ms: float, end_ms: float) -> dict[str, float]:
    """How far the watermark trails processing time while input flows (watermark lag =
    sample time - watermark), from the engine's own watermark series."""
    wm = engine_metrics.watermark_series(run)
    during = wm[(wm["time_ms"] >= start_ms) & (wm["time_ms"] <= end_ms)]
    lag = during["time_ms"].astype(float) - during["watermark_ms"].astype(float)
    return latency.describe(lag, "watermark_lag_ms")


def _rejects_total(run: RunData) -> float:
    if run.rejects is None or "count" not in run.rejects:
        return math.nan
    return float(run.rejects["count"].sum())


def _series(run: RunData, start_ms: float) -> pd.DataFrame:
    parts = []

    def add(time_ms: Any, metric: str, value: Any) -> None:
        parts.append(pd.DataFrame({"time_ms": time_ms, "metric": metric, "value": value}))

    rate = run.rate
    seconds_ms = start_ms + rate["second"].astype(float) * 1000.0
    add(seconds_ms, "scheduled_eps", rate["scheduled"].astype(float))
    add(seconds_ms, "sent_eps", rate["sent"].astype(float))
    add(seconds_ms, "generator_behind_ms", rate["behind_ms_max"].astype(float))
    lag = run.metric("lag")
    if lag is not None and "lag" in lag:
        total = flow.total_lag(lag)
        add(total["time_ms"].astype(float), "lag", total["lag"].astype(float))
    wm = engine_metrics.watermark_series(run)
    if len(wm):
        add(wm["time_ms"].astype(float), "watermark_ms", wm["watermark_ms"].astype(float))
    res = run.metric("resources")
    if res is not None and "scope" in res:
        for scope in ("sut", "machine"):
            part = res[res["scope"] == scope]
            add(part["time_ms"].astype(float), f"cpu_{scope}_percent", part["cpu_percent"])
            add(part["time_ms"].astype(float), f"rss_{scope}_mb", part["rss_mb"])
    if run.mmpp_states is not None and len(run.mmpp_states):
        states = run.mmpp_states
        add(start_ms + states["t_start_s"].astype(float) * 1000.0, "mmpp_high",
            (states["state"] == "high").astype(float))
    if not parts:
        return pd.DataFrame(columns=list(SERIES_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(SERIES_COLUMNS)]


def summarize_run(
    run_dir: str | Path, config: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Summary, per-window table and time series of one run (module docstring)."""
    run = load_run(run_dir)
    spec = run.spec
    pipeline = run.pipeline
    params = run.provenance.get("params")
    if params is None:
        from sdsbench.experiments import pipeline_params

        params = pipeline_params(run.provenance.get("config", config), spec)
    params = dict(params)
    run_config = run.provenance.get("config", config)
    delay_ms = engine_metrics.configured_delay_ms(pipeline, params, run_config)
    start_ms, end_ms = _generator_times_ms(run)
    warmup_s = float(config["experiments"]["warmup_s"])
    fields = _counted_fields(pipeline)
    offered = float(spec["arrival"]["rate_eps"])

    summary: dict[str, Any] = {
        "run_id": spec["run_id"],
        "base_run_id": spec.get("base_run_id", spec["run_id"]),
        "repetition": int(spec.get("repetition", 1)),
        "pipeline": pipeline,
        "process": spec["arrival"]["process"],
        "offered_rate_eps": offered,
        "rate_basis": spec.get("rate_basis", "configured"),
        "duration_s": float(spec["duration_s"]),
        "seed": spec["seed"],
        "params": json.dumps(spec.get("params", {}), sort_keys=True),
        "configured_delay_ms": delay_ms,
        "parallelism": engine_metrics.parallelism_of(pipeline, params),
        "generator_start_ms": start_ms,
        "generator_end_ms": end_ms,
        "warmup_s": warmup_s,
    }
    summary |= flow.generator_flow(run.rate, offered)
    scheduled = summary["events_scheduled"]
    summary["events_sent_on_schedule"] = _sent_on_schedule(run)
    summary["achieved_ratio"] = (
        summary["events_sent_on_schedule"] / scheduled if scheduled else math.nan
    )
    summary["achieved_rate_eps"] = summary["events_sent_on_schedule"] / summary["duration_s"]
    summary |= flow.lag_flow(run.metric("lag"), start_ms, end_ms, warmup_s)
    summary |= flow.mmpp_flow(run.mmpp_states, summary["duration_s"])

    results, visible, order = _results_view(run)
    windows = latency.window_latencies(results, visible, delay_ms)
    mask = latency.steady_mask(windows, start_ms, end_ms, delay_ms, warmup_s)
    summary |= latency.latency_summary(windows, mask)
    summary |= latency.latency_trend(windows, mask)
    steady_starts = latency.steady_window_starts(start_ms, end_ms, delay_ms, warmup_s)
    fired = set(windows.loc[mask, "window_start_ms"].astype(int)) if len(windows) else set()
    summary["steady_windows_expected"] = float(len(steady_starts))
    summary["steady_windows_missing"] = float(len(set(steady_starts) - fired))
    summary |= latency.query_latency_summary(run.metric("queries"), steady_starts)

    horizon = engine_metrics.fire_horizon_ms(run, end_ms, delay_ms)
    dropped = engine_metrics.dropped_late_events(run, fields)
    truth = run.truth
    check, per_window = oracle.check_results(
        truth, results, fields, order=order, horizon_ms=horizon, dropped_reported=dropped,
        dropped=engine_metrics.dropped_per_window(run),
    )
    at_query_windows = per_window if run.final_counts is not None else None
    if run.final_counts is not None:
        # A1/A2: the query-time answers may miss rows that landed after their query; the
        # recount of the complete table after the run is the pipeline's final answer.
        summary |= {f"at_query_{k}": v for k, v in check.items()}
        check, per_window = oracle.check_results(
            truth, run.final_counts, fields, order=None, horizon_ms=math.inf,
            dropped_reported=dropped,
        )
        summary["correctness_source"] = "final recount (final_counts.csv)"
    else:
        summary["correctness_source"] = "emitted results (results.csv)"
    summary |= check
    summary["rejected_events"] = _rejects_total(run)
    summary |= _resource_stats(run, start_ms, end_ms)
    # CPU per event over the steady windows only: the first seconds pay for JIT and caches.
    cpu_start_ms = min(steady_starts) if steady_starts else start_ms + warmup_s * 1000.0
    summary |= cpu_cost.steady_cpu(run.metric("resources"), run.rate, start_ms, cpu_start_ms,
                                   end_ms)
    summary |= cpu_cost.spark_batch_phases(run.metric("spark_progress"), cpu_start_ms, end_ms)
    summary |= _watermark_stats(run, start_ms, end_ms)
    summary |= flow.watermark_lag_slope(engine_metrics.watermark_series(run),
                                        start_ms + warmup_s * 1000.0, end_ms)
    summary |= engine_metrics.indicators(run)
    if "search" in config:
        verdict = sustainable(summary, Criterion.from_config(config["search"]))
        summary |= {f"criterion_{k}": v for k, v in verdict.items()}

    status = per_window[["campaign_id", "window_start_ms", "status"]]
    windows = windows.merge(status, on=["campaign_id", "window_start_ms"], how="outer")
    windows["window_end_ms"] = windows["window_start_ms"] + WINDOW_MS
    windows["steady"] = latency.steady_mask(windows, start_ms, end_ms, delay_ms, warmup_s)
    if at_query_windows is not None:  # A1/A2: how complete the query-time answers were
        windows, at_query = oracle.at_query_completeness(windows, at_query_windows, fields)
        summary |= at_query
    return summary, windows, _series(run, start_ms)


def provenance_digest(provenance: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run's provenance the tables and the paper quote."""
    keys = ("run_id", "profile", "seed", "started", "ended", "wall_s", "machine", "software",
            "services", "git")
    return {k: provenance.get(k) for k in keys}


def engine_session(run_dir: str | Path) -> dict[str, Any] | None:
    """Which engine session (sdsbench/engine_session.py) served a Spark or Flink run:
    its key and whether it had served runs before; None for other pipelines and for runs
    with a private engine process."""
    for name in ("spark_summary", "flink_summary"):
        path = Path(run_dir) / "metrics" / f"{name}.json"
        if path.exists():
            session = json.loads(path.read_text()).get("session")
            if not session:
                return None
            return {k: session.get(k) for k in ("key", "reused", "runs_served_before")}
    return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def write_run_summary(
    run_dir: str | Path, config: dict[str, Any], summary_path: str | Path,
    windows_path: str | Path, series_path: str | Path,
) -> dict[str, Any]:
    """Summarize ``run_dir`` and write the three files atomically."""
    from sdsbench.rundir import write_json_atomic, write_text_atomic

    summary, windows, series = summarize_run(run_dir, config)
    provenance = json.loads((Path(run_dir) / "provenance.json").read_text())
    write_json_atomic(
        summary_path,
        {"row": {k: _json_safe(v) for k, v in summary.items()},
         "provenance": provenance_digest(provenance),
         "engine_session": engine_session(run_dir)},
    )
    write_text_atomic(windows_path, windows.to_csv(index=False))
    write_text_atomic(series_path, series.to_csv(index=False))
    return summary


def summarize_search(
    result: dict[str, Any], trials_dir: str | Path, config: dict[str, Any]
) -> dict[str, Any]:
    """The search result with every trial re-analysed by the current code. The verdict the
    search acted on is kept (``verdict``, ``sustainable``); ``verdict_now`` and
    ``sustainable_now`` are today's analysis (for a staircase: its region today)."""
    trials_dir = Path(trials_dir)
    criterion = Criterion.from_config(config["search"])
    trials = []
    provenance = None
    for trial in result["trials"]:
        run_id = trial["summary"].get("run_id")
        entry = {k: trial.get(k) for k in ("rate_eps", "kind", "verdict", "sustainable",
                                             "reasons", "repetition", "steps")}
        entry["run_id"] = run_id
        run_dir = trials_dir / str(run_id)
        if "failed" not in trial["summary"] and run_dir.is_dir():
            summary, windows, _ = summarize_run(run_dir, config)
            if trial.get("kind") == "staircase":
                stair = staircase.analyse_staircase(
                    load_run(run_dir), windows, float(summary["configured_delay_ms"]),
                    criterion)
                entry["verdict_now"] = "region"
                entry["sustainable_now"] = None
                entry["reasons_now"] = stair["reason"]
                entry["steps_now"] = stair["steps"]
                entry["region_now"] = [stair["highest_pass_eps"], stair["lowest_fail_eps"]]
            else:
                verdict = sustainable(summary, criterion)
                entry["verdict_now"] = verdict["verdict"]
                entry["sustainable_now"] = verdict["sustainable"]
                entry["reasons_now"] = verdict["reasons"]
            entry["row"] = {k: _json_safe(v) for k, v in summary.items()}
            if provenance is None:
                provenance = provenance_digest(
                    json.loads((run_dir / "provenance.json").read_text()))
        else:
            entry["verdict_now"] = "fail"
            entry["sustainable_now"] = False
            entry["reasons_now"] = trial.get("reasons")
            entry["row"] = None
        trials.append(entry)
    out = {k: v for k, v in result.items() if k != "trials"}
    out["trials"] = trials
    out["verdicts_changed"] = [t["run_id"] for t in trials
                               if t.get("kind") != "staircase"
                               and t["sustainable"] != t["sustainable_now"]]
    out["provenance"] = provenance
    return out
