"""Everything the paper says, gathered from the summary files of one profile.

The paper templates (paper/templates/*.j2) receive this context and nothing else: every
number in the paper comes from a summary file, and every metric definition is quoted
from the docstring of the code that computes it.

Why one module (over 500 lines): it is the one place that decides what the paper may
say, section by section; split, the rule "only summary files" would have several homes.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sdsbench.analysis import (
    cpu_cost,
    criterion,
    engine_metrics,
    faults,
    flow,
    knee,
    latency,
    oracle,
    staircase,
    throughput_search,
)
from sdsbench.analysis.rundata import is_real_time, read_csv, run_params
from sdsbench.analysis.tables import load_run_summaries, load_searches, spread_of
from sdsbench.config import REPO_ROOT, deep_merge
from sdsbench.contract import WINDOW_MS

# Targets the project set itself (issues 5, 6 and 14): t_h on this 2-core machine with
# generator and broker on the same machine. The paper reports whether they were met.
TH_TARGETS_EPS: dict[str, float] = {"flink": 150_000.0, "spark": 50_000.0}
# Issue 14: Spark's CPU per micro-batch, whatever its size, at most this.
SPARK_BATCH_TARGET_MS = 150.0
# Issue 2: one generator process sustains at least this rate into the broker.
GENERATOR_TARGET_EPS = 200_000.0
#: The full profile's overrides: what a lighter profile leaves out is listed against them.
FULL_PROFILE = REPO_ROOT / "config" / "full.yaml"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def definitions() -> dict[str, str]:
    """Metric definitions, quoted from the code."""
    return {
        "latency": inspect.getdoc(latency) or "",
        "flow": inspect.getdoc(flow) or "",
        "oracle": inspect.getdoc(oracle) or "",
        "faults": inspect.getdoc(faults) or "",
        "search": inspect.getdoc(throughput_search) or "",
        "staircase": inspect.getdoc(staircase) or "",
        "criterion": inspect.getdoc(criterion.sustainable) or "",
        "knee": inspect.getdoc(knee.knee_index) or "",
        "latency_statistic": criterion.LATENCY_STATISTIC,
        "delay_settings": ", ".join(f"{p}: {k}" for p, k in engine_metrics.DELAY_SETTING.items()),
    }


def _cpu(summary_dir: Path) -> dict[str, Any] | None:
    """The cpu table (``sdsbench.analysis.tables.cpu_table``) arranged for the paper: per
    configuration its scopes, per pipeline its fit, per Spark configuration its phases."""
    path = summary_dir / "cpu.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)
    arranged: dict[str, dict[str, dict[str, Any]]] = {
        "per_event": {}, "fit": {}, "spark_phase": {}}
    for r in _records(table):
        by = r["pipeline"] if r["kind"] == "fit" else r["subject"]
        entry = arranged[r["kind"]].setdefault(by, {"subject": r["subject"],
                                                    "pipeline": r["pipeline"],
                                                    "rate_eps": r["rate_eps"]})
        entry[r["scope"] if r["kind"] == "per_event" else r["metric"]] = r
    spark_fit = arranged["fit"].get("spark", {}).get("batches_per_s")
    return {**{k: list(v.values()) for k, v in arranged.items()},
            "fits": arranged["fit"], "phases": list(cpu_cost.SPARK_PHASES),
            "spark_batch_target_ms": SPARK_BATCH_TARGET_MS,
            "spark_batch_met": None if spark_fit is None or spark_fit.get("median") is None
            else spark_fit["median"] <= SPARK_BATCH_TARGET_MS}


def _fraction(t_h_eps: float | None, ceiling_eps: float | None) -> float | None:
    if not t_h_eps or not ceiling_eps:
        return None
    return float(t_h_eps) / float(ceiling_eps)


def _ceiling(path: Path, th: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The pass-through ceilings (``sdsbench.ceiling``) and each engine's SPP t_h as a
    fraction of its read + parse ceiling (median over median; the range pairs the
    extremes: lowest t_h over highest ceiling, and the reverse)."""
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    rows = []
    for engine, modes in summary["engines"].items():
        parse = modes.get("parse", {})
        spp = th.get(engine, {}).get("spp") or {}
        t_h, lo, hi = spp.get("t_h_eps"), spp.get("t_h_min_eps"), spp.get("t_h_max_eps")
        rows.append({"engine": engine, "raw": modes.get("raw"), "parse": parse,
                     "t_h": spp or None,
                     "fraction": _fraction(t_h, parse.get("eps_median")),
                     "fraction_lo": _fraction(lo, parse.get("eps_max")),
                     "fraction_hi": _fraction(hi, parse.get("eps_min"))})
    return {"events": summary["events"], "exact": summary["exact"],
            "repetitions": summary.get("repetitions"), "rows": rows}


