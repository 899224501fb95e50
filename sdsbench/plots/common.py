"""What every figure shares: reading summary files, pipeline names and colours, saving.

A figure module ``sdsbench/plots/<name>.py`` defines ``CAPTION`` (quoted by the paper)
and ``draw(ctx) -> Figure``. Figures read only the summary files of their profile.
When a profile has no runs of the kind a figure shows, the figure says so in its body
instead of failing, so the report still builds.

Repetitions (run ``<id>-rep<k>`` repeats ``<id>``, its ``base_run_id``): a figure that
shows one run per configuration draws repetition 1 (``FigureContext.first_repetitions``);
a figure that compares configurations draws every repetition as a small point and the
median over them with a min-max error bar, and says how many runs and steady window
firings each configuration rests on (``by_configuration``, ``draw_spread``: one place for
"group rows by base run -> median, min, max, firings").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sdsbench.analysis.rundata import is_real_time  # noqa: E402

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
        """Runs-table rows of the runs of ``group``."""
        table = self.runs_table()
        return table[table["run_id"].isin(self.groups.get(group, []))]

    def configuration_rows(self, group: str) -> pd.DataFrame:
        """Runs-table rows of every repetition of the runs of ``group``: the rows whose
        base run is the base of one of the group's runs (a sweep's default point is the
        run of another group, with that group's repetitions)."""
        table = with_repetitions(self.runs_table())
        members = table[table["run_id"].isin(self.groups.get(group, []))]
        return table[table["base_run_id"].isin(set(members["base_run_id"]))]

    def first_repetitions(self, run_ids: Iterable[str]) -> list[str]:
        """The runs of ``run_ids`` that are repetition 1 (the base run) of their run."""
        return [r for r in run_ids if int((self.runs.get(r) or {}).get("repetition", 1)) == 1]

    def repetitions_of(self, run_id: str) -> int:
        """How many repetitions the profile has of the run ``run_id`` repeats."""
        base = (self.runs.get(run_id) or {}).get("base_run_id", run_id)
        return max(1, sum(1 for spec in self.runs.values()
                          if spec.get("base_run_id", spec.get("run_id")) == base))

    def which_run(self, run_id: str) -> str:
        """For a panel title: "run 1 of 3" when the run is repeated, else ""."""
        n = self.repetitions_of(run_id)
        rep = int((self.runs.get(run_id) or {}).get("repetition", 1))
        return f"run {rep} of {n}" if n > 1 else ""


def label(pipeline: str) -> str:
    return PIPELINE_LABELS.get(pipeline, pipeline)


def run_label(row: dict[str, Any]) -> str:
    """The pipeline's label, plus the configuration when it is another engine mode (Spark's
    real-time mode); ``row``: a run summary (``params`` as JSON)."""
    text = label(row["pipeline"])
    return text + " real-time mode" if is_real_time(row) else text


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


# ------------------------------------------------ repetitions: median, min-max, firings
def firings_column(metric: str) -> str:
    """The runs-table column counting the steady-state window firings a latency statistic
    rests on (sdsbench.analysis.latency): ``latency_above_delay_ms_p95`` ->
    ``latency_above_delay_ms_firings``, ``query_latency_ms_mean`` ->
    ``query_latency_ms_firings``. Statistics without firings have no such column."""
    return metric.rsplit("_", 1)[0] + "_firings"


