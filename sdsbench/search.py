"""Driving a t_h search with real runs: each repetition's staircase run and steady
trials are complete runs (``sdsbench.runner.execute_run``) under the search's trials
directory; the method and its analysis are ``sdsbench.analysis.throughput_search`` and
``sdsbench.analysis.staircase``."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from sdsbench.analysis.criterion import Criterion
from sdsbench.analysis.rundata import load_run
from sdsbench.analysis.staircase import analyse_staircase
from sdsbench.analysis.summarize import summarize_run
from sdsbench.analysis.throughput_search import SearchSettings, search_repetition
from sdsbench.experiments import make_spec, run_settings, search_id
from sdsbench.paths import services_state_dir
from sdsbench.rundir import is_complete
from sdsbench.runner import execute_run

log = logging.getLogger("sdsbench.search")


def trial_key(config: dict[str, Any], spec: dict[str, Any]) -> str:
    """What a trial's result depends on (its spec and ``run_settings``, the same material
    that decides when the workflow reruns a run): a completed trial with the same key is
    reused when an interrupted search is rerun."""
    material = {"spec": spec, "settings": run_settings(config, spec),
                "warmup_s": config["experiments"]["warmup_s"]}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run_search(
    config: dict[str, Any],
    pipeline: str,
    process: str,
    trials_dir: str | Path,
    repetition: int = 1,
    execute: Callable[[dict[str, Any], dict[str, Any], Path], Path] | None = None,
    services_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Repetition ``repetition`` of the t_h search of ``pipeline`` under ``process``, with
    real runs in ``trials_dir`` (their services in ``services_dir``, default
    ``sdsbench.paths.services_state_dir()``); ``execute`` replaces the runner (tests)."""
    if execute is None:
        run_services = Path(services_dir) if services_dir else services_state_dir()

        def execute(config: dict[str, Any], spec: dict[str, Any], out: Path) -> Path:
            return execute_run(config, spec, out, run_services)
    trials_dir = Path(trials_dir)
    trials_dir.mkdir(parents=True, exist_ok=True)
    search = config["search"]
    sid = search_id(pipeline, process)
    settings = SearchSettings.from_config(search, pipeline)
    criterion = Criterion.from_config(search)

    def run(spec: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame | None]:
        out = trials_dir / spec["run_id"]
        key_file = trials_dir / f"{spec['run_id']}.key"
        key = trial_key(config, spec)
        if is_complete(out) and key_file.exists() and key_file.read_text() == key:
            log.info("reusing completed trial %s", spec["run_id"])
        else:
            key_file.unlink(missing_ok=True)
            try:
                execute(config, spec, out)
            except Exception as exc:  # noqa: BLE001 - a broken trial is a failed trial
                log.exception("trial %s failed", spec["run_id"])
                return {"failed": f"{type(exc).__name__}: {exc}", "run_id": spec["run_id"],
                        "offered_rate_eps": spec["arrival"]["rate_eps"]}, None
            key_file.write_text(key)
        summary, windows, _ = summarize_run(out, config)
        return summary, windows

    def run_trial(rate: float) -> dict[str, Any]:
        spec = make_spec(config, pipeline, process, rate, run_id=f"{sid}-r{int(rate)}",
                         duration_s=settings.trial_duration_s, repetition=repetition)
        return run(spec)[0]

    def run_staircase(s: SearchSettings) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = make_spec(config, pipeline, process, s.start_rate_eps,
                         run_id=f"{sid}-staircase", duration_s=s.step_s * s.steps,
                         repetition=repetition)
        spec["arrival"] |= {"step_factor": s.step_factor, "step_s": s.step_s}
        summary, windows = run(spec)
        if "failed" in summary:
            return summary, {}
        run_data = load_run(trials_dir / spec["run_id"])
        delay = float(summary["configured_delay_ms"])
        return summary, analyse_staircase(run_data, windows, delay, criterion)

    result = search_repetition(run_staircase, run_trial, settings, criterion)
    result.update({"search_id": sid, "pipeline": pipeline, "process": process,
                   "repetition": repetition, "trial_duration_s": settings.trial_duration_s})
    return result
