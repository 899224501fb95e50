"""Latency over time of the event-time pipelines (A3, Spark, Flink) at a fixed rate."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import (
    FigureContext,
    color,
    empty_figure,
    label,
    panel_grid,
    series_of,
    steady_windows,
)

CAPTION = (
    "Latency over time of the event-time pipelines at one offered rate (one panel per run; "
    "x = window end in seconds since the generator started). Solid: latency from window "
    "end minus the configured watermark delay; dashed: latency from the window's last "
    "insertion. Grey, right axis: consumer lag."
    " Only windows that end while input flows are shown (those the latency statistics"
    " count); the title gives their number (steady firings) and, for a repeated run,"
    " which repetition is shown (the first)."
)


def draw(ctx: FigureContext) -> Figure:
    run_ids = ctx.first_repetitions(ctx.groups.get("event_time", []))
    if not run_ids:
        return empty_figure(f"profile {ctx.profile}: no event-time runs")
    fig, axes = panel_grid(len(run_ids))
    for ax, run_id in zip(axes, run_ids, strict=True):
        s = ctx.summary(run_id)
        w = steady_windows(ctx.windows(run_id), "latency_above_delay_ms")
        start = s["generator_start_ms"]
        pipeline = s["pipeline"]
        per_window = w.groupby("window_end_ms", as_index=False).mean(numeric_only=True)
        t = (per_window["window_end_ms"] - start) / 1000
        ax.plot(t, per_window["latency_above_delay_ms"], "o-", color=color(pipeline),
                label="from window end - delay")
        ax.plot(t, per_window["latency_from_last_insertion_ms"], "s--", color=color(pipeline),
                alpha=0.7, label="from last insertion")
        lag = series_of(ctx.series(run_id), "lag")
        if not lag.empty:
            ax2 = ax.twinx()
            ax2.plot((lag["time_ms"] - start) / 1000, lag["value"], color="0.6", lw=1)
            ax2.set_ylabel("lag (events)", color="0.5")
        n = s.get("latency_above_delay_ms_firings")
        base = ", ".join(x for x in (ctx.which_run(run_id),
                                     "" if n is None else f"{float(n):,.0f} steady firings")
                         if x)
        ax.set_title(f"{label(pipeline)} {s['process'].upper()} "
                     f"@ {s['offered_rate_eps'] / 1000:g}k ev/s"
                     + (f"\n{base}" if base else ""), fontsize=9)
        ax.set_xlabel("window end (s since start)")
        ax.set_ylabel("latency (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