def _spark_floor(path: Path) -> dict[str, Any] | None:
    """Spark's own per-batch CPU (``engines.spark.batch_floor``): per variant, median
    [min-max] over the repetitions of CPU-ms and code compilations per batch."""
    if not path.exists():
        return None
    table = pd.read_csv(path)
    rows = []
    for variant, part in table.groupby("variant", sort=False):
        cpu = part["cpu_ms_per_batch"].astype(float)
        rows.append({"variant": variant, "n": len(part), "median": float(cpu.median()),
                     "lo": float(cpu.min()), "hi": float(cpu.max()),
                     "codegen_per_batch": float(part["codegen_per_batch"].median()),
                     "jit_ms_per_batch": float(part["jit_ms_per_batch"].median()),
                     "batches": int(part["batches"].sum()),
                     "rows_per_batch": int(part["rows_per_batch"].iloc[0])})
    return {"rows": rows, "by_variant": {r["variant"]: r for r in rows}}


def _provenance(summary_dir: Path, run_ids: list[str]) -> dict[str, Any]:
    started, ended, commits, wall, load5 = [], [], set(), 0.0, []
    machine, software = None, {}
    sessions: dict[str, Any] = {"runs": 0, "reused": 0, "keys": set()}
    for run_id in run_ids:
        data = json.loads((summary_dir / "runs" / f"{run_id}.json").read_text())
        session = data.get("engine_session")
        if session:
            sessions["runs"] += 1
            sessions["reused"] += bool(session.get("reused"))
            sessions["keys"].add(session.get("key"))
        prov = data.get("provenance") or {}
        if prov.get("started"):
            started.append(prov["started"])
        if prov.get("ended"):
            ended.append(prov["ended"])
        git = prov.get("git") or {}
        if git.get("commit"):
            commits.add(git["commit"] + (" (uncommitted changes)" if git.get("dirty") else ""))
        wall += float(prov.get("wall_s") or 0.0)
        load = (prov.get("machine") or {}).get("load_avg_at_end")
        if load:
            load5.append(float(load[1]))
        machine = machine or prov.get("machine")
        for key, value in (prov.get("software") or {}).items():
            software.setdefault(key, value)
    services = (software.get("services") or {}) if software else {}
    return {
        "first_started": min(started) if started else None,
        "last_ended": max(ended) if ended else None,
        "git_commits": sorted(commits),
        "engine_wall_s": wall,
        "load5_min": min(load5) if load5 else None,
        "load5_max": max(load5) if load5 else None,
        "machine": machine or {},
        "software": software,
        "service_versions": services,
        # Spark/Flink runs served by an engine session; reused: the JVM had served runs before.
        "engine_sessions": {"runs": sessions["runs"], "reused": sessions["reused"],
                            "sessions": len(sessions["keys"])},
    }


def _by_pipeline(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["pipeline"], []).append(row)
    return out


