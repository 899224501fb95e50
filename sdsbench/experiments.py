"""Run specs: what one run is. The Snakefile expands the config's experiment matrix
into run specs (see ``expand_runs``); pipelines read their settings with
``pipeline_params`` so a run's settings come from one place.

A run spec is a JSON-able dict::

    {"run_id": "a2-constant-r50000", "pipeline": "a2",
     "arrival": {"process": "constant", "rate_eps": 50000},
     "duration_s": 30, "seed": 123, "params": {...overrides of config[pipeline]...}}
"""

from __future__ import annotations

import hashlib
from typing import Any

from sdsbench.config import deep_merge


def derive_seed(master_seed: int, run_id: str) -> int:
    """A stable per-run seed: the same run id always gets the same seed."""
    digest = hashlib.sha256(f"{master_seed}:{run_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def pipeline_params(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's config section with the run's own overrides applied."""
    return deep_merge(config.get(spec["pipeline"], {}), spec.get("params", {}))


def make_spec(
    config: dict[str, Any],
    pipeline: str,
    process: str,
    rate_eps: float,
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """Build one run spec; the run id says what the run is."""
    params = params or {}
    if run_id is None:
        suffix = "".join(f"-{_short(k)}{v}" for k, v in sorted(params.items()))
        run_id = f"{pipeline}-{process}-r{int(rate_eps)}{suffix}"
    return {
        "run_id": run_id,
        "pipeline": pipeline,
        "arrival": {"process": process, "rate_eps": float(rate_eps)},
        "duration_s": float(duration_s if duration_s is not None else config["run"]["duration_s"]),
        "seed": derive_seed(int(config["seed"]), run_id),
        "params": params,
    }


_SHORT = {"parallelism": "p", "watermark_delay_ms": "wm", "shuffle_partitions": "sp"}


def _short(key: str) -> str:
    return _SHORT.get(key, key.replace("_", ""))
