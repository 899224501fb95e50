"""Real Apache Kafka in KRaft mode: one combined broker+controller node, a cluster of such
nodes forming the controller quorum (``KafkaCluster``), or an external cluster.

A node runs from the jars that ``env/setup.sh kafka`` resolves from Maven Central into
``.deps/kafka/lib`` -- exactly what the distribution's scripts do:
``kafka.tools.StorageTool format`` once, then ``java ... kafka.Kafka server.properties``
with the project's log4j2 config and a heap cap. Config comes from
``env/kafka/server.properties.template``. Topic helpers use confluent_kafka.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from string import Template
from typing import Any

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import pid_alive, terminate_pid
from sdsbench.services import ServiceError
from sdsbench.services.ports import LOOPBACK, free_ports, port_in_use, wait_for_port

KAFKA_LIB = REPO_ROOT / ".deps" / "kafka" / "lib"
KAFKA_ENV = REPO_ROOT / "env" / "kafka"
BROKER_KINDS = ("apache-kafka", "noida-db")


def _admin(bootstrap: str, timeout: float = 10.0):  # -> confluent_kafka.admin.AdminClient
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError as e:  # pragma: no cover - every venv has it
        raise ServiceError(
            "confluent-kafka not installed in this venv: run `bash env/setup.sh`"
        ) from e
    import logging

    quiet = logging.getLogger("sdsbench.services.kafka.librdkafka")
    quiet.setLevel(logging.CRITICAL)
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": int(max(1.0, timeout) * 1000),
            "logger": quiet,
        }
    )


# ---------------------------------------------------------------- health / topic helpers
def health_check(bootstrap: str, timeout: float = 5.0) -> int:
    """AdminClient ``list_topics`` metadata request; returns the broker count.

    Raises ServiceError when the broker does not answer within ``timeout`` s.
    """
    try:
        md = _admin(bootstrap, timeout).list_topics(timeout=timeout)
    except Exception as e:
        raise ServiceError(f"Kafka at {bootstrap} is not healthy: {e}") from e
    if not md.brokers:
        raise ServiceError(f"Kafka at {bootstrap} reports no brokers")
    return len(md.brokers)


def wait_healthy(bootstrap: str, timeout: float = 60.0) -> int:
    """Retry :func:`health_check` until it passes or ``timeout`` s elapse."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return health_check(bootstrap, timeout=min(5.0, max(1.0, deadline - time.monotonic())))
        except ServiceError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 4,
    config: dict[str, str] | None = None,
    replication: int = -1,
    timeout: float = 30.0,
    exist_ok: bool = False,
) -> None:
    """Create topic ``name`` and wait until its metadata shows every partition.

    ``replication`` -1: the broker's ``default.replication.factor`` (one node: 1; the
    project's cluster: every node)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)
    topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication,
        config={k: str(v) for k, v in (config or {}).items()},
    )
    fut = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)[name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        err = e.args[0]
        if not (exist_ok and err.code() == err.TOPIC_ALREADY_EXISTS):
            raise ServiceError(
                f"could not create topic {name!r} on {bootstrap}: {err.str()}"
            ) from e
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) >= partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise ServiceError(
        f"topic {name!r} created but its partitions have no leader after {timeout} s"
    )


def delete_topics(
    bootstrap: str, names: Iterable[str], timeout: float = 30.0, missing_ok: bool = True
) -> None:
    """Delete topics; unknown topics are ignored when ``missing_ok``."""
    from confluent_kafka import KafkaException

    names = list(names)
    if not names:
        return
    admin = _admin(bootstrap)
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except KafkaException as e:
            err = e.args[0]
            if not (missing_ok and err.code() == err.UNKNOWN_TOPIC_OR_PART):
                raise ServiceError(
                    f"could not delete topic {name!r} on {bootstrap}: {err.str()}"
                ) from e


def list_topics(bootstrap: str, timeout: float = 10.0) -> list[str]:
    """Names of the non-internal topics."""
    md = _admin(bootstrap).list_topics(timeout=timeout)
    return sorted(t for t in md.topics if not t.startswith("__"))


def end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """High watermark (next offset) of every partition of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "sdsbench-offsets",
            "enable.auto.commit": False,
        }
    )
    try:
        md = consumer.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None:
            raise ServiceError(f"topic {topic!r} not found on {bootstrap}")
        out: dict[int, int] = {}
        for p in sorted(md.partitions):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout, cached=False
            )
            out[p] = int(high)
        return out
    finally:
        consumer.close()