def _baseline(
    rows: list[dict[str, Any]], ids: list[str], rate_tolerance: float
) -> dict[str, Any]:
    chosen = [r for r in rows if r["run_id"] in ids and r["pipeline"] in ("a1", "a2")]
    chosen.sort(key=lambda r: (r["pipeline"], r["offered_rate_eps"]))
    knees, knee_excluded = {}, {}
    for pipeline, part in _by_pipeline(chosen).items():
        # Only points whose answers were complete at query time are knee candidates.
        args = ([r["achieved_rate_eps"] for r in part],
                [r.get("query_latency_ms_mean") or math.nan for r in part],
                [r.get("at_query_complete_share") for r in part])
        k = knee.knee_index(*args)
        knees[pipeline] = part[k] if k is not None else None
        knee_excluded[pipeline] = [{"run": part[i], "reason": reason}
                                   for i, reason in knee.knee_exclusions(*args).items()]
    incomplete = [r for r in chosen if r.get("query_latency_ms_mean") is not None
                  and not (r.get("at_query_complete_share") or 0) >= knee.MIN_COMPLETE_SHARE]
    pairs = []
    a1 = {r["offered_rate_eps"]: r for r in chosen if r["pipeline"] == "a1"}
    a2 = {r["offered_rate_eps"]: r for r in chosen if r["pipeline"] == "a2"}
    for rate in sorted(set(a1) & set(a2)):
        pairs.append({"rate": rate, "a1": a1[rate], "a2": a2[rate]})
    a1_ratios = [r["achieved_ratio"] for r in chosen
                 if r["pipeline"] == "a1" and r.get("achieved_ratio") is not None]
    return {"rows": chosen, "knees": knees, "pairs": pairs,
            "knee_excluded": knee_excluded, "incomplete_at_query": incomplete,
            "min_complete_share": knee.MIN_COMPLETE_SHARE,
            "complete_at": oracle.COMPLETE_AT,
            "a1_min_ratio": min(a1_ratios) if a1_ratios else None,
            "a1_fell_behind": any(r < 1 - rate_tolerance for r in a1_ratios),
            "a2_lower_query_latency_everywhere": bool(pairs) and all(
                (p["a2"].get("query_latency_ms_mean") or math.inf)
                < (p["a1"].get("query_latency_ms_mean") or math.inf) for p in pairs),
            "a1_lower_query_latency_everywhere": bool(pairs) and all(
                (p["a1"].get("query_latency_ms_mean") or math.inf)
                < (p["a2"].get("query_latency_ms_mean") or math.inf) for p in pairs)}


