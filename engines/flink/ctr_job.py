"""The A4f job process: one run (``--run-dir``), or an engine session serving runs one at
a time (``--session-dir``; ``sdsbench.engine_session``). The query is ``engines.flink.ctr_sql``.

Run as ``python -m engines.flink.ctr_job --config JOB.json --run-dir DIR`` (the file is
written by ``engines.flink.pipeline``: broker, topics, jars, the ``flink:`` settings; JSON
or YAML). The job never times itself: the driver samples Flink's REST API
(``engines.flink.metrics``) and the runner samples CPU and memory from outside.

Session mode (``--config FIRST.json --session-dir D``; ``sdsbench.engine_session``):
one process and its gateway JVM serve runs one at a time, each with the config its request
names. PyFlink's local mode runs every ``execute()`` on a MiniCluster of its own inside
the gateway JVM, built from that TableEnvironment's configuration, so what the job sets
(parallelism, checkpointing, state backend, REST port, ``flink_options``) is per run (the
driver reads it back from the job's REST API: ``flink/job_*.json``); what the JVM fixes
when it starts (heap, jars, the log directory) is the session's, and so its key. Per run:
the session warm-up (first run only), the run's own warm-up, submit, ready.json (with a
``session`` block: key, reused, runs served before), STOP -> cancel and wait for the end,
the run's part of the JVM's log files copied to its ``flink/logs``, a full GC; a failed
run is reported (done/<run>.json, code 1) and the server waits for the next one.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.flink.ctr_sql import ddl_statements, insert_statements
from engines.flink.job_config import JobConfig, JobPaths, load_job_config, warmup_config
from sdsbench.engine_session import SessionServer, job_arguments
from sdsbench.process_control import StopFlag
from sdsbench.rundir import write_json_atomic

if TYPE_CHECKING:
    from pyflink.table import StatementSet, TableEnvironment

log = logging.getLogger("sdsbench.flink.job")


# ------------------------------------------------------------------ environment
def flink_settings(cfg: JobConfig, checkpointing: bool = True) -> dict[str, str]:
    """Flink configuration of the job (set before the environment, and so the local
    mini-cluster, is created). ``checkpointing=False`` for the bounded warm-up, which would
    otherwise wait for a final checkpoint before it ends."""
    settings = {
        "pipeline.name": f"sdsbench-flink-{cfg.run_id}",
        # The connector as a local file: nothing is downloaded at run time.
        "pipeline.jars": ";".join(Path(j).resolve().as_uri() for j in cfg.jars),
        "parallelism.default": str(cfg.parallelism),
        "table.local-time-zone": "UTC",  # window bounds are UTC wall clock -> epoch ms
        "pipeline.auto-watermark-interval": f"{cfg.watermark_interval_ms} ms",
        "pipeline.object-reuse": "true",  # no defensive copies between chained operators
        "state.backend.type": cfg.state_backend,
        "web.checkpoints.history": "100",
        # The REST API serves metrics it fetched at most this long ago (Flink's default is
        # 10 s): the lag and watermark samples would be that stale.
        "metrics.fetcher.update-interval": f"{min(cfg.metrics_interval_ms, 200)} ms",
    }
    if checkpointing:
        settings.update({
            "execution.checkpointing.interval": f"{cfg.checkpoint_interval_ms} ms",
            "execution.checkpointing.mode": "EXACTLY_ONCE",
            "execution.checkpointing.storage": "filesystem",
            "execution.checkpointing.dir": Path(cfg.checkpoint_dir).resolve().as_uri(),
        })
    if cfg.buffer_timeout_ms is not None:
        settings.update({"execution.buffer-timeout.enabled": "true",
                         "execution.buffer-timeout.interval": f"{cfg.buffer_timeout_ms} ms"})
    if cfg.idle_timeout_ms is not None:
        settings["table.exec.source.idle-timeout"] = f"{cfg.idle_timeout_ms} ms"
    if cfg.allowed_lateness_ms > 0:
        settings.update({
            "table.exec.emit.allow-lateness": f"{cfg.allowed_lateness_ms} ms",
            "table.exec.emit.late-fire.enabled": "true",
            "table.exec.emit.late-fire.delay": "0 s",  # re-emit on every late element
        })
    if cfg.jobmanager_address:
        host, _, port = cfg.jobmanager_address.rpartition(":")
        settings.update({"execution.target": "remote", "rest.address": host, "rest.port": port})
    else:
        # The local mini-cluster's REST API (jobs, watermarks, backpressure, checkpoints),
        # on loopback only; the driver picks the port.
        settings.update({"rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1",
                         "rest.port": str(cfg.rest_port)})
    settings.update(cfg.flink_options)
    return settings


def create_environment(cfg: JobConfig, checkpointing: bool = True) -> TableEnvironment:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in flink_settings(cfg, checkpointing).items():
        conf.set_string(key, value)
    settings = (EnvironmentSettings.new_instance().in_streaming_mode()
                .with_configuration(conf).build())
    return TableEnvironment.create(settings)


def build(t_env: TableEnvironment, cfg: JobConfig, warmup: bool = False) -> StatementSet:
    """Register the tables and views and return the statement set of the job's INSERTs."""
    for statement in ddl_statements(cfg, warmup):
        t_env.execute_sql(statement)
    statements = t_env.create_statement_set()
    for insert in insert_statements(cfg):
        statements.add_insert_sql(insert)
    return statements


