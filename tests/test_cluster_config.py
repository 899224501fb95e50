"""Cluster mode without servers: the cluster profile's runs and settings, how a pipeline
finds the stack's clusters, the broker_kill fault's settings, and what the analysis and
figures make of a profile with clusters and fewer groups."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from sdsbench.config import ConfigError, load_config
from sdsbench.experiments import FAULTS, cluster_settings, expand_runs, run_groups, run_settings
from sdsbench.paths import REPO_ROOT

CONFIG = REPO_ROOT / "config"


def _cluster_config() -> dict:
    return load_config(CONFIG / "config.yaml", CONFIG / "cluster.yaml")


def test_the_cluster_profile_runs_the_event_time_pipelines_and_kills_a_broker_under_each() -> None:
    config = _cluster_config()
    runs, groups = expand_runs(config), run_groups(config)
    assert config["profile"] == "cluster"
    assert {runs[r]["pipeline"] for r in groups["event_time"]} == {"a3", "spark", "flink"}
    assert groups["baseline"] == [] and groups["watermark_delay"] == []
    kills = [runs[r] for r in groups[FAULTS] if runs[r].get("fault")]
    assert {(s["pipeline"], s["fault"]["target"]) for s in kills} == {
        (p, t) for p in ("a2", "a3", "spark", "flink") for t in ("leader", "controller")}
    for spec in kills:
        assert spec["fault"]["kind"] == "broker_kill"
        assert spec["run_id"].endswith(f"-killbroker-{spec['fault']['target']}")
        # the reference: the same events, no fault
        ref = runs[spec["reference_run"]]
        assert ref["seed"] == spec["seed"] and "fault" not in ref


def test_clusters_are_run_settings_only_where_a_profile_has_them() -> None:
    quick = load_config(CONFIG / "config.yaml")
    full = load_config(CONFIG / "config.yaml", CONFIG / "full.yaml")
    assert cluster_settings(quick) == {} and cluster_settings(full) == {}
    spec = next(iter(expand_runs(quick).values()))
    assert set(run_settings(quick, spec)) == {"pipeline", "workload", "run", "partitions"}
    cluster = cluster_settings(_cluster_config())
    assert cluster["kafka_cluster"] == {"nodes": 3, "min_insync_replicas": 2}
    assert cluster["flink_cluster"]["taskmanagers"] == 2
    assert cluster["spark_cluster"]["workers"] == 2


@pytest.mark.parametrize("bad, key", [
    ({"services": {"flink": {"taskmanagers": -1}}}, "services.flink.taskmanagers"),
    ({"services": {"spark": {"workerz": 2}}}, "services.spark"),
    ({"spark": {"master": "cluster[0]"}}, "spark.master"),
    ({"flink": {"jobmanager_address": "clusters"}}, "flink.jobmanager_address"),
])
def test_a_bad_cluster_setting_names_its_key(bad: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=bad)


def test_broker_kill_settings_are_checked() -> None:
    from sdsbench.faults import validate_fault

    fault = validate_fault({"kind": "broker_kill", "at_s": 5}, 20)
    assert fault == {"kind": "broker_kill", "at_s": 5.0, "down_s": 2.0, "target": "leader"}
    with pytest.raises(ValueError, match="fault.target"):
        validate_fault({"kind": "broker_kill", "at_s": 5, "target": "follower"}, 20)


def test_spark_master_cluster_is_the_stacks_master_with_n_one_core_executors() -> None:
    from engines.spark.pipeline import cluster_master

    services = SimpleNamespace(spark_master="spark://127.0.0.1:7077")
    assert cluster_master("local[2]", services) == ("local[2]", {})
    assert cluster_master("spark://h:1", services) == ("spark://h:1", {})
    master, conf = cluster_master("cluster[2]", services)
    assert master == "spark://127.0.0.1:7077"
    assert conf["spark.cores.max"] == "2" and conf["spark.executor.cores"] == "1"
    assert "spark.cores.max" not in cluster_master("cluster", services)[1]
    with pytest.raises(RuntimeError, match="services.spark.workers"):
        cluster_master("cluster", SimpleNamespace(spark_master=None))


def test_a_cluster_master_s_executors_are_the_spark_run_s_parallelism() -> None:
    from sdsbench.analysis.engine_metrics import parallelism_of

    assert parallelism_of("spark", {"master": "cluster[2]"}) == 2
    assert parallelism_of("spark", {"master": "local[1]"}) == 1
    assert math.isnan(parallelism_of("spark", {"master": "cluster"}))


def test_flink_cluster_address_is_the_stacks_jobmanager() -> None:
    from engines.flink.pipeline import stack_jobmanager

    assert stack_jobmanager(SimpleNamespace(flink_rest="127.0.0.1:8081")) == "127.0.0.1:8081"
    with pytest.raises(RuntimeError, match="services.flink.taskmanagers"):
        stack_jobmanager(SimpleNamespace(flink_rest=None))


def test_the_active_controller_is_the_newest_epochs_leader(tmp_path: Path) -> None:
    from sdsbench.services.kafka_cluster import quorum_leader

    def state(node: int, leader: int, epoch: int) -> None:
        path = tmp_path / f"node-{node}" / "metadata" / "__cluster_metadata-0" / "quorum-state"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"leaderId": leader, "leaderEpoch": epoch}))

    assert quorum_leader(tmp_path) is None
    state(1, 1, 1)  # node 1's view is stale: it was down while 3 was elected
    state(2, 3, 2)
    state(3, 3, 2)
    assert quorum_leader(tmp_path) == 3


def test_a_kafka_cluster_s_cpu_is_the_sum_over_its_nodes() -> None:
    from sdsbench.analysis.cpu_cost import steady_cpu

    rows = []
    for t in (1000, 2000, 3000):
        rows += [(t, "sut", -1, "", 50.0, 100.0)]
        rows += [(t, "service", 10 + i, f"kafka-{i}", 10.0 * i, 100.0) for i in (1, 2, 3)]
    resources = pd.DataFrame(rows, columns=["time_ms", "scope", "pid", "name", "cpu_percent",
                                            "rss_mb"])
    rate = pd.DataFrame({"second": [0, 1, 2, 3], "sent": [1000] * 4})
    out = steady_cpu(resources, rate, 0.0, 0.0, 4000.0)
    assert out["cpu_kafka_core_share"] == pytest.approx(0.6)  # 10 + 20 + 30 % of a core
    assert out["cpu_sut_core_share"] == pytest.approx(0.5)
    assert math.isnan(out["cpu_postgres_core_share"])


def test_a_profile_without_a_group_draws_none_of_its_figures() -> None:
    from sdsbench.experiments import searches
    from sdsbench.plots.common import figure_inputs

    config = _cluster_config()
    names = set(figure_inputs("s", expand_runs(config), run_groups(config), searches(config)))
    assert {"event_time_spp", "latency_over_time_event_time", "parallelism", "cpu_cost",
            "e2e_latency_all"} <= names
    assert not names & {"a1_a2_throughput_latency", "latency_over_time_a1_a2",
                        "watermark_delay", "latency_vs_rate", "event_time_mmpp",
                        "mmpp_latency_over_time"}
    quick = load_config(CONFIG / "config.yaml")
    assert len(figure_inputs("s", expand_runs(quick), run_groups(quick), searches(quick))) == 11
