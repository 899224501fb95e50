"""Where the CPU goes: CPU per event by process scope, the SUT's CPU against its input rate,
and Spark's micro-batch phases (summary/cpu.csv and runs.csv)."""

from __future__ import annotations

import json
import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sdsbench.analysis import cpu_cost
from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered, panel_grid

CAPTION = (
    "Where the CPU goes. Left: CPU microseconds per event over the steady windows, split "
    "into the pipeline's own processes (SUT), the Kafka broker and PostgreSQL, for every "
    "configuration of the baseline, event-time and knobs groups; bar: median over the "
    "repetitions, error bar: min-max of the total, n: repetitions. Middle: the SUT's mean "
    "CPU (cores) of every run against the events per second it was offered, with each "
    "pipeline's fitted fixed + per-event line (Spark's fit has a per-micro-batch term "
    "instead of a fixed one: its points, not a line). Right: the median wall time of each "
    "phase of Spark's micro-batches per configuration, and its batches per second. Last "
    "panel (when the profile measures it): each engine's pass-through ceiling, read and "
    "read + parse (median, min-max over the repetitions), beside its t_h under SPP "
    "(median, min-max; a triangle: a lower bound, no rate tried failed)."
)
BAR_GROUPS = ("baseline", "event_time", "knobs")
SCOPE_STYLE = {"sut": ("SUT", None), "kafka": ("Kafka broker", "//"),
               "postgres": ("PostgreSQL", "..")}


def draw(ctx: FigureContext) -> Figure:
    table = ctx.table("cpu")
    per_event = table[table["kind"] == "per_event"]
    if per_event.empty:
        return empty_figure(f"profile {ctx.profile}: no CPU samples")
    ceiling = ctx.summary_dir.parent / "bench" / "ceiling" / "summary.json"
    fig, axes = panel_grid(4 if ceiling.exists() else 3, width=5.2, height=3.8, cols=2)
    _bars(axes[0], ctx, per_event)
    _fits(axes[1], ctx, table)
    _spark_phases(axes[2], table[table["kind"] == "spark_phase"])
    if ceiling.exists():
        _ceiling(axes[3], ctx, json.loads(ceiling.read_text()))
    fig.tight_layout()
    return fig


