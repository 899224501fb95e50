"""Per-engine adapters: each pipeline exports its own indicators in its own files under
``metrics/``; these functions turn them into the few quantities the analysis compares.
Every adapter tolerates a missing file (the quantity becomes NaN / an empty series).

Visible time of a result record (``visible_times``): when a reader of the output could
first see it.

- A1, A2: the end of the window query that returned it (``query_end_ms``).
- A3, Spark, Flink at-least-once: the broker's append time (``append_time_ms``; the
  output topic uses LogAppendTime, so every engine is timed by the same clock).
- Flink exactly-once: the transactional sink appends a record at once but a
  ``read_committed`` reader sees it only when its transaction commits, which the sink
  does when the checkpoint that closed the transaction completes
  (``notifyCheckpointComplete``). Visible time = the completion time of the first
  completed checkpoint whose completion is at or after the record's append time; the
  completion time is the checkpoint's latest acknowledgement (``ack_ms`` in
  ``metrics/flink_checkpoints.csv``, Flink's ``latest_ack_timestamp`` = trigger +
  ``end_to_end_duration``), the moment the JobManager can complete it. The commit itself
  follows a few ms later (metadata written, notification sent, the broker's commit), so
  this is a lower bound. A record appended after its sink subtask took the checkpoint's
  snapshot but before the checkpoint completed is committed one checkpoint later; the
  rule credits it to the earlier one (the sink acknowledges last or nearly, so the gap is
  short). A record with no completed checkpoint at or after it (the table is missing
  or incomplete) gets NaN; ``indicators`` counts them (``flink_commit_unmapped_records``).
  Checkpoint times come from the JobManager's clock, append times from the broker's: one
  machine, one clock (a remote cluster would need synchronized clocks).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.analysis.rundata import RunData

# The pipeline setting holding the delay a user configures before a window may fire:
# the watermark delay (A3: the injector's bound; Spark, Flink: bounded out-of-orderness)
# and, for the processing-time pipelines A1 and A2, the grace before a window's query.
DELAY_SETTING: dict[str, str] = {
    "a1": "query_grace_ms",
    "a2": "query_grace_ms",
    "a3": "watermark_bound_ms",
    "spark": "watermark_delay_ms",
    "flink": "watermark_delay_ms",
}
CONTRACT_PIPELINES = ("a3", "spark", "flink")
# The results column holding a record's visible time when the record is visible as soon
# as it is written (see the module docstring; Flink exactly-once: ``visible_times``).
VISIBLE_COLUMN: dict[str, str] = {
    "a1": "query_end_ms",
    "a2": "query_end_ms",
    "a3": "append_time_ms",
    "spark": "append_time_ms",
    "flink": "append_time_ms",
}


def configured_delay_ms(pipeline: str, params: dict[str, Any], config: dict[str, Any]) -> float:
    """The configured delay of the run (see DELAY_SETTING); raises naming the setting.
    A3's bound defaults (null) to the generator's largest disorder delay."""
    key = DELAY_SETTING[pipeline]
    if key not in params:
        raise KeyError(f"pipeline {pipeline}: setting {key!r} not in its config section")
    value = params[key]
    if value is None and pipeline == "a3":
        value = config["workload"]["disorder"]["max_delay_ms"]
    if value is None:
        raise ValueError(f"pipeline {pipeline}: setting {key!r} is null")
    return float(value)


def parallelism_of(pipeline: str, params: dict[str, Any]) -> float:
    """Degree of parallelism of a run: Flink's ``parallelism``, the n of Spark's
    ``local[n]`` master (or ``cluster[n]``: n executors of one core), A2/A3's consumer
    processes; NaN when none applies."""
    if "parallelism" in params and params["parallelism"] is not None:
        return float(params["parallelism"])
    master = str(params.get("master", ""))
    match = re.fullmatch(r"(?:local|cluster)\[(\d+)\]", master)
    if match:
        return float(match.group(1))
    if "consumers" in params:
        return float(params["consumers"])
    return math.nan


def watermark_series(run: RunData) -> pd.DataFrame:
    """The pipeline's watermark over processing time: columns time_ms, watermark_ms."""
    frame = run.metric("watermark")
    if frame is not None and {"time_ms", "watermark_ms"} <= set(frame.columns):
        out = frame[["time_ms", "watermark_ms"]].dropna()
        return out[out["watermark_ms"] > 0].reset_index(drop=True)
    return pd.DataFrame(columns=["time_ms", "watermark_ms"])


