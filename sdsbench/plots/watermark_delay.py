"""Watermark-delay sweep: latency against late events dropped, over the repetitions."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import (
    FigureContext,
    by_configuration,
    color,
    dodge,
    draw_spread,
    empty_figure,
    label,
    ordered,
    panel_grid,
    spread_label,
)

CAPTION = (
    "Watermark-delay sweep at one offered rate: p95 latency from window end over the "
    "steady-state windows (left) and events missing from the final results relative to "
    "the generator's truth (right; open markers: late events the engine itself reports as "
    "dropped, where it reports them). Small points: each repetition of a setting; markers "
    "and lines: the median over its repetitions, bars: min-max; beside each latency: the "
    "number of runs and of steady window firings it rests on (pooled over the runs). A "
    "longer delay waits for more late data and costs latency."
)
P95 = "latency_from_window_end_ms_p95"
METRICS = (P95, "deficit_events", "dropped_events_reported")


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.configuration_rows("watermark_delay")
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no watermark-delay sweep")
    conf = by_configuration(rows, METRICS)
    fig, (ax_lat, ax_drop) = panel_grid(2, width=5.0, height=3.4)
    pipelines = ordered(conf["pipeline"])
    for i, pipeline in enumerate(pipelines):
        part = conf[conf["pipeline"] == pipeline]
        c = color(pipeline)
        shift = dodge(i, len(pipelines), 0.06)  # the pipelines' bars side by side (s)
        draw_spread(ax_lat, part, "configured_delay_ms", P95, color=c, x_factor=1 / 1000,
                    x_shift=shift, label=label(pipeline), annotate=True)
        draw_spread(ax_drop, part, "configured_delay_ms", "deficit_events", color=c,
                    x_factor=1 / 1000, x_shift=shift,
                    label=f"{label(pipeline)} missing vs truth")
        if part["dropped_events_reported_n"].any():
            draw_spread(ax_drop, part, "configured_delay_ms", "dropped_events_reported",
                        color=c, fmt="o--", mfc="white", x_factor=1 / 1000,
                        x_shift=shift + 0.03, label=f"{label(pipeline)} reported dropped")
    ax_lat.set_ylabel(spread_label("p95 latency from window end (ms)", conf, P95))
    ax_drop.set_ylabel(spread_label("events", conf, "deficit_events"))
    ax_lat.set_title("Latency from window end, steady windows", fontsize=9)
    ax_drop.set_title("Late events lost", fontsize=9)
    for ax in (ax_lat, ax_drop):
        ax.set_xlabel("configured watermark delay (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