def _bars(ax: Any, ctx: FigureContext, per_event: pd.DataFrame) -> None:
    members = {r for g in BAR_GROUPS for r in ctx.groups.get(g, [])}
    subjects = [s for s in dict.fromkeys(per_event["subject"]) if s in members]
    pipelines = ordered(per_event["pipeline"])
    subjects.sort(key=lambda s: (pipelines.index(_pipeline(per_event, s)),
                                 _first(per_event, s, "rate_eps"), s))
    x = np.arange(len(subjects))
    bottom = np.zeros(len(subjects))
    for scope, (name, hatch) in SCOPE_STYLE.items():
        values = np.nan_to_num(np.array([_median(per_event, s, scope=scope) for s in subjects]))
        colors = [color(_pipeline(per_event, s)) for s in subjects]
        ax.bar(x, values, bottom=bottom, color=colors, hatch=hatch, edgecolor="white",
               alpha=1.0 if scope == "sut" else 0.45)
        # The legend names the scopes; the colours are the pipelines' as in every figure.
        ax.bar(0, 0, color="grey", hatch=hatch, edgecolor="white",
               alpha=1.0 if scope == "sut" else 0.45, label=name)
        bottom += values
    for i, s in enumerate(subjects):
        total = per_event[(per_event["subject"] == s) & (per_event["scope"] == "total")].iloc[0]
        ax.errorbar(i, total["median"], yerr=[[total["median"] - total["lo"]],
                                              [total["hi"] - total["median"]]],
                    color="black", capsize=2, lw=0.8)
        ax.annotate(f"n={int(total['n'])}", (i, total["hi"]), fontsize=6, ha="center",
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [s.replace("-r", "\n") for s in subjects], rotation=90, fontsize=6)
    ax.set_ylabel("CPU-us per event (steady windows)")
    ax.set_title("CPU per event, by process", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _first(frame: pd.DataFrame, subject: str, column: str) -> Any:
    return frame.loc[frame["subject"] == subject, column].iloc[0]


def _pipeline(frame: pd.DataFrame, subject: str) -> str:
    return str(_first(frame, subject, "pipeline"))


def _median(frame: pd.DataFrame, subject: str, **match: str) -> float:
    """The median of the row of ``subject`` whose columns equal ``match``; NaN if none."""
    rows = frame[frame["subject"] == subject]
    for column, value in match.items():
        rows = rows[rows[column] == value]
    return float(rows["median"].iloc[0]) if len(rows) else math.nan


def _fits(ax: Any, ctx: FigureContext, table: pd.DataFrame) -> None:
    runs = ctx.runs_table()
    fits = table[table["kind"] == "fit"]
    for pipeline in ordered(fits["pipeline"]):
        mine = fits[fits["pipeline"] == pipeline].set_index("metric")
        used = str(mine["runs"].iloc[0]).split(";") if isinstance(mine["runs"].iloc[0], str) \
            else []
        points = runs[runs["run_id"].isin(used)]
        ax.scatter(points["cpu_span_eps"], points["cpu_sut_core_share"], s=12,
                   color=color(pipeline), label=label(pipeline))
        if "fixed" in mine.index and len(points) and not math.isnan(mine.loc["fixed", "median"]):
            xs = np.linspace(0, float(points["cpu_span_eps"].max()) * 1.05, 20)
            ys = mine.loc["fixed", "median"] + xs * mine.loc["events_per_s", "median"] / 1e6
            ax.plot(xs, ys, color=color(pipeline), lw=0.8)
    ax.set_xlabel("events per second offered (steady windows)")
    ax.set_ylabel("SUT CPU (cores)")
    ax.set_title("SUT CPU against input rate, per run", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _ceiling(ax: Any, ctx: FigureContext, summary: dict[str, Any]) -> None:
    engines = ordered(summary["engines"])
    searched = {s["pipeline"]: ctx.search(sid) for sid, s in ctx.searches.items()
                if s["process"] == "spp"}
    for i, engine in enumerate(engines):
        modes = summary["engines"][engine]
        bars = [("read", modes.get("raw"), 0.35), ("read + parse", modes.get("parse"), 1.0),
                ("t_h (SPP)", _th(searched.get(engine)), None)]
        for j, (name, value, alpha) in enumerate(bars):
            if not value:
                continue
            x = i * 4 + j
            median, lo, hi = value["eps_median"], value["eps_min"], value["eps_max"]
            if alpha is None:  # t_h: a marker with its range; a lower bound points up
                ax.errorbar(x, median, yerr=[[median - lo], [hi - median]],
                            fmt="^" if value.get("lower_bound") else "D",
                            color=color(engine), capsize=3)
            else:
                ax.bar(x, median, color=color(engine), alpha=alpha)
                ax.errorbar(x, median, yerr=[[median - lo], [hi - median]], color="black",
                            capsize=2, lw=0.8)
            ax.annotate(name, (x, hi), fontsize=6, ha="center", rotation=90,
                        xytext=(0, 3), textcoords="offset points")
    ax.set_xticks([i * 4 + 1 for i in range(len(engines))], [label(e) for e in engines],
                  fontsize=7)
    ax.set_ylabel("events per second")
    ax.set_title("Pass-through ceiling and t_h", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def _th(search: dict[str, Any] | None) -> dict[str, float] | None:
    if not search or search.get("t_h_eps") is None:
        return None
    t_h = float(search["t_h_eps"])
    return {"eps_median": t_h, "eps_min": float(search.get("t_h_min_eps") or t_h),
            "eps_max": float(search.get("t_h_max_eps") or t_h),
            "lower_bound": bool(search.get("t_h_is_lower_bound"))}


def _spark_phases(ax: Any, phases: pd.DataFrame) -> None:
    if phases.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, "no Spark runs", ha="center", va="center")
        return
    subjects = list(dict.fromkeys(phases["subject"]))
    x = np.arange(len(subjects))
    bottom = np.zeros(len(subjects))
    palette = plt.get_cmap("tab10")
    for i, phase in enumerate(cpu_cost.SPARK_PHASES):
        values = np.nan_to_num(np.array([_median(phases, s, metric=f"{phase}_ms_p50")
                                         for s in subjects]))
        ax.bar(x, values, bottom=bottom, color=palette(i), label=phase)
        bottom += values
    for i, s in enumerate(subjects):
        bps = _median(phases, s, metric="batches_per_s")
        ax.annotate(f"{bps:.2f}/s", (i, bottom[i]), fontsize=6, ha="center", xytext=(0, 2),
                    textcoords="offset points")
    ax.set_xticks(x, [s.replace("spark-spp-", "") for s in subjects], rotation=90, fontsize=6)
    ax.set_ylabel("median wall time per micro-batch (ms)")
    ax.set_title("Spark micro-batch phases (label: batches/s)", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(axis="y", alpha=0.3)