def dropped_per_window(run: RunData) -> pd.DataFrame | None:
    """Late events dropped per (campaign, window) with ``<type>_dropped`` columns
    (metrics/late.csv of A3, Spark and Flink), or None."""
    late = run.metric("late")
    if late is None or not {"campaign_id", "window_start_ms"} <= set(late.columns):
        return None
    if not any(c.endswith("_dropped") for c in late.columns):
        return None
    return late


def dropped_late_events(run: RunData, fields: tuple[str, ...]) -> float:
    """Late events the pipeline reports as dropped (of the counted event types when it
    says which); NaN when it does not report them."""
    late = run.metric("late")
    if late is not None and len(late.columns):
        dropped_cols = [f"{f}_dropped" for f in fields if f"{f}_dropped" in late.columns]
        if dropped_cols:
            return float(late[dropped_cols].to_numpy().sum())
        if "dropped" in late.columns:
            return float(late["dropped"].sum())
    return math.nan


def delivery_guarantee(run: RunData) -> str:
    """Flink's ``delivery_guarantee`` of the run: as the driver recorded it
    (metrics/flink_summary.json ``settings``), else the run's parameters (provenance),
    else the spec's overrides of the configuration's flink section; at-least-once (the
    default) when none says. Other pipelines: at-least-once."""
    if run.pipeline != "flink":
        return "at-least-once"
    settings = (run.metrics_json.get("flink_summary") or {}).get("settings") or {}
    params = run.provenance.get("params") or {}
    config = (run.provenance.get("config") or {}).get("flink") or {}
    overrides = run.spec.get("params") or {}
    for source in (settings, params, overrides, config):
        if source.get("delivery_guarantee"):
            return str(source["delivery_guarantee"])
    return "at-least-once"


def checkpoint_completions_ms(run: RunData) -> np.ndarray:
    """Completion times (ms, sorted) of the run's completed checkpoints: ``ack_ms`` of
    metrics/flink_checkpoints.csv (Flink's latest acknowledgement), else ``trigger_ms`` +
    ``end_to_end_duration_ms``; empty without the table."""
    table = run.metric("flink_checkpoints")
    if table is None or table.empty:
        return np.array([], dtype=float)
    if "status" in table:
        table = table[table["status"] == "COMPLETED"]
    done = pd.Series(np.nan, index=table.index)
    if "ack_ms" in table:
        done = pd.to_numeric(table["ack_ms"], errors="coerce")
    if {"trigger_ms", "end_to_end_duration_ms"} <= set(table.columns):
        done = done.fillna(pd.to_numeric(table["trigger_ms"], errors="coerce")
                           + pd.to_numeric(table["end_to_end_duration_ms"], errors="coerce"))
    done = done[done > 0]  # Flink answers -1 / 0 for "no acknowledgement yet"
    return np.sort(done.to_numpy(dtype=float))


def commit_times(append_ms: np.ndarray | pd.Series, completions_ms: np.ndarray) -> np.ndarray:
    """For each append time, the first checkpoint completion at or after it (NaN when
    none; NaN append times stay NaN). ``completions_ms`` must be sorted."""
    append = np.asarray(append_ms, dtype=float)
    out = np.full(append.shape, np.nan)
    completions = np.asarray(completions_ms, dtype=float)
    if len(completions) == 0:
        return out
    index = np.searchsorted(completions, append, side="left")
    found = ~np.isnan(append) & (index < len(completions))
    out[found] = completions[index[found]]
    return out


def visible_times(run: RunData, results: pd.DataFrame | None = None) -> pd.Series:
    """Visible time (ms) of every record of ``results`` (default: the run's results),
    indexed like it: see the module docstring."""
    results = run.results if results is None else results
    column = VISIBLE_COLUMN[run.pipeline]
    if column not in results.columns:
        raise KeyError(f"run {run.path}: results lack {column!r}")
    written = pd.to_numeric(results[column], errors="coerce").astype(float)
    if delivery_guarantee(run) != "exactly-once":
        return written
    return pd.Series(commit_times(written.to_numpy(), checkpoint_completions_ms(run)),
                     index=results.index, name="commit_time_ms")


