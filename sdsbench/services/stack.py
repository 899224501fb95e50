"""Start, find and stop the service stack for the experiment config: PostgreSQL and Kafka
(one node, or a cluster of ``services.kafka.nodes``), and, when the config asks for them,
standalone Flink and Spark clusters that the engines' jobs are submitted to.

State lives in ``state_dir`` (default ``.run/services``)::

    services.json   endpoints, pids, versions, broker kind, the config they were started with
    postgres/       private cluster data dir (when no external DSN)
    kafka/          broker config, data, logs (when no external bootstrap servers); a
                    cluster: node-<id>/ per node
    flink/, spark/  the standalone clusters (services.flink.taskmanagers,
                    services.spark.workers > 0)
    .lock           flock held while starting or stopping

Other processes (runs, engines, the CLI) read ``services.json`` via :func:`load_services`.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdsbench.process_control import (
    kill_process_group,
    pid_alive,
    pid_cmdline,
    read_pid,
    stop_process_groups,
)
from sdsbench.services import ServiceError, flink_cluster, kafka_cluster, spark_cluster
from sdsbench.services import kafka as kafka_svc
from sdsbench.services import postgres as pg_svc

STATE_FILE = "services.json"

DEFAULTS: dict[str, dict[str, Any]] = {
    "postgres": {"dsn": None, "port": 0, "fsync": True},
    "kafka": {
        "bootstrap_servers": None,
        "broker": "apache-kafka",
        "heap_mb": 1024,
        "port": 0,
        "partitions": 4,
        "nodes": 1,
        "min_insync_replicas": 1,
    },
    # 0 task managers / workers: no cluster (each job runs its engine in its own process).
    "flink": {"taskmanagers": 0, "slots_per_taskmanager": 1, "jobmanager_memory_mb": 1024,
              "taskmanager_memory_mb": 1536},
    "spark": {"workers": 0, "cores_per_worker": 1, "worker_memory_mb": 2048},
}
# optional keys besides the schema's: postgres.settings, kafka.settings, kafka.controller_port
# The engines' clusters: the class, and the key of its section that sizes it (0: none).
ENGINE_CLUSTERS: dict[str, tuple[Any, str]] = {
    "flink": (flink_cluster.FlinkCluster, "taskmanagers"),
    "spark": (spark_cluster.SparkCluster, "workers"),
}


@dataclass
class Services:
    """Endpoints of a running stack; written to ``<state_dir>/services.json``."""

    pg_dsn: str
    kafka_bootstrap: str
    broker_kind: str
    versions: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int | None] = field(default_factory=dict)
    external: dict[str, bool] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    state_dir: str = ""
    started_at: float = 0.0
    start_seconds: dict[str, float] = field(default_factory=dict)
    flink_rest: str | None = None  # host:port of the standalone Flink cluster's REST API
    spark_master: str | None = None  # spark://host:port of the standalone Spark cluster
    spark_web: str | None = None  # its master's web UI (JSON status)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Services:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def normalize_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The ``services:`` section with defaults filled in (unknown sections rejected)."""
    cfg = cfg or {}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ServiceError(
            f"unknown services section(s) {sorted(unknown)}: expected {', '.join(DEFAULTS)}"
        )
    out = copy.deepcopy(DEFAULTS)
    for name in DEFAULTS:
        out[name].update(cfg.get(name) or {})
    if not out["kafka"]["bootstrap_servers"]:
        kafka_svc.check_broker_kind(str(out["kafka"]["broker"]))
    return out


# ---------------------------------------------------------------- state file
def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_services(state_dir: Path | str) -> Services | None:
    """The stack recorded in ``state_dir/services.json``, or None (no health check)."""
    path = Path(state_dir) / STATE_FILE
    try:
        return Services.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise ServiceError(
            f"unreadable {path}: {e}; run `scripts/services.py down` to reset"
        ) from e


