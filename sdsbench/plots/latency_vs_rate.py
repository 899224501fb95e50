"""Latency against offered rate from the t_h searches, t_h marked."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered, panel_grid

CAPTION = (
    "p95 latency above the configured watermark delay against the offered rate, one point "
    "per trial of the automatic sustainable-throughput search (filled: trial met the "
    "criterion; open: it did not), one panel per pipeline and line per arrival process. "
    "Dashed horizontal: the latency bound; vertical: t_h."
)


def draw(ctx: FigureContext) -> Figure:
    searches = [ctx.search(sid) for sid in ctx.searches]
    if not searches:
        return empty_figure(f"profile {ctx.profile}: no t_h searches")
    pipelines = ordered({s["pipeline"] for s in searches})
    fig, axes = panel_grid(len(pipelines))
    bound = float(ctx.config["search"]["latency_bound_ms"])
    styles = {"spp": "-", "mmpp": "--", "constant": ":"}
    for ax, pipeline in zip(axes, pipelines, strict=True):
        for s in [s for s in searches if s["pipeline"] == pipeline]:
            trials = sorted((t for t in s["trials"] if t["row"]), key=lambda t: t["rate_eps"])
            x = [t["rate_eps"] / 1000 for t in trials]
            y = [t["row"].get("latency_above_delay_ms_p95") for t in trials]
            y = [math.nan if v is None else v for v in y]
            ax.plot(x, y, styles.get(s["process"], "-"), color=color(pipeline),
                    label=s["process"].upper())
            for xi, yi, t in zip(x, y, trials, strict=True):
                ax.plot(xi, yi, "o", color=color(pipeline),
                        mfc=color(pipeline) if t["sustainable"] else "white")
            if s["t_h_eps"]:
                ax.axvline(s["t_h_eps"] / 1000, color=color(pipeline),
                           ls=styles.get(s["process"], "-"), lw=1)
                ax.text(s["t_h_eps"] / 1000, 0.03,
                        f" t_h {s['process'].upper()} = {s['t_h_eps'] / 1000:g}k"
                        + (" (lower bound)" if s["t_h_is_lower_bound"] else ""),
                        transform=ax.get_xaxis_transform(), fontsize=7, rotation=90,
                        va="bottom", ha="right")
        ax.axhline(bound, color="0.4", ls="--", lw=1)
        ax.set_title(label(pipeline), fontsize=9)
        ax.set_xlabel("offered rate (k events/s)")
        ax.set_ylabel("p95 latency above delay (ms)")
        ax.set_yscale("symlog", linthresh=100)  # latencies can be negative near the bound
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