def fire_horizon_ms(run: RunData, gen_end_ms: float, delay_ms: float) -> float:
    """Windows ending at or before this time must have a result; a missing window after it
    is an unfired tail window (see sdsbench.analysis.oracle).

    A1/A2 query every window up to the last stored click, and A3 fires every window once
    the input has ended (``end_of_input`` in metrics/watermark.csv): no tail. Spark's and
    Flink's watermarks move only with new data, so after the input stops the windows above
    their final watermark (metrics/spark_summary.json, metrics/flink_summary.json) are
    never emitted. Otherwise: the generator's end minus the configured delay, where a
    bounded-delay watermark stops.
    """
    if run.pipeline in ("a1", "a2"):
        return math.inf
    if run.pipeline == "a3":
        wm = run.metric("watermark")
        if wm is not None and "end_of_input" in wm and (wm["end_of_input"] == 1).any():
            return math.inf
    if run.pipeline == "spark":
        final = (run.metrics_json.get("spark_summary") or {}).get("final_watermark_ms")
        if final is not None:
            return float(final)
    if run.pipeline == "flink":
        # Flink fires [s, e) when its watermark reaches e - 1 (metrics/flink_summary.json).
        final = (run.metrics_json.get("flink_summary") or {}).get("final_watermark_ms")
        if final is not None:
            return float(final) + 1.0
    return gen_end_ms - delay_ms


def _stats(frame: pd.DataFrame | None, column: str, prefix: str) -> dict[str, float]:
    from sdsbench.analysis.latency import describe

    values = frame[column] if frame is not None and column in frame else []
    return describe(pd.to_numeric(pd.Series(values), errors="coerce"), prefix)


def indicators(run: RunData) -> dict[str, float]:
    """Engine-specific indicators worth a column in the runs table (absent when the engine
    does not export them): Spark's micro-batch durations and processing rate
    (metrics/spark_progress.csv, CTR query only); Flink's backpressure and busy time of
    the most loaded vertex (ms per second, metrics/flink_vertices.csv) and checkpoint
    durations (metrics/flink_checkpoints.csv); for exactly-once Flink, how long results
    waited for their commit (``flink_commit_wait_ms``: visible - append time) and the
    records no completed checkpoint covers (``flink_commit_unmapped_records``)."""
    out: dict[str, float] = {}
    progress = run.metric("spark_progress")
    if progress is not None and "query" in progress:
        ctr = progress[progress["query"] == "ctr"]
        stats = _stats(ctr, "batch_duration_ms", "spark_batch_duration_ms")
        out |= {k: stats[k] for k in ("spark_batch_duration_ms_p50",
                                       "spark_batch_duration_ms_p95",
                                       "spark_batch_duration_ms_max")}
        rate = _stats(ctr[ctr.get("num_input_rows", 0) > 0] if "num_input_rows" in ctr else ctr,
                      "processed_rows_per_second", "spark_processed_eps")
        out["spark_processed_eps_mean"] = rate["spark_processed_eps_mean"]
        out["spark_batches"] = float(len(ctr))
    vertices = run.metric("flink_vertices")
    if vertices is not None and "backpressured_ms_per_s_max" in vertices:
        # Per tick, the most backpressured / busiest vertex; then over the run.
        per_tick = vertices.groupby("time_ms")[
            ["backpressured_ms_per_s_max", "busy_ms_per_s_max"]].max()
        out["flink_backpressured_ms_per_s_mean"] = float(
            per_tick["backpressured_ms_per_s_max"].mean())
        out["flink_backpressured_ms_per_s_max"] = float(
            per_tick["backpressured_ms_per_s_max"].max())
        out["flink_busy_ms_per_s_mean"] = float(per_tick["busy_ms_per_s_max"].mean())
    if delivery_guarantee(run) == "exactly-once" and "append_time_ms" in run.results:
        # How long committed results waited for their transaction (visible - appended).
        visible = visible_times(run)
        wait = visible - pd.to_numeric(run.results["append_time_ms"], errors="coerce")
        stats = _stats(pd.DataFrame({"wait": wait}), "wait", "flink_commit_wait_ms")
        out |= {k: stats[k] for k in ("flink_commit_wait_ms_p50", "flink_commit_wait_ms_max")}
        out["flink_commit_unmapped_records"] = float(visible.isna().sum())
    checkpoints = run.metric("flink_checkpoints")
    if checkpoints is not None and "end_to_end_duration_ms" in checkpoints:
        done = checkpoints
        if "status" in checkpoints:
            done = checkpoints[checkpoints["status"] == "COMPLETED"]
        stats = _stats(done, "end_to_end_duration_ms", "flink_checkpoint_ms")
        out |= {k: stats[k] for k in ("flink_checkpoint_ms_n", "flink_checkpoint_ms_p50",
                                       "flink_checkpoint_ms_max")}
    return out
