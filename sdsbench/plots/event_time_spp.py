"""Event time vs processing time with the watermark, SPP input."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext
from sdsbench.plots.event_time_common import draw_event_time

CAPTION = (
    "Event time against processing time under Poisson (SPP) input, one panel per "
    "event-time pipeline. Dotted: the ideal (event time = processing time); line: the "
    "pipeline's watermark as it advanced; dots: window results, plotted at (time the "
    "result became visible, window end). The horizontal distance from a dot to the "
    "diagonal is the latency from window end. A repeated run is shown by its first "
    "repetition (the panel title says which of how many)."
)


def draw(ctx: FigureContext) -> Figure:
    run_ids = [r for r in ctx.first_repetitions(ctx.groups.get("event_time", []))
               if ctx.runs[r]["arrival"]["process"] == "spp"]
    return draw_event_time(ctx, run_ids, "SPP event-time")
