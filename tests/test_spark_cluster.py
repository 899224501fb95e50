"""A real Spark standalone cluster (sdsbench.services.spark_cluster): a Master and two
Workers, each its own JVM on loopback, started from ``.venv/spark``'s pyspark.

- health_check sees 2 ALIVE workers with 2 cores; the pids are distinct Master/Worker JVMs;
- a real application from the Spark venv (driver against ``spark://``) sums
  ``range(1000)`` and runs a Python UDF on 2 executors, one on each worker;
- ``stop()`` while that application still holds its executors leaves no process of the
  cluster: daemons, and the executor JVMs the workers forked;
- a start that times out stops what it started and names the log (a cluster re-created
  in another process stops a running one: tests/test_daemon_groups.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from engine_helpers import assert_daemons_are_jvms, processes_of

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import kill_process_group, pid_alive
from sdsbench.services import ServiceError
from sdsbench.services.spark_cluster import (
    MASTER_CLASS,
    WORKER_CLASS,
    SparkCluster,
    health_check,
    spark_home,
    spark_version,
)

pytestmark = pytest.mark.jvm

SPARK_PYTHON = REPO_ROOT / ".venv" / "spark" / "bin" / "python"
try:
    spark_home()
except ServiceError as e:
    pytest.skip(f"no Spark installation ({e})", allow_module_level=True)
if not SPARK_PYTHON.exists():
    pytest.skip(f"{SPARK_PYTHON} missing: run `bash env/setup.sh spark`", allow_module_level=True)

# The driver: 2 executors of 1 core and 512 MB each (the cluster has 2 workers x 1 core),
# the scheduler waits for both before the job; it writes its results, then keeps the
# application (and so the executors) alive until its stdin closes.
DRIVER = r"""
import json, sys
from pyspark.sql import SparkSession
url, out = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master(url).appName("sdsbench-cluster-test")
         .config("spark.executor.cores", "1").config("spark.cores.max", "2")
         .config("spark.executor.memory", "512m")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.driver.memory", "512m").config("spark.ui.enabled", "false")
         .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
         .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "60s")
         .getOrCreate())
total = spark.range(1000).selectExpr("sum(id)").collect()[0][0]
from pyspark.sql.functions import udf
# a Python UDF: the executors' Python workers run the Spark venv's python (PYSPARK_PYTHON)
plus = spark.range(10).select(udf(lambda x: x + 1, "long")("id").alias("y"))
plus = plus.agg({"y": "sum"}).first()[0]
status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
with open(out + ".tmp", "w") as f:
    json.dump({"sum": total, "executors": status.size() - 1, "udf": plus,
               "app_id": spark.sparkContext.applicationId}, f)
import os; os.replace(out + ".tmp", out)
sys.stdin.read()
"""


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/json/", timeout=5) as resp:
        return json.load(resp)


def test_spark_version_and_unreachable_master() -> None:
    assert spark_version().split(".")[0].isdigit()
    with pytest.raises(ServiceError, match="not reachable"):
        health_check("http://127.0.0.1:1", timeout=1.0)


@pytest.mark.timeout(300)
def test_cluster_runs_an_application_and_stops_everything(tmp_path: Path) -> None:
    run_dir = tmp_path / "spark"
    cluster = SparkCluster(run_dir, workers=2, cores_per_worker=1, worker_memory_mb=1024,
                           settings={"spark.worker.cleanup.enabled": "true"})
    driver = None
    try:
        t0 = time.monotonic()
        url = cluster.start()
        print(f"cluster start {time.monotonic() - t0:.1f} s")
        assert url == cluster.master_url and url.startswith("spark://127.0.0.1:")
        health = health_check(cluster.web_url)
        assert health["workers_alive"] == 2 and health["cores"] == 2
        assert health["memory_mb"] == 2048 and health["status"] == "ALIVE"
        assert health["spark_version"] == spark_version()

        pids = cluster.pids
        assert set(pids) == {"master", "worker-1", "worker-2"}
        assert_daemons_are_jvms(pids, lambda name: MASTER_CLASS if name == "master" else
                                WORKER_CLASS)
        assert cluster.running()

        # A real application on the cluster, from the Spark venv.
        result = tmp_path / "result.json"
        with open(tmp_path / "driver.log", "wb") as log:
            driver = subprocess.Popen(
                [str(SPARK_PYTHON), "-c", DRIVER, url, str(result)], stdin=subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # PYSPARK_PYTHON, not spark.pyspark.python: a driver started as plain python
                # (no spark-submit) hands the executors its PYSPARK_PYTHON, else "python3"
                env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1",
                     "PYSPARK_PYTHON": str(SPARK_PYTHON)})
        deadline = time.monotonic() + 180
        while not result.exists():
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the application did not finish in 180 s"
            time.sleep(0.2)
        out = json.loads(result.read_text())
        assert out["sum"] == 499500 and out["executors"] == 2 and out["udf"] == 55

        # One executor on each worker (the master's and the workers' own view).
        apps = _get_json(cluster.web_url)["activeapps"]
        assert [a["id"] for a in apps] == [out["app_id"]] and apps[0]["cores"] == 2
        for port in cluster.worker_web_ports:
            execs = _get_json(f"http://127.0.0.1:{port}")["executors"]
            assert [e["appid"] for e in execs] == [out["app_id"]]
        executors = {pid: cmd for pid, cmd in processes_of(run_dir).items()
                     if "CoarseGrainedExecutorBackend" in cmd}
        assert len(executors) == 2
        assert {os.getpgid(p) for p in executors} == {pids["worker-1"], pids["worker-2"]}

        # Stop while the application still holds its executors.
        t0 = time.monotonic()
        assert sorted(cluster.stop()) == ["master", "worker-1", "worker-2"]
        print(f"cluster stop {time.monotonic() - t0:.1f} s")
        assert not any(pid_alive(p) for p in [*pids.values(), *executors])
        assert processes_of(run_dir) == {}
        assert not cluster.running() and cluster.stop() == []
    finally:
        if driver is not None:
            kill_process_group(driver)
        cluster.stop()


@pytest.mark.timeout(120)
def test_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "spark"
    cluster = SparkCluster(run_dir, workers=1)
    with pytest.raises(ServiceError, match="master.log"):
        cluster.start(timeout=0.5)  # no JVM opens its web UI this fast
    assert not cluster.running() and processes_of(run_dir) == {}
