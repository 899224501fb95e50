"""The processes of a cluster the stack runs (the Flink and Spark standalone clusters):
started, found again from their state directory, waited for, and stopped together.

Each daemon is started in the foreground by its distribution's script, which ``exec``s
java, so the Popen pid is the JVM's; it leads a session of its own (what it forks joins
its process group). Under ``run_dir``: ``<name>.pid`` per daemon and ``cluster.json``
(the cluster's ports), so a cluster object re-created from ``run_dir`` by another
process (``services.py down``) finds and stops it. A process counts as the cluster's
only while ``run_dir`` is in its command line: a reused pid is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdsbench.process_control import pid_alive, pid_cmdline, stop_process_groups
from sdsbench.services import ServiceError

STATE_FILE = "cluster.json"


class DaemonGroup:
    """What the clusters share; a subclass names its daemons and says how each starts."""

    kind = ""  # "Flink", "Spark": for messages

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.start_seconds: float | None = None
        self._pids: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    def log_file(self, name: str) -> Path:
        raise NotImplementedError

    def saved_state(self) -> dict[str, Any]:
        """``cluster.json`` of the cluster that ran (or runs) under ``run_dir``; {} if none."""
        try:
            return json.loads((self.run_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the daemons: this object's, else the pid files under run_dir (all of
        them: a cluster re-created with another size still stops every one)."""
        for path in sorted(self.run_dir.glob("*.pid")):
            if path.stem not in self._pids:
                try:
                    self._pids[path.stem] = int(path.read_text().strip())
                except (OSError, ValueError):
                    pass
        return dict(self._pids)

    def ours(self, pid: int) -> bool:
        return pid_alive(pid) and str(self.run_dir) + os.sep in pid_cmdline(pid)

    def running(self) -> bool:
        """True while any daemon of the cluster is alive."""
        return any(self.ours(pid) for pid in self.pids.values())

    def prepare(self, state: dict[str, Any]) -> None:
        """Before a start: refuse a running cluster, forget the last one's pids, record
        the new one's ports (``state``) in ``cluster.json``."""
        if self.running():
            raise ServiceError(f"a {self.kind} cluster already runs under {self.run_dir} "
                               f"(pids {self.pids}): stop it first")
        self._pids, self._procs = {}, {}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob("*.pid"):
            stale.unlink()
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def spawn(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        """Start daemon ``name`` in a session of its own, its output to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.run_dir, env=env,
                                    start_new_session=True)
        self._procs[name], self._pids[name] = proc, proc.pid
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")

    def wait_until(self, ready: Callable[[], bool], t0: float, timeout: float,
                   what: str) -> None:
        """Poll ``ready`` until it is true; ServiceError naming the logs when a daemon
        exits or ``timeout`` s have passed since ``t0``."""
        while not ready():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    log = self.log_file(name)
                    tail = log.read_text(errors="replace")[-1500:].strip() if log.exists() else ""
                    raise ServiceError(f"{self.kind} {name} exited with code "
                                       f"{proc.returncode}; see {log}: {tail}")
            if time.monotonic() - t0 > timeout:
                logs = ", ".join(str(self.log_file(n)) for n in self.names)
                raise ServiceError(f"{self.kind} cluster: {what} after {timeout:.0f} s; "
                                   f"see the logs {logs}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop every daemon at once (their shutdowns overlap; one by one, the cluster
        would react to each loss), then SIGKILL what is left of each process group.
        Idempotent; returns the names stopped."""
        stopped = stop_process_groups(
            {name: pid for name, pid in self.pids.items() if self.ours(pid)}, timeout)
        for proc in self._procs.values():  # reap the daemons this object started
            proc.poll()
        self._procs = {}
        return stopped
