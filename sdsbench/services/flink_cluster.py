"""A real Apache Flink standalone session cluster on loopback: one JobManager and N
TaskManagers, each its own JVM, from the distribution in ``.venv/flink``'s pyflink.

Each process is ``bin/jobmanager.sh``/``bin/taskmanager.sh start-foreground``: the scripts
compute the JVM's memory flags (BashJavaUtils), then ``exec`` java, so the Popen pid becomes
the JVM's; it leads a session of its own (the scripts' helper JVMs join that group), so
stopping the group ends everything the process started. State under ``run_dir``::

    conf/config.yaml       written here (loopback addresses, ports, memory, ``settings``)
    cluster.json           ports, for a cluster re-created from run_dir (``down``)
    <name>.pid             jobmanager, taskmanager-<i>: the JVM's pid
    log/<name>.launch      the script's own output before it execs java
    log/flink-<name>-*.log the process's Flink log (.out/.err: its stdout and stderr)
    tmp/<name>/            io.tmp.dirs of the process; tmp/ also holds the scripts' pid files
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from sdsbench.paths import REPO_ROOT
from sdsbench.services import ServiceError
from sdsbench.services.daemons import DaemonGroup
from sdsbench.services.kafka import find_java
from sdsbench.services.ports import LOOPBACK, free_ports, port_in_use

JOBMANAGER_CLASS = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER_CLASS = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
FLINK_VENV = REPO_ROOT / ".venv" / "flink"
SETUP_HINT = "run `bash env/setup.sh flink`"


def _find_home() -> Path | None:
    for home in sorted(FLINK_VENV.glob("lib/python*/site-packages/pyflink")):
        if (home / "bin" / "jobmanager.sh").exists() and any(home.glob("lib/flink-dist-*.jar")):
            return home
    return None


FLINK_HOME: Path | None = _find_home()


def flink_home() -> Path:
    """The Flink distribution inside ``.venv/flink``'s pyflink (looked up again: setup may
    have run since import)."""
    home = FLINK_HOME or _find_home()
    if home is None:
        raise ServiceError(f"no Flink distribution (pyflink) under {FLINK_VENV}: {SETUP_HINT}")
    return home


def flink_version() -> str:
    """Flink's version from the flink-dist jar name (``flink-dist-2.3.0.jar`` -> ``2.3.0``)."""
    for jar in sorted((flink_home() / "lib").glob("flink-dist-*.jar")):
        return jar.name[len("flink-dist-"):-len(".jar")]
    raise ServiceError(f"no flink-dist jar in {flink_home() / 'lib'}: {SETUP_HINT}")


def health_check(rest_address: str, timeout: float = 5.0) -> dict[str, Any]:
    """The JobManager's ``/overview``: version, registered TaskManagers, their slots.
    Raises ServiceError when the REST API does not answer."""
    url = f"http://{rest_address.removeprefix('http://').rstrip('/')}/overview"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            overview = json.load(resp)
    except (OSError, ValueError) as e:
        raise ServiceError(f"Flink REST API at {rest_address} is not reachable: {e}") from e
    return {"flink_version": overview.get("flink-version"),
            "taskmanagers": int(overview.get("taskmanagers", 0)),
            "slots_total": int(overview.get("slots-total", 0))}


def _yaml_value(value: str) -> str:
    # Plain scalars stay plain (the scripts grep some keys); others become JSON strings.
    return value if re.fullmatch(r"[\w./=+-][\w ./=+,-]*", value) else json.dumps(value)


