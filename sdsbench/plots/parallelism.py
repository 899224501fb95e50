"""Spark vs Flink: latency, throughput and CPU against parallelism."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered, panel_grid

CAPTION = (
    "Impact of parallelism (Spark local[n] / Flink parallelism n) at one offered rate: "
    "p50 and p95 latency above the watermark delay (left), achieved share of the schedule "
    "and peak consumer lag (middle), mean CPU of the engine's processes in percent of one "
    "core (right)."
)


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.group_rows("parallelism").copy()
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no parallelism sweep")
    fig, (ax_lat, ax_lag, ax_cpu) = panel_grid(3)
    for pipeline in ordered(rows["pipeline"]):
        part = rows[rows["pipeline"] == pipeline].sort_values("parallelism")
        c = color(pipeline)
        ax_lat.plot(part["parallelism"], part["latency_above_delay_ms_p95"], "o-", color=c,
                    label=f"{label(pipeline)} p95")
        ax_lat.plot(part["parallelism"], part["latency_above_delay_ms_p50"], "s--", color=c,
                    label=f"{label(pipeline)} p50")
        ax_lag.plot(part["parallelism"], part["lag_max"], "o-", color=c, label=label(pipeline))
        ax_cpu.plot(part["parallelism"], part["cpu_sut_mean_percent"], "o-", color=c,
                    label=label(pipeline))
    ax_lat.set_ylabel("latency above delay (ms)")
    ax_lag.set_ylabel("peak consumer lag (events)")
    ax_cpu.set_ylabel("mean CPU (% of one core)")
    for ax in (ax_lat, ax_lag, ax_cpu):
        ax.set_xlabel("parallelism")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
