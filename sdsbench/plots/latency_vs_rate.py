"""The t_h searches as they ran: the staircase steps of every repetition (backlog against
offered rate, each step's verdict), the steady confirmation trials, and t_h with its
spread over the repetitions and its interval."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sdsbench.numbers import as_number
from sdsbench.plots.common import FigureContext, color, empty_figure, label, ordered, panel_grid

CAPTION = (
    "The sustainable-throughput (t_h) searches, one panel per pipeline and arrival process. "
    "Each repetition of a search is one staircase run (the offered rate raised by a fixed "
    "factor every few seconds); every step is drawn at its offered rate against the "
    "largest watermark backlog during the step ((time - watermark) - configured delay: "
    "the latency above the delay a window ending then would see), its marker the step's "
    "verdict: filled circle pass, cross fail (the backlog grew for good from that step, or "
    "every window fired above the latency bound), open square invalid (the generator "
    "missed its schedule), open grey circle not judged (the last step, when nothing "
    "after it shows growth). Line style: repetition. Large markers with a black edge: "
    "steady confirmation trials (one run at one rate; y: its largest watermark lag minus "
    "the delay), with their verdict. Vertical line: t_h, the median over the repetitions; "
    "shaded: min-max of the repetitions' t_h; bracket at the top: the interval [highest "
    "pass, lowest fail) of the repetition giving the median. Dashed horizontal: the "
    "latency bound."
)
#: Marker of a step's or trial's verdict (``fill``: filled in the pipeline's colour).
VERDICTS: dict[str, dict[str, Any]] = {
    "pass": {"marker": "o", "fill": True},
    "fail": {"marker": "X", "fill": True},
    "invalid": {"marker": "s", "fill": False},
    "unjudged": {"marker": "o", "fill": False, "color": "0.55"},
}
REP_STYLES = ("-", "--", ":", "-.")


def _steps(trial: dict[str, Any]) -> list[dict[str, Any]]:
    """The staircase's steps as the search judged them (``steps``: the verdicts t_h rests
    on), else today's re-analysis (``steps_now``)."""
    return list(trial.get("steps") or trial.get("steps_now") or [])


def _backlog(step: dict[str, Any]) -> tuple[float, str]:
    wm = as_number(step.get("watermark_backlog_ms_max"))
    if not math.isnan(wm):
        return wm, "watermark"
    return as_number(step.get("input_backlog_ms_max")), "input"


def _steady_backlog(row: dict[str, Any] | None) -> float:
    if not row:
        return math.nan
    return as_number(row.get("watermark_lag_ms_max")) - as_number(row.get("configured_delay_ms"))


def _mark(ax: Any, x: float, y: float, verdict: str | None, c: str, size: float,
          edge: str | None = None) -> None:
    style = VERDICTS.get(verdict or "", VERDICTS["invalid"])
    mc = style.get("color", c)
    ax.plot([x], [y], style["marker"], ms=size, color=mc, mfc=mc if style["fill"] else "white",
            mec=edge or mc, mew=1.2 if edge else 1.0, ls="none", zorder=4)


def _k(rate: float | None) -> str:
    return "?" if rate is None or math.isnan(as_number(rate)) else f"{float(rate) / 1000:,.3g}k"