# ------------------------------------------------------------------ main
def warm_up(cfg: JobConfig, session: bool = False) -> float:
    """Run the job's plan once over the warm-up topic (bounded, into blackhole sinks), in
    the same JVM, before the real job: the Kafka client, JSON parsing and the window
    operators are JIT-compiled before the first measured event arrives. Without it the
    job needs ~10 s at 20k events/s to reach speed, and the first windows' latency
    measures the JIT, not the engine. Returns the seconds it took."""
    warm = warmup_config(cfg, session)
    t0 = time.monotonic()
    build(create_environment(warm, checkpointing=False), warm, warmup=True).execute().wait()
    took = time.monotonic() - t0
    log.info("warm-up over %s took %.1f s", warm.input_topic, took)
    return took


TERMINAL_STATES = ("FAILED", "CANCELED", "FINISHED")


def submit_and_serve(cfg: JobConfig, paths: JobPaths, flag: StopFlag, poll_s: float = 0.5,
                     ready_extra: dict[str, Any] | None = None) -> int:
    """Submit the job, report it ready, keep it running until a stop request (STOP file
    or signal), then cancel it and wait until it ended (its mini-cluster with it). The
    part of a run that one-shot and session mode share."""
    import pyflink

    t_env = create_environment(cfg)
    statements = build(t_env, cfg)
    if paths.stop_request.exists() or flag.requested:
        log.info("stop requested before the job was submitted")
        return 1
    result = statements.execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id())
    paths.sql.write_text(";\n\n".join(ddl_statements(cfg) + insert_statements(cfg)) + ";\n")
    write_json_atomic(paths.ready, {
        "job_id": job_id,
        "rest_url": cfg.rest_url,
        "flink_version": getattr(pyflink, "__version__", None) or _pyflink_version(),
        "settings": flink_settings(cfg),
        **(ready_extra or {}),
    })
    log.info("job %s submitted; REST at %s", job_id, cfg.rest_url)
    code = 0
    while not flag.requested and not paths.stop_request.exists():
        status = str(client.get_job_status().result())
        if status in TERMINAL_STATES:
            log.error("job %s ended with status %s (see the Flink log in %s)", job_id, status,
                      paths.log_dir)
            return 1 if status != "FINISHED" else 0
        time.sleep(poll_s)
    log.info("cancelling job %s", job_id)
    try:
        client.cancel().result()
    except Exception as exc:  # noqa: BLE001 - the job may have ended meanwhile
        log.warning("cancel: %s", exc)
    # Wait for the end: a session's next job must not share the JVM with this one.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if str(client.get_job_status().result()) in TERMINAL_STATES:
                break
        except Exception:  # noqa: BLE001 - the mini-cluster is gone: the job is too
            break
        time.sleep(0.2)
    else:
        log.warning("job %s not ended 30 s after cancel", job_id)
        code = 1
    return code


def run(cfg: JobConfig, paths: JobPaths, poll_s: float = 0.5) -> int:
    """One-shot: warm up, submit the job, report it ready, run until a stop request."""
    flag = StopFlag().install()
    if cfg.warmup_topic is not None:
        warm_up(cfg)
    return submit_and_serve(cfg, paths, flag, poll_s)