def check_services(svc: Services, timeout: float = 5.0) -> dict[str, str]:
    """Health of each service: ``{"postgres": "ok"|error, "kafka": "ok"|error}``, and
    ``flink``, ``spark`` when the stack runs those clusters."""
    nodes = int((svc.config.get("kafka") or {}).get("nodes", 1))

    def kafka_probe(bootstrap: str, timeout: float) -> None:
        seen = kafka_svc.health_check(bootstrap, timeout=timeout)
        if not svc.external.get("kafka") and seen < nodes:
            raise ServiceError(f"Kafka at {bootstrap}: {seen} of {nodes} brokers up")

    probes = [("postgres", pg_svc.health_check, svc.pg_dsn),
              ("kafka", kafka_probe, svc.kafka_bootstrap)]
    if svc.flink_rest:
        probes.append(("flink", flink_cluster.health_check, svc.flink_rest))
    if svc.spark_web:
        probes.append(("spark", spark_cluster.health_check, svc.spark_web))
    out: dict[str, str] = {}
    for name, probe, endpoint in probes:
        gone = [pid for label, pid in svc.pids.items()
                if (label == name or label.startswith(f"{name}-")) and pid
                and not svc.external.get(name) and not pid_alive(pid)]
        if gone:
            out[name] = f"process {gone[0]} is gone"
            continue
        try:
            probe(endpoint, timeout=timeout)
            out[name] = "ok"
        except ServiceError as e:
            out[name] = str(e)
    return out


