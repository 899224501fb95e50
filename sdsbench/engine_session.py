"""Engine sessions: one long-lived engine process (Spark driver, PyFlink gateway JVM) that
serves several runs, one at a time.

Why: a Spark or Flink run that starts its own JVM spends a large part of a short run on
class loading, code generation and the JIT before the first measured event (docs/flink.md,
docs/spark.md). A session pays that once; each run still runs its own warm-up (the engine's
``warmup_events`` through its own plan) before it reports ready, so every run starts
with its plan compiled and JIT-warm, whatever ran in the session before. Benchmarks of
these engines do the same (Nexmark submits every query to one running cluster).

What a session shares between runs: the JVM (heap, JIT code cache, loaded classes).
What it does not: topics, checkpoints, queries/jobs, listeners, the run directory. A
run that kills the SUT (fault runs) kills the session with it; the next run starts a
new one. Settings that fix the JVM (heap, jars, Spark master, JVM options) are the
session's ``settings``; runs with other settings get another session. At most
``SESSIONS_PER_ENGINE`` are kept per engine: starting one stops the engine's least
recently used idle sessions beyond that.

Protocol (files in the session directory, ``<services state dir>/engine-sessions/
<engine>-<key>``; the engine side needs only the standard library):

    server.json          written by the server when it accepts requests: pid, key, ...
    lock                 flock'ed by the driver whose run the session serves
    requests/<run>.json  a run for the server: {"run_id", "config", "run_dir"}
    done/<run>.json      the server finished the run: {"code", ...}
    SHUTDOWN             asks the server to exit once idle
    server.log           the server's stdout/stderr (the driver copies a run's part)

The run itself speaks the engine's usual per-run protocol (ready.json, STOP, status files
in the run directory), exactly as a one-shot job process does.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import kill_process_group, pid_alive

log = logging.getLogger("sdsbench.engine_session")

SESSIONS_ENV = "SDSBENCH_ENGINE_SESSIONS_DIR"  # overrides <services state dir>/engine-sessions
SERVER_FILE = "server.json"
SHUTDOWN_FILE = "SHUTDOWN"
LOG_FILE = "server.log"
# Three: the quick profile interleaves three JVM-fixing Spark configurations (local[2],
# local[1], and real-time mode's local[6] in its own virtualenv); with two, each round
# evicted one and restarted it (make quick at 7b0e8b1: 5 restarts of ~60 s, each with
# the session warm-up again). Three idle drivers (2 GiB heaps) fit the reference
# machine's 24 GiB beside the broker and Flink's sessions.
SESSIONS_PER_ENGINE = 3


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ both sides
@dataclass(frozen=True)
class JobFiles:
    """The per-run protocol between a driver and its engine job (one-shot or in a
    session), in ``<run_dir>/<engine>/``: the job's config, its log, ``ready.json`` (the
    job runs), ``STOP`` (the driver asks it to stop). Engines add their own files."""

    run_dir: Path
    engine: ClassVar[str] = ""

    @property
    def engine_dir(self) -> Path:
        return self.run_dir / self.engine

    @property
    def job_config(self) -> Path:
        return self.engine_dir / "job_config.json"

    @property
    def log(self) -> Path:
        return self.engine_dir / "job.log"

    @property
    def ready(self) -> Path:
        return self.engine_dir / "ready.json"

    @property
    def stop_request(self) -> Path:
        return self.engine_dir / "STOP"


def sessions_root(services_state_dir: str | Path | None) -> Path:
    """Where sessions live: $SDSBENCH_ENGINE_SESSIONS_DIR, else next to the services."""
    env = os.environ.get(SESSIONS_ENV)
    if env:
        return Path(env)
    if not services_state_dir:
        raise ValueError("no services state dir to keep engine sessions in")
    return Path(services_state_dir) / "engine-sessions"


def source_digest(*packages: str) -> str:
    """Digest of the Python sources a server runs: a session started before the code
    changed is never reused."""
    h = hashlib.sha256()
    for package in ("engines/common", "sdsbench", *packages):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            h.update(str(path.relative_to(REPO_ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def session_key(engine: str, settings: dict[str, Any]) -> str:
    text = json.dumps({"engine": engine, "settings": settings,
                       "source": source_digest(f"engines/{engine}")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ driver side
@dataclass
class EngineSession:
    """The driver's handle on a session it holds (its ``lock``) for one run."""

    engine: str
    key: str
    dir: Path
    pid: int
    reused: bool  # False: this driver started the server
    info: dict[str, Any] = field(default_factory=dict)  # server.json
    _lock: IO[str] | None = None
    _proc: subprocess.Popen | None = None  # set when this driver started the server
    _log_offset: int = 0

    # Popen-like, so the session can sit in RunContext.processes (resource sampling).
    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        if self._proc is not None:
            return self._proc.poll()
        _reap(self.pid)
        return None if pid_alive(self.pid) else -1

    def wait(self, timeout: float | None = None) -> int:
        if self._proc is not None:
            return self._proc.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"engine session {self.pid}", timeout or 0)
            time.sleep(0.05)
        return -1

    def submit(self, run_id: str, config: Path, run_dir: Path) -> None:
        """Hand the server a run; it answers in the run directory (ready.json, ...)."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # A run id may come again (a rerun): an earlier run's report must not answer it.
        (self.dir / "done" / f"{run_id}.json").unlink(missing_ok=True)
        _write_json_atomic(self.dir / "requests" / f"{run_id}.json",
                           {"run_id": run_id, "config": str(config), "run_dir": str(run_dir)})

    def done(self, run_id: str) -> dict[str, Any] | None:
        """The server's report once it finished ``run_id`` (None before)."""
        return _read_json(self.dir / "done" / f"{run_id}.json")

    def wait_done(self, run_id: str, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            report = self.done(run_id)
            if report is not None:
                return report
            if self.poll() is not None:
                return None
            time.sleep(0.1)
        return None

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    def copy_log(self, dest: Path) -> None:
        """Append the server log written since ``submit`` to ``dest`` (the run's job log)."""
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as src, dest.open("ab") as out:
            src.seek(self._log_offset)
            out.write(src.read())

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def kill(self) -> list[int]:
        """SIGKILL the server's process group (fault runs); the session is gone."""
        killed = kill_process_group(self)
        (self.dir / SERVER_FILE).unlink(missing_ok=True)
        self.release()
        return killed


def _reap(pid: int) -> None:
    """Reap ``pid`` if it is an exited child of this process: a server started by an
    earlier run in the same process (tests) and reused by a later handle; its zombie
    would keep its process group alive (``kill_process_group`` waits for the group)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _killpg(pid: int) -> list[int]:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return []
    return [pid]


def _try_lock(path: Path) -> IO[str] | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def open_session(
    engine: str,
    settings: dict[str, Any],
    command: list[str],
    env: dict[str, str],
    root: Path,
    start_timeout_s: float,
) -> EngineSession | None:
    """The engine's idle session with ``settings`` (started with ``command`` if there is
    none), locked for the caller's run; None when another run holds it (the caller then
    starts a private job process). ``command`` gets ``--session-dir DIR`` appended."""
    key = session_key(engine, settings)
    sdir = root / f"{engine}-{key}"
    lock = _try_lock(sdir / "lock")
    if lock is None:
        return None
    try:
        info = _read_json(sdir / SERVER_FILE)
        if info is not None and pid_alive(int(info["pid"])) and not (sdir / SHUTDOWN_FILE).exists():
            log.info("%s session %s reused (pid %s, %s runs served)", engine, key, info["pid"],
                     info.get("runs_served"))
            return EngineSession(engine, key, sdir, int(info["pid"]), True, info, lock)
        stop_sessions(root, engine, keep=SESSIONS_PER_ENGINE - 1)  # free the memory of others
        for sub in ("requests", "done"):
            for old in (sdir / sub).glob("*.json"):
                old.unlink()
        (sdir / SERVER_FILE).unlink(missing_ok=True)
        (sdir / SHUTDOWN_FILE).unlink(missing_ok=True)
        _write_json_atomic(sdir / "settings.json", {"engine": engine, "settings": settings})
        with (sdir / LOG_FILE).open("ab") as out:
            # Own session (process group): outlives this run's process, killed as a group.
            proc = subprocess.Popen([*command, "--session-dir", str(sdir)], cwd=REPO_ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + start_timeout_s
        while (info := _read_json(sdir / SERVER_FILE)) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"{engine} session exited with code {proc.returncode} while "
                                   f"starting; see {sdir / LOG_FILE}")
            if time.monotonic() > deadline:
                _killpg(proc.pid)
                raise RuntimeError(f"{engine} session not up after {start_timeout_s:.0f} s; "
                                   f"see {sdir / LOG_FILE}")
            time.sleep(0.2)
        log.info("%s session %s started (pid %d)", engine, key, proc.pid)
        return EngineSession(engine, key, sdir, proc.pid, False, info, lock, proc)
    except BaseException:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        raise


def stop_sessions(root: Path, engine: str | None = None, timeout_s: float = 30.0,
                  keep: int = 0) -> list[str]:
    """Stop the idle sessions under ``root`` (of ``engine``, or all) except the ``keep``
    most recently used; a session serving a run (locked) is asked to exit once idle.
    Returns the stopped sessions' names."""
    stopped: list[str] = []
    if not root.exists():
        return stopped
    alive = []
    for sdir in root.glob(f"{engine or '*'}-*"):
        info = _read_json(sdir / SERVER_FILE)
        if info is not None and pid_alive(int(info["pid"])):
            alive.append((sdir, info))
    # server.json is rewritten after every run: its mtime is the session's last use.
    alive.sort(key=lambda item: (item[0] / SERVER_FILE).stat().st_mtime, reverse=True)
    for sdir, info in sorted(alive[keep:], key=lambda item: item[0].name):
        lock = _try_lock(sdir / "lock")
        (sdir / SHUTDOWN_FILE).touch()
        if lock is None:
            continue  # busy: it exits after its run
        try:
            pid = int(info["pid"])
            deadline = time.monotonic() + timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                _killpg(pid)
            (sdir / SERVER_FILE).unlink(missing_ok=True)
            stopped.append(sdir.name)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
    return stopped


