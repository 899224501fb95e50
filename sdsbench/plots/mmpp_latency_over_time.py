"""Latency over time under MMPP at t_h and 2 x t_h, with the state switches."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import (
    FigureContext,
    color,
    empty_figure,
    label,
    panel_grid,
    series_of,
    shade_mmpp_high,
    steady_windows,
    threshold_multiple,
    threshold_runs,
)

CAPTION = (
    "Latency over time under MMPP input at multiples of each pipeline's t_h (one panel per "
    "run). Shaded: the MMPP high-rate state (from generator/mmpp_states.csv). Dots: per "
    "window and campaign, latency from window end minus the configured watermark delay; "
    "grey, right axis: events sent per second."
    " Filled: windows that end while input flows (those the latency statistics count);"
    " open: the last windows, fired at the end of the input. The title gives the number"
    " of steady firings, the share of the run in the high state and, for a repeated run,"
    " which repetition is shown (the first)."
)


def _high_share(summary: dict) -> str:
    share = summary.get("mmpp_high_share")
    if share is None or share != share:  # missing or NaN
        return ""
    return f"{100 * float(share):.0f}% high"


def draw(ctx: FigureContext) -> Figure:
    run_ids = threshold_runs(ctx.groups, ctx.runs)
    if not run_ids:
        return empty_figure(f"profile {ctx.profile}: no MMPP runs at t_h")
    fig, axes = panel_grid(len(run_ids), cols=2, width=5.0)
    for ax, run_id in zip(axes, run_ids, strict=True):
        s = ctx.summary(run_id)
        series = ctx.series(run_id)
        start, end = s["generator_start_ms"], s["generator_end_ms"]
        pipeline = s["pipeline"]
        shade_mmpp_high(ax, series, start, end)
        windows = ctx.windows(run_id).dropna(subset=["latency_above_delay_ms"])
        w = steady_windows(windows, "latency_above_delay_ms")
        tail = windows.drop(w.index)
        ax.plot((w["window_end_ms"] - start) / 1000, w["latency_above_delay_ms"], "o", ms=3,
                color=color(pipeline))
        ax.plot((tail["window_end_ms"] - start) / 1000, tail["latency_above_delay_ms"], "o",
                ms=3, mfc="white", color=color(pipeline))
        sent = series_of(series, "sent_eps")
        ax2 = ax.twinx()
        ax2.plot((sent["time_ms"] - start) / 1000, sent["value"] / 1000, color="0.5", lw=1)
        ax2.set_ylabel("sent (k ev/s)", color="0.5")
        multiple = threshold_multiple(run_id, ctx.runs.get(run_id))
        n = s.get("latency_above_delay_ms_firings")
        base = ", ".join(x for x in (ctx.which_run(run_id),
                                     "" if n is None else f"{float(n):,.0f} steady firings",
                                     _high_share(s)) if x)
        ax.set_title(f"{label(pipeline)} MMPP {multiple:g}x t_h "
                     f"= {s['offered_rate_eps'] / 1000:g}k ev/s"
                     + (f"\n{base}" if base else ""), fontsize=9)
        ax.set_xlabel("window end (s since start)")
        ax.set_ylabel("latency above delay (ms)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
