"""Where a run's CPU goes: CPU microseconds per event, per process scope, over the steady
span; Spark's micro-batch phases; and, across a profile's runs, a least-squares split of a
pipeline's CPU into a fixed part and a part per event.

Scopes (``metrics/resources.csv``, ``sdsbench.measurement.resources``): ``sut`` (the
pipeline's own processes: consumers, emitter, engine JVMs), and the shared services
``kafka`` and ``postgres`` (for A1-A3 most of the work runs inside PostgreSQL). A scope's
*core share* is its mean CPU in cores (1.0 = one core busy) while the generator offered
the steady input; per event it is that share over the events per second sent then.

The fit (``fit_cost``) explains the SUT's core share of each run by regressors measured in
the same run: ``fixed`` (1, so its coefficient is cores spent whatever the rate),
``events_per_s`` (coefficient: CPU-seconds per event) and, for Spark, ``batches_per_s``
(coefficient: CPU-seconds per micro-batch, whatever its size). It uses the runs of the
pipeline's default configuration and those that vary only settings that leave the
engine's machinery alone (``FIT_SETTINGS``): a trigger interval changes the batches per
second at the same event rate, which is what separates the two Spark costs. Its spread is
the jackknife range: the coefficients refitted with each run left out in turn. Runs that
barely vary a regressor (all at one rate, or one batch rate) cannot separate the parts:
above ``MAX_CONDITION`` (the condition number of the design with each column scaled to
its largest value) the fit gives no coefficients instead of arbitrary ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sdsbench.analysis.rundata import run_params
from sdsbench.contract import SPARK_JVM_COUNTERS
from sdsbench.numbers import as_number

SERVICE_SCOPES = ("kafka", "postgres")
SCOPES = ("sut", *SERVICE_SCOPES)
# StreamingQueryProgress.durationMs parts of a micro-batch (metrics/spark_progress.csv).
SPARK_PHASES = ("latest_offset", "get_batch", "query_planning", "add_batch", "wal_commit",
                "commit_offsets")
REGRESSORS = {"fixed": "cores", "events_per_s": "CPU-us per event",
              "batches_per_s": "CPU-ms per micro-batch"}
FIT_SETTINGS = frozenset({"watermark_delay_ms", "watermark_bound_ms", "trigger_ms"})
# The quick profile's fits, whose runs span 20k ev/s to 2 x t_h and two Spark triggers,
# are at 2.6-3.9; a profile whose runs all share one rate is at 10^3 and more.
MAX_CONDITION = 20.0
# Coefficient (cores per unit of the regressor) -> the unit above.
_SCALE = {"fixed": 1.0, "events_per_s": 1e6, "batches_per_s": 1e3}


def steady_cpu(
    resources: pd.DataFrame | None, rate: pd.DataFrame, generator_start_ms: float,
    span_start_ms: float, span_end_ms: float,
) -> dict[str, float]:
    """Per scope, the mean core share and CPU microseconds per event between
    ``span_start_ms`` and ``span_end_ms`` (``cpu_<scope>_core_share``,
    ``cpu_<scope>_us_per_event``), and the events per second sent then
    (``cpu_span_eps``). NaN where the scope was not sampled."""
    out = {f"cpu_{s}_{k}": math.nan for s in SCOPES for k in ("core_share", "us_per_event")}
    seconds = generator_start_ms + rate["second"].astype(float) * 1000.0
    inside = (seconds >= span_start_ms) & (seconds + 1000.0 <= span_end_ms)
    eps = float(rate.loc[inside, "sent"].sum()) / max(float(inside.sum()), 1.0)
    out["cpu_span_eps"] = eps if inside.any() else math.nan
    if resources is None or "scope" not in resources:
        return out
    during = resources[(resources["time_ms"] >= span_start_ms)
                       & (resources["time_ms"] <= span_end_ms)]
    for scope in SCOPES:
        # A service of several processes (a Kafka cluster's nodes, kafka-1..3): summed
        # per sample time.
        rows = (during[during["scope"] == "sut"] if scope == "sut" else
                during[(during["scope"] == "service")
                       & (during["name"].astype(str).str.split("-").str[0] == scope)])
        if not len(rows):
            continue
        share = float(rows.groupby("time_ms")["cpu_percent"].sum().mean()) / 100.0
        out[f"cpu_{scope}_core_share"] = share
        if eps > 0:
            out[f"cpu_{scope}_us_per_event"] = share * 1e6 / eps
    return out


def spark_batch_phases(
    progress: pd.DataFrame | None, span_start_ms: float, span_end_ms: float,
) -> dict[str, float]:
    """The CTR query's micro-batches that started in the span: how many per second, their
    median input rows, and the median wall time of each phase (``spark_<phase>_ms_p50``).
    Empty for runs without ``metrics/spark_progress.csv``."""
    if progress is None or "query" not in progress:
        return {}
    ctr = progress[(progress["query"] == "ctr") & (progress["batch_time_ms"] >= span_start_ms)
                   & (progress["batch_time_ms"] < span_end_ms)]
    span_s = (span_end_ms - span_start_ms) / 1000.0
    out = {"spark_batches_per_s": len(ctr) / span_s if span_s > 0 else math.nan,
           **_per_batch_counters(progress[progress["query"] == "ctr"], ctr.index),
           "spark_batch_input_rows_p50": _median(ctr, "num_input_rows"),
           "spark_trigger_execution_ms_p50": _median(ctr, "trigger_execution_ms")}
    for phase in SPARK_PHASES:
        out[f"spark_{phase}_ms_p50"] = _median(ctr, f"{phase}_ms")
    return out


def _per_batch_counters(ctr: pd.DataFrame, selected: pd.Index) -> dict[str, float]:
    """Mean per batch of the JVM's counters (``contract.SPARK_JVM_COUNTERS``, cumulative):
    each batch's difference to the batch before it, over the ``selected`` batches
    (``spark_<counter>_per_batch_mean``). Absent for runs recorded without them."""
    out = {}
    ordered = ctr.sort_values("batch_time_ms")
    for counter in SPARK_JVM_COUNTERS:
        if counter in ordered:
            delta = pd.to_numeric(ordered[counter], errors="coerce").diff()
            out[f"spark_{counter}_per_batch_mean"] = float(delta.loc[selected].mean())
    return out


def _median(frame: pd.DataFrame, column: str) -> float:
    if column not in frame or not len(frame):
        return math.nan
    return float(pd.to_numeric(frame[column], errors="coerce").median())


def regressors_of(pipeline: str) -> tuple[str, ...]:
    """What a pipeline's SUT CPU is fitted on: Spark pays per micro-batch, the others per
    second (timers, polling, watermark ticks) and per event."""
    return ("batches_per_s", "events_per_s") if pipeline == "spark" else (
        "fixed", "events_per_s")


def fit_runs(rows: Sequence[dict[str, Any]], pipeline: str) -> list[dict[str, Any]]:
    """The runs of ``pipeline`` the fit uses (module docstring); ``params`` of a row is the
    run's settings as JSON."""
    return [r for r in rows if r["pipeline"] == pipeline
            and set(run_params(r)) <= FIT_SETTINGS]


