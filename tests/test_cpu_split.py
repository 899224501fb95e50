"""The CPU split (issue 14, ``run.load_cpus``): the generator and the broker on the load's
CPUs, the pipeline and PostgreSQL on the others, recorded in provenance, given back after
the run; a bad split names its key; the default leaves every run's settings as they were."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import TEST_SERVICES_CONFIG

from sdsbench import runner
from sdsbench.config import ConfigError, load_config
from sdsbench.cpu_split import cpu_split
from sdsbench.experiments import make_spec, run_settings
from sdsbench.services.stack import load_services, start_services, stop_services

CPUS = sorted(os.sched_getaffinity(0))
TWO_CPUS = pytest.mark.skipif(len(CPUS) < 2, reason="a split needs two usable CPUs")


def test_no_split_by_default_and_a_bad_split_names_the_key() -> None:
    assert cpu_split(load_config()) is None
    for bad in ([max(CPUS) + 1], CPUS):  # an unusable CPU; nothing left for the SUT
        with pytest.raises(ConfigError, match="run.load_cpus"):
            cpu_split(load_config(overrides={"run": {"load_cpus": bad}}))


def test_the_default_leaves_run_settings_as_they_were() -> None:
    config = load_config()
    spec = make_spec(config, "a3", "spp", 20000)
    without_key = {**config, "run": {k: v for k, v in config["run"].items()
                                     if k != "load_cpus"}}
    assert run_settings(config, spec) == run_settings(without_key, spec)
    split = load_config(overrides={"run": {"load_cpus": [CPUS[0]]}})
    assert run_settings(split, spec) != run_settings(config, spec)


@TWO_CPUS
@pytest.mark.services  # starts its own PostgreSQL and Kafka
@pytest.mark.timeout(300)
def test_a_split_run_pins_each_side_records_it_and_gives_the_cpus_back(
    tmp_path: Path,
) -> None:
    load, sut = {CPUS[0]}, set(CPUS[1:])
    # Under /tmp itself: the postgres user must traverse every parent when we are root.
    state = Path(tempfile.mkdtemp(prefix="sdsbench-test-split-"))
    state.chmod(0o755)
    # The run starts its own services (not external ones), so it knows their pids.
    config = load_config(overrides={"services": TEST_SERVICES_CONFIG,
                                    "run": {"load_cpus": sorted(load), "drain_timeout_s": 40}})
    spec = make_spec(config, "a2", "constant", 1000, duration_s=8,
                     run_id=f"a2-test-split-{time.time_ns()}")
    seen: dict[str, set[frozenset[int]]] = {"kafka": set(), "postgres": set()}
    done = threading.Event()

    def watch() -> None:  # the services' affinity while the run goes on
        while not done.wait(0.2):
            svc = load_services(state)
            for name in seen:
                pid = (svc.pids if svc else {}).get(name)
                try:
                    seen[name].add(frozenset(os.sched_getaffinity(pid))) if pid else None
                except ProcessLookupError:
                    pass

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        # The stack the run will reuse (same config and directory, so the run knows its
        # pids), started first and given time to settle: a broker still loading its
        # coordinators when pinned to one CPU beside the generator lost partition
        # leadership once in a full test session (a hazard of a 1-CPU load side; this test
        # checks the mechanism).
        start_services(config["services"], state)
        time.sleep(5)
        watcher.start()
        out = runner.execute_run(config, spec, tmp_path / "run", state)
        done.set()
        watcher.join(5)
        provenance = json.loads((out / "provenance.json").read_text())
        split = provenance["cpu_split"]
        assert (split["load_cpus"], split["sut_cpus"]) == (sorted(load), sorted(sut))
        assert all(split["threads_pinned"][side] > 0
                   for side in ("kafka", "postgres", "sut", "generator"))
        generator = json.loads((out / "generator" / "summary.json").read_text())
        assert [p["cpus_allowed"] for p in generator["per_process"]] == [sorted(load)]
        assert frozenset(load) in seen["kafka"] and frozenset(sut) in seen["postgres"]
        svc = load_services(state)
        for name in seen:  # given back: the services outlive the run
            assert os.sched_getaffinity(svc.pids[name]) == set(CPUS)
    finally:
        done.set()
        stop_services(state)
        shutil.rmtree(state, ignore_errors=True)