# ------------------------------------------------------------------ server side
def job_arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of every engine job module: ``--config JOB.json`` and exactly one
    of ``--run-dir DIR`` (one run, then exit) and ``--session-dir DIR`` (a session server;
    ``--config`` is then its first run's, which fixes the JVM settings)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, required=True, help="the job config (JSON)")
    parser.add_argument("--run-dir", type=Path, help="one run: the run's directory")
    parser.add_argument("--session-dir", type=Path, help="serve runs as an engine session")
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (args.session_dir is None):
        parser.error("give exactly one of --run-dir (one run) and --session-dir (a session)")
    return args


@dataclass
class Request:
    run_id: str
    config: Path
    run_dir: Path


DEFAULT_IDLE_TIMEOUT_S = 600.0


class SessionServer:
    """The engine side: announce readiness, then take requests one at a time. Its
    settings are the driver's (``settings.json``: the session key's settings, with
    ``idle_timeout_s`` and ``session_warmup_events``)."""

    def __init__(self, session_dir: Path, idle_timeout_s: float | None = None,
                 poll_s: float = 0.1) -> None:
        self.dir = Path(session_dir)
        self.settings: dict[str, Any] = (
            _read_json(self.dir / "settings.json") or {}).get("settings", {})
        self.idle_timeout_s = float(idle_timeout_s if idle_timeout_s is not None else
                                    self.settings.get("idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S))
        self.session_warmup_events = int(self.settings.get("session_warmup_events", 0))
        self.poll_s = poll_s
        self.runs_served = 0
        self.started = time.time()
        self.stop_requested = False  # set by the engine's signal handler
        self.info: dict[str, Any] = {}

    def announce(self, **info: Any) -> None:
        """Accept requests from now on; ``info`` lands in server.json."""
        self.info = {"pid": os.getpid(), "started": self.started, **info}
        self._write_state()

    def _write_state(self) -> None:
        _write_json_atomic(self.dir / SERVER_FILE, {**self.info, "runs_served": self.runs_served})

    def requests(self) -> Iterator[Request]:
        """Yield runs as they arrive; ends on SHUTDOWN, a stop signal, or when no run came
        for ``idle_timeout_s``."""
        idle_since = time.monotonic()
        while not self.stop_requested and not (self.dir / SHUTDOWN_FILE).exists():
            pending = sorted((self.dir / "requests").glob("*.json"),
                             key=lambda p: p.stat().st_mtime)
            if not pending:
                if time.monotonic() - idle_since > self.idle_timeout_s:
                    log.info("idle for %.0f s: exiting", self.idle_timeout_s)
                    break
                time.sleep(self.poll_s)
                continue
            data = json.loads(pending[0].read_text())
            pending[0].unlink()
            yield Request(data["run_id"], Path(data["config"]), Path(data["run_dir"]))
            idle_since = time.monotonic()
        (self.dir / SERVER_FILE).unlink(missing_ok=True)

    def finished(self, request: Request, code: int, **report: Any) -> None:
        self.runs_served += 1
        self._write_state()
        _write_json_atomic(self.dir / "done" / f"{request.run_id}.json",
                           {"code": code, "runs_served": self.runs_served, **report})
