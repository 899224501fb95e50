"""A1 vs A2: achieved throughput against mean query latency, one point per offered rate,
the knee of each curve marked; beside it, how complete the query answers were at query
time per offered rate. Points whose answers were not complete enough to count for the
knee are drawn hollow."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from sdsbench.analysis.knee import KNEE_RULE, MIN_COMPLETE_SHARE, knee_index
from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered

CAPTION = (
    "A1 (generator inserting into PostgreSQL) and A2 (generator, Kafka, consumer group, "
    "PostgreSQL). Left: achieved throughput against the mean latency of the per-window "
    "query, one point per offered rate (labelled in k events/s). Right: completeness of "
    "the answers at query time per offered rate: the share of steady-state window queries "
    "whose answer held at least 99.9 per cent of the window's true events (solid), and the "
    "mean share of a window's events present in its answer (dashed); the dotted line is "
    f"the knee's threshold ({100 * MIN_COMPLETE_SHARE:.0f} per cent). Hollow points: "
    "answers not complete enough (or not measured), so the point's query latency is not an "
    "operating point and it is not a knee candidate. The star marks each pipeline's knee: "
    + KNEE_RULE + "."
)


def _column(part, name: str) -> np.ndarray:
    if name not in part:
        return np.full(len(part), np.nan)
    return part[name].astype(float).to_numpy()


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.group_rows("baseline")
    rows = rows[rows["pipeline"].isin(["a1", "a2"])]
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no A1/A2 runs")
    fig, (ax, ax_c) = plt.subplots(1, 2, figsize=(10.4, 4.2),
                                   gridspec_kw={"width_ratios": [3, 2]})
    for pipeline in ordered(rows["pipeline"]):
        part = rows[rows["pipeline"] == pipeline].sort_values("offered_rate_eps")
        c = color(pipeline)
        x = part["achieved_rate_eps"].to_numpy(dtype=float) / 1000
        y = part["query_latency_ms_mean"].to_numpy(dtype=float)
        offered = part["offered_rate_eps"].to_numpy(dtype=float) / 1000
        share = _column(part, "at_query_complete_share")
        mean = _column(part, "at_query_completeness_mean")
        # Not complete enough (or not measured): not a knee candidate (knee.knee_index).
        hollow = ~(share >= MIN_COMPLETE_SHARE)

        ax.plot(x, y, "-", color=c, label=label(pipeline))
        ax.plot(x[~hollow], y[~hollow], "o", color=c, ls="none")
        ax.plot(x[hollow], y[hollow], "o", mfc="white", mec=c, mew=1.5, ls="none")
        for xi, yi, oi, h in zip(x, y, offered, hollow, strict=True):
            ax.annotate(f"{oi:g}k" + (" (incomplete)" if h else ""), (xi, yi),
                        textcoords="offset points", xytext=(4, 4), fontsize=8, color=c)
        k = knee_index(list(x), list(y), list(share))
        if k is not None:
            ax.plot(x[k], y[k], "*", ms=16, color=c, mec="black",
                    label=f"knee {label(pipeline)}")

        ax_c.plot(offered, share, "-", color=c, label=f"{label(pipeline)}: complete windows")
        ax_c.plot(offered, mean, "--", color=c, alpha=0.7,
                  label=f"{label(pipeline)}: mean completeness")
        ax_c.plot(offered[~hollow], share[~hollow], "o", color=c, ls="none")
        ax_c.plot(offered[hollow], share[hollow], "o", mfc="white", mec=c, mew=1.5, ls="none")
    ax.plot([], [], "o", mfc="white", mec="grey", ls="none",
            label="incomplete at query time: not a knee candidate")
    ax.set_xlabel("achieved throughput (k events/s)")
    ax.set_ylabel("mean window-query latency (ms)")
    ax.set_title("Throughput vs query latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax_c.axhline(MIN_COMPLETE_SHARE, color="grey", ls=":", lw=1)
    ax_c.set_ylim(-0.05, 1.05)
    ax_c.set_xlabel("offered rate (k events/s)")
    ax_c.set_ylabel("share at query time")
    ax_c.set_title("Completeness of the answers at query time")
    ax_c.grid(alpha=0.3)
    ax_c.legend(fontsize=7)
    fig.tight_layout()
    return fig