class FlinkCluster(DaemonGroup):
    """A JobManager and ``taskmanagers`` TaskManagers of ``slots_per_taskmanager`` slots
    under ``run_dir``; memory sizes are whole-process sizes. ``rest_port`` 0 picks a free
    port. ``settings``: Flink config keys that override the ones written here."""

    kind = "Flink"

    def __init__(self, run_dir: Path | str, taskmanagers: int = 2, slots_per_taskmanager: int = 1,
                 jobmanager_memory_mb: int = 1024, taskmanager_memory_mb: int = 1536,
                 rest_port: int = 0, settings: dict[str, str] | None = None) -> None:
        if taskmanagers < 1:
            raise ServiceError("a Flink cluster needs at least 1 TaskManager")
        super().__init__(run_dir)
        self.taskmanagers = int(taskmanagers)
        self.slots_per_taskmanager = int(slots_per_taskmanager)
        self.jobmanager_memory_mb = int(jobmanager_memory_mb)
        self.taskmanager_memory_mb = int(taskmanager_memory_mb)
        self.requested_rest_port = int(rest_port or 0)
        self.settings = {k: str(v) for k, v in (settings or {}).items()}
        state = self.saved_state()  # re-created from run_dir: the ports of that cluster
        self.rest_port = int(state.get("rest_port", self.requested_rest_port))
        self.rpc_port = int(state.get("rpc_port", 0))

    @property
    def rest_address(self) -> str:
        return f"{LOOPBACK}:{self.rest_port}"

    @property
    def names(self) -> list[str]:
        return ["jobmanager", *(f"taskmanager-{i}" for i in range(1, self.taskmanagers + 1))]

    def log_file(self, name: str) -> Path:
        """The Flink log of process ``name`` (the launch log until the JVM has one)."""
        logs = sorted((self.run_dir / "log").glob(f"flink-{name}-*.log"))
        return logs[-1] if logs else self.run_dir / "log" / f"{name}.launch"

    def _write_config(self, home: Path) -> None:
        conf = self.run_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for src in (home / "conf").glob("log*"):  # log4j/logback files the scripts point at
            shutil.copy(src, conf / src.name)
        # The distribution's --add-opens flags: Flink needs them on Java 17.
        m = re.search(r"^\s*all:\s*(--.+)$", (home / "conf" / "config.yaml").read_text(), re.M)
        values = {
            "env.java.opts.all": m.group(1).strip() if m else "",
            "jobmanager.rpc.address": LOOPBACK, "jobmanager.rpc.port": str(self.rpc_port),
            "jobmanager.bind-host": LOOPBACK, "rest.address": LOOPBACK,
            "rest.bind-address": LOOPBACK, "rest.port": str(self.rest_port),
            "taskmanager.bind-host": LOOPBACK, "taskmanager.host": LOOPBACK,
            "taskmanager.numberOfTaskSlots": str(self.slots_per_taskmanager),
            "jobmanager.memory.process.size": f"{self.jobmanager_memory_mb}m",
            "taskmanager.memory.process.size": f"{self.taskmanager_memory_mb}m",
            # The benchmark samples REST metrics every second; the 10 s default is stale.
            "metrics.fetcher.update-interval": "200 ms",
            "web.checkpoints.history": "100",
            # Flink 2.x's key (cluster.evenly-spread-out-slots is gone): a job's slots
            # spread over the TaskManagers instead of filling one first.
            "taskmanager.load-balance.mode": "SLOTS",
            "web.tmpdir": str(self.run_dir / "tmp" / "web"),
            **self.settings,
        }
        (conf / "config.yaml").write_text(
            "".join(f"{k}: {_yaml_value(v)}\n" for k, v in values.items()))

    def _pick_ports(self) -> None:
        if self.requested_rest_port and port_in_use(self.requested_rest_port):
            raise ServiceError(f"Flink REST port {self.requested_rest_port} is already in use on "
                               f"{LOOPBACK}: stop what listens there or use rest_port 0")
        taken = (self.requested_rest_port,) if self.requested_rest_port else ()
        ports = free_ports(1 if taken else 2, taken)
        self.rpc_port = ports.pop()
        self.rest_port = self.requested_rest_port or ports.pop()

    def _command(self, name: str, home: Path) -> list[str]:
        script = "jobmanager.sh" if name == "jobmanager" else "taskmanager.sh"
        tmp = self.run_dir / "tmp" / name
        tmp.mkdir(parents=True, exist_ok=True)
        args = ["-D", f"io.tmp.dirs={tmp}"]
        if name != "jobmanager":  # the REST API then lists TaskManagers by these names
            args += ["-D", f"taskmanager.resource-id={name}"]
        return [str(home / "bin" / script), "start-foreground", *args]

    def start(self, timeout: float = 180.0) -> str:
        """Start the JobManager and the TaskManagers; wait until the REST API lists every
        TaskManager with its slots. Returns the REST address (host:port). On failure
        stops what it started."""
        t0 = time.monotonic()
        home = flink_home()
        java = find_java()
        if not self.running():
            self._pick_ports()
        self.prepare({"rest_address": self.rest_address, "rest_port": self.rest_port,
                      "rpc_port": self.rpc_port, "taskmanagers": self.taskmanagers,
                      "slots_per_taskmanager": self.slots_per_taskmanager})
        shutil.rmtree(self.run_dir / "tmp", ignore_errors=True)
        self._write_config(home)
        env = {**os.environ, "JAVA_HOME": str(Path(java).resolve().parent.parent),
               "FLINK_CONF_DIR": str(self.run_dir / "conf"),
               "FLINK_LOG_DIR": str(self.run_dir / "log"),
               # the scripts' pid files stay out of /tmp (they default there)
               "FLINK_PID_DIR": str(self.run_dir / "tmp"),
               # JVM stdout/stderr to log/*.out|.err, not a second copy of the log
               "STD_REDIRECT_TO_FILE": "true"}
        slots = self.taskmanagers * self.slots_per_taskmanager

        def registered() -> bool:
            try:
                seen = health_check(self.rest_address, timeout=2.0)
            except ServiceError:
                return False
            return seen["taskmanagers"] >= self.taskmanagers and seen["slots_total"] >= slots

        try:
            # All at once: the scripts' helper JVMs overlap, and the TaskManagers retry
            # until the JobManager's ResourceManager takes their registration.
            # FLINK_IDENT_STRING gives each process its own log and script pid file names.
            for name in self.names:
                self.spawn(name, self._command(name, home), {**env, "FLINK_IDENT_STRING": name},
                           self.run_dir / "log" / f"{name}.launch")
            self.wait_until(registered, t0, timeout, f"the REST API {self.rest_address} does "
                            f"not list {self.taskmanagers} TaskManagers with {slots} slots")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self.rest_address
