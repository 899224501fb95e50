"""The lag sampler and the resource sampler (sdsbench.measurement.lag / .resources)."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdsbench.measurement.lag import (
    LAG_COLUMNS,
    KafkaEndOffsets,
    KafkaGroupCommitted,
    LagSampler,
    lag_rows,
)
from sdsbench.measurement.resources import RESOURCE_COLUMNS, ResourceSampler


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_lag_rows_count_uncommitted_partitions_from_zero():
    rows = lag_rows(5, {0: 10, 1: 7, 2: 3}, {0: 4, 2: 3})
    assert rows == [(5, 0, 10, 4, 6), (5, 1, 7, 0, 7), (5, 2, 3, 3, 0)]


def test_lag_sampler_writes_rows_and_survives_failed_samples(tmp_path):
    calls = {"n": 0}

    def ends() -> dict[int, int]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("broker briefly away")
        return {0: 10 * calls["n"], 1: 5}

    sampler = LagSampler(tmp_path / "lag.csv", ends, lambda: {0: 3, 1: 5}, interval_s=0.05)
    sampler.start()
    deadline = time.monotonic() + 5
    while sampler.samples < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    sampler.stop()  # idempotent
    rows = _read(tmp_path / "lag.csv")
    assert list(rows[0]) == list(LAG_COLUMNS)
    assert sampler.samples >= 3 and calls["n"] >= 4  # the failed sample was skipped
    first = [r for r in rows if r["end_offset"] == "10"]
    assert first and first[0]["lag"] == "7"
    assert all(r["lag"] == "0" for r in rows if r["partition"] == "1")


def test_lag_sampler_stop_without_start_is_harmless(tmp_path):
    calls = []
    sampler = LagSampler(tmp_path / "lag.csv", lambda: calls.append("ends") or {},
                         lambda: calls.append("committed") or {})
    sampler.stop()
    sampler.stop()
    # Never started: nothing sampled, and no file an analysis could take for a measurement.
    assert calls == [] and not (tmp_path / "lag.csv").exists()


def test_kafka_end_and_group_committed_offsets(kafka_bootstrap):
    from confluent_kafka import Consumer, Producer, TopicPartition

    from sdsbench.services.kafka import create_topic, delete_topics

    topic = f"lagtest-{time.time_ns()}"
    group = f"lagtest-group-{time.time_ns()}"
    create_topic(kafka_bootstrap, topic, 2)
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(10):
            producer.produce(topic, b"x", partition=i % 2)
        assert producer.flush(10) == 0
        committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                              "enable.auto.commit": False})
        committer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
        committer.close()
        ends = KafkaEndOffsets(kafka_bootstrap, topic)
        committed = KafkaGroupCommitted(kafka_bootstrap, group, topic)
        try:
            assert ends() == {0: 5, 1: 5}
            assert committed() == {0: 4, 1: 0}
        finally:
            ends.close()
            committed.close()
    finally:
        delete_topics(kafka_bootstrap, [topic])


# ----------------------------------------------------------------- resources
def test_resource_sampler_measures_a_busy_child(tmp_path):
    import psutil

    spin = "import time\nt = time.time()\nwhile time.time() - t < 20: pass\n"
    launcher = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"
    parent = subprocess.Popen([sys.executable, "-c", launcher])
    try:
        sampler = ResourceSampler(
            tmp_path / "res.csv", lambda: [parent.pid], interval_s=0.5,
            service_pids={"busy": parent.pid, "external": None},
        )
        sampler.start()
        time.sleep(2.6)
        sampler.stop()
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    rows = _read(tmp_path / "res.csv")
    assert list(rows[0]) == list(RESOURCE_COLUMNS)
    procs = [r for r in rows if r["scope"] == "process"]
    # The spinning grandchild is found through the parent and reported busy (the bound
    # is low: the machine may be shared, but an idle process stays near 0).
    busy = [r for r in procs if r["pid"] != str(parent.pid)]
    assert busy, "child process not sampled"
    assert max(float(r["cpu_percent"]) for r in busy) > 10
    sut = [r for r in rows if r["scope"] == "sut"]
    machine = [r for r in rows if r["scope"] == "machine"]
    assert len(sut) == len(machine) >= 3
    assert max(float(r["cpu_percent"]) for r in sut) > 10
    service = [r for r in rows if r["scope"] == "service"]
    assert {r["name"] for r in service} == {"busy"}  # an external service (no pid) is skipped
    assert len(service) == len(sut) and max(float(r["cpu_percent"]) for r in service) > 10
    assert all(float(r["rss_mb"]) > 0 for r in machine)


def test_resource_sampler_stop_without_start_is_harmless(tmp_path):
    asked = []
    sampler = ResourceSampler(tmp_path / "res.csv", lambda: asked.append(1) or [])
    sampler.stop()
    sampler.stop()
    assert asked == [] and not (tmp_path / "res.csv").exists()


@pytest.mark.parametrize("pids", [[], [999_999_999]])
def test_resource_sampler_tolerates_no_or_dead_pids(tmp_path, pids):
    sampler = ResourceSampler(tmp_path / "res.csv", lambda: pids, interval_s=0.05)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    rows = _read(tmp_path / "res.csv")
    assert rows and not [r for r in rows if r["scope"] == "process"]
