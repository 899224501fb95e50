"""Event time vs processing time with the watermark, MMPP input at t_h."""

from __future__ import annotations

from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext, threshold_runs
from sdsbench.plots.event_time_common import draw_event_time

CAPTION = (
    "Event time against processing time under MMPP input at each pipeline's sustainable "
    "throughput t_h (found under SPP). Shaded: MMPP high-rate state. Dotted: event time = "
    "processing time; line: the watermark; dots: window results at (visible time, window end). "
    "A repeated run is shown by its first repetition."
)


def draw(ctx: FigureContext) -> Figure:
    run_ids = threshold_runs(ctx.groups, ctx.runs, 1)
    return draw_event_time(ctx, run_ids, "MMPP at t_h")