def with_repetitions(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``base_run_id`` and ``repetition`` filled in (a row without them is
    repetition 1 of itself)."""
    rows = rows.copy()
    base = rows["base_run_id"] if "base_run_id" in rows else pd.Series(np.nan, index=rows.index)
    rows["base_run_id"] = base.where(base.notna(), rows["run_id"]).astype(str)
    rep = rows["repetition"] if "repetition" in rows else pd.Series(1, index=rows.index)
    rows["repetition"] = pd.to_numeric(rep, errors="coerce").fillna(1).astype(int)
    return rows


def by_configuration(rows: pd.DataFrame, metrics: Iterable[str]) -> pd.DataFrame:
    """One row per configuration (base run) of ``rows`` (runs-table rows; the repetitions
    of a run share its ``base_run_id``), in the order the configurations first appear:

    - the columns of its first repetition (the configuration's settings);
    - ``n_runs``: its repetitions among ``rows``; ``run_ids``: their ids by repetition;
    - per metric m: ``m_median``, ``m_min``, ``m_max`` over the repetitions' values
      (missing values left out, as in the headline table), ``m_n`` the values counted,
      ``m_values`` the values by repetition (missing ones NaN), and ``m_firings`` the
      steady window firings the repetitions rest on together (the sum of their
      ``firings_column(m)``: the pooled sample; NaN for a statistic without firings).
    """
    metrics = list(metrics)
    rows = with_repetitions(rows)
    out = []
    for base, part in rows.groupby("base_run_id", sort=False):
        part = part.sort_values("repetition", kind="stable")
        row = part.iloc[0].to_dict()
        row |= {"base_run_id": base, "n_runs": len(part), "run_ids": tuple(part["run_id"])}
        for m in metrics:
            values = (pd.to_numeric(part[m], errors="coerce").astype(float) if m in part
                      else pd.Series(np.nan, index=part.index))
            clean = values.dropna()
            fc = firings_column(m)
            firings = (pd.to_numeric(part[fc], errors="coerce") if fc in part
                       else pd.Series(dtype=float))
            row |= {
                f"{m}_values": tuple(float(v) for v in values),
                f"{m}_n": int(len(clean)),
                f"{m}_median": float(clean.median()) if len(clean) else math.nan,
                f"{m}_min": float(clean.min()) if len(clean) else math.nan,
                f"{m}_max": float(clean.max()) if len(clean) else math.nan,
                f"{m}_firings": (float(firings.fillna(0).sum()) if firings.notna().any()
                                 else math.nan),
            }
        out.append(row)
    return pd.DataFrame(out)


def sample_text(n: int, firings: float = math.nan, of: int | None = None) -> str:
    """What a number rests on: "n = 3 runs, 9 firings" (steady window firings, pooled
    over the runs); "n = 2 of 3 runs" when some repetitions have no value."""
    runs = f"{n} of {of}" if of is not None and of != n else f"{n}"
    text = f"n = {runs} run{'' if n == 1 and of in (None, 1) else 's'}"
    if firings is not None and not (isinstance(firings, float) and math.isnan(firings)):
        text += f", {firings:,.0f} firing{'' if firings == 1 else 's'}"
    return text


def spread_label(statistic: str, conf: pd.DataFrame, metric: str) -> str:
    """Axis label: the statistic and its sample base, e.g. "p95 above delay (ms)" /
    "median of 3 runs, bars: min-max"."""
    counts = sorted({int(n) for n in conf[f"{metric}_n"] if n}) if len(conf) else []
    if not counts or counts == [1]:
        return f"{statistic}\none run per point"
    runs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{statistic}\nmedian of {runs} runs, bars: min-max"


def dodge(i: int, n: int, width: float) -> float:
    """The x shift of series ``i`` of ``n`` drawn at the same x positions, ``width`` apart,
    centred on the true x (so error bars of different series do not hide each other)."""
    return (i - (n - 1) / 2) * width


def draw_spread(
    ax: Any, conf: pd.DataFrame, x: str, metric: str, *, color: str,
    label: str | None = None, fmt: str = "o-", mfc: str | None = None,
    x_factor: float = 1.0, y_factor: float = 1.0, x_shift: float = 0.0,
    annotate: bool = False, annotate_offset: tuple[float, float] = (5, -9),
) -> ErrorbarContainer | None:
    """Draw ``metric`` of the configurations ``conf`` (``by_configuration``) against
    ``x``: every repetition as a small point, the median of each configuration with one
    min-max error bar (``fmt``: marker and line through the medians, "none" for bars
    and points only) and, with ``annotate``, "n = <runs> runs, <firings> firings" beside
    each median. ``x`` is a setting (a column of the first repetition) or an aggregated
    metric (``x``_median exists: its median, with a horizontal min-max bar). Values are
    scaled by ``x_factor``/``y_factor``; ``x_shift`` (after scaling) sets series at the
    same x apart. Returns the error bars (None without data)."""
    if conf.empty or f"{metric}_median" not in conf:
        return None
    aggregated_x = f"{x}_median" in conf
    order = np.argsort(conf[f"{x}_median" if aggregated_x else x].to_numpy(dtype=float),
                       kind="stable")
    conf = conf.iloc[order]
    xs = conf[f"{x}_median" if aggregated_x else x].to_numpy(dtype=float) * x_factor + x_shift
    med = conf[f"{metric}_median"].to_numpy(dtype=float) * y_factor
    lo = conf[f"{metric}_min"].to_numpy(dtype=float) * y_factor
    hi = conf[f"{metric}_max"].to_numpy(dtype=float) * y_factor
    # Each repetition, small.
    px, py = [], []
    for i, values in enumerate(conf[f"{metric}_values"]):
        rep_x = ([float(v) * x_factor + x_shift for v in conf[f"{x}_values"].iloc[i]]
                 if aggregated_x else [xs[i]] * len(values))
        px += rep_x
        py += [float(v) * y_factor for v in values]
    ax.plot(px, py, ".", color=color, ms=4, alpha=0.45, ls="none", zorder=2)
    xerr = None
    if aggregated_x:
        xerr = np.vstack([xs - x_shift - conf[f"{x}_min"].to_numpy(dtype=float) * x_factor,
                          conf[f"{x}_max"].to_numpy(dtype=float) * x_factor + x_shift - xs])
    style: dict[str, Any] = {} if fmt == "none" else {"mfc": mfc or color}
    bars = ax.errorbar(xs, med, yerr=np.vstack([med - lo, hi - med]), xerr=xerr, fmt=fmt,
                       color=color, ecolor=color, elinewidth=1, capsize=3, label=label,
                       zorder=3, **style)
    if annotate:
        for i, (xi, yi) in enumerate(zip(xs, med, strict=True)):
            if math.isnan(yi):
                continue
            row = conf.iloc[i]
            ax.annotate(sample_text(int(row[f"{metric}_n"]), row[f"{metric}_firings"],
                                    int(row["n_runs"])),
                        (xi, yi), textcoords="offset points", xytext=annotate_offset,
                        fontsize=6, color=color)
    return bars


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


def threshold_multiple(run_id: str, spec: dict[str, Any] | None = None) -> float:
    """The multiple of t_h an at-threshold run runs at (``<id>-th2x``, ``<id>-th2x-rep2``)."""
    if spec and spec.get("rate_of"):
        return float(spec["rate_of"]["multiple"])
    return float(run_id.rsplit("-th", 1)[1].split("x", 1)[0])


def threshold_runs(groups: dict[str, list[str]], runs: dict[str, dict[str, Any]],
                   multiple: float | None = None) -> list[str]:
    """Repetition 1 of the runs at a multiple of t_h (at ``multiple``, or all)."""
    return [r for r in groups.get("at_threshold", [])
            if int((runs.get(r) or {}).get("repetition", 1)) == 1
            and (multiple is None or threshold_multiple(r, runs.get(r)) == float(multiple))]


def figure_inputs(
    summary: str, runs: dict[str, dict[str, Any]], groups: dict[str, list[str]],
    searches: dict[str, dict[str, Any]], generator_bench: str | None = None,
    ceiling_bench: str | None = None,
) -> dict[str, list[str]]:
    """The summary files each figure reads (the workflow's inputs of each figure rule).
    ``generator_bench``, ``ceiling_bench``: the benchmarks' output directories, when the
    profile runs them."""

    def run_files(run_ids: list[str]) -> list[str]:
        return [f"{summary}/{kind}/{r}.{ext}" for r in run_ids
                for kind, ext in (("runs", "json"), ("windows", "csv"), ("series", "csv"))]

    def first(group: str) -> list[str]:  # one run per configuration: repetition 1
        return [r for r in groups.get(group, []) if int(runs[r].get("repetition", 1)) == 1]

    runs_table = f"{summary}/runs.csv"
    search_files = [f"{summary}/search/{s}.json" for s in searches]
    baseline = [r for r in first("baseline") if runs[r]["pipeline"] in ("a1", "a2")]
    event_spp = [r for r in first("event_time") if runs[r]["arrival"]["process"] == "spp"]
    inputs = {
        "a1_a2_throughput_latency": [runs_table],
        "latency_over_time_a1_a2": run_files(baseline),
        "latency_over_time_event_time": run_files(first("event_time")),
        "event_time_spp": run_files(event_spp),
        "event_time_mmpp": run_files(threshold_runs(groups, runs, 1)),
        "latency_vs_rate": search_files,
        "mmpp_latency_over_time": run_files(threshold_runs(groups, runs)),
        "parallelism": [runs_table],
        "watermark_delay": [runs_table],
        "e2e_latency_all": [runs_table, *search_files],
        "cpu_cost": [runs_table, f"{summary}/cpu.csv", *search_files,
                     *([ceiling_bench] if ceiling_bench else [])],
    } | ({"generator_benchmark": [generator_bench]} if generator_bench else {})
    # A profile that leaves a group out (config/cluster.yaml) draws no figure of it.
    has = {"a1_a2_throughput_latency": baseline, "latency_over_time_a1_a2": baseline,
           "latency_over_time_event_time": first("event_time"), "event_time_spp": event_spp,
           "event_time_mmpp": threshold_runs(groups, runs, 1), "latency_vs_rate": searches,
           "mmpp_latency_over_time": threshold_runs(groups, runs),
           "parallelism": groups.get("parallelism"),
           "watermark_delay": groups.get("watermark_delay")}
    return {name: files for name, files in inputs.items() if has.get(name, True)}
