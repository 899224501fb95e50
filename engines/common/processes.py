"""Start and stop the engines' own Python subprocesses (A1's loop, A2's consumers and
query runner): same interpreter, repo on the path, output to a log file in the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sdsbench.paths import REPO_ROOT


def write_job(run_dir: Path, name: str, job: dict[str, Any]) -> Path:
    """The job description a subprocess reads (``run_dir/logs/<name>.json``)."""
    path = run_dir / "logs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
    return path


def spawn_module(module: str, args: list[str], log_path: Path) -> subprocess.Popen:
    """``python -m module args...`` with stdout+stderr appended to ``log_path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def terminate(procs: list[subprocess.Popen], timeout_s: float) -> list[int | None]:
    """SIGTERM all, wait up to ``timeout_s`` in total, SIGKILL the rest; return codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [proc.returncode for proc in procs]