# ---------------------------------------------------------------- the broker
def random_cluster_id() -> str:
    """A cluster id like ``kafka-storage random-uuid`` prints (URL-safe base64, 16 random bytes)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def kafka_version(lib_dir: Path = KAFKA_LIB) -> str:
    """Kafka version from the broker jar name (``kafka_2.13-4.4.0.jar`` -> ``4.4.0``)."""
    for jar in sorted(lib_dir.glob("kafka_2.*-*.jar")):
        m = re.match(r"kafka_2\.\d+-(.+)\.jar$", jar.name)
        if m:
            return m.group(1)
    raise ServiceError(f"no Kafka broker jar in {lib_dir}: run `bash env/setup.sh kafka`")


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = (
        str(Path(home) / "bin" / "java")
        if home and (Path(home) / "bin" / "java").exists()
        else shutil.which("java")
    )
    if not java:
        raise ServiceError(
            "java not found: install OpenJDK 17 "
            "(apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return java


class KafkaBroker:
    """One Apache Kafka node in KRaft mode under ``run_dir`` (config, data, logs).

    ``port``/``controller_port`` 0 pick free ports. ``heap_mb`` caps the JVM heap.
    ``settings`` adds or overrides server.properties keys. A node of a cluster
    (:class:`KafkaCluster`) has its ``node_id`` and the quorum's ``voters``.
    """

    def __init__(
        self,
        run_dir: Path | str,
        port: int = 0,
        controller_port: int = 0,
        heap_mb: int = 1024,
        partitions: int = 4,
        settings: dict[str, str] | None = None,
        lib_dir: Path = KAFKA_LIB,
        node_id: int = 1,
        voters: dict[int, int] | None = None,
        min_insync_replicas: int = 1,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.port = int(port or 0)
        self.controller_port = int(controller_port or 0)
        self.node_id = int(node_id)
        # A cluster's static controller quorum, node id -> controller port (this node's
        # among them); None: a single node that formats itself as the only voter.
        self.voters = dict(voters) if voters else None
        self.min_insync_replicas = int(min_insync_replicas)
        self.heap_mb = int(heap_mb)
        self.partitions = int(partitions)
        self.settings = {k: str(v) for k, v in (settings or {}).items()}
        self.lib_dir = Path(lib_dir)
        self.cluster_id: str | None = None  # the nodes of a cluster share one
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.start_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def _classpath(self) -> str:
        if not self.lib_dir.is_dir() or not any(self.lib_dir.glob("kafka_2.*.jar")):
            raise ServiceError(
                f"Kafka jars missing in {self.lib_dir}: run `bash env/setup.sh kafka`"
            )
        return str(self.lib_dir / "*")

    def _java(self, main: str, *args: str, heap_mb: int) -> list[str]:
        return [
            find_java(),
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_ENV / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            self._classpath(),
            main,
            *args,
        ]

    def _pick_ports(self, restart: bool = False) -> None:
        for attr, key in (("port", "port"), ("controller_port", "controller_port")):
            value = getattr(self, attr)
            if value == 0:
                value = free_ports(1, taken=(self.port, self.controller_port))[0]
                setattr(self, attr, value)
            # A restart on the ports the broker just left skips the check: its closed
            # connections linger in TIME_WAIT, which its SO_REUSEADDR listener ignores.
            elif not restart and port_in_use(value):
                raise ServiceError(
                    f"Kafka {key.replace('_', ' ')} {value} is already in use on {LOOPBACK}: "
                    "stop what listens there (`scripts/services.py down`) "
                    f"or set services.kafka.{key}: 0 to pick a free port"
                )

    def _write_config(self) -> None:
        template = Template((KAFKA_ENV / "server.properties.template").read_text())
        extra = "\n".join(f"{k}={v}" for k, v in self.settings.items())
        if self.voters:
            quorum = "controller.quorum.voters=" + ",".join(
                f"{node}@{LOOPBACK}:{port}" for node, port in sorted(self.voters.items()))
        else:
            quorum = f"controller.quorum.bootstrap.servers={LOOPBACK}:{self.controller_port}"
        text = template.substitute(
            node_id=self.node_id,
            quorum=quorum,
            replication=len(self.voters) if self.voters else 1,
            min_isr=self.min_insync_replicas,
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=self.run_dir / "data",
            metadata_dir=self.run_dir / "metadata",
            partitions=self.partitions,
            offsets_partitions=4,
            segment_bytes=256 * 1024 * 1024,
            extra=("# overrides from services.kafka.settings\n" + extra) if extra else "",
        )
        self.config_file.write_text(text)

    def _format(self) -> None:
        if (self.run_dir / "metadata" / "meta.properties").exists():
            # formatted before: keep the data, but controller/listener ports must not change
            return
        # A static quorum (controller.quorum.voters) is formatted without --standalone.
        quorum_args = [] if self.voters else ["--standalone"]
        r = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                *quorum_args,
                "-t",
                self.cluster_id or random_cluster_id(),
                "-c",
                str(self.config_file),
                heap_mb=256,
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise ServiceError(
                f"kafka StorageTool format failed: {(r.stderr or r.stdout).strip()[-800:]}"
            )

    def start(self, timeout: float = 90.0, fresh: bool = True, restart: bool = False) -> str:
        """Format storage, start the broker, wait until healthy; returns bootstrap servers.

        ``fresh`` (default) wipes data and metadata left by an earlier start in ``run_dir``;
        ``fresh=False`` keeps them and the configuration they were formatted with (its
        ports, node id and quorum).
        ``restart`` (with ``fresh=False``): the broker stopped a moment ago on those ports.
        """
        t0 = time.monotonic()
        self.launch(fresh=fresh, restart=restart)
        self.wait_ready(timeout - (time.monotonic() - t0))
        self.start_seconds = time.monotonic() - t0
        return self.bootstrap

    def launch(self, fresh: bool = True, restart: bool = False) -> None:
        """The first half of :meth:`start`: storage formatted, the JVM started (a node of
        a cluster is healthy only once a majority of the quorum runs)."""
        self._classpath()
        find_java()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if self.running():
            raise ServiceError(f"this Kafka broker already runs (pid {self.pid}): stop it first")
        if fresh:
            for sub in ("data", "metadata"):
                shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        formatted = (self.run_dir / "metadata" / "meta.properties").exists()
        if not fresh and formatted and self.config_file.exists():
            # The storage remembers the quorum it was formatted with: same config, ports.
            old = self.config_file.read_text()
            m = re.search(r"^listeners=PLAINTEXT://[^:]+:(\d+),CONTROLLER://[^:]+:(\d+)", old, re.M)
            if m:
                self.port, self.controller_port = int(m.group(1)), int(m.group(2))
            self._pick_ports(restart=restart)
        else:
            self._pick_ports(restart=restart and not fresh)
            self._write_config()
            self._format()
        out = open(self.run_dir / "kafka.out", "ab")
        try:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.config_file), heap_mb=self.heap_mb),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.run_dir,
                start_new_session=True,
            )
        finally:
            out.close()
        self.pid = self.proc.pid
        (self.run_dir / "kafka.pid").write_text(f"{self.pid}\n")

    def wait_ready(self, timeout: float, brokers: int = 1) -> None:
        """Wait until the node listens and its metadata shows ``brokers`` brokers; the
        node is stopped when it does not come up in ``timeout`` s."""
        t0 = time.monotonic()
        try:
            if not self._wait_port(timeout):
                raise ServiceError(
                    f"Kafka broker did not open {self.bootstrap} within {timeout:.0f} s; "
                    f"see {self.run_dir / 'kafka.out'} and {self.log_dir / 'server.log'}"
                )
            while wait_healthy(self.bootstrap, timeout=max(
                    5.0, timeout - (time.monotonic() - t0))) < brokers:
                if time.monotonic() - t0 > timeout:
                    raise ServiceError(f"Kafka at {self.bootstrap} sees fewer than {brokers} "
                                       f"brokers after {timeout:.0f} s")
                time.sleep(0.2)
        except Exception:
            self.stop()
            raise

    def _wait_port(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.run_dir / "kafka.out").read_text(errors="replace")[-1500:]
                raise ServiceError(
                    f"Kafka broker exited with code {self.proc.returncode}: {tail.strip()}"
                )
            if wait_for_port(self.port, timeout=0.5):
                return True
        return False

    def running(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker's process group, wait up to ``timeout`` s, then SIGKILL."""
        if self.pid is None:
            try:
                self.pid = int((self.run_dir / "kafka.pid").read_text().strip())
            except (OSError, ValueError):
                return
        terminate_pid(self.pid, timeout=timeout, expect=str(self.config_file))
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


def partition_replicas(bootstrap: str, topic: str,
                       timeout: float = 10.0) -> dict[int, dict[str, Any]]:
    """Per partition of ``topic``: its leader, replicas and in-sync replicas (node ids)."""
    md = _admin(bootstrap, timeout).list_topics(topic=topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None:
        raise ServiceError(f"topic {topic!r} not found on {bootstrap}")
    return {p: {"leader": m.leader, "replicas": list(m.replicas), "isr": list(m.isrs)}
            for p, m in sorted(md.partitions.items())}


def check_broker_kind(kind: str) -> str:
    """Validate ``services.kafka.broker``; only ``apache-kafka`` is implemented."""
    if kind not in BROKER_KINDS:
        raise ServiceError(
            f"unknown services.kafka.broker {kind!r}: use one of {', '.join(BROKER_KINDS)}"
        )
    if kind == "noida-db":
        raise ServiceError(
            "noida-db fallback not implemented: use services.kafka.broker: apache-kafka "
            "(run `bash env/setup.sh kafka`) "
            "or give services.kafka.bootstrap_servers of a running broker"
        )
    return kind
