"""The generator's benchmark: highest sustained rate per configuration."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sdsbench.plots.common import FigureContext, empty_figure

CAPTION = (
    "The open-loop generator alone (scripts/bench_generator.py): the highest constant rate "
    "at which every second of a trial sent within 1 per cent of its schedule into the "
    "project's Kafka broker on this machine, per number of producer processes and "
    "compression; grey: raw produce throughput of pre-encoded events per client library."
)


def draw(ctx: FigureContext) -> Figure:
    bench = ctx.summary_dir.parent / "bench" / "generator"
    sustained_path = bench / "sustained.csv"
    if not sustained_path.exists():
        return empty_figure(f"profile {ctx.profile}: no generator benchmark")
    sustained = pd.read_csv(sustained_path)
    clients_path = bench / "clients.csv"
    clients = pd.read_csv(clients_path) if clients_path.exists() else pd.DataFrame()
    labels = [f"generator, {p} process(es), {c}"
              for p, c in zip(sustained["processes"], sustained["compression"], strict=True)]
    values = list(sustained["sustained_eps"] / 1000)
    colors = ["C0"] * len(values)
    if len(clients) and {"client", "events_per_s"} <= set(clients.columns):
        labels += [f"raw produce, {r.client}, {r.compression}, linger {r.linger_ms} ms"
                   for r in clients.itertuples()]
        values += list(clients["events_per_s"] / 1000)
        colors += ["0.6"] * len(clients)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.5))
    ax.barh(labels, values, color=colors)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f}k", va="center", fontsize=8)
    ax.set_xlabel("events per second (thousands)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return fig
