"""Load one run directory (see sdsbench.runner for its layout) into tables.

Required files are checked strictly: a run without them is not a run and the analysis
stops with a message naming the file. Optional metric files (an engine that does not
export some indicator, an older run) load as ``None`` and their statistics become NaN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sdsbench.rundir import is_complete

TRUTH_FILE = "generator/truth.csv"
RATE_FILE = "generator/rate.csv"
GENERATOR_SUMMARY_FILE = "generator/summary.json"
MMPP_STATES_FILE = "generator/mmpp_states.csv"
PROVENANCE_FILE = "provenance.json"
RESULTS_FILE = "results.csv"
FINAL_COUNTS_FILE = "final_counts.csv"  # A1/A2: recount of the events table after the run
REJECTS_FILE = "rejects.csv"


class RunDataError(ValueError):
    """A run directory lacks a required file or a required column."""


@dataclass
class RunData:
    """The tables of one run. ``metrics`` maps a metric file's stem to its table."""

    path: Path
    provenance: dict[str, Any]
    truth: pd.DataFrame
    rate: pd.DataFrame
    generator: dict[str, Any]
    results: pd.DataFrame
    final_counts: pd.DataFrame | None = None
    mmpp_states: pd.DataFrame | None = None
    rejects: pd.DataFrame | None = None
    metrics: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics_json: dict[str, Any] = field(default_factory=dict)  # metrics/*.json by stem

    @property
    def spec(self) -> dict[str, Any]:
        return self.provenance["spec"]

    @property
    def pipeline(self) -> str:
        return self.spec["pipeline"]

    @property
    def run_id(self) -> str:
        return self.spec["run_id"]

    def metric(self, name: str) -> pd.DataFrame | None:
        return self.metrics.get(name)


def run_params(row: dict[str, Any]) -> dict[str, Any]:
    """A run summary row's own settings (``params``, JSON in the tables; {} for none)."""
    raw = row.get("params")
    return json.loads(raw) if isinstance(raw, str) and raw else {}


def is_real_time(row: dict[str, Any]) -> bool:
    """Is the row a run of Spark's real-time mode (``spark.execution: real_time``)?"""
    return row.get("pipeline") == "spark" and run_params(row).get("execution") == "real_time"


def read_csv(path: Path, required_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV; an empty file (header only, or nothing at all) is an empty table."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(required_columns))
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise RunDataError(f"{path}: missing columns {missing} (has {list(frame.columns)})")
    return frame


def _optional_csv(path: Path) -> pd.DataFrame | None:
    return read_csv(path) if path.exists() else None


def _required(run_dir: Path, name: str) -> Path:
    path = run_dir / name
    if not path.exists():
        raise RunDataError(f"run {run_dir}: required file {name} is missing")
    return path


def load_run(run_dir: str | Path) -> RunData:
    """Load a complete run directory."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        raise RunDataError(f"run {run_dir} is not complete (no COMPLETE marker)")
    provenance = json.loads(_required(run_dir, PROVENANCE_FILE).read_text())
    if "spec" not in provenance:
        raise RunDataError(f"run {run_dir}: provenance.json has no spec")
    truth = read_csv(
        _required(run_dir, TRUTH_FILE),
        ("campaign_id", "window_start_ms", "views", "clicks", "purchases",
         "views_delayed", "clicks_delayed", "purchases_delayed"),
    )
    rate = read_csv(_required(run_dir, RATE_FILE), ("second", "scheduled", "sent", "behind_ms_max"))
    generator = json.loads(_required(run_dir, GENERATOR_SUMMARY_FILE).read_text())
    results = read_csv(_required(run_dir, RESULTS_FILE))
    metrics, metrics_json = {}, {}
    metrics_dir = run_dir / "metrics"
    if metrics_dir.is_dir():
        for path in sorted(metrics_dir.glob("*.csv")):
            metrics[path.stem] = read_csv(path)
        for path in sorted(metrics_dir.glob("*.json")):
            metrics_json[path.stem] = json.loads(path.read_text())
    return RunData(
        path=run_dir,
        provenance=provenance,
        truth=truth,
        rate=rate,
        generator=generator,
        results=results,
        final_counts=_optional_csv(run_dir / FINAL_COUNTS_FILE),
        mmpp_states=_optional_csv(run_dir / MMPP_STATES_FILE),
        rejects=_optional_csv(run_dir / REJECTS_FILE),
        metrics=metrics,
        metrics_json=metrics_json,
    )
