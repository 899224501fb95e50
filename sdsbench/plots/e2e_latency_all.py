"""A1..A4 on one plot: end-to-end latency from the last insertion against offered rate."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered

CAPTION = (
    "The metric all five pipelines share: p95 end-to-end latency from a window's last "
    "insertion until its result is visible (A1/A2: end of the window query; A3/A4: broker "
    "append time of the result record), against the offered rate. Circles: runs of the "
    "experiment matrix; crosses: trials of the t_h searches. Note that A1/A2 query windows "
    "in processing time after a fixed grace, while A3/A4 wait for an event-time watermark."
)


def draw(ctx: FigureContext) -> Figure:
    table = ctx.runs_table()
    metric = "latency_from_last_insertion_ms_p95"
    trials = []
    for sid in ctx.searches:
        s = ctx.search(sid)
        trials += [(s["pipeline"], t["rate_eps"], t["row"].get(metric))
                   for t in s["trials"] if t["row"]]
    if table.empty and not trials:
        return empty_figure(f"profile {ctx.profile}: no runs")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pipeline in ordered(set(table["pipeline"]) | {t[0] for t in trials}):
        part = table[table["pipeline"] == pipeline].sort_values("offered_rate_eps")
        ax.plot(part["offered_rate_eps"] / 1000, part[metric], "o", color=color(pipeline),
                label=label(pipeline))
        pts = sorted((r, v) for p, r, v in trials if p == pipeline and v is not None
                     and not math.isnan(v))
        if pts:
            ax.plot([r / 1000 for r, _ in pts], [v for _, v in pts], "x", color=color(pipeline))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (k events/s)")
    ax.set_ylabel("p95 latency from last insertion (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
