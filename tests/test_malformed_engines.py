"""Malformed-input runs of Spark (A4s) and Flink (A4f): the same checks as A1-A3
(``tests/test_malformed_pipelines.py``) with real engine jobs; ~1-2 min each. 2% of
24 000 events are bad records of the four kinds; the job keeps running, the records it
sets aside per reason equal the injected ones, and the windows match truth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_malformed_pipelines import (
    MALFORMED,
    assert_malformed_run_passed,
    malformed_run_config,
)

from engines.common.jvm_driver import engine_installed
from sdsbench.experiments import make_spec

SPARK_READY = engine_installed("spark", "spark-sql-kafka")
FLINK_READY = engine_installed("flink", "connector-kafka")
RATE_EPS, DURATION_S = 2000, 12


def _run(run_services_dir: Path, services: Any, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch, pipeline: str, params: dict[str, Any]) -> Path:
    from sdsbench import runner

    config = malformed_run_config(services, run={"drain_timeout_s": 150})
    spec = make_spec(config, pipeline, "constant", RATE_EPS, params=params,
                     duration_s=DURATION_S,
                     run_id=f"{pipeline}-t-malformed-{time.time_ns() % 10**9}")
    spec["malformed"] = dict(MALFORMED)
    return runner.execute_run(config, spec, tmp_path / "run", run_services_dir)


@pytest.mark.timeout(360)
@pytest.mark.jvm
@pytest.mark.skipif(not SPARK_READY, reason="no .venv/spark or connector jars")
def test_spark_sets_aside_injected_records_and_matches_truth(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _run(run_services_dir, services, tmp_path, monkeypatch, "spark", {"warmup_events": 0})
    assert_malformed_run_passed(out, RATE_EPS, DURATION_S)


@pytest.mark.timeout(420)
@pytest.mark.jvm
@pytest.mark.skipif(not FLINK_READY, reason="no .venv/flink or connector jars")
def test_flink_sets_aside_injected_records_and_matches_truth(
    run_services_dir, services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # not_json_dead_letters false (default): the job skips non-JSON records and the
    # driver finds them by a scan of the input topic.
    out = _run(run_services_dir, services, tmp_path, monkeypatch, "flink",
               {"warmup_events": 0, "parallelism": 1})
    assert_malformed_run_passed(out, RATE_EPS, DURATION_S)
