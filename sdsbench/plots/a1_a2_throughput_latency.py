"""A1 vs A2: achieved throughput against mean query latency, one point per offered rate,
the knee of each curve marked."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from sdsbench.analysis.knee import KNEE_RULE, knee_index
from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered

CAPTION = (
    "A1 (generator inserting into PostgreSQL) and A2 (generator, Kafka, consumer group, "
    "PostgreSQL): achieved throughput against the mean latency of the per-window query, one "
    "point per offered rate (labelled in k events/s). The star marks each pipeline's knee: "
    + KNEE_RULE + "."
)


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.group_rows("baseline")
    rows = rows[rows["pipeline"].isin(["a1", "a2"])]
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no A1/A2 runs")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for pipeline in ordered(rows["pipeline"]):
        part = rows[rows["pipeline"] == pipeline].sort_values("offered_rate_eps")
        x = part["achieved_rate_eps"].to_numpy() / 1000
        y = part["query_latency_ms_mean"].to_numpy()
        ax.plot(x, y, "o-", color=color(pipeline), label=label(pipeline))
        for xi, yi, offered in zip(x, y, part["offered_rate_eps"], strict=True):
            ax.annotate(f"{offered / 1000:g}k", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color=color(pipeline))
        k = knee_index(list(x), list(y))
        if k is not None:
            ax.plot(x[k], y[k], "*", ms=16, color=color(pipeline), mec="black",
                    label=f"knee {label(pipeline)}")
    ax.set_xlabel("achieved throughput (k events/s)")
    ax.set_ylabel("mean window-query latency (ms)")
    ax.set_title("Throughput vs query latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
