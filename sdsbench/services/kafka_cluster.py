"""A Kafka cluster on this machine: ``nodes`` KRaft nodes (``kafka.KafkaBroker``), each a
combined broker and controller on its own loopback ports, together the controller quorum;
and where a cluster's state says which node is its active controller."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sdsbench.process_control import read_pid
from sdsbench.services import ServiceError
from sdsbench.services.kafka import KafkaBroker, random_cluster_id
from sdsbench.services.ports import free_ports


def node_dir(kafka_dir: Path, node_id: int) -> Path:
    """Where node ``node_id`` of a cluster under ``kafka_dir`` keeps its state."""
    return kafka_dir / f"node-{node_id}"


class KafkaCluster:
    """``nodes`` Kafka nodes under ``run_dir`` (``node-<id>/``), each a combined broker and
    controller on its own loopback ports; together they are the controller quorum (a
    majority must run) and hold ``nodes`` replicas of every topic the benchmark creates,
    a write with acks=all needing ``min_insync_replicas`` of them."""

    def __init__(self, run_dir: Path | str, nodes: int = 3, min_insync_replicas: int = 2,
                 heap_mb: int = 1024, partitions: int = 4,
                 settings: dict[str, str] | None = None) -> None:
        if nodes < 2:
            raise ServiceError("a Kafka cluster needs at least 2 nodes (1: KafkaBroker)")
        if not 1 <= min_insync_replicas <= nodes:
            raise ServiceError(f"min.insync.replicas {min_insync_replicas} must lie in 1..{nodes}")
        self.run_dir = Path(run_dir).resolve()
        self.brokers = [KafkaBroker(node_dir(self.run_dir, i), heap_mb=heap_mb,
                                    partitions=partitions, settings=settings, node_id=i,
                                    min_insync_replicas=min_insync_replicas)
                        for i in range(1, nodes + 1)]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def pids(self) -> dict[str, int | None]:
        return {f"kafka-{b.node_id}": b.pid for b in self.brokers}

    def start(self, timeout: float = 120.0) -> str:
        """Format every node for one cluster id, start them all, wait until each sees all
        brokers; returns the bootstrap servers (every node)."""
        t0 = time.monotonic()
        ports = iter(free_ports(2 * len(self.brokers)))
        for b in self.brokers:
            b.port, b.controller_port = next(ports), next(ports)
        voters = {b.node_id: b.controller_port for b in self.brokers}
        cluster_id = random_cluster_id()
        try:
            for b in self.brokers:
                b.voters, b.cluster_id = voters, cluster_id
                b.launch()
            for b in self.brokers:
                b.wait_ready(timeout - (time.monotonic() - t0), brokers=len(self.brokers))
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def node(self, node_id: int) -> KafkaBroker:
        return self.brokers[node_id - 1]

    def stop(self, timeout: float = 30.0) -> list[str]:
        stopped = []
        for b in self.brokers:
            if b.pid is None:
                b.pid = read_pid(b.run_dir / "kafka.pid")
            if b.running():
                b.stop(timeout)
                stopped.append(f"kafka-{b.node_id}")
        return stopped


def quorum_leader(kafka_dir: Path) -> int | None:
    """The node id leading the controller quorum of the cluster under ``kafka_dir`` (the
    active controller), from the nodes' ``quorum-state`` files: the newest epoch wins."""
    best: tuple[int, int] | None = None
    for path in kafka_dir.glob("node-*/metadata/__cluster_metadata-0/quorum-state"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if int(state.get("leaderId", -1)) >= 0:
            best = max(best or (-1, -1), (int(state["leaderEpoch"]), int(state["leaderId"])))
    return best[1] if best else None