def _correctness(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pipeline, part in _by_pipeline(rows).items():
        out.append({
            "pipeline": pipeline,
            "runs": len(part),
            "correct_runs": sum(1 for r in part if r.get("correct")),
            "consistent_runs": sum(1 for r in part if r.get("correct_where_not_dropped")),
            "late_dropped_windows": sum(r.get("late_dropped_windows") or 0 for r in part),
            "exact_windows": sum(r.get("exact_windows") or 0 for r in part),
            "evaluable_windows": sum(r.get("evaluable_windows") or 0 for r in part),
            "missing_windows": sum(r.get("missing_windows") or 0 for r in part),
            "unfired_tail_windows": sum(r.get("unfired_tail_windows") or 0 for r in part),
            "count_error_windows": sum(r.get("count_error_windows") or 0 for r in part),
            "extra_windows": sum(r.get("extra_windows") or 0 for r in part),
            "duplicate_windows": sum(r.get("duplicate_windows") or 0 for r in part),
            "deficit_events": sum(r.get("deficit_events") or 0 for r in part),
            "delayed_events_sent": sum(r.get("delayed_events_sent") or 0 for r in part),
            "dropped_reported": (
                sum(r["dropped_events_reported"] for r in part
                    if r.get("dropped_events_reported") is not None)
                if any(r.get("dropped_events_reported") is not None for r in part) else None
            ),
            "rejected_events": sum(r.get("rejected_events") or 0 for r in part),
        })
    order = {p: i for i, p in enumerate(("a1", "a2", "a3", "spark", "flink"))}
    return sorted(out, key=lambda r: order.get(r["pipeline"], 99))


HEADLINE_P95 = "p95_above_delay/"


def _headline(summary_dir: Path) -> list[dict[str, Any]]:
    """The headline table (``sdsbench.analysis.tables.headline_table``), if built."""
    path = summary_dir / "headline.csv"
    return _records(pd.read_csv(path)) if path.exists() else []


def _bases(rows: list[dict[str, Any]], headline_p95: dict[str, dict[str, Any]],
           x: str | None = None) -> list[dict[str, Any]]:
    """One entry per base run of ``rows`` (its repetitions together): the first
    repetition's row, its repetitions' rows and its headline row (median p95 above the
    delay with min-max over the repetitions, pooled p95 and firings); ordered by ``x``."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: int(r.get("repetition") or 1)):
        base = r.get("base_run_id") or r["run_id"]
        entry = out.setdefault(base, {"base_run_id": base, "run": r, "runs": [],
                                      "pipeline": r["pipeline"],
                                      "headline": headline_p95.get(base)})
        entry["runs"].append(r)
    bases = list(out.values())
    if x is not None:
        bases.sort(key=lambda b: b["run"].get(x) or 0)
    return bases


def _median_p95(base: dict[str, Any]) -> float:
    h = base.get("headline")
    if h is not None and h.get("median") is not None:
        return float(h["median"])
    return float(base["run"].get("latency_above_delay_ms_p95") or math.nan)


def _real_time(bases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spark's real-time-mode configurations (``spark.execution``) of the event-time group,
    each beside the micro-batch run of the same spec (Spark's defaults, same rate and
    process: the same input): the base entries (``_bases``) and the output records per
    input event of each repetition (update mode: a record per change of a window)."""
    def spec(b: dict[str, Any]) -> tuple[Any, ...]:
        return (b["run"].get("process"), b["run"].get("offered_rate_eps"))

    micro = {spec(b): b for b in bases if b["pipeline"] == "spark" and not run_params(b["run"])}
    out = []
    for b in bases:
        if is_real_time(b["run"]):
            mb = micro.get(spec(b))
            out.append({
                "real_time": b, "micro_batch": mb, "params": run_params(b["run"]),
                "records_per_event": spread_of([
                    float(r["result_records"]) / float(r["events_sent"]) for r in b["runs"]
                    if r.get("result_records") and r.get("events_sent")]),
                # p95 of the latency from the window's last event's insertion (engine time)
                "last_insertion_p95": {k: spread_of([
                    r.get("latency_from_last_insertion_ms_p95") for r in x["runs"]])
                    for k, x in (("real_time", b), ("micro_batch", mb)) if x is not None},
            })
    return out


def _sweep(rows: list[dict[str, Any]], ids: list[str], x: str,
           headline_p95: dict[str, dict[str, Any]]) -> dict[str, Any]:
    chosen = [r for r in rows if r["run_id"] in ids]
    per = {}
    for pipeline, part in _by_pipeline(chosen).items():
        part = sorted(part, key=lambda r: (r.get(x) or 0, int(r.get("repetition") or 1)))
        bases = _bases(part, headline_p95, x)
        first, last = bases[0], bases[-1]
        per[pipeline] = {
            "rows": part,
            "bases": bases,
            "first": first["run"],
            "last": last["run"],
            # Change of the median p95 above the delay over the repetitions (headline).
            "p95_change_ms": _median_p95(last) - _median_p95(first),
        }
    return per


def _stop_reasons(stop_reason: str | None) -> list[str]:
    """The per-repetition stop reasons of a combined search ("rep 1: ...; rep 2: ...")."""
    return [p for p in re.split(r"; (?=rep \d+: )", stop_reason or "") if p]


def _th_entry(s: dict[str, Any]) -> dict[str, Any]:
    """What the paper says about one search (printed by ``paper_format.th``)."""
    kinds = [t.get("kind", "steady") for t in s["trials"]]
    return {
        "search_id": s["search_id"], "pipeline": s["pipeline"], "process": s["process"],
        "t_h_eps": s["t_h_eps"], "lower_bound": s["t_h_is_lower_bound"],
        "t_h_min_eps": s.get("t_h_min_eps"), "t_h_max_eps": s.get("t_h_max_eps"),
        "t_h_values_eps": s.get("t_h_values_eps"),
        "repetitions": s.get("repetitions", 1),
        "interval_eps": s.get("interval_eps") or [s["t_h_eps"],
                                                  s["lowest_failing_rate_eps"]],
        "trials": len(s["trials"]),
        "staircases": sum(1 for k in kinds if k == "staircase"),
        "steady_trials": sum(1 for k in kinds if k != "staircase"),
        "stop_reason": s["stop_reason"],
        "stop_reasons": _stop_reasons(s["stop_reason"]),
        "lowest_failing_rate_eps": s["lowest_failing_rate_eps"],
        "verdicts_changed": s.get("verdicts_changed", []),
    }


def _at_multiples(row: dict[str, Any], multiples: list[float]) -> list[dict[str, Any]]:
    """The at-threshold runs of one stress-table row, one entry per multiple k of t_h
    (the row's ``x<k>_`` columns without the prefix)."""
    out = []
    for multiple in multiples:
        prefix = f"x{multiple:g}_"
        if row.get(f"{prefix}run_id") is None:
            continue
        out.append({"multiple": multiple, "label": f"{multiple:g} x t_h",
                    **{k.removeprefix(prefix): v for k, v in row.items()
                       if k.startswith(prefix)}})
    return out


def _group_runs(config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The blocks of every group of runs (the at-threshold runs and faults as one block)."""
    from sdsbench.experiments import AT_THRESHOLD, FAULTS

    exp = config["experiments"]
    out = {g: list(blocks or []) for g, blocks in exp["groups"].items()}
    out[AT_THRESHOLD] = [exp[AT_THRESHOLD]]
    faults = exp.get(FAULTS) or {}
    out[FAULTS] = [{**b, "duration_s": faults.get("duration_s")}
                   for b in faults.get("blocks") or []]
    return out


#: How the paper names the groups of runs (sdsbench.experiments).
GROUP_LABELS = {"baseline": "A1/A2 baseline", "event_time": "event time",
                "parallelism": "parallelism", "watermark_delay": "watermark delay",
                "at_threshold": "MMPP at multiples of t_h", "faults": "faults"}


def _values(values: Any) -> str:
    def one(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float | int) and not isinstance(v, bool) else str(v)

    distinct = sorted({one(v) for v in values}, key=lambda v: (len(v), v))
    return ", ".join(distinct) if distinct else "none"


def profile_facts(config: dict[str, Any]) -> dict[str, str]:
    """What a profile runs, as comparable text (``leaves_out``)."""
    from sdsbench.experiments import FAULTS, repetitions_of, run_groups

    facts: dict[str, str] = {}
    groups = run_groups(config)
    run_s = config["run"]["duration_s"]
    for key, blocks in _group_runs(config).items():
        group = GROUP_LABELS.get(key, key)
        facts[f"{group}: runs, repetitions included"] = str(len(groups.get(key, [])))
        if not groups.get(key):  # a group this profile leaves out: no details to compare
            continue
        facts[f"{group}: repetitions of each run"] = _values(
            [repetitions_of(config, b) for b in blocks] if key != FAULTS else [1])
        facts[f"{group}: seconds of input per run"] = _values(
            [b.get("duration_s") or run_s for b in blocks])
        facts[f"{group}: pipelines"] = _values(p for b in blocks for p in b["pipelines"])
        facts[f"{group}: arrival processes"] = _values(
            p for b in blocks for p in b.get("processes") or [b.get("process")])
    facts["warm-up left out of latency statistics, s"] = _values(
        [config["experiments"]["warmup_s"]])
    search = config["search"]
    facts["t_h search: pipelines"] = _values(search["pipelines"])
    if not search["pipelines"]:
        return facts | _bench_facts(config)
    facts["t_h search: arrival processes"] = _values(search["processes"])
    facts["t_h search: repetitions"] = _values([search.get("repetitions") or 1])
    facts["t_h search: staircase step factor (the interval's width)"] = _values(
        [search["step_factor"]])
    facts["t_h search: staircase steps x seconds per step"] = (
        f"{search['steps']} x {float(search['step_s']):g}")
    facts["t_h search: steady confirmation trials per repetition"] = _values(
        [search["confirm_trials"]])
    facts["t_h search: seconds of input per steady trial"] = _values(
        [search["trial_duration_s"]])
    return facts | _bench_facts(config)


def _bench_facts(config: dict[str, Any]) -> dict[str, str]:
    bench = config["experiments"].get("generator_bench") or {}
    if not bench.get("enabled"):
        return {"generator benchmark: producer processes": "none"}
    return {"generator benchmark: producer processes": _values(bench["processes"]),
            "generator benchmark: compression": _values(bench["compression"])}


def full_profile(config: dict[str, Any], path: str | Path | None = FULL_PROFILE
                 ) -> dict[str, Any] | None:
    """The full profile as ``make full`` builds it from this configuration (this one with
    the overrides of ``path``); None for the full profile itself or without the file."""
    if path is None or config.get("profile") == "full" or not Path(path).exists():
        return None
    return deep_merge(config, yaml.safe_load(Path(path).read_text()) or {})


def leaves_out(config: dict[str, Any], full: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every fact of ``profile_facts`` in which this profile differs from the full one."""
    if full is None:
        return []
    mine, theirs = profile_facts(config), profile_facts(full)
    # A group (or the search) this profile does not run is one line, not one per detail.
    absent = [k.split(":")[0] for k, v in mine.items()
              if k.endswith((": runs, repetitions included", ": pipelines", ": producer processes"))
              and v in ("0", "none")]
    keys = [k for k in dict.fromkeys([*mine, *theirs])
            if k in mine or not any(k.startswith(f"{a}: ") for a in absent)]
    return [{"what": k, "this": mine.get(k, "none"), "full": theirs.get(k, "none")}
            for k in keys if mine.get(k) != theirs.get(k)]


def _repetitions_by_group(config: dict[str, Any]) -> list[dict[str, Any]]:
    from sdsbench.experiments import FAULTS, repetitions_of

    return [{"group": GROUP_LABELS.get(g, g),
             "repetitions": _values([repetitions_of(config, b) for b in blocks])}
            for g, blocks in _group_runs(config).items() if blocks and g != FAULTS]


def _strategies(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Watermark settings of the event-time pipelines, as configured (null = not set)."""
    a3 = config.get("a3", {})
    spark = config.get("spark", {})
    flink = config.get("flink", {})
    bound = a3.get("watermark_bound_ms")
    return [
        {"pipeline": "a3",
         "delay_ms": bound if bound is not None else config["workload"]["disorder"][
             "max_delay_ms"],
         "idle": a3.get("idle_timeout_ms"), "lateness_policy": (a3.get("lateness") or {}).get(
             "policy"), "allowed_lateness_ms": (a3.get("lateness") or {}).get("allowed_ms"),
         "fire_interval_ms": a3.get("fire_interval_ms")},
        {"pipeline": "spark", "delay_ms": spark.get("watermark_delay_ms"),
         "idle": None, "lateness_policy": spark.get("output_mode"),
         "allowed_lateness_ms": None, "fire_interval_ms": spark.get("trigger_ms")},
        {"pipeline": "flink", "delay_ms": flink.get("watermark_delay_ms"),
         "idle": flink.get("idle_timeout_ms", flink.get("idleness_ms")),
         "lateness_policy": flink.get("late_policy", "side output"),
         "allowed_lateness_ms": flink.get("allowed_lateness_ms"),
         "fire_interval_ms": flink.get("watermark_interval_ms",
                                       flink.get("auto_watermark_interval_ms"))},
    ]


def build_context(
    summary_dir: str | Path, figures_dir: str | Path, out_dir: str | Path,
    config: dict[str, Any], full_profile_path: str | Path | None = FULL_PROFILE,
) -> dict[str, Any]:
    """The template context (module docstring). ``full_profile_path``: the full profile's
    overrides, against which the paper lists what a lighter profile leaves out."""
    from sdsbench.experiments import cluster_settings, expand_runs, run_groups, searches
    from sdsbench.plots import common as plot_common

    summary_dir, figures_dir, out_dir = Path(summary_dir), Path(figures_dir), Path(out_dir)
    runs = expand_runs(config)
    groups = run_groups(config)
    rows = [{k: _clean(v) for k, v in r.items()}
            for r in load_run_summaries(summary_dir, list(runs))]
    search_results = load_searches(summary_dir, list(searches(config)))
    # empty in a profile without runs at multiples of t_h
    stress = read_csv(summary_dir / "stress.csv") if (summary_dir / "stress.csv").exists() \
        else pd.DataFrame()

    figures = []
    import importlib

    bench_dir = summary_dir.parent / "bench" / "generator"
    bench_on = bool(config["experiments"]["generator_bench"]["enabled"])
    names = plot_common.figure_inputs(str(summary_dir), runs, groups, searches(config),
                                      str(bench_dir) if bench_on else None)
    for name in sorted(names):
        module = importlib.import_module(f"sdsbench.plots.{name}")
        png = figures_dir / f"{name}.png"
        figures.append({"name": name, "caption": module.CAPTION,
                        "png": os.path.relpath(png, out_dir),
                        "pdf": os.path.relpath(figures_dir / f"{name}.pdf", out_dir)})
    th: dict[str, dict[str, Any]] = {}
    for s in search_results:
        th.setdefault(s["pipeline"], {})[s["process"]] = _th_entry(s)
    multiples = [float(m) for m in config["experiments"]["at_threshold"]["multiples"]]
    stress_rows = _records(stress)
    for row in stress_rows:
        row["th"] = th.get(row["pipeline"], {}).get(row["process"]) or row
        row["at"] = _at_multiples(row, multiples)
    headline = _headline(summary_dir)
    headline_p95 = {r["subject"]: r for r in headline
                    if str(r.get("key", "")).startswith(HEADLINE_P95)}
    by_id = {r["run_id"]: r for r in rows}
    fault_rows = _records(pd.read_csv(summary_dir / "faults.csv")) \
        if (summary_dir / "faults.csv").exists() else []
    for row in fault_rows:  # the firings beside the faults table's latencies
        for key, run_id in (("", row["run_id"]), ("reference_", row.get("reference_run"))):
            row[f"{key}latency_from_window_end_ms_firings"] = (
                by_id.get(run_id) or {}).get("latency_from_window_end_ms_firings")
    full = full_profile(config, full_profile_path)
    targets = []
    for pipeline, target in TH_TARGETS_EPS.items():
        spp = th.get(pipeline, {}).get("spp")
        if spp is None:
            continue
        value = spp["t_h_eps"]
        met = value is not None and value >= target
        # A lower bound below the target decides nothing: the search stopped too early.
        verdict = "met" if met else ("undecided" if spp["lower_bound"] else "not met")
        low = spp.get("t_h_min_eps")
        targets.append({"pipeline": pipeline, "target_eps": target, "t_h_eps": value,
                        "met": met, "verdict": verdict, "th": spp,
                        # met by the median, but not by every repetition
                        "met_by_all": met and (low is None or low >= target)})
    at_threshold = [r for r in rows if r["run_id"] in groups.get("at_threshold", [])]
    event_time_bases = _bases(
        [r for r in rows if r["run_id"] in groups.get("event_time", [])], headline_p95)
    ceiling_path = summary_dir.parent / "bench" / "ceiling" / "summary.json"
    ceiling_on = bool((config["experiments"].get("ceiling_bench") or {}).get("enabled"))
    generator_bench = None
    if bench_on and (bench_dir / "sustained.csv").exists():
        sustained = pd.read_csv(bench_dir / "sustained.csv")
        one = sustained[sustained["processes"] == 1]
        generator_bench = {
            "rows": _records(sustained),
            "one_process_eps": float(one["sustained_eps"].max()) if len(one) else None,
            "target_eps": GENERATOR_TARGET_EPS,
        }
    return {
        "profile": config["profile"],
        "config": config,
        "master_seed": config["seed"],
        "runs": rows,
        "groups": groups,
        "n_runs": len(rows),
        "n_trials": sum(len(s["trials"]) for s in search_results),
        "provenance": _provenance(summary_dir, list(runs)),
        "definitions": definitions(),
        "knee_rule": knee.KNEE_RULE,
        "baseline": _baseline(rows, groups.get("baseline", []),
                              float(config["search"]["rate_tolerance"])),
        "event_time": [r for r in rows if r["run_id"] in groups.get("event_time", [])],
        "event_time_bases": event_time_bases,
        "real_time": _real_time(event_time_bases),
        "headline": headline,
        "headline_p95": headline_p95,
        "repetitions_by_group": _repetitions_by_group(config),
        "window_s": WINDOW_MS / 1000,
        # Where each searched pipeline's staircase starts (search.start_rates_eps).
        "search_start_rates": [
            {"pipeline": p, "rate_eps": throughput_search.SearchSettings.from_config(
                config["search"], p).start_rate_eps}
            for p in sorted({s["pipeline"] for s in searches(config).values()})],
        "full_profile": full,
        "leaves_out": leaves_out(config, full),
        "at_threshold": at_threshold,
        "searches": search_results,
        "stress": stress_rows,
        "threshold_multiples": multiples,
        "t_h": th,
        "targets": targets,
        "correctness": _correctness(rows),
        "parallelism": _sweep(rows, groups.get("parallelism", []), "parallelism",
                              headline_p95),
        "watermark_sweep": _sweep(rows, groups.get("watermark_delay", []),
                                  "configured_delay_ms", headline_p95),
        "strategies": _strategies(config),
        "figures": figures,
        "figure": {f["name"]: f for f in figures},
        "criterion": config["search"],
        "label": plot_common.label,
        "run_label": plot_common.run_label,
        "generator_bench": generator_bench,
        # The faults table (sdsbench.analysis.faults; rules/faults.smk), when the profile
        # has a faults group.
        "faults": fault_rows,
        # The clusters the services ran (config/cluster.yaml); empty: one broker, engines
        # in their own processes.
        "cluster": cluster_settings(config),
        "cpu": _cpu(summary_dir),
        "ceiling": _ceiling(ceiling_path, th) if ceiling_on else None,
        "spark_floor": _spark_floor(summary_dir.parent / "bench" / "spark_floor" / "floor.csv")
        if (config["experiments"].get("spark_floor_bench") or {}).get("enabled") else None,
    }
