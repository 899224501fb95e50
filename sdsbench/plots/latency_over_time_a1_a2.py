"""Latency over time of every A1/A2 run: per window, the query latency and the end-to-end
latency from the last insertion; A2's consumer lag on a second axis."""

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
    "Latency over time of each A1/A2 run (one panel per run, x = window end in seconds "
    "since the generator started). Solid: end-to-end latency from the window's last "
    "insertion to the end of the query that returned it (mean over campaigns); dashed: "
    "wall time of the window query. Grey, right axis: consumer lag (A2), or how far the "
    "producer ran behind its schedule (A1, where producer and database are coupled)."
    " Only windows that end while input flows are shown (those the latency statistics"
    " count); the title gives their number (steady firings) and, for a repeated run,"
    " which repetition is shown (the first)."
)


def _firings(summary: dict, latency: str) -> str:
    n = summary.get(f"{latency}_firings")
    return "" if n is None else f"{float(n):,.0f} steady firings"


def draw(ctx: FigureContext) -> Figure:
    run_ids = [r for r in ctx.first_repetitions(ctx.groups.get("baseline", []))
               if ctx.runs[r]["pipeline"] in ("a1", "a2")]
    if not run_ids:
        return empty_figure(f"profile {ctx.profile}: no A1/A2 runs")
    fig, axes = panel_grid(len(run_ids))
    for ax, run_id in zip(axes, run_ids, strict=True):
        s = ctx.summary(run_id)
        w = steady_windows(ctx.windows(run_id), "latency_from_last_insertion_ms")
        start = s["generator_start_ms"]
        pipeline = s["pipeline"]
        per_window = w.groupby("window_end_ms", as_index=False).mean(numeric_only=True)
        t = (per_window["window_end_ms"] - start) / 1000
        ax.plot(t, per_window["latency_from_last_insertion_ms"], "o-", color=color(pipeline),
                label="end-to-end")
        if "query_latency_ms" in per_window:
            ax.plot(t, per_window["query_latency_ms"], "s--", color=color(pipeline), alpha=0.7,
                    label="query")
        series = ctx.series(run_id)
        lag = series_of(series, "lag")
        behind = series_of(series, "generator_behind_ms")
        ax2 = ax.twinx()
        if not lag.empty:  # A2: the backlog waits in Kafka
            ax2.plot((lag["time_ms"] - start) / 1000, lag["value"], color="0.6", lw=1)
            ax2.set_ylabel("lag (events)", color="0.5")
        else:  # A1: the producer itself falls behind its schedule
            ax2.plot((behind["time_ms"] - start) / 1000, behind["value"], color="0.6", lw=1)
            ax2.set_ylabel("generator behind schedule (ms)", color="0.5")
        base = ", ".join(x for x in (ctx.which_run(run_id),
                                     _firings(s, "latency_from_last_insertion_ms")) if x)
        ax.set_title(f"{label(pipeline)} @ {s['offered_rate_eps'] / 1000:g}k ev/s"
                     + (f"\n{base}" if base else ""), fontsize=9)
        ax.set_xlabel("window end (s since start)")
        ax.set_ylabel("latency (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
