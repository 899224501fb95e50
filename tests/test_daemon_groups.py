"""Both engine clusters (sdsbench.services.daemons.DaemonGroup): a cluster re-created from
its run_dir in another Python process, as ``scripts/services.py down`` does, finds the
running one, stops every daemon and leaves no process."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import processes_of

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import pid_alive
from sdsbench.services import ServiceError

pytestmark = pytest.mark.jvm

# module, class, small settings, daemons, the attribute naming its address
CLUSTERS = {
    "flink": ("sdsbench.services.flink_cluster", "FlinkCluster",
              {"taskmanagers": 2, "slots_per_taskmanager": 1, "jobmanager_memory_mb": 768,
               "taskmanager_memory_mb": 1024},
              ["jobmanager", "taskmanager-1", "taskmanager-2"], "rest_address"),
    "spark": ("sdsbench.services.spark_cluster", "SparkCluster",
              {"workers": 2, "worker_memory_mb": 512},
              ["master", "worker-1", "worker-2"], "master_url"),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engine", sorted(CLUSTERS))
def test_recreated_cluster_stops_a_running_one(engine: str, tmp_path: Path) -> None:
    module_name, class_name, settings, daemons, address = CLUSTERS[engine]
    module = importlib.import_module(module_name)
    if not (REPO_ROOT / ".venv" / engine).is_dir():
        pytest.skip(f".venv/{engine} missing: run `bash env/setup.sh {engine}`")
    try:
        getattr(module, f"{engine}_home")()
    except ServiceError as e:
        pytest.skip(f"no {engine} installation ({e})")
    run_dir = tmp_path / engine
    cluster = getattr(module, class_name)(run_dir, **settings)
    try:
        cluster.start()
        pids = cluster.pids
        script = (f"import json, sys; from {module_name} import {class_name}; "
                  f"c = {class_name}(sys.argv[1]); "
                  f"print(json.dumps([c.{address}, c.running(), c.stop(), c.stop()]))")
        r = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True,
                           text=True, timeout=90, cwd=REPO_ROOT)
        assert r.returncode == 0, r.stderr
        found, was_running, stopped, again = json.loads(r.stdout.strip().splitlines()[-1])
        assert found == getattr(cluster, address) and was_running
        assert sorted(stopped) == daemons and again == []
        assert not any(pid_alive(p) for p in pids.values())
        assert processes_of(run_dir) == {} and not cluster.running()
    finally:
        cluster.stop()