# ---------------------------------------------------------------- start / stop
def _java_version() -> str:
    try:
        r = subprocess.run(
            [kafka_svc.find_java(), "-version"], capture_output=True, text=True, timeout=30
        )
        first = (r.stderr or r.stdout).splitlines()[0]
        return first.split('"')[1] if '"' in first else first
    except (ServiceError, OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def start_services(cfg: dict[str, Any] | None, state_dir: Path | str) -> Services:
    """Start PostgreSQL and Kafka per ``cfg`` (the ``services:`` section) under ``state_dir``.

    External endpoints (``postgres.dsn``, ``kafka.bootstrap_servers``) are only health-checked.
    Raises ServiceError if a stack is already recorded there and still running.
    """
    state_dir = Path(state_dir).resolve()
    with _locked(state_dir):
        return _start_locked(normalize_config(cfg), state_dir)


def _start_locked(cfg: dict[str, Any], state_dir: Path) -> Services:
    old = load_services(state_dir)
    if old is not None and any(v == "ok" for v in check_services(old, timeout=2).values()):
        raise ServiceError(
            f"services already running in {state_dir}: run `scripts/services.py down` first"
        )
    if old is not None:
        _stop_locked(state_dir)
    pg_cfg, k_cfg = cfg["postgres"], cfg["kafka"]
    versions: dict[str, str] = {"python": platform.python_version()}
    pids: dict[str, int | None] = {}
    times: dict[str, float] = {}
    pg_server: pg_svc.PostgresServer | None = None
    started: list[Any] = []  # what to stop when a later service fails to start
    flink_rest = spark_master = spark_web = None
    try:
        t0 = time.monotonic()
        if pg_cfg["dsn"]:
            pg_dsn = str(pg_cfg["dsn"])
            versions["postgres"] = pg_svc.wait_healthy(pg_dsn, timeout=30)
            pids["postgres"] = None
        else:
            pg_server = pg_svc.PostgresServer(
                state_dir / "postgres",
                port=int(pg_cfg["port"]),
                fsync=bool(pg_cfg["fsync"]),
                settings=pg_cfg.get("settings"),
            )
            pg_dsn = pg_server.start()
            versions["postgres"] = pg_svc.health_check(pg_dsn)
            pids["postgres"] = pg_server.pid
        times["postgres"] = round(time.monotonic() - t0, 3)

        t0 = time.monotonic()
        if k_cfg["bootstrap_servers"]:
            bootstrap = str(k_cfg["bootstrap_servers"])
            kafka_svc.wait_healthy(bootstrap, timeout=30)
            broker_kind = "external"
            pids["kafka"] = None
        else:
            broker_kind = kafka_svc.check_broker_kind(str(k_cfg["broker"]))
            kafka = _local_kafka(k_cfg, state_dir)
            started.append(kafka)
            bootstrap = kafka.start()
            pids.update(kafka.pids if isinstance(kafka, kafka_cluster.KafkaCluster)
                        else {"kafka": kafka.pid})
            versions["kafka"] = kafka_svc.kafka_version()
            versions["java"] = _java_version()
        times["kafka"] = round(time.monotonic() - t0, 3)
        for name, (make, size) in ENGINE_CLUSTERS.items():
            if int(cfg[name][size]) > 0:
                t0 = time.monotonic()
                cluster = make(state_dir / name, **cfg[name])
                started.append(cluster)
                endpoint = cluster.start()
                pids.update({f"{name}-{part}": pid for part, pid in cluster.pids.items()})
                if name == "flink":
                    flink_rest = endpoint
                    versions["flink"] = flink_cluster.flink_version()
                else:
                    spark_master, spark_web = endpoint, cluster.web_url
                    versions["spark"] = spark_cluster.spark_version()
                times[name] = round(time.monotonic() - t0, 3)
    except BaseException:
        for service in reversed(started):
            service.stop()
        if pg_server is not None:
            pg_server.stop()
        raise
    try:
        import confluent_kafka

        versions["confluent_kafka"] = str(confluent_kafka.__version__)
        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    svc = Services(
        pg_dsn=pg_dsn,
        kafka_bootstrap=bootstrap,
        broker_kind=broker_kind,
        versions=versions,
        pids=pids,
        external={"postgres": bool(pg_cfg["dsn"]), "kafka": bool(k_cfg["bootstrap_servers"])},
        config=cfg,
        state_dir=str(state_dir),
        started_at=time.time(),
        start_seconds=times,
        flink_rest=flink_rest,
        spark_master=spark_master,
        spark_web=spark_web,
    )
    _write_json_atomic(state_dir / STATE_FILE, svc.to_dict())
    return svc


def _local_kafka(k_cfg: dict[str, Any],
                 state_dir: Path) -> kafka_svc.KafkaBroker | kafka_cluster.KafkaCluster:
    """The stack's own Kafka: one node, or a cluster of ``nodes`` (ports picked free)."""
    common = {"heap_mb": int(k_cfg["heap_mb"]), "partitions": int(k_cfg["partitions"]),
              "settings": k_cfg.get("settings")}
    if int(k_cfg["nodes"]) > 1:
        return kafka_cluster.KafkaCluster(state_dir / "kafka", nodes=int(k_cfg["nodes"]),
                                      min_insync_replicas=int(k_cfg["min_insync_replicas"]),
                                      **common)
    return kafka_svc.KafkaBroker(state_dir / "kafka", port=int(k_cfg["port"]),
                                 controller_port=int(k_cfg.get("controller_port", 0)),
                                 min_insync_replicas=int(k_cfg["min_insync_replicas"]),
                                 **common)


def ensure_services(cfg: dict[str, Any] | None, state_dir: Path | str) -> Services:
    """The stack in ``state_dir`` if healthy and started with ``cfg``; else start one.

    A healthy stack started with a different config is an error (it may serve another run).
    """
    state_dir = Path(state_dir).resolve()
    want = normalize_config(cfg)
    with _locked(state_dir):
        old = load_services(state_dir)
        if old is not None:
            health = check_services(old, timeout=3)
            if all(v == "ok" for v in health.values()):
                if old.config != json.loads(json.dumps(want)):
                    raise ServiceError(
                        f"services in {state_dir} run with another config ({old.config}); "
                        "run `scripts/services.py down` to restart them with this one"
                    )
                return old
            _stop_locked(state_dir)
        return _start_locked(want, state_dir)


def stop_services(state_dir: Path | str, timeout: float = 30.0) -> list[str]:
    """Stop whatever this project started in ``state_dir``; returns what was stopped. Idempotent."""
    state_dir = Path(state_dir).resolve()
    if not state_dir.exists():
        return []
    with _locked(state_dir):
        return _stop_locked(state_dir, timeout)


def _stop_locked(state_dir: Path, timeout: float = 30.0) -> list[str]:
    from sdsbench.engine_session import stop_sessions

    # Engine sessions (Spark, Flink JVMs serving runs) kept with this stack first: they
    # hold broker connections. Only this stack's ($SDSBENCH_ENGINE_SESSIONS_DIR sessions
    # belong to whoever set it: the Snakefile, the test session).
    stopped: list[str] = [f"session {name}" for name in
                          stop_sessions(state_dir / "engine-sessions", timeout_s=timeout)]
    svc = None
    try:
        svc = load_services(state_dir)
    except ServiceError:
        pass
    # The engines' clusters before the broker their jobs read from.
    for name, (make, _size) in ENGINE_CLUSTERS.items():
        if (state_dir / name).exists():
            stopped += [f"{name}-{part}" for part in make(state_dir / name).stop(timeout)]
    kafka_dir = state_dir / "kafka"
    if kafka_dir.exists() and not (svc and svc.external.get("kafka")):
        # A cluster's nodes all at once: stopped one by one, each would first move its
        # partitions' leadership to the others.
        nodes = {f"kafka-{f.parent.name[5:]}": read_pid(f)
                 for f in sorted(kafka_dir.glob("node-*/kafka.pid"))}
        nodes = {label: pid for label, pid in nodes.items()
                 if pid and str(kafka_dir) in pid_cmdline(pid)}
        stopped += stop_process_groups(nodes, timeout)
        broker = kafka_svc.KafkaBroker(kafka_dir)
        broker.pid = read_pid(kafka_dir / "kafka.pid")
        if broker.pid and pid_alive(broker.pid):
            broker.stop(timeout=timeout)
            stopped.append("kafka")
    pg_dir = state_dir / "postgres"
    if (pg_dir / "PG_VERSION").exists() and not (svc and svc.external.get("postgres")):
        server = pg_svc.PostgresServer(pg_dir)
        if (pg_dir / "postmaster.pid").exists():
            server.stop(timeout=timeout)
            stopped.append("postgres")
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def restart_broker(
    svc: Services, down_s: float = 0.0, timeout: float = 90.0,
    on_stopped: Any = None, node: int | None = None, kill: bool = False,
) -> dict[str, Any]:
    """Stop one of the stack's own Kafka nodes, keep it down ``down_s`` seconds, start it
    again on the same ports and data. ``node``: which node of a cluster (None: the single
    broker); ``kill``: SIGKILL (a crash: nothing flushed, no controlled shutdown; its
    partitions' leadership moves only when the quorum notices), else SIGTERM (controlled
    shutdown, logs flushed).

    For fault runs (sdsbench.faults). Holds the state directory's lock meanwhile, so a
    concurrent ``ensure_services`` waits instead of taking the stack for dead. Updates
    ``svc.pids`` and ``services.json``. Returns timings (s) and the old and new pid."""
    if svc.external.get("kafka"):
        raise ServiceError("services.kafka.bootstrap_servers is external: cannot restart it")
    state_dir = Path(svc.state_dir).resolve()
    label = "kafka" if node is None else f"kafka-{node}"
    node_dir = state_dir / "kafka" if node is None else kafka_cluster.node_dir(state_dir / "kafka",
                                                                          node)
    if label not in svc.pids:
        raise ServiceError(f"no Kafka node {node} in this stack ({sorted(svc.pids)})")
    k_cfg = svc.config["kafka"]
    with _locked(state_dir):
        old = kafka_svc.KafkaBroker(node_dir)
        old.pid = svc.pids.get(label) or read_pid(node_dir / "kafka.pid")
        t0 = time.monotonic()
        if kill:
            if old.pid:
                kill_process_group(old.pid, timeout)
        else:
            old.stop(timeout=timeout)
        stop_s = time.monotonic() - t0
        if on_stopped is not None:
            on_stopped()
        time.sleep(down_s)
        # fresh=False: the node's own server.properties (ports, node id, quorum) and data.
        broker = kafka_svc.KafkaBroker(node_dir, heap_mb=int(k_cfg["heap_mb"]))
        t1 = time.monotonic()
        bootstrap = broker.start(timeout=timeout, fresh=False, restart=True)
        if bootstrap not in svc.kafka_bootstrap.split(","):
            raise ServiceError(f"broker came back on {bootstrap}, not in {svc.kafka_bootstrap}")
        svc.pids[label] = broker.pid
        _write_json_atomic(state_dir / STATE_FILE, svc.to_dict())
    return {"stop_s": round(stop_s, 3), "start_s": round(time.monotonic() - t1, 3),
            "node": node, "signal": "SIGKILL" if kill else "SIGTERM",
            "old_pid": old.pid, "new_pid": broker.pid}


def kafka_leaders(svc: Services, topic: str) -> dict[int, int]:
    """Partition -> the node id leading it (the fault's target: killing it moves the
    leadership the generator is writing to)."""
    return {p: info["leader"]
            for p, info in kafka_svc.partition_replicas(svc.kafka_bootstrap, topic).items()}
