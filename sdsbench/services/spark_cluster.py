"""A real Apache Spark standalone cluster on loopback: one Master and N Workers.

Each daemon is its own JVM, started in the foreground with pyspark's ``bin/spark-class``
(the pip package has no ``sbin/start-*.sh``) from the Spark virtualenv's installation.
spark-class ``exec``s java, so the Popen pid is the daemon's JVM; it leads a session of its
own, and the executors a Worker forks for an application join that process group, so
stopping the group ends them too. State under ``run_dir``::

    conf/spark-defaults.conf   the ``settings`` (both daemons read it: --properties-file)
    cluster.json               ports and urls, for a cluster re-created from run_dir
    master.pid, master.log     one per daemon: pid file, stdout+stderr
    worker-<i>.pid, worker-<i>.log, worker-<i>/work   (executors' work dirs and logs)
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import pid_cmdline, terminate_pid
from sdsbench.services import ServiceError
from sdsbench.services.daemons import DaemonGroup
from sdsbench.services.kafka import find_java
from sdsbench.services.ports import LOOPBACK, free_ports, port_in_use, wait_for_port

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"  # the Master's and Workers' own heap; executors get worker memory


def spark_home() -> Path:
    """The pyspark installation of ``.venv/spark`` (it carries bin/, jars/)."""
    for home in sorted((REPO_ROOT / ".venv" / "spark").glob("lib/python*/site-packages/pyspark")):
        if (home / "bin" / "spark-class").exists() and (home / "jars").is_dir():
            return home
    raise ServiceError(
        f"no pyspark installation under {REPO_ROOT / '.venv' / 'spark'}: "
        "run `bash env/setup.sh spark`"
    )


def spark_version() -> str:
    """Spark's version from pyspark's version.py, else the spark-core jar's name."""
    home = spark_home()
    try:
        m = re.search(r"__version__[^=]*=\s*['\"]([^'\"]+)", (home / "version.py").read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    for jar in sorted((home / "jars").glob("spark-core_*-*.jar")):
        return jar.stem.split("-", 1)[1]
    raise ServiceError(f"cannot tell the Spark version of {home}")


def health_check(master_web_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The standalone master's JSON status (``<web>/json/``): its version, ALIVE workers,
    their cores and memory. Raises ServiceError when unreachable or not ALIVE."""
    url = master_web_url.rstrip("/") + "/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            state = json.load(resp)
    except (OSError, ValueError) as e:
        raise ServiceError(f"Spark master at {master_web_url} is not reachable: {e}") from e
    if state.get("status") != "ALIVE":
        raise ServiceError(f"Spark master at {master_web_url} is {state.get('status')!r}")
    alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
    return {
        # the JSON has no version field; the master runs from this installation
        "spark_version": state.get("version") or spark_version(),
        "workers_alive": len(alive),
        "cores": sum(int(w.get("cores", 0)) for w in alive),
        "memory_mb": sum(int(w.get("memory", 0)) for w in alive),
        "status": state["status"],
    }


class SparkCluster(DaemonGroup):
    """A Master and ``workers`` Workers (``cores_per_worker`` cores and ``worker_memory_mb``
    for executors each) under ``run_dir``. ``port`` 0 picks a free master port.
    ``settings``: Spark properties for the daemons (e.g. spark.worker.cleanup.enabled)."""

    kind = "Spark"

    def __init__(self, run_dir: Path | str, workers: int = 2, cores_per_worker: int = 1,
                 worker_memory_mb: int = 2048, port: int = 0,
                 settings: dict[str, str] | None = None) -> None:
        if workers < 1:
            raise ServiceError("a Spark cluster needs at least 1 worker")
        super().__init__(run_dir)
        self.workers = int(workers)
        self.cores_per_worker = int(cores_per_worker)
        self.worker_memory_mb = int(worker_memory_mb)
        self.requested_port = int(port or 0)
        self.settings = {k: str(v) for k, v in (settings or {}).items()}
        state = self.saved_state()  # re-created from run_dir: the urls of that cluster
        self.port = int(state.get("port", self.requested_port))
        self.web_port = int(state.get("web_port", 0))
        self.worker_web_ports = [int(p) for p in state.get("worker_web_ports", [])]

    @property
    def master_url(self) -> str:
        return f"spark://{LOOPBACK}:{self.port}"

    @property
    def web_url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    @property
    def names(self) -> list[str]:
        return ["master", *(f"worker-{i}" for i in range(1, self.workers + 1))]

    def log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _launch(self, name: str, main: str, args: list[str], home: Path,
                env_extra: dict[str, str]) -> None:
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": LOOPBACK,
               "SPARK_CONF_DIR": str(self.run_dir / "conf"),
               "SPARK_LOG_DIR": str(self.run_dir), "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
               **env_extra}
        # --properties-file also puts run_dir into both command lines (spark-class's bash
        # and the JVM it execs): how the daemons are recognised as this cluster's.
        self.spawn(name, [str(home / "bin" / "spark-class"), main, *args, "--properties-file",
                          str(self.run_dir / "conf" / "spark-defaults.conf")],
                   env, self.log_file(name))

    def _pick_ports(self) -> list[int]:
        if self.requested_port and port_in_use(self.requested_port):
            raise ServiceError(f"Spark master port {self.requested_port} is already in use "
                               f"on {LOOPBACK}: stop what listens there or use port 0")
        taken = (self.requested_port,) if self.requested_port else ()
        ports = free_ports(1 + 2 * self.workers + (0 if self.requested_port else 1), taken)
        self.port = self.requested_port or ports.pop()
        self.web_port = ports.pop()
        self.worker_web_ports = [ports.pop() for _ in range(self.workers)]
        return ports  # the workers' RPC ports

    def start(self, timeout: float = 120.0) -> str:
        """Start the Master, then the Workers; wait until the master reports all of them
        ALIVE. Returns the master url. On failure stops what it started."""
        t0 = time.monotonic()
        home = spark_home()
        java = find_java()
        worker_ports = self._pick_ports() if not self.running() else []
        self.prepare({"master_url": self.master_url, "web_url": self.web_url,
                      "port": self.port, "web_port": self.web_port,
                      "worker_web_ports": self.worker_web_ports, "workers": self.workers})
        (self.run_dir / "conf").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "conf" / "spark-defaults.conf").write_text(
            "".join(f"{k} {v}\n" for k, v in self.settings.items()))
        # spark-class runs $JAVA_HOME/bin/java, else java on PATH: the one find_java chose
        env_java = {"JAVA_HOME": str(Path(java).resolve().parent.parent)}

        def workers_alive() -> bool:
            try:
                return health_check(self.web_url)["workers_alive"] >= self.workers
            except ServiceError:
                return False

        try:
            self._launch("master", MASTER_CLASS,
                         ["--host", LOOPBACK, "--port", str(self.port),
                          "--webui-port", str(self.web_port)], home, env_java)
            self.wait_until(lambda: wait_for_port(self.web_port, timeout=0.5), t0, timeout,
                            f"the master did not open its web UI {self.web_url}")
            for i in range(1, self.workers + 1):
                work = self.run_dir / f"worker-{i}" / "work"
                work.mkdir(parents=True, exist_ok=True)
                self._launch(f"worker-{i}", WORKER_CLASS,
                             ["--host", LOOPBACK, "--port", str(worker_ports[i - 1]),
                              "--webui-port", str(self.worker_web_ports[i - 1]),
                              "--cores", str(self.cores_per_worker),
                              "--memory", f"{self.worker_memory_mb}m",
                              "--work-dir", str(work), self.master_url],
                             home, {**env_java, "SPARK_WORKER_DIR": str(work)})
            self.wait_until(workers_alive, t0, timeout,
                            f"the master {self.master_url} does not see {self.workers} "
                            "ALIVE workers")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self.master_url

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Every daemon (each Worker's executors with it, in its process group), then
        anything else started from run_dir (an executor that left its group)."""
        stopped = super().stop(timeout)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                pid = int(entry.name)
                if self.ours(pid) and ("java" in pid_cmdline(pid).split(" ", 1)[0]
                                       or "spark-class" in pid_cmdline(pid)):
                    terminate_pid(pid, timeout=5.0)
        return stopped
