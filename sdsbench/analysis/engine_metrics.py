"""Per-engine adapters: each pipeline exports its own indicators in its own files under
``metrics/``; these functions turn them into the few quantities the analysis compares.
Every adapter tolerates a missing file (the quantity becomes NaN / an empty series).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from sdsbench.analysis.rundata import RunData

# The pipeline setting holding the delay a user configures before a window may fire:
# the watermark delay (A3: the injector's bound; Spark, Flink: bounded out-of-orderness)
# and, for the processing-time pipelines A1 and A2, the grace before a window's query.
DELAY_SETTING: dict[str, str] = {
    "a1": "query_grace_ms",
    "a2": "query_grace_ms",
    "a3": "watermark_bound_ms",
    "spark": "watermark_delay_ms",
    "flink": "watermark_delay_ms",
}
CONTRACT_PIPELINES = ("a3", "spark", "flink")


def configured_delay_ms(pipeline: str, params: dict[str, Any], config: dict[str, Any]) -> float:
    """The configured delay of the run (see DELAY_SETTING); raises naming the setting.
    A3's bound defaults (null) to the generator's largest disorder delay."""
    key = DELAY_SETTING[pipeline]
    if key not in params:
        raise KeyError(f"pipeline {pipeline}: setting {key!r} not in its config section")
    value = params[key]
    if value is None and pipeline == "a3":
        value = config["workload"]["disorder"]["max_delay_ms"]
    if value is None:
        raise ValueError(f"pipeline {pipeline}: setting {key!r} is null")
    return float(value)


def parallelism_of(pipeline: str, params: dict[str, Any]) -> float:
    """Degree of parallelism of a run: Flink's ``parallelism``, the n of Spark's
    ``local[n]`` master, A2/A3's consumer processes; NaN when none applies."""
    if "parallelism" in params and params["parallelism"] is not None:
        return float(params["parallelism"])
    master = str(params.get("master", ""))
    match = re.fullmatch(r"local\[(\d+)\]", master)
    if match:
        return float(match.group(1))
    if "consumers" in params:
        return float(params["consumers"])
    return math.nan


def watermark_series(run: RunData) -> pd.DataFrame:
    """The pipeline's watermark over processing time: columns time_ms, watermark_ms."""
    frame = run.metric("watermark")
    if frame is not None and {"time_ms", "watermark_ms"} <= set(frame.columns):
        out = frame[["time_ms", "watermark_ms"]].dropna()
        return out[out["watermark_ms"] > 0].reset_index(drop=True)
    return pd.DataFrame(columns=["time_ms", "watermark_ms"])


def dropped_late_events(run: RunData, fields: tuple[str, ...]) -> float:
    """Late events the pipeline reports as dropped (of the counted event types when it
    says which); NaN when it does not report them."""
    late = run.metric("late")
    if late is not None and len(late.columns):
        dropped_cols = [f"{f}_dropped" for f in fields if f"{f}_dropped" in late.columns]
        if dropped_cols:
            return float(late[dropped_cols].to_numpy().sum())
        if "dropped" in late.columns:
            return float(late["dropped"].sum())
    return math.nan


def indicators(run: RunData) -> dict[str, float]:
    """Engine-specific indicators worth a column in the runs table (NaN when absent)."""
    return {}