def _design(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    column = {"fixed": lambda r: 1.0, "events_per_s": lambda r: r["cpu_span_eps"],
              "batches_per_s": lambda r: r["spark_batches_per_s"]}
    x = np.array([[as_number(column[n](r)) for n in names] for r in rows], dtype=float)
    y = np.array([as_number(r["cpu_sut_core_share"]) for r in rows], dtype=float)
    return x, y


def fit_cost(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Least squares of the SUT core share on ``names`` (module docstring) over ``rows``
    (run summaries). Per regressor: ``<name>`` in the unit of ``REGRESSORS`` and its
    jackknife ``<name>_lo``/``<name>_hi``; ``n_runs``; ``residual_rms`` (cores);
    ``condition``. Runs lacking a value are left out; with fewer runs than regressors + 2,
    or a condition above ``MAX_CONDITION``, every coefficient is NaN."""
    usable = [r for r in rows if all(
        not math.isnan(as_number(r.get(k)))
        for k in ("cpu_sut_core_share", "cpu_span_eps",
                  *(["spark_batches_per_s"] if "batches_per_s" in names else [])))]
    out: dict[str, Any] = {"n_runs": len(usable), "residual_rms": math.nan,
                           "condition": math.nan,
                           "runs": ";".join(str(r["run_id"]) for r in usable)}
    for n in names:
        out |= {n: math.nan, f"{n}_lo": math.nan, f"{n}_hi": math.nan}
    # Two more runs than coefficients: with one more, each leave-one-out refit is exact
    # and the jackknife range says nothing.
    if len(usable) < len(names) + 2:
        return out
    x, y = _design(usable, names)
    out["condition"] = float(np.linalg.cond(x / np.abs(x).max(axis=0)))
    if not out["condition"] <= MAX_CONDITION:
        return out
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    out["residual_rms"] = float(np.sqrt(np.mean((y - x @ coef) ** 2)))
    leave_one_out = np.array([
        np.linalg.lstsq(np.delete(x, i, axis=0), np.delete(y, i), rcond=None)[0]
        for i in range(len(y))])
    for j, n in enumerate(names):
        scale = _SCALE[n]
        out[n] = float(coef[j]) * scale
        out[f"{n}_lo"] = float(leave_one_out[:, j].min()) * scale
        out[f"{n}_hi"] = float(leave_one_out[:, j].max()) * scale
    return out
