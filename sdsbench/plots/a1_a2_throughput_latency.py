"""A1 vs A2: achieved throughput against mean query latency, one point per offered rate,
the knee of each curve marked; beside it, how complete the query answers were at query
time per offered rate. Points whose answers were not complete enough to count for the
knee are drawn hollow."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from sdsbench.analysis.knee import KNEE_RULE, MIN_COMPLETE_SHARE, knee_index
from sdsbench.analysis.oracle import COMPLETE_AT
from sdsbench.plots.common import (
    FigureContext,
    by_configuration,
    color,
    draw_spread,
    empty_figure,
    label,
    ordered,
    sample_text,
    spread_label,
)

CAPTION = (
    "A1 (generator inserting into PostgreSQL) and A2 (generator, Kafka, consumer group, "
    "PostgreSQL). Left: achieved throughput against the mean latency of the per-window "
    "query, one point per offered rate (labelled in k events/s). Right: completeness of "
    "the answers at query time per offered rate: the share of steady-state window queries "
    f"whose answer held at least {100 * COMPLETE_AT:g} per cent of the window's true events "
    "(solid), and the "
    "mean share of a window's events present in its answer (dashed); the dotted line is "
    f"the knee's threshold ({100 * MIN_COMPLETE_SHARE:.0f} per cent). Hollow points: "
    "answers not complete enough (or not measured), so the point's query latency is not an "
    "operating point and it is not a knee candidate. The star marks each pipeline's knee: "
    + KNEE_RULE + ". Each point is the median over the repetitions of its offered rate "
    "(small points: each repetition, bars: min-max), labelled with the number of runs and "
    "of steady-state window queries (one per window firing, pooled over the runs) its "
    "latency rests on."
)


QUERY = "query_latency_ms_mean"
METRICS = ("achieved_rate_eps", QUERY, "at_query_complete_share", "at_query_completeness_mean")


def _median(conf, name: str) -> np.ndarray:
    if f"{name}_median" not in conf:
        return np.full(len(conf), np.nan)
    return conf[f"{name}_median"].astype(float).to_numpy()


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.configuration_rows("baseline")
    rows = rows[rows["pipeline"].isin(["a1", "a2"])]
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no A1/A2 runs")
    conf = by_configuration(rows, METRICS)
    fig, (ax, ax_c) = plt.subplots(1, 2, figsize=(10.4, 4.4),
                                   gridspec_kw={"width_ratios": [3, 2]})
    for pipeline in ordered(conf["pipeline"]):
        part = conf[conf["pipeline"] == pipeline].sort_values("offered_rate_eps")
        c = color(pipeline)
        x = _median(part, "achieved_rate_eps") / 1000
        y = _median(part, QUERY)
        offered = part["offered_rate_eps"].to_numpy(dtype=float) / 1000
        share = _median(part, "at_query_complete_share")
        mean = _median(part, "at_query_completeness_mean")
        # Not complete enough (or not measured): not a knee candidate (knee.knee_index).
        hollow = ~(share >= MIN_COMPLETE_SHARE)
        # Each repetition small, min-max bars over the repetitions (both axes).
        draw_spread(ax, part, "achieved_rate_eps", QUERY, color=c, fmt="none",
                    x_factor=1 / 1000)
        ax.plot(x, y, "-", color=c, label=label(pipeline))
        ax.plot(x[~hollow], y[~hollow], "o", color=c, ls="none")
        ax.plot(x[hollow], y[hollow], "o", mfc="white", mec=c, mew=1.5, ls="none")
        for (_, r), xi, yi, oi, h in zip(part.iterrows(), x, y, offered, hollow, strict=True):
            ax.annotate(f"{oi:g}k" + (" (incomplete)" if h else "")
                        + f"\n{sample_text(r[f'{QUERY}_n'], r[f'{QUERY}_firings'], r['n_runs'])}",
                        (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=6,
                        color=c)
        k = knee_index(list(x), list(y), list(share))
        if k is not None:
            ax.plot(x[k], y[k], "*", ms=16, color=c, mec="black",
                    label=f"knee {label(pipeline)}")
        draw_spread(ax_c, part, "offered_rate_eps", "at_query_complete_share", color=c,
                    fmt="none", x_factor=1 / 1000)
        ax_c.plot(offered, share, "-", color=c, label=f"{label(pipeline)}: complete windows")
        ax_c.plot(offered, mean, "--", color=c, alpha=0.7,
                  label=f"{label(pipeline)}: mean completeness")
        ax_c.plot(offered[~hollow], share[~hollow], "o", color=c, ls="none")
        ax_c.plot(offered[hollow], share[hollow], "o", mfc="white", mec=c, mew=1.5, ls="none")
    ax.plot([], [], "o", mfc="white", mec="grey", ls="none",
            label="incomplete at query time: not a knee candidate")
    ax.set_xlabel("achieved throughput (k events/s), median over runs")
    ax.set_ylabel(spread_label("mean window-query latency (ms)", conf, QUERY))
    ax.set_title("Throughput vs query latency, steady-state windows", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax_c.axhline(MIN_COMPLETE_SHARE, color="grey", ls=":", lw=1)
    ax_c.set_ylim(-0.05, 1.05)
    ax_c.set_xlabel("offered rate (k events/s)")
    ax_c.set_ylabel(spread_label("share at query time", conf, "at_query_complete_share"))
    ax_c.set_title("Completeness of the answers at query time", fontsize=9)
    ax_c.grid(alpha=0.3)
    ax_c.legend(fontsize=7)
    fig.tight_layout()
    return fig
