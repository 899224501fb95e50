"""Watermark-delay sweep: latency against late events dropped."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered, panel_grid

CAPTION = (
    "Watermark-delay sweep at one offered rate: p95 latency from window end (left) and "
    "events missing from the final results relative to the generator's truth (right; "
    "open markers: late events the engine itself reports as dropped, where it reports "
    "them). A longer delay waits for more late data and costs latency."
)


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.group_rows("watermark_delay").copy()
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no watermark-delay sweep")
    rows["delay_s"] = rows["configured_delay_ms"] / 1000
    fig, (ax_lat, ax_drop) = panel_grid(2, width=5.0)
    for pipeline in ordered(rows["pipeline"]):
        part = rows[rows["pipeline"] == pipeline].sort_values("delay_s")
        c = color(pipeline)
        ax_lat.plot(part["delay_s"], part["latency_from_window_end_ms_p95"], "o-", color=c,
                    label=label(pipeline))
        ax_drop.plot(part["delay_s"], part["deficit_events"], "o-", color=c,
                     label=f"{label(pipeline)} missing vs truth")
        if part["dropped_events_reported"].notna().any():
            ax_drop.plot(part["delay_s"], part["dropped_events_reported"], "o--", color=c,
                         mfc="white", label=f"{label(pipeline)} reported dropped")
    ax_lat.set_ylabel("p95 latency from window end (ms)")
    ax_drop.set_ylabel("events")
    for ax in (ax_lat, ax_drop):
        ax.set_xlabel("configured watermark delay (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