# ------------------------------------------------------------------ engine session
SESSION_LOG_DIR = "flink-logs"  # the session JVM's log4j files, in the session directory


def _log_sizes(log_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in log_dir.glob("*") if p.is_file()}


def copy_new_logs(log_dir: Path, sizes_before: dict[str, int], dest: Path) -> None:
    """Copy what the session JVM logged since ``sizes_before`` into the run's log dir
    (same file names as a one-shot run's ``flink/logs``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, size in _log_sizes(log_dir).items():
        start = sizes_before.get(name, 0)
        if size < start:
            start = 0  # rolled over
        if size > start:
            with (log_dir / name).open("rb") as src, (dest / name).open("ab") as out:
                src.seek(start)
                out.write(src.read(size - start))


def serve(session_dir: Path, poll_s: float = 0.5) -> int:
    """Session mode: one gateway JVM serves runs one at a time (see the driver's doc).
    Each run: its config from the request, the session warm-up (first run of the session
    only), its own warm-up, submit, ready.json, STOP -> cancel; then the JVM is
    garbage-collected and the server waits for the next run. A failed run is reported in
    done/<run>.json and the server goes on."""

    from pyflink.java_gateway import get_gateway


    log_dir = session_dir / SESSION_LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    # Read by pyflink_gateway_server when it starts the JVM (below): fixed for the session.
    os.environ["FLINK_LOG_DIR"] = str(log_dir)
    server = SessionServer(session_dir)
    flag = StopFlag(server).install()
    gateway = get_gateway()  # starts the JVM now: the first run does not pay it twice
    jvm_pid = int(gateway.jvm.ProcessHandle.current().pid())
    key = session_dir.name.split("-", 1)[-1]
    server.announce(engine="flink", key=key, jvm_pid=jvm_pid, settings=server.settings,
                    flink_version=_pyflink_version())
    log.info("Flink session %s ready (JVM pid %d)", key, jvm_pid)
    session_warmup_s: float | None = None
    for request in server.requests():
        log.info("run %s: %s", request.run_id, request.config)
        paths = JobPaths(request.run_dir)
        if not paths.flink_dir.is_dir():
            # The driver prepares it before it submits: gone means the runner gave up on
            # the run; do not recreate it.
            log.warning("run %s: %s is gone: not served", request.run_id, paths.flink_dir)
            server.finished(request, 1)
            continue
        sizes = _log_sizes(log_dir)
        served_before = server.runs_served
        code = 1
        try:
            cfg = load_job_config(request.config)
            if cfg.session_warmup_topic is not None and session_warmup_s is None:
                session_warmup_s = round(warm_up(cfg, session=True), 3)
            warmup_s = round(warm_up(cfg), 3) if cfg.warmup_topic is not None else None
            code = submit_and_serve(cfg, paths, flag, poll_s, ready_extra={"session": {
                "key": key, "reused": served_before > 0, "runs_served_before": served_before,
                "server_pid": os.getpid(), "jvm_pid": jvm_pid,
                "session_warmup_s": session_warmup_s if served_before == 0 else None,
                "warmup_s": warmup_s}})
        except Exception:  # noqa: BLE001 - a failed run must not end the session
            log.exception("run %s failed", request.run_id)
        finally:
            # Nothing of the run stays referenced: its environment's Java objects are
            # released (py4j finalizers), then a full GC before the next run.
            gc.collect()
            try:
                gateway.jvm.System.gc()
            except Exception as exc:  # noqa: BLE001 - the JVM is gone: the loop ends below
                log.error("JVM unreachable after run %s: %s", request.run_id, exc)
                server.stop_requested = True
            copy_new_logs(log_dir, sizes, paths.log_dir)
        server.finished(request, code)
    log.info("Flink session %s exits after %d runs", key, server.runs_served)
    return 0


def _pyflink_version() -> str | None:
    try:
        return version("apache-flink")
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = job_arguments(__doc__.splitlines()[0], argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_job_config(args.config)
    if args.session_dir is not None:
        # --config is the first run's: only checked here; each run brings its own.
        return serve(args.session_dir)
    paths = JobPaths(args.run_dir)
    paths.flink_dir.mkdir(parents=True, exist_ok=True)
    return run(cfg, paths)


if __name__ == "__main__":
    sys.exit(main())
