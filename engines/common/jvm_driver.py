"""The driver both JVM engines share (A4s Spark, A4f Flink): how a job is started, watched,
killed, restarted and stopped, whether an engine session serves it or a private process.

    launch   hand the run to the engine session whose JVM-level settings match
             (``sdsbench.engine_session``; started by the first run that needs it), or
             start a private job process (its own process group: its JVM is its child);
             wait until the job reports ready and the engine says it runs
    kill     fault runs: SIGKILL the session (its JVM is the SUT) or the private group;
             the next run starts a new session
    relaunch fault runs: the job again, in a private process, with a changed config
    stop     STOP file; a session answers done/<run>.json (no answer, or no job yet: the
             session is killed); a private process exits (else SIGTERM, SIGKILL to its
             group); the run's scratch and topics are removed

Both job modules (``engines.<engine>.ctr_job``) take the same command line:
``--config JOB.json`` and ``--run-dir DIR`` (one run) or ``--session-dir DIR`` (a session
server; its settings in ``DIR/settings.json``). Each engine's ``Pipeline`` subclasses
``JvmJobDriver`` and supplies only what differs: its interpreter and environment, the
settings that fix its JVM, when its job runs, what its source has consumed, and its drain
and collect.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdsbench.config import section_keys
from sdsbench.engine_session import EngineSession, open_session, sessions_root
from sdsbench.experiments import pipeline_params
from sdsbench.measurement.lag import KafkaEndOffsets, LagSampler
from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import end_process_group, kill_process_group, terminate_pid
from sdsbench.rundir import write_json_atomic
from sdsbench.services.kafka import delete_topics
from sdsbench.topics import delete_run_topics

log = logging.getLogger("sdsbench.jvm")

LOG_TAIL_CHARS = 2000


def venv_python(engine: str) -> Path:
    """Where ``env/setup.sh <engine>`` puts the engine virtualenv's interpreter."""
    return REPO_ROOT / ".venv" / engine / "bin" / "python"


def jars_dir(engine: str) -> Path:
    """Where ``env/setup.sh <engine>`` puts the engine's connector jars."""
    return REPO_ROOT / ".deps" / f"{engine}-jars"


def engine_python(engine: str) -> Path:
    """The engine virtualenv's interpreter (``SDSBENCH_<ENGINE>_PYTHON`` overrides it,
    e.g. for a test venv)."""
    path = Path(os.environ.get(f"SDSBENCH_{engine.upper()}_PYTHON", venv_python(engine)))
    if not path.exists():
        raise RuntimeError(f"{path} missing: run `bash env/setup.sh {engine}`")
    return path


def engine_jars(engine: str, connector: str) -> list[str]:
    """The engine's connector jars (``.deps/<engine>-jars``); ``connector``: a name part
    the Kafka connector's jar must have."""
    folder = jars_dir(engine)
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not any(connector in Path(j).name for j in jars):
        raise RuntimeError(f"no {connector} connector in {folder}: run "
                           f"`bash env/setup.sh {engine}`")
    return jars


def engine_installed(engine: str, connector: str) -> bool:
    """Are the engine's virtualenv and Kafka connector set up (``env/setup.sh <engine>``)?"""
    return venv_python(engine).exists() and any(connector in p.name
                                                for p in jars_dir(engine).glob("*.jar"))


def reached(done: dict[int, int], target: dict[int, int]) -> bool:
    """True when every partition of ``target`` is at or past its offset in ``done``."""
    return all(done.get(p, 0) >= offset for p, offset in target.items())


@dataclass
class JvmRun:
    """A run's state in the driver (``ctx.extra[<engine>]``); engines add their own."""

    params: dict[str, Any]  # the run's section of the config (engine settings)
    paths: Any  # the engine's JobPaths: run_dir, job_config, ready, stop_request, log
    job: Any  # the engine's JobConfig (run_id, input_topic, ...)
    proc: subprocess.Popen | EngineSession | None = None  # what serves the run
    session: EngineSession | None = None  # set while an engine session serves it
    ready: dict[str, Any] = field(default_factory=dict)  # the job's ready.json
    startup_s: float | None = None
    lag_sampler: LagSampler | None = None
    lag_ends: KafkaEndOffsets | None = None
    drain: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0  # fault runs: times the job was killed and started again


