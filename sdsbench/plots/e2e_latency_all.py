"""A1..A4 on one plot: end-to-end latency from the last insertion against offered rate,
over the repetitions of each run."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from sdsbench.plots.common import (
    FigureContext,
    by_configuration,
    color,
    dodge,
    draw_spread,
    empty_figure,
    label,
    ordered,
    spread_label,
)

CAPTION = (
    "The metric all five pipelines share: p95 end-to-end latency from a window's last "
    "insertion until its result is visible (A1/A2: end of the window query; A3/A4: broker "
    "append time of the result record) over the steady-state windows, against the offered "
    "rate. Filled circles: runs of the experiment matrix at the pipeline's own settings; "
    "open circles: other settings (parallelism, watermark delay); diamonds: MMPP runs at "
    "multiples of t_h. Each marker is the median over the run's repetitions (small points: "
    "each repetition, bars: min-max), labelled with the number of runs and of steady window "
    "firings (pooled) it rests on. Crosses: steady confirmation trials of the t_h searches "
    "(one run each; staircase runs sweep many rates in one run and are not drawn). Fault "
    "runs are left out. Note that A1/A2 query windows in processing time after a fixed "
    "grace, while A3/A4 wait for an event-time watermark."
)
METRIC = "latency_from_last_insertion_ms_p95"
GROUPS = ("baseline", "event_time", "parallelism", "watermark_delay", "at_threshold")


def _default_settings(params: object) -> bool:
    try:
        return not json.loads(params) if isinstance(params, str) else not params
    except ValueError:
        return False


def _side_by_side(conf: pd.DataFrame) -> list[float]:
    """Offered rate (k events/s) of each configuration, series (pipeline and kind of run)
    that share a rate set a little apart (log x), so their bars do not hide each other."""
    order = {p: i for i, p in enumerate(ordered(conf["pipeline"]))}
    series = {}
    for rate, part in conf.groupby("offered_rate_eps"):
        keys = sorted({(order[p], k) for p, k in zip(part["pipeline"], part["kind"],
                                                     strict=True)})
        for p, k in zip(part["pipeline"], part["kind"], strict=True):
            series[(rate, p, k)] = (keys.index((order[p], k)), len(keys))
    return [rate / 1000 * (1 + dodge(*series.get((rate, p, k), (0, 1)), 0.015))
            for rate, p, k in zip(conf["offered_rate_eps"], conf["pipeline"], conf["kind"],
                                  strict=True)]


def draw(ctx: FigureContext) -> Figure:
    rows = pd.concat([ctx.configuration_rows(g) for g in GROUPS], ignore_index=True)
    rows = rows.drop_duplicates("run_id") if len(rows) else rows
    trials = []
    for sid in ctx.searches:
        s = ctx.search(sid)
        trials += [(s["pipeline"], t["rate_eps"], t["row"].get(METRIC)) for t in s["trials"]
                   if t.get("row") and t.get("kind", "steady") != "staircase"]
    if rows.empty and not trials:
        return empty_figure(f"profile {ctx.profile}: no runs")
    conf = by_configuration(rows, [METRIC]) if len(rows) else pd.DataFrame()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    kinds = (("o", None, ""), ("o", "white", ", other settings"),
             ("D", None, ", MMPP at k x t_h"))
    if len(conf):
        mmpp_th = conf["run_id"].isin(ctx.groups.get("at_threshold", []))
        default = (conf["params"].map(_default_settings) if "params" in conf
                   else pd.Series(True, index=conf.index))
        conf["kind"] = [2 if m else 0 if d else 1 for m, d in zip(mmpp_th, default, strict=True)]
        conf["rate_k"] = _side_by_side(conf)
    pipelines = set(conf["pipeline"]) if len(conf) else set()
    for pipeline in ordered(pipelines | {t[0] for t in trials}):
        c = color(pipeline)
        part = conf[conf["pipeline"] == pipeline] if len(conf) else conf
        for kind, (fmt, mfc, what) in enumerate(kinds):
            chosen = part[part["kind"] == kind] if len(part) else part
            if len(chosen):
                draw_spread(ax, chosen, "rate_k", METRIC, color=c, fmt=fmt, mfc=mfc,
                            label=label(pipeline) + what, annotate=True,
                            annotate_offset=(5, 2))
        pts = sorted((r, v) for p, r, v in trials if p == pipeline and v is not None
                     and not math.isnan(v))
        if pts:
            ax.plot([r / 1000 for r, _ in pts], [v for _, v in pts], "x", color=c,
                    label=f"{label(pipeline)}, t_h search steady trials")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.tick_params(which="both", labelsize=7)
    ax.set_xlabel("offered rate (k events/s)")
    ax.set_ylabel(spread_label("p95 latency from last insertion (ms)", conf, METRIC)
                  if len(conf) else "p95 latency from last insertion (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return fig