def _draw_search(ax: Any, s: dict[str, Any], bound: float) -> set[str]:
    pipeline = s["pipeline"]
    c = color(pipeline)
    trials = s.get("trials") or []
    stairs = [t for t in trials if t.get("kind") == "staircase"]
    steady = [t for t in trials if t.get("kind", "steady") != "staircase"]
    signals: set[str] = set()
    lowest = 0.0
    for t in stairs:
        rep = int(t.get("repetition") or 1)
        ls = REP_STYLES[(rep - 1) % len(REP_STYLES)]
        points = []
        for step in _steps(t):
            y, signal = _backlog(step)
            if math.isnan(y) or step.get("rate_eps") is None:
                continue
            signals.add(signal)
            points.append((float(step["rate_eps"]) / 1000, y, step.get("verdict")))
        if not points:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], ls, color=c, lw=1,
                alpha=0.6, zorder=2)
        for x, y, verdict in points:
            _mark(ax, x, y, verdict, c, 5)
        lowest = min([lowest, *(p[1] for p in points)])
    for t in steady:
        y = _steady_backlog(t.get("row"))
        if not math.isnan(y):
            _mark(ax, float(t["rate_eps"]) / 1000, y, t.get("verdict"), c, 11, edge="black")
            lowest = min(lowest, y)
    th = s.get("t_h_eps")
    reps = int(s.get("repetitions") or len(stairs) or 1)
    lo, hi = s.get("t_h_min_eps"), s.get("t_h_max_eps")
    if lo is not None and hi is not None and hi > lo:
        ax.axvspan(lo / 1000, hi / 1000, color=c, alpha=0.15, lw=0, zorder=0)
    interval = s.get("interval_eps") or [th, s.get("lowest_failing_rate_eps")]
    if th:
        ax.axvline(th / 1000, color=c, lw=1.5, zorder=1)
        top = interval[1]
        if interval[0] is not None and top is not None:
            # Just above the panel: the interval [highest pass, lowest fail).
            ax.annotate("", xy=(interval[0] / 1000, 1.02), xytext=(top / 1000, 1.02),
                        xycoords=ax.get_xaxis_transform(), annotation_clip=False,
                        arrowprops={"arrowstyle": "|-|", "color": c, "lw": 1.2,
                                    "shrinkA": 0, "shrinkB": 0, "mutation_scale": 3})
        values = [v for v in (s.get("t_h_values_eps") or []) if v]
        text = (f"t_h = {_k(th)}" + (" (lower bound)" if s.get("t_h_is_lower_bound") else "")
                + f", median of {len(values) or 1} of {reps} repetitions"
                + (f"\nmin-max {_k(lo)}-{_k(hi)}" if lo is not None and hi is not None else "")
                + f"\ninterval [{_k(interval[0])}, "
                + (f"{_k(interval[1])})" if interval[1] is not None else "not found)"))
    else:
        text = f"no sustainable rate found ({reps} repetitions)"
    ax.text(0.98, 0.03, text, transform=ax.transAxes, fontsize=7, va="bottom", ha="right",
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.85}, zorder=5)
    ax.axhline(bound, color="0.4", ls="--", lw=1)
    ax.set_yscale("symlog", linthresh=100)  # backlogs sit near 0 while sustainable
    ax.set_ylim(bottom=1.3 * lowest if lowest < 0 else -5)
    ax.set_title(f"{label(pipeline)}, {s['process'].upper()}: {len(stairs)} staircase"
                 f"{'s' if len(stairs) != 1 else ''}, {len(steady)} steady trial"
                 f"{'s' if len(steady) != 1 else ''}", fontsize=9, pad=10)
    return signals


def draw(ctx: FigureContext) -> Figure:
    searches = [ctx.search(sid) for sid in ctx.searches]
    if not searches:
        return empty_figure(f"profile {ctx.profile}: no t_h searches")
    order = {p: i for i, p in enumerate(ordered({s["pipeline"] for s in searches}))}
    searches.sort(key=lambda s: (order[s["pipeline"]], s["process"]))
    fig, axes = panel_grid(len(searches), width=4.6, height=3.6)
    bound = float(ctx.config["search"]["latency_bound_ms"])
    max_reps = 1
    for ax, s in zip(axes, searches, strict=True):
        signals = _draw_search(ax, s, bound)
        max_reps = max(max_reps, int(s.get("repetitions") or 1))
        ax.set_xlabel("offered rate (k events/s)")
        what = "watermark" if signals <= {"watermark"} else "watermark / input"
        ax.set_ylabel(f"max {what} backlog (ms)\nper staircase step or steady trial")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker=st["marker"], ls="none", color=st.get("color", "0.2"),
                      mfc=st.get("color", "0.2") if st["fill"] else "white",
                      label=f"step {name}") for name, st in VERDICTS.items()]
    handles += [Line2D([], [], marker="o", ms=10, ls="none", color="0.6", mec="black",
                       label="steady trial (verdict as marker)")]
    handles += [Line2D([], [], ls=REP_STYLES[i % len(REP_STYLES)], color="0.3",
                       label=f"repetition {i + 1}") for i in range(max_reps)]
    handles += [Line2D([], [], color="0.3", lw=1.5, label="t_h (median)"),
                Line2D([], [], color="0.3", lw=6, alpha=0.15, label="t_h min-max"),
                Line2D([], [], color="0.4", ls="--", label="latency bound")]
    cols = min(3, len(searches))
    fig.tight_layout(rect=(0, 0.1 if cols > 1 else 0.2, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=2 * cols + (cols == 1),
               fontsize=7, frameon=False)
    return fig
