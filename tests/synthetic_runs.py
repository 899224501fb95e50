"""TEST-ONLY: fabricate small run directories with known properties.

Nothing here is a measurement. These directories exercise the analysis, the tables, the
figures and the paper without engines, so a test knows exactly what the analysis must
find (a dropped window, a duplicate, a growing lag, a given latency).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.contract import WINDOW_MS
from sdsbench.experiments import pipeline_params
from sdsbench.rundir import COMPLETE_MARKER

T0_MS = 1_700_000_003_000  # generator start: a whole second, not a window boundary


def fabricate_run(
    run_dir: str | Path,
    spec: dict[str, Any],
    config: dict[str, Any],
    *,
    latency_ms: float = 300.0,
    delay_ms: float | None = None,
    drop_windows: int = 0,
    duplicate_windows: int = 0,
    lag_growth_eps: float = 0.0,
    sent_fraction: float = 1.0,
    campaigns: int = 3,
    seed: int = 0,
) -> Path:
    """Write a complete, self-consistent run directory for ``spec``.

    Window results appear ``delay + latency_ms`` after their window end (contract
    pipelines) or ``query_grace + latency_ms`` (A1/A2); the first ``drop_windows``
    expected windows lack a result, the first ``duplicate_windows`` get an identical
    second record; the lag grows by ``lag_growth_eps`` per second.
    """
    rng = np.random.default_rng(seed)
    run_dir = Path(run_dir)
    (run_dir / "generator").mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics").mkdir(exist_ok=True)
    pipeline = spec["pipeline"]
    params = pipeline_params(config, spec)
    defaults = {"a1": {"query_grace_ms": 1000}, "a2": {"query_grace_ms": 1000},
                "a3": {"watermark_bound_ms": 2000},
                "spark": {"watermark_delay_ms": 2000, "master": "local[2]"},
                "flink": {"watermark_delay_ms": 2000, "parallelism": 2}}[pipeline]
    params = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    delay_key = next(iter(defaults))
    if delay_ms is not None:
        params[delay_key] = delay_ms
    delay = float(params[delay_key])
    rate = float(spec["arrival"]["rate_eps"])
    duration = float(spec["duration_s"])
    end_ms = T0_MS + duration * 1000

    # Generator: per second scheduled ~ rate, sent = a fraction of it.
    seconds = np.arange(int(duration))
    scheduled = rng.poisson(rate, size=len(seconds))
    sent = np.floor(scheduled * sent_fraction).astype(int)
    pd.DataFrame({"second": seconds, "scheduled": scheduled, "sent": sent,
                  "behind_ms_max": 1.0, "blocked_ms": 0.0}).to_csv(
        run_dir / "generator" / "rate.csv", index=False)
    summary = {"start_ns": int(T0_MS * 1_000_000), "schedule_end_ns": int(end_ms * 1_000_000),
               "scheduled_duration_s": duration, "events_sent": int(sent.sum())}
    (run_dir / "generator" / "summary.json").write_text(json.dumps(summary))
    if spec["arrival"]["process"] == "mmpp":
        pd.DataFrame({"t_start_s": [0.0, duration / 3, 2 * duration / 3],
                      "state": ["low", "high", "low"]}).to_csv(
            run_dir / "generator" / "mmpp_states.csv", index=False)

    # Truth: windows overlapping the run, counts split over campaigns.
    first_w = (T0_MS // WINDOW_MS) * WINDOW_MS
    window_starts = np.arange(first_w, end_ms, WINDOW_MS)
    truth_rows = []
    for ws in window_starts:
        for c in range(campaigns):
            views, clicks, purchases = (int(v) for v in rng.integers(50, 100, size=3))
            truth_rows.append((c, int(ws), views, clicks, purchases, 2, 1, 0))
    truth = pd.DataFrame(truth_rows, columns=["campaign_id", "window_start_ms", "views",
                                              "clicks", "purchases", "views_delayed",
                                              "clicks_delayed", "purchases_delayed"])
    truth.to_csv(run_dir / "generator" / "truth.csv", index=False)

    # Results.
    # A1/A2's query runner queries every window; the watermark pipelines stop firing at
    # the end of input minus their delay.
    if pipeline in ("a1", "a2"):
        fires = truth.copy()
    else:
        fires = truth[truth["window_start_ms"] + WINDOW_MS <= end_ms - delay].copy()
    dropped = set(map(tuple, fires[["campaign_id", "window_start_ms"]].head(drop_windows)
                      .to_numpy().tolist()))
    rows = []
    for _, t in fires.iterrows():
        key = (int(t["campaign_id"]), int(t["window_start_ms"]))
        if key in dropped:
            continue
        wend = key[1] + WINDOW_MS
        visible = wend + delay + latency_ms
        rows.append({"campaign_id": key[0], "window_start_ms": key[1], "window_end_ms": wend,
                     "views": int(t["views"]), "clicks": int(t["clicks"]),
                     "max_insertion_ms": wend - 5, "visible": visible})
    rows += [dict(r, visible=r["visible"] + 100) for r in rows[:duplicate_windows]]
    frame = pd.DataFrame(rows)
    if pipeline in ("a1", "a2"):
        out = pd.DataFrame({
            "pipeline": pipeline, "campaign_id": frame["campaign_id"],
            "window_start_ms": frame["window_start_ms"], "window_end_ms": frame["window_end_ms"],
            "clicks": frame["clicks"], "query_start_ms": frame["visible"] - 20,
            "query_end_ms": frame["visible"], "query_latency_ms": 20.0,
            "max_insertion_ms": frame["max_insertion_ms"],
            "e2e_latency_ms": frame["visible"] - frame["max_insertion_ms"],
            "e2e_from_window_end_ms": frame["visible"] - frame["window_end_ms"],
        })
        out.to_csv(run_dir / "results.csv", index=False)
        queries = out.groupby("window_start_ms", as_index=False).agg(
            query_latency_ms=("query_latency_ms", "first"))
        queries["start_delay_ms"] = 3.0
        queries.to_csv(run_dir / "metrics" / "queries.csv", index=False)
        final = truth[["campaign_id", "window_start_ms", "views", "clicks", "purchases"]]
        final.to_csv(run_dir / "final_counts.csv", index=False)
    else:
        out = pd.DataFrame({
            "pipeline": pipeline, "campaign_id": frame["campaign_id"],
            "window_start_ms": frame["window_start_ms"], "window_end_ms": frame["window_end_ms"],
            "views": frame["views"], "clicks": frame["clicks"],
            "ctr": frame["clicks"] / frame["views"], "result_time_ms": frame["visible"] - 2,
            "min_insertion_ms": frame["window_start_ms"], "max_insertion_ms":
            frame["max_insertion_ms"], "append_time_ms": frame["visible"], "partition": 0,
        })
        out["offset"] = np.argsort(np.argsort(out["append_time_ms"].to_numpy(), kind="stable"))
        out.to_csv(run_dir / "results.csv", index=False)
        times = np.arange(T0_MS, end_ms + 5000, 1000)
        pd.DataFrame({"time_ms": times, "watermark_ms": times - delay}).to_csv(
            run_dir / "metrics" / "watermark.csv", index=False)

    # Lag: 4 partitions, total = growth * t.
    lag_rows = []
    for t in np.arange(T0_MS - 1000, end_ms + 3000, 1000):
        total = max(0.0, lag_growth_eps * (t - T0_MS) / 1000) if t <= end_ms else 0.0
        for p in range(4):
            lag_rows.append((int(t), p, 0, 0, int(total / 4) + 10))
    pd.DataFrame(lag_rows, columns=["time_ms", "partition", "end_offset", "committed_offset",
                                    "lag"]).to_csv(run_dir / "metrics" / "lag.csv", index=False)
    res = []
    for t in np.arange(T0_MS, end_ms, 1000):
        res.append((int(t), "sut", -1, "sut", 80.0, 500.0))
        res.append((int(t), "machine", -1, "machine", 60.0, 4000.0))
    pd.DataFrame(res, columns=["time_ms", "scope", "pid", "name", "cpu_percent",
                               "rss_mb"]).to_csv(run_dir / "metrics" / "resources.csv",
                                                 index=False)
    pd.DataFrame({"reason": ["not_json"], "count": [0]}).to_csv(run_dir / "rejects.csv",
                                                                index=False)
    provenance = {"run_id": spec["run_id"], "profile": config["profile"], "seed": spec["seed"],
                  "spec": spec, "params": params, "config": config, "started": "synthetic",
                  "machine": {"cpu_model": "synthetic", "logical_cores": 2, "memory_gib": 1},
                  "software": {"python": "3.11"}, "git": {"commit": "synthetic"}}
    (run_dir / "provenance.json").write_text(json.dumps(provenance))
    (run_dir / COMPLETE_MARKER).write_text("")
    return run_dir


def fabricate_staircase_backlog(run_dir: str | Path, spec: dict[str, Any],
                                capacity_eps: float, delay_ms: float = 2000.0) -> Path:
    """Make a fabricated run behave like a system of ``capacity_eps``: the watermark falls
    behind real time by (rate - capacity) / rate of every second while the offered rate
    (a staircase's steps, or the run's one rate) exceeds the capacity, and the input lag
    grows by rate - capacity events per second."""
    from sdsbench.analysis.staircase import step_rates

    run_dir = Path(run_dir)
    arrival = spec["arrival"]
    duration = float(spec["duration_s"])
    steps = (step_rates(arrival, duration) if "step_s" in arrival
             else [(0.0, duration, float(arrival["rate_eps"]))])
    times = np.arange(T0_MS, T0_MS + duration * 1000 + 3000, 250, dtype=float)
    behind_ms, lag, wm, lags = 0.0, 0.0, [], []
    for t in times:
        t_s = (t - T0_MS) / 1000
        rate = next((r for lo, hi, r in steps if lo <= t_s < hi), steps[-1][2])
        if rate > capacity_eps and t_s < duration:
            behind_ms += 250 * (rate - capacity_eps) / rate
            lag += 0.25 * (rate - capacity_eps)
        wm.append(t - delay_ms - behind_ms)
        lags.append(lag)
    pd.DataFrame({"time_ms": times, "watermark_ms": wm}).to_csv(
        run_dir / "metrics" / "watermark.csv", index=False)
    rate = pd.read_csv(run_dir / "generator" / "rate.csv")  # the schedule follows the steps
    nominal = np.array([next((r for lo, hi, r in steps if lo <= s < hi), steps[-1][2])
                        for s in rate["second"]])
    rate["scheduled"] = rate["sent"] = np.random.default_rng(0).poisson(nominal)
    rate.to_csv(run_dir / "generator" / "rate.csv", index=False)
    rows = [(int(t), p, 0, 0, int(x / 4) + 10) for t, x in zip(times, lags, strict=True)
            for p in range(4)]
    pd.DataFrame(rows, columns=["time_ms", "partition", "end_offset", "committed_offset",
                                "lag"]).to_csv(run_dir / "metrics" / "lag.csv", index=False)
    if behind_ms > 0:
        # Windows fire late by the backlog at their firing time.
        results = pd.read_csv(run_dir / "results.csv")
        late = np.interp(results["append_time_ms"], times,
                         np.array(times) - delay_ms - np.array(wm))
        results["append_time_ms"] = results["append_time_ms"] + late
        results.to_csv(run_dir / "results.csv", index=False)
    return run_dir
