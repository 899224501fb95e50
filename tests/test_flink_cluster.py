"""A real Apache Flink standalone session cluster (sdsbench.services.flink_cluster): a
JobManager and two TaskManagers, each its own JVM on loopback, started from the
distribution in ``.venv/flink``'s pyflink.

- health_check sees 2 TaskManagers with 2 slots of Flink 2.3.0; the pids are distinct
  JobManager/TaskManager JVMs, each leading its own process group;
- ``stop()`` leaves no process of the cluster (one re-created in another process does
  too: tests/test_daemon_groups.py);
- a start that times out stops what it started and names the logs.
No job runs here (tests/test_cluster.py submits one).
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from engine_helpers import assert_daemons_are_jvms, processes_of

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import pid_alive
from sdsbench.services import ServiceError
from sdsbench.services.flink_cluster import (
    JOBMANAGER_CLASS,
    TASKMANAGER_CLASS,
    FlinkCluster,
    flink_home,
    flink_version,
    health_check,
)

pytestmark = pytest.mark.jvm

if not (REPO_ROOT / ".venv" / "flink").is_dir():
    pytest.skip(f"{REPO_ROOT / '.venv' / 'flink'} missing: run `bash env/setup.sh flink`",
                allow_module_level=True)
try:
    flink_home()
except ServiceError as e:
    pytest.skip(f"no Flink distribution ({e})", allow_module_level=True)

SMALL = {"taskmanagers": 2, "slots_per_taskmanager": 1, "jobmanager_memory_mb": 768,
         "taskmanager_memory_mb": 1024}


def test_flink_version_and_unreachable_rest_api() -> None:
    assert flink_version() == "2.3.0"
    with pytest.raises(ServiceError, match="not reachable"):
        health_check("127.0.0.1:1", timeout=1.0)


@pytest.mark.timeout(240)
def test_cluster_starts_registers_its_slots_and_stops_everything(tmp_path: Path) -> None:
    run_dir = tmp_path / "flink"
    cluster = FlinkCluster(run_dir, **SMALL)
    try:
        t0 = time.monotonic()
        address = cluster.start()
        print(f"cluster start {time.monotonic() - t0:.1f} s")
        assert address == cluster.rest_address and address.startswith("127.0.0.1:")
        assert health_check(address) == {"flink_version": "2.3.0", "taskmanagers": 2,
                                         "slots_total": 2}
        with urllib.request.urlopen(f"http://{address}/taskmanagers", timeout=5) as resp:
            tms = json.load(resp)["taskmanagers"]
        assert sorted(tm["id"] for tm in tms) == ["taskmanager-1", "taskmanager-2"]
        assert all(tm["slotsNumber"] == 1 for tm in tms)

        pids = cluster.pids
        assert set(pids) == {"jobmanager", "taskmanager-1", "taskmanager-2"}
        assert_daemons_are_jvms(
            pids, lambda name: JOBMANAGER_CLASS if name == "jobmanager" else TASKMANAGER_CLASS)
        assert cluster.running()
        # the config the module wrote, and the scripts' pid files kept under run_dir
        conf = (run_dir / "conf" / "config.yaml").read_text()
        assert "metrics.fetcher.update-interval: 200 ms" in conf
        assert "taskmanager.load-balance.mode: SLOTS" in conf
        assert (run_dir / "tmp" / "flink-jobmanager-standalonesession.pid").exists()

        t0 = time.monotonic()
        assert sorted(cluster.stop()) == ["jobmanager", "taskmanager-1", "taskmanager-2"]
        print(f"cluster stop {time.monotonic() - t0:.1f} s")
        assert not any(pid_alive(p) for p in pids.values())
        assert processes_of(run_dir) == {}
        assert not cluster.running() and cluster.stop() == []
    finally:
        cluster.stop()


@pytest.mark.timeout(120)
def test_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "flink"
    cluster = FlinkCluster(run_dir, taskmanagers=1, jobmanager_memory_mb=768,
                           taskmanager_memory_mb=1024)
    with pytest.raises(ServiceError, match=r"jobmanager.*\.(log|launch)"):
        cluster.start(timeout=0.5)  # no JobManager answers this fast
    assert not cluster.running() and processes_of(run_dir) == {}
