"""Signals to processes and their groups: is a pid alive, stop one, kill a whole group.

Standard library only: the engine virtualenvs (Spark, Flink) import it as well as the
main one. Engines start their job processes in sessions of their own (a Python driver and
its JVM share one process group), so a group is what gets stopped or killed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(path: Path) -> int | None:
    """The pid in a pid file; None when the file is missing or holds no number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """The pids of process group ``pgid`` (from /proc)."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return sorted(pid for pid in pids if _pgid(pid) == pgid)


def terminate_pid(pid: int, timeout: float = 30.0, expect: str | None = None) -> bool:
    """SIGTERM ``pid`` (and its process group if it leads one), wait, then SIGKILL.

    ``expect``: a substring its command line must contain (guards against a reused pid).
    Returns True if a process was signalled.
    """
    if not pid_alive(pid):
        return False
    if expect and expect not in pid_cmdline(pid):
        return False
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return False

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def end_process_group(pgid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, whatever is left alive of process group ``pgid``. Only live
    members count: a leader its parent has not reaped yet (a zombie) keeps the group
    existing but has nothing left to end."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not any(pid_alive(p) for p in group_members(pgid)):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(pid_alive(p) for p in group_members(pgid)):
            time.sleep(0.1)


def stop_process_groups(leaders: dict[str, int], timeout_s: float = 30.0) -> list[str]:
    """Stop the process groups of ``leaders`` (name -> pid of a group leader, e.g. the
    daemons of a cluster): SIGTERM to all at once (their shutdowns overlap, and a cluster
    does not react to each loss in turn), wait up to ``timeout_s`` for each, then SIGKILL
    what is left of each group. The names of the groups that had a live leader."""
    live = {name: pid for name, pid in leaders.items() if pid_alive(pid)}
    for pid in live.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
    for pid in live.values():
        terminate_pid(pid, timeout=timeout_s)
        end_process_group(pid, timeout_s=5.0)
    return list(live)


def kill_process_group(leader: Any, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL the process group led by ``leader`` and wait until nothing of it is left.

    ``leader``: a Popen-like object (an engine's Python driver started in its own session,
    and its JVM), which is waited for, or a pid (a service daemon's), reaped if it is our
    child; a reaped leader's orphans are reaped by init. The pids killed."""
    pid = leader if isinstance(leader, int) else leader.pid
    members = group_members(pid)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return []
    if not isinstance(leader, int):
        leader.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if isinstance(leader, int):
            try:
                os.waitpid(pid, os.WNOHANG)  # a zombie child would keep the group alive
            except ChildProcessError:
                pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return members
        time.sleep(0.05)
    raise RuntimeError(f"process group {pid} still alive {timeout_s} s after SIGKILL")


class StopFlag:
    """Set by SIGTERM or SIGINT: the process finishes its current unit of work and stops.
    An engine-session server (``server``: sdsbench.engine_session.SessionServer) also
    stops taking runs."""

    def __init__(self, server: Any = None) -> None:
        self.reason: str | None = None  # the signal's name once one arrived
        self.server = server

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def install(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)
        return self

    def _set(self, signum: int, _frame: Any) -> None:
        self.reason = signal.Signals(signum).name
        if self.server is not None:
            self.server.stop_requested = True


def kill_processes(procs: list[Any], timeout_s: float = 10.0) -> list[int]:
    """SIGKILL each live ``subprocess.Popen`` of ``procs`` and reap it; the killed pids."""
    killed = []
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            killed.append(proc.pid)
    for proc in procs:
        if proc is not None:
            proc.wait(timeout=timeout_s)
    return killed


def wait_until(condition: Any, timeout_s: float, what: str, poll_s: float = 0.1) -> float:
    """Poll ``condition()`` until true; the seconds it took. RuntimeError on timeout."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"{what}: not after {timeout_s} s")
        time.sleep(poll_s)
    return time.monotonic() - t0
