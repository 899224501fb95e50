"""Cluster mode (config/cluster.yaml): the services as real multi-process clusters -- 3 Kafka
nodes with every topic replicated 3 times, a Flink standalone cluster (1 JobManager, 2
TaskManagers), a Spark standalone cluster (1 master, 2 workers) -- and the pipelines on them:
a Flink job submitted to the JobManager, a Spark query on executors of the workers (given
the clusters' addresses as if they were a user's own clusters), a Kafka node killed with
SIGKILL mid-run with nothing lost, and nothing left running after the stack is stopped.

One stack for the module (about 40 s to start); PostgreSQL is the session's. Small runs:
2000 ev/s for 20 s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdsbench.config import load_config
from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import pid_alive

pytestmark = [pytest.mark.jvm, pytest.mark.timeout(900)]

ENGINES_READY = all((REPO_ROOT / ".venv" / e / "bin" / "python").exists()
                    for e in ("spark", "flink"))
if not ENGINES_READY:
    pytest.skip("run `bash env/setup.sh spark flink`", allow_module_level=True)

CLUSTER_SERVICES = {
    "kafka": {"nodes": 3, "min_insync_replicas": 2, "heap_mb": 512},
    "flink": {"taskmanagers": 2, "slots_per_taskmanager": 1, "jobmanager_memory_mb": 768,
              "taskmanager_memory_mb": 1024},
    "spark": {"workers": 2, "cores_per_worker": 1, "worker_memory_mb": 1024},
}


@pytest.fixture(scope="module")
def cluster(services: Any) -> Iterator[tuple[Any, Path, dict[str, Any]]]:
    """(the cluster stack's Services, its state dir, its services config)."""
    from sdsbench.services.stack import start_services, stop_services

    state = Path(tempfile.mkdtemp(prefix="sdsbench-test-cluster-"))
    state.chmod(0o755)
    cfg = {**CLUSTER_SERVICES, "postgres": {"dsn": services.pg_dsn}}
    try:
        yield start_services(cfg, state), state, cfg
    finally:
        stop_services(state)
        shutil.rmtree(state, ignore_errors=True)


def _run(config: dict[str, Any], pipeline: str, services_dir: Path, out: Path,
         params: dict[str, Any] | None = None,
         fault: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """A 20 s run at 2000 ev/s and its summary (the runs table's row)."""
    from sdsbench.analysis.summarize import write_run_summary
    from sdsbench.experiments import make_spec
    from sdsbench.runner import execute_run

    run_id = f"t-{pipeline}-{uuid.uuid4().hex[:6]}"
    spec = make_spec(config, pipeline, "constant", 2000, params=params, run_id=run_id,
                     duration_s=20)
    if fault:
        spec["fault"] = fault
    run = execute_run(config, spec, out / "raw" / run_id, services_dir)
    summary = out / "summary"
    write_run_summary(run, config, summary / "runs" / f"{run_id}.json",
                      summary / "windows" / f"{run_id}.csv", summary / "series" / f"{run_id}.csv")
    return run, json.loads((summary / "runs" / f"{run_id}.json").read_text())["row"]


def _exact(summary: dict[str, Any]) -> None:
    assert summary["correct_where_not_dropped"], {k: summary.get(k) for k in (
        "exact_windows", "missing_windows", "exact_ratio", "correctness_source")}
    assert summary["missing_windows"] == 0


def test_three_kafka_nodes_replicate_every_topic_and_engines_clusters_are_up(cluster) -> None:
    from confluent_kafka.admin import ConfigResource

    from sdsbench.services.kafka import _admin, create_topic, partition_replicas
    from sdsbench.services.stack import check_services

    svc, _state, _cfg = cluster
    assert check_services(svc) == {"postgres": "ok", "kafka": "ok", "flink": "ok",
                                   "spark": "ok"}
    assert len(svc.kafka_bootstrap.split(",")) == 3
    kafka_pids = [svc.pids[f"kafka-{i}"] for i in (1, 2, 3)]
    assert len(set(kafka_pids)) == 3 and all(pid_alive(p) for p in kafka_pids)
    assert {"flink-jobmanager", "flink-taskmanager-1", "flink-taskmanager-2", "spark-master",
            "spark-worker-1", "spark-worker-2"} <= set(svc.pids)

    topic = f"t-replicated-{uuid.uuid4().hex[:6]}"
    create_topic(svc.kafka_bootstrap, topic, 4)  # the broker's default replication
    replicas = partition_replicas(svc.kafka_bootstrap, topic)
    assert len(replicas) == 4
    for info in replicas.values():
        assert sorted(info["replicas"]) == [1, 2, 3]
        assert sorted(info["isr"]) == [1, 2, 3]  # every replica in sync
    # Leadership is spread over the nodes.
    assert len({info["leader"] for info in replicas.values()}) >= 2
    resource = ConfigResource("topic", topic)
    admin = _admin(svc.kafka_bootstrap)  # kept: the future needs its client alive
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["min.insync.replicas"].value == "2"


def test_flink_job_runs_on_the_standalone_cluster(cluster, tmp_path: Path) -> None:
    from sdsbench.services.flink_cluster import health_check

    svc, state, cfg = cluster
    config = load_config(overrides={
        "services": cfg, "run": {"drain_timeout_s": 150},
        "flink": {"jobmanager_address": "cluster", "parallelism": 2, "warmup_events": 0,
                  "checkpoint_interval_ms": 1000},
    })
    run, summary = _run(config, "flink", state, tmp_path)
    _exact(summary)
    ready = json.loads((run / "flink" / "ready.json").read_text())
    assert ready["rest_url"] == f"http://{svc.flink_rest}"
    assert ready["settings"]["execution.target"] == "remote"
    # The job ran on the TaskManagers: both slots were taken while it ran (the overview
    # now shows them free again), and their processes were sampled as the SUT.
    assert health_check(svc.flink_rest)["slots_total"] == 2
    resources = (run / "metrics" / "resources.csv").read_text()
    tm_pids = {str(svc.pids["flink-taskmanager-1"]), str(svc.pids["flink-taskmanager-2"])}
    assert all(f",process,{pid}," in resources for pid in tm_pids)
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["services"]["flink_cluster"]["rest"] == svc.flink_rest
    assert provenance["services"]["flink_cluster"]["taskmanagers"] == 2
    assert provenance["services"]["kafka_cluster"]["nodes"] == 3


def test_spark_query_runs_on_the_cluster_given_as_external_addresses(
    cluster, services: Any, tmp_path: Path
) -> None:
    """The README's "your own clusters": every address given, the project starts nothing."""
    from sdsbench.services.stack import load_services

    svc, _state, _cfg = cluster
    config = load_config(overrides={
        "services": {"postgres": {"dsn": services.pg_dsn},
                     "kafka": {"bootstrap_servers": svc.kafka_bootstrap}},
        "run": {"drain_timeout_s": 150},
        "spark": {"master": svc.spark_master, "shuffle_partitions": 2, "warmup_events": 0,
                  "extra_conf": {"spark.cores.max": "2", "spark.executor.cores": "1",
                                 "spark.executor.memory": "768m"}},
    })
    own = tmp_path / "services"
    run, summary = _run(config, "spark", own, tmp_path)
    _exact(summary)
    recorded = load_services(own)
    assert recorded.pids == {"postgres": None, "kafka": None}  # nothing of its own
    ready = json.loads((run / "spark" / "ready.json").read_text())
    assert ready["engine_reported"]["master"] == svc.spark_master
    # Each worker ran an executor of the application (finished now, with the run).
    master = json.loads(_get(f"{svc.spark_web}/json/"))
    app = next(a for a in master["completedapps"] if a["name"] == f"sdsbench-ctr-{run.name}")
    ran_on = [w["id"] for w in master["workers"] if any(
        e["appid"] == app["id"]
        for e in json.loads(_get(f"{w['webuiaddress']}/json/"))["finishedexecutors"])]
    assert len(ran_on) == 2, master["workers"]


def _get(url: str) -> str:
    from urllib.request import urlopen

    with urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.mark.parametrize("pipeline, target", [("a2", "leader"), ("a2", "controller"),
                                              ("a3", "leader")])
def test_a_kafka_node_killed_mid_run_loses_nothing(cluster, tmp_path: Path, pipeline: str,
                                                   target: str) -> None:
    from sdsbench.analysis.faults import fault_row
    from sdsbench.services.kafka_cluster import quorum_leader
    from sdsbench.services.stack import check_services, load_services

    _svc, state, cfg = cluster
    config = load_config(overrides={"services": cfg, "run": {"drain_timeout_s": 150}})
    fault = {"kind": "broker_kill", "at_s": 6, "down_s": 3, "target": target}
    controller = quorum_leader(state / "kafka")
    run, summary = _run(config, pipeline, state, tmp_path, fault=fault)
    record = json.loads((run / "metrics" / "faults.json").read_text())
    stop = next(e for e in record["events"] if e["step"] == "broker_stop")
    started = next(e for e in record["events"] if e["step"] == "broker_started")
    assert record["injected"] and started["signal"] == "SIGKILL"
    assert stop["node"] in (1, 2, 3) and started["new_pid"] != started["old_pid"]
    if target == "controller":  # the active controller was killed: another one took over
        assert stop["node"] == controller and quorum_leader(state / "kafka") != controller
    assert not pid_alive(started["old_pid"])
    # The stack knows the new node; all three serve again.
    after = load_services(state)
    assert after.pids[f"kafka-{stop['node']}"] == started["new_pid"]
    assert check_services(after)["kafka"] == "ok"  # 3 brokers seen
    spec = json.loads((run / "provenance.json").read_text())["spec"]
    row = fault_row(spec, config, tmp_path / "summary", tmp_path / "raw", None)
    assert row["lost_windows"] == 0 and row["lost_events"] == 0, row
    assert row["excess_events"] == 0 and row["survived"], row
    _exact(summary)


def test_stopping_the_stack_leaves_no_process(cluster) -> None:
    from engine_helpers import processes_of

    from sdsbench.services.stack import load_services, stop_services

    _svc, state, _cfg = cluster
    pids = [pid for pid in load_services(state).pids.values() if pid]
    stopped = stop_services(state)
    assert {"kafka-1", "kafka-2", "kafka-3", "flink-jobmanager", "spark-master"} <= set(stopped)
    assert not any(pid_alive(pid) for pid in pids)
    assert processes_of(state) == {}