class JvmJobDriver:
    """The PipelineDriver steps both JVM engines share (see module doc)."""

    owns_generator = False
    engine = ""  # "spark" | "flink": config section, ctx.extra key, session name, job module
    connector = ""  # a part of the name of the engine's Kafka connector jar

    def params(self, ctx: Any) -> dict[str, Any]:
        """The run's engine settings (config section + run overrides), every key of the
        schema's section present."""
        return pipeline_params(ctx.config, ctx.spec, required=section_keys(self.engine))

    def venv(self, run: Any) -> str:
        """The virtualenv (``.venv/<name>``) whose interpreter runs the run's job."""
        return self.engine

    def python(self, run: Any) -> Path:
        return engine_python(self.venv(run))

    def jars(self) -> list[str]:
        return engine_jars(self.engine, self.connector)

    # ------------------------------------------------------- what each engine supplies
    def job_env(self, run: Any) -> dict[str, str]:
        """Environment variables the engine's job process needs beyond the repo path."""
        return {}

    def jvm_settings(self, run: Any) -> dict[str, Any]:
        """What is fixed when the engine's JVM starts: runs differing here get another
        session."""
        raise NotImplementedError

    def use_session(self, run: Any) -> bool:
        return bool(run.params["session"]["reuse"])

    def before_submit(self, ctx: Any, run: Any, session: EngineSession,
                      job_config: Path) -> None:
        """Called before a run goes to a session (e.g. a fresh session's warm-up input)."""

    def on_ready(self, run: Any) -> None:
        """The job wrote ready.json (``run.ready``)."""

    def job_running(self, run: Any) -> bool:
        """After ready.json: is the job processing (e.g. every operator RUNNING)?"""
        return True

    def consumed_offsets(self, run: Any) -> dict[int, int]:
        """Per input partition, the offset up to which the job has read."""
        raise NotImplementedError

    def lag_interval_s(self, run: Any) -> float:
        return 1.0

    def scratch_dirs(self, run: Any) -> list[Path]:
        """Directories of the run removed at its stop (checkpoints, temp files)."""
        return []

    def extra_topics(self, run: Any) -> list[str]:
        """Topics of the run besides the contract's input, output and dead letters."""
        return []

    # ------------------------------------------------------------------- shared steps
    def generator_sink(self, ctx: Any) -> dict[str, Any]:
        run = ctx.extra[self.engine]
        return {"kind": "kafka", "bootstrap": ctx.services.kafka_bootstrap,
                "topic": run.job.input_topic, "watermark_markers": False,
                "marker_interval_ms": 0, "watermark_bound_ms": 0, "idle_partitions": []}

    def command(self, run: Any, job_config: Path) -> list[str]:
        return [str(self.python(run)), "-m", f"engines.{self.engine}.ctr_job",
                "--config", str(job_config)]

    def environment(self, run: Any) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.job_env(run))
        return env

    def launch(self, ctx: Any, run: Any, job_config: Path, in_session: bool) -> float:
        """Run the job with ``job_config``, in the engine session (``in_session``; a busy
        or failing session: a private process) or a private job process; wait until it
        is ready and running (``run.ready`` set). The seconds it took."""
        t0 = time.monotonic()
        env = self.environment(run)
        cmd = self.command(run, job_config)
        run.ready = {}
        session = self.open_session(ctx, run, cmd, env) if in_session else None
        if session is not None:
            self.before_submit(ctx, run, session, job_config)
            session.submit(ctx.run_id, job_config, run.paths.run_dir)
            run.session = run.proc = session
        else:
            run.paths.log.parent.mkdir(parents=True, exist_ok=True)
            with run.paths.log.open("ab") as out:
                # Own session: stop() can signal the job and its JVM together.
                run.proc = subprocess.Popen([*cmd, "--run-dir", str(run.paths.run_dir)],
                                            cwd=REPO_ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        ctx.processes.append(run.proc)
        timeout_s = float(run.params["startup_timeout_s"])
        deadline = t0 + timeout_s
        while True:
            self.check_alive(run, "while starting")
            if not run.ready and run.paths.ready.exists():
                run.ready = json.loads(run.paths.ready.read_text())
                self.on_ready(run)
            if run.ready and self.job_running(run):
                return round(time.monotonic() - t0, 3)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.engine} job not running after {timeout_s:.0f} s; "
                                   f"see {run.paths.log}")
            time.sleep(0.2)

    def open_session(self, ctx: Any, run: Any, cmd: list[str],
                     env: dict[str, str]) -> EngineSession | None:
        """The engine session for the run's JVM settings (started if there is none);
        None: a private job process runs it (the session is busy, or could not start)."""
        sparams = run.params["session"]
        settings = {**self.jvm_settings(run),
                    "idle_timeout_s": float(sparams["idle_timeout_s"]),
                    "session_warmup_events": int(sparams["warmup_events"])}
        try:
            session = open_session(self.engine, settings, cmd, env,
                                   sessions_root(ctx.services.state_dir),
                                   float(run.params["startup_timeout_s"]))
        except RuntimeError as exc:
            log.warning("no %s session (%s): a private job process runs this run",
                        self.engine, exc)
            return None
        if session is None:
            log.warning("the %s session is busy (another run): a private job process",
                        self.engine)
        return session

    def check_alive(self, run: Any, when: str) -> None:
        """Raise when what serves the run is gone: a private process exited, the session
        died, or the session reported the run done (it failed)."""
        if run.proc is None:
            raise RuntimeError(f"the {self.engine} job was not started")
        report = run.session.done(run.job.run_id) if run.session is not None else None
        if run.proc.poll() is None and report is None:
            return
        log_path = run.session.log_path if run.session is not None else run.paths.log
        what = (f"session ended the run with code {report.get('code')}" if report
                else "session exited" if run.session is not None
                else f"job exited with code {run.proc.returncode}")
        tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log_path.exists() else ""
        raise RuntimeError(f"the {self.engine} {what} {when}; see {log_path}:\n{tail}")

    def start_lag_sampler(self, ctx: Any, run: Any) -> None:
        run.lag_ends = KafkaEndOffsets(ctx.services.kafka_bootstrap, run.job.input_topic)
        # consumed_offsets reads the run's current job (a fault run restarts it).
        run.lag_sampler = LagSampler(ctx.run_dir / "metrics" / "lag.csv", run.lag_ends,
                                     lambda: self.consumed_offsets(run),
                                     interval_s=self.lag_interval_s(run))
        run.lag_sampler.start()

    @staticmethod
    def stop_lag_sampler(run: Any) -> None:
        if run.lag_sampler is not None:
            run.lag_sampler.stop()
            run.lag_sampler = None
        if run.lag_ends is not None:
            run.lag_ends.close()
            run.lag_ends = None

    # ------------------------------------------------------------------- faults
    def kill(self, ctx: Any) -> dict[str, Any]:
        """Fault runs (sdsbench.faults): SIGKILL the engine session (its JVM hosts the
        job; the next run starts a new one) or the private job's process group (the
        Python driver and its JVM). Nothing is cancelled or cleaned up."""
        run = ctx.extra[self.engine]
        session, run.session = run.session, None
        if session is not None:
            try:
                pids = session.kill()
            finally:
                session.release()  # also when the kill failed: never leave it locked
            session.copy_log(run.paths.log)
            return {"killed": f"{self.engine} engine session (python + JVM)",
                    "session": session.key, "pids": pids}
        return {"killed": f"{self.engine} job (python + JVM)",
                "pids": kill_process_group(run.proc)}

    def relaunch(self, ctx: Any, run: Any, job: Any) -> float:
        """Fault runs: start ``job`` (the run's job, changed for the restart) in a private
        process; the first start's ready.json is kept as ready-<k>.json."""
        run.restarts += 1
        engine_dir = run.paths.job_config.parent
        if run.paths.ready.exists():
            run.paths.ready.rename(engine_dir / f"ready-{run.restarts - 1}.json")
        run.job = job
        config = engine_dir / f"job_config-restart{run.restarts}.json"
        write_json_atomic(config, job.to_dict())
        return self.launch(ctx, run, config, in_session=False)

    # ------------------------------------------------------------------- stop
    def stop(self, ctx: Any) -> None:
        run = ctx.extra.get(self.engine)
        if run is None:
            return
        self.stop_lag_sampler(run)
        if run.session is not None:
            self.stop_session_run(run)
        elif isinstance(run.proc, subprocess.Popen):
            self.stop_private(run)
        for path in self.scratch_dirs(run):
            shutil.rmtree(path, ignore_errors=True)
        if not run.params["keep_topics"]:
            try:
                delete_run_topics(ctx.services, ctx.run_id)
                extra = [t for t in self.extra_topics(run) if t]
                if extra:
                    delete_topics(ctx.services.kafka_bootstrap, extra)
            except Exception as exc:  # noqa: BLE001 - results are collected; do not fail the run
                log.warning("could not delete the run's topics: %s", exc)

    def stop_session_run(self, run: Any) -> None:
        """STOP -> the server ends the run and is idle again (done/<run>.json). A session
        that does not answer in time, or has no job to stop yet (it would finish its
        warm-up first), is killed: the next run starts a new one. Never leaves it locked."""
        session = run.session
        report = None
        if session.poll() is None:
            run.paths.stop_request.touch()
            if run.ready or session.done(run.job.run_id) is not None:
                report = session.wait_done(run.job.run_id, float(run.params["stop_timeout_s"]))
            if report is None:
                log.warning("the %s session did not end the run in %s s: killing it",
                            self.engine, run.params["stop_timeout_s"])
                try:
                    session.kill()
                finally:
                    session.release()
        session.copy_log(run.paths.log)  # before the release: the next run appends to it
        session.release()
        run.session = None
        if report is not None and report.get("code") != 0:
            log.warning("the %s session reports the run failed: %s", self.engine, report)

    def stop_private(self, run: Any) -> None:
        """STOP file -> the job process exits; else SIGTERM, then SIGKILL to its group. A
        job not ready yet (warming up) has nothing to keep: its group is ended at once."""
        proc = run.proc
        if proc.poll() is None and run.ready:
            run.paths.stop_request.touch()
            try:
                proc.wait(timeout=float(run.params["stop_timeout_s"]))
            except subprocess.TimeoutExpired:
                log.warning("%s job did not stop in %s s: terminating", self.engine,
                            run.params["stop_timeout_s"])
                terminate_pid(proc.pid, timeout=20)
                proc.wait(timeout=10)
        # The JVM may outlive a killed Python parent: end what is left of its group.
        end_process_group(proc.pid)
