"""The pass-through ceiling (issue 14, ``sdsbench.ceiling``): each engine's job counts every
event of the topic exactly, the engines take turns, and the measured pass of each mode is
the one after its warm-up pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engines.common.jvm_driver import engine_installed
from sdsbench import ceiling
from sdsbench.config import load_config


def test_engines_take_turns_and_the_second_pass_of_each_mode_is_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, int]] = []

    def fake_job(engine: str, config: Any, bootstrap: str, topic: str, out_dir: Path,
                 rep: int) -> list[dict[str, Any]]:
        calls.append((engine, rep))
        return [{"engine": engine, "repetition": rep, "pass": i + 1, "mode": m,
                 "measured": i >= 2, "records": 10, "counted": 10, "seconds": 1.0,
                 "eps": 10.0 * rep, "wall_s": 1.0} for i, m in enumerate(ceiling.PASSES)]

    class FakeServices:
        kafka_bootstrap = "127.0.0.1:1"

    monkeypatch.setattr(ceiling, "ensure_services", lambda cfg, d: FakeServices())
    monkeypatch.setattr(ceiling, "fill_topic", lambda *a: 10)
    monkeypatch.setattr(ceiling, "delete_topics", lambda *a: None)
    monkeypatch.setattr(ceiling, "run_job", fake_job)
    config = load_config(overrides={"experiments": {"ceiling_bench": {"repetitions": 3}}})
    summary = ceiling.run_ceiling(config, tmp_path, tmp_path, progress=lambda *_: None)
    assert calls == [("spark", 1), ("flink", 1), ("flink", 2), ("spark", 2), ("spark", 3),
                     ("flink", 3)]
    assert summary["engines"]["flink"]["parse"] == {
        "eps_median": 20.0, "eps_min": 10.0, "eps_max": 30.0, "n": 3,
        "values": [10.0, 20.0, 30.0]}
    assert summary["exact"]
    passes = pd.read_csv(tmp_path / "passes.csv")
    assert len(passes) == 6 * len(ceiling.PASSES)


@pytest.mark.jvm
@pytest.mark.timeout(600)
@pytest.mark.skipif(not (engine_installed("spark", "spark-sql-kafka")
                         and engine_installed("flink", "connector-kafka")),
                    reason="no engine virtualenvs or connector jars")
def test_each_engine_counts_every_event_of_the_topic(services: Any, tmp_path: Path) -> None:
    events = 30_000
    config = load_config(overrides={
        "services": {"postgres": {"dsn": services.pg_dsn},
                     "kafka": {"bootstrap_servers": services.kafka_bootstrap}},
        "experiments": {"ceiling_bench": {"events": events, "fill_rate_eps": 20_000,
                                          "repetitions": 1}}})
    summary = ceiling.run_ceiling(config, tmp_path / "out", tmp_path / "state",
                                  progress=lambda *_: None)
    passes = pd.read_csv(tmp_path / "out" / "passes.csv")
    assert summary["events"] == events and summary["exact"]
    assert set(passes["engine"]) == {"spark", "flink"}
    assert (passes["counted"] == events).all() and (passes["records"] == events).all()
    assert (passes["eps"] > 0).all()
    for engine in ("spark", "flink"):
        assert set(summary["engines"][engine]) == {"raw", "parse"}
        job = json.loads((tmp_path / "out" / "jobs" / f"{engine}-rep1.json").read_text())
        assert [p["mode"] for p in job["passes"]] == list(ceiling.PASSES)
