"""The engine-session protocol (sdsbench.engine_session) with a stand-in server:
a run is served, the session is reused by the next run with the same settings, a busy
session is not shared, other settings replace it, and stop/kill end it."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sdsbench import engine_session as es

SERVER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from sdsbench.engine_session import SessionServer
    server = SessionServer(Path(sys.argv[sys.argv.index("--session-dir") + 1]), idle_timeout_s=30)
    server.announce(engine="fake")
    for req in server.requests():
        cfg = json.loads(req.config.read_text())
        req.run_dir.mkdir(parents=True, exist_ok=True)
        (req.run_dir / "ready.json").write_text("{}")
        print("serving", req.run_id, flush=True)
        while not (req.run_dir / "STOP").exists():
            time.sleep(0.05)
        server.finished(req, 0, echoed=cfg["x"])
''')


@pytest.fixture()
def fake(tmp_path: Path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    root = tmp_path / "sessions"
    env = {"PYTHONPATH": str(es.REPO_ROOT), "PATH": "/usr/bin:/bin"}

    def open_(settings: dict) -> es.EngineSession | None:
        return es.open_session("spark", settings, [sys.executable, str(script)], env, root, 30)

    yield root, open_
    es.stop_sessions(root, timeout_s=5)


def serve(session: es.EngineSession, tmp_path: Path, run_id: str, x: int) -> dict:
    config = tmp_path / f"{run_id}.json"
    config.write_text(json.dumps({"x": x}))
    run_dir = tmp_path / run_id
    session.submit(run_id, config, run_dir)
    deadline = time.monotonic() + 10
    while not (run_dir / "ready.json").exists():
        assert time.monotonic() < deadline, "server never picked up the run"
        time.sleep(0.05)
    (run_dir / "STOP").touch()
    report = session.wait_done(run_id, 10)
    session.copy_log(run_dir / "job.log")
    session.release()
    return report


def test_session_serves_runs_and_is_reused(fake, tmp_path: Path) -> None:
    root, open_ = fake
    first = open_({"heap": 1})
    assert first is not None and not first.reused and first.poll() is None
    assert open_({"heap": 1}) is None  # held by the first run: not shared
    assert serve(first, tmp_path, "r1", 7)["echoed"] == 7
    assert "serving r1" in (tmp_path / "r1" / "job.log").read_text()

    second = open_({"heap": 1})
    assert second is not None and second.reused and second.pid == first.pid
    report = serve(second, tmp_path, "r2", 8)
    assert report["echoed"] == 8 and report["runs_served"] == 2
    assert "serving r1" not in (tmp_path / "r2" / "job.log").read_text()

    # Other settings: new servers beside the idle one (SESSIONS_PER_ENGINE = 3)...
    assert es.SESSIONS_PER_ENGINE == 3
    other = open_({"heap": 2})
    assert other is not None and not other.reused and other.pid != first.pid
    other.release()
    third = open_({"heap": 3})
    assert third is not None and not third.reused
    assert es.pid_alive(first.pid) and es.pid_alive(other.pid)
    third.release()
    # ...and a fourth stops the least recently used of them (the first).
    fourth = open_({"heap": 4})
    assert fourth is not None and not fourth.reused
    assert not es.pid_alive(first.pid) and es.pid_alive(other.pid) and es.pid_alive(third.pid)
    fourth.release()
    assert es.stop_sessions(root) == sorted([other.dir.name, third.dir.name, fourth.dir.name])
    assert not any(es.pid_alive(s.pid) for s in (other, third, fourth))


def test_killed_session_is_replaced(fake, tmp_path: Path) -> None:
    _, open_ = fake
    session = open_({"heap": 1})
    assert session is not None
    killed = session.kill()
    assert session.pid in killed and not es.pid_alive(session.pid)
    again = open_({"heap": 1})
    assert again is not None and not again.reused and again.pid != session.pid
    again.release()
