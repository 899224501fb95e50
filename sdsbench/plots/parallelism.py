"""Spark vs Flink: latency, throughput and CPU against parallelism, over the repetitions."""

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
    "Impact of parallelism (Spark local[n] / Flink parallelism n) at one offered rate, "
    "each setting run several times (repetitions): p50 and p95 latency above the watermark "
    "delay over the steady-state windows (left), peak consumer lag (middle), mean CPU of "
    "the engine's processes in percent of one core (right). Small points: each "
    "repetition; markers and lines: the median over the repetitions, bars: min-max. "
    "Beside each p95: the number of runs and of steady window firings the statistic "
    "rests on (pooled over the runs; the 10 campaigns of a window fire together)."
)
P95 = "latency_above_delay_ms_p95"
P50 = "latency_above_delay_ms_p50"
METRICS = (P95, P50, "lag_max", "cpu_sut_mean_percent")


def draw(ctx: FigureContext) -> Figure:
    rows = ctx.configuration_rows("parallelism")
    if rows.empty:
        return empty_figure(f"profile {ctx.profile}: no parallelism sweep")
    conf = by_configuration(rows, METRICS)
    fig, (ax_lat, ax_lag, ax_cpu) = panel_grid(3, height=3.4)
    pipelines = ordered(conf["pipeline"])
    for i, pipeline in enumerate(pipelines):
        part = conf[conf["pipeline"] == pipeline]
        c = color(pipeline)
        shift = dodge(i, len(pipelines), 0.12)  # the pipelines' bars side by side
        draw_spread(ax_lat, part, "parallelism", P95, color=c, fmt="o-", x_shift=shift,
                    label=f"{label(pipeline)} p95", annotate=True)
        draw_spread(ax_lat, part, "parallelism", P50, color=c, fmt="s--", mfc="white",
                    x_shift=shift + 0.04, label=f"{label(pipeline)} p50")
        draw_spread(ax_lag, part, "parallelism", "lag_max", color=c, x_shift=shift,
                    label=label(pipeline))
        draw_spread(ax_cpu, part, "parallelism", "cpu_sut_mean_percent", color=c,
                    x_shift=shift, label=label(pipeline))
    ax_lat.set_ylabel(spread_label("p50 / p95 latency above delay (ms)", conf, P95))
    ax_lag.set_ylabel(spread_label("peak consumer lag (events)", conf, "lag_max"))
    ax_cpu.set_ylabel(spread_label("mean CPU (% of one core)", conf, "cpu_sut_mean_percent"))
    ax_lat.set_title("Latency above the delay, steady windows", fontsize=9)
    ax_lag.set_title("Peak consumer lag", fontsize=9)
    ax_cpu.set_title("Engine CPU", fontsize=9)
    settings = sorted({int(p) for p in conf["parallelism"].dropna()})
    for ax in (ax_lat, ax_lag, ax_cpu):
        ax.set_xlabel("parallelism")
        if settings:
            ax.set_xticks(settings)
            ax.set_xlim(settings[0] - 0.5, settings[-1] + 0.9)  # room for the annotations
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
