"""Event time against processing time, with the watermark (shared by the SPP and MMPP
figures). One panel per configuration: its first repetition (run 1 of n)."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import (
    FigureContext,
    color,
    empty_figure,
    panel_grid,
    run_label,
    series_of,
    shade_mmpp_high,
)


def draw_event_time(ctx: FigureContext, run_ids: list[str], what: str) -> Figure:
    if not run_ids:
        return empty_figure(f"profile {ctx.profile}: no {what} runs")
    fig, axes = panel_grid(len(run_ids), width=4.4, height=3.6)
    for ax, run_id in zip(axes, run_ids, strict=True):
        s = ctx.summary(run_id)
        series = ctx.series(run_id)
        start, end = s["generator_start_ms"], s["generator_end_ms"]
        pipeline = s["pipeline"]
        shade_mmpp_high(ax, series, start, end)
        horizon = (end - start) / 1000
        ax.plot([0, horizon + 15], [0, horizon + 15], color="0.5", lw=1, ls=":",
                label="event time = processing time")
        wm = series_of(series, "watermark_ms")
        if not wm.empty:
            ax.step((wm["time_ms"] - start) / 1000, (wm["value"] - start) / 1000, where="post",
                    color=color(pipeline), lw=1.5, label="watermark")
        else:
            ax.text(0.02, 0.9, "engine exports no watermark series", transform=ax.transAxes,
                    fontsize=7)
        w = ctx.windows(run_id).dropna(subset=["visible_ms"])
        ax.plot((w["visible_ms"] - start) / 1000, (w["window_end_ms"] - start) / 1000, "o",
                ms=3, color="black", label="window result (end, visible at)")
        ax.set_xlim(left=min(0, ax.get_xlim()[0]))
        which = ctx.which_run(run_id)
        ax.set_title(f"{run_label(s)} {s['process'].upper()} "
                     f"@ {s['offered_rate_eps'] / 1000:g}k ev/s "
                     f"(delay {s['configured_delay_ms'] / 1000:g} s)"
                     + (f"\n{which}" if which else ""), fontsize=9)
        ax.set_xlabel("processing time (s since start)")
        ax.set_ylabel("event time (s since start)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
