"""What every figure shares: reading summary files, pipeline names and colours, saving.

A figure module ``sdsbench/plots/<name>.py`` defines ``CAPTION`` (quoted by the paper)
and ``draw(ctx) -> Figure``. Figures read only the summary files of their profile.
When a profile has no runs of the kind a figure shows, the figure says so in its body
instead of failing, so the report still builds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PIPELINE_LABELS: dict[str, str] = {
    "a1": "A1 PostgreSQL",
    "a2": "A2 Kafka + PostgreSQL",
    "a3": "A3 low watermark",
    "spark": "A4 Spark",
    "flink": "A4 Flink",
}
PIPELINE_COLORS: dict[str, str] = {
    "a1": "#1b9e77", "a2": "#d95f02", "a3": "#7570b3", "spark": "#e7298a", "flink": "#66a61e",
}
PIPELINE_ORDER = ("a1", "a2", "a3", "spark", "flink")


@dataclass
class FigureContext:
    summary_dir: Path
    config: dict[str, Any]
    runs: dict[str, dict[str, Any]]  # run id -> spec (sdsbench.experiments.expand_runs)
    groups: dict[str, list[str]]
    searches: dict[str, dict[str, Any]]

    @classmethod
    def from_config(cls, summary_dir: str | Path, config: dict[str, Any]) -> FigureContext:
        from sdsbench.experiments import expand_runs, run_groups, searches

        return cls(Path(summary_dir), config, expand_runs(config), run_groups(config),
                   searches(config))

    @property
    def profile(self) -> str:
        return str(self.config["profile"])

    def runs_table(self) -> pd.DataFrame:
        return pd.read_csv(self.summary_dir / "runs.csv")

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.summary_dir / f"{name}.csv")

    def summary(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.summary_dir / "runs" / f"{run_id}.json").read_text())["row"]

    def windows(self, run_id: str) -> pd.DataFrame:
        return pd.read_csv(self.summary_dir / "windows" / f"{run_id}.csv")

    def series(self, run_id: str) -> pd.DataFrame:
        return pd.read_csv(self.summary_dir / "series" / f"{run_id}.csv")

    def search(self, search_id: str) -> dict[str, Any]:
        return json.loads((self.summary_dir / "search" / f"{search_id}.json").read_text())

    def group_rows(self, group: str) -> pd.DataFrame:
        table = self.runs_table()
        return table[table["run_id"].isin(self.groups.get(group, []))]


def label(pipeline: str) -> str:
    return PIPELINE_LABELS.get(pipeline, pipeline)


def color(pipeline: str) -> str:
    return PIPELINE_COLORS.get(pipeline, "black")


def ordered(pipelines: Any) -> list[str]:
    present = set(pipelines)
    return [p for p in PIPELINE_ORDER if p in present] + sorted(present - set(PIPELINE_ORDER))


def panel_grid(n: int, width: float = 4.2, height: float = 3.0, cols: int = 3
               ) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels (at least one), ``cols`` per row."""
    n = max(1, n)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def empty_figure(message: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def steady_windows(windows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Windows counted in the latency statistics (``steady``, see
    sdsbench.analysis.latency) that have a value in ``column``."""
    chosen = windows[windows["steady"].astype(bool)] if "steady" in windows else windows
    return chosen.dropna(subset=[column])


def series_of(series: pd.DataFrame, metric: str) -> pd.DataFrame:
    part = series[series["metric"] == metric]
    return part[["time_ms", "value"]].sort_values("time_ms")


def shade_mmpp_high(ax: Any, series: pd.DataFrame, start_ms: float, end_ms: float) -> bool:
    """Shade the MMPP high-rate intervals (x axis in seconds since the generator start)."""
    states = series_of(series, "mmpp_high")
    if states.empty:
        return False
    times = list(states["time_ms"]) + [end_ms]
    for i, (t, high) in enumerate(zip(states["time_ms"], states["value"], strict=True)):
        if high >= 0.5:
            ax.axvspan((t - start_ms) / 1000, (times[i + 1] - start_ms) / 1000,
                       color="0.85", zorder=0, lw=0)
    return True


def save(fig: Figure, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write the figure (PNG at 150 dpi, and PDF) through temporary names, then rename,
    so an interrupted plot never leaves a file Snakemake would take as done."""
    for path, kwargs in ((png, {"dpi": 150}), (pdf, {})):
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        fig.savefig(tmp, bbox_inches="tight", **kwargs)
        tmp.replace(path)
    plt.close(fig)


def figure_inputs(
    summary: str, runs: dict[str, dict[str, Any]], groups: dict[str, list[str]],
    searches: dict[str, dict[str, Any]], generator_bench: str | None = None,
) -> dict[str, list[str]]:
    """The summary files each figure reads (the workflow's inputs of each figure rule).
    ``generator_bench``: the benchmark's output directory, when the profile runs it."""

    def run_files(run_ids: list[str]) -> list[str]:
        return [f"{summary}/{kind}/{r}.{ext}" for r in run_ids
                for kind, ext in (("runs", "json"), ("windows", "csv"), ("series", "csv"))]

    def threshold_runs(multiple: float | None = None) -> list[str]:
        return [r for r in groups.get("at_threshold", [])
                if multiple is None or r.endswith(f"-th{multiple:g}x")]

    runs_table = f"{summary}/runs.csv"
    search_files = [f"{summary}/search/{s}.json" for s in searches]
    baseline = [r for r in groups.get("baseline", []) if runs[r]["pipeline"] in ("a1", "a2")]
    event_spp = [r for r in groups.get("event_time", [])
                 if runs[r]["arrival"]["process"] == "spp"]
    return {
        "a1_a2_throughput_latency": [runs_table],
        "latency_over_time_a1_a2": run_files(baseline),
        "latency_over_time_event_time": run_files(groups.get("event_time", [])),
        "event_time_spp": run_files(event_spp),
        "event_time_mmpp": run_files(threshold_runs(1)),
        "latency_vs_rate": [*search_files, f"{summary}/stress.csv"],
        "mmpp_latency_over_time": run_files(threshold_runs()),
        "parallelism": [runs_table],
        "watermark_delay": [runs_table],
        "e2e_latency_all": [runs_table, *search_files],
    } | ({"generator_benchmark": [generator_bench]} if generator_bench else {})
