"""The A4s job process: one run on its own Spark session (``--run-dir``), or an engine
session serving runs one at a time (``--session-dir``; ``sdsbench.engine_session``).

Run as ``python -m engines.spark.ctr_job --config JOB.json --run-dir DIR`` (one run, its
own JVM), or as an engine-session server (``sdsbench.engine_session``) with
``--config FIRST_JOB.json --session-dir D``: one Spark session (driver JVM) serves runs
one at a time, so the JVM start (~6 s) and the cold JIT are paid once per session, not
per run. Shared between runs: the JVM and what fixes it (``session_settings``: master,
driver memory, jars, extra_conf; the session key). Per run (``serve_run``, the same code
as the one-shot job): shuffle partitions, the run's own warm-up (``warmup_events``, so
each run starts with its plan compiled whatever ran before), listener, query, set-aside,
STOP, final.json; afterwards everything of the run is stopped and removed and a full GC
runs (``reset_session``). The first run of a session also runs ``session.warmup_events``
once. A failed run is reported (code 1) and the server takes the next one; a session it
cannot reset exits. The JSON is written by ``engines.spark.pipeline`` (broker, topics,
jars, the ``spark:`` settings).
The job never times itself: a StreamingQueryListener (``engines.spark.progress``) writes
Spark's own per-batch numbers, the runner samples CPU and memory from outside.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.spark.ctr_query import build, make_session, set_aside_rejects, warm_up
from engines.spark.job_config import (
    SESSION_WARMUP_BATCHES,
    WARMUP_TIMEOUT_S,
    JobConfig,
    JobPaths,
    session_conf,
    session_settings,
)
from engines.spark.progress import ProgressRecorder
from sdsbench.engine_session import SessionServer, job_arguments
from sdsbench.process_control import StopFlag
from sdsbench.rundir import write_json_atomic

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("sdsbench.spark.job")


# ------------------------------------------------------------------ main
STOP_POLL_S = 0.25  # stop-file / query-state checks (py4j calls): cheap at this rate
SESSION_WARMUP_LABEL = "session-warmup"


def _stop_asked(paths: JobPaths, stop: StopFlag) -> bool:
    """A signal, the driver's stop file, or the run directory gone (the runner renamed it
    to .failed: the driver is done with the run, a session must not serve it on)."""
    return (stop.reason is not None or paths.stop_request.exists()
            or not paths.run_dir.exists())


def _engine_reported(spark: SparkSession, query: Any) -> dict[str, Any]:
    """The run's settings as the engine reports them, not as configured: the master, the
    shuffle partitions in force, and the CTR query's trigger (through the query's JVM
    object; None if a Spark version does not expose it)."""
    try:
        trigger = str(query._jsq.streamingQuery().trigger().toString())
    except Exception:  # noqa: BLE001 - an internal API: report it missing, not fail
        trigger = None
    return {"master": spark.sparkContext.master, "trigger": trigger,
            "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions")}


def serve_run(spark: SparkSession, cfg: JobConfig, paths: JobPaths, stop: StopFlag,
              t0: float, session: dict[str, Any] | None = None) -> int:
    """One run on a running Spark session (a one-shot job's own, or an engine session's):
    the run's warm-up, then its query until a stop request; 0 on a clean stop.

    Meanwhile, set the rejected records aside when the driver asks (``set_aside_request``).
    Whatever the run added to the session (its query, its listener) is gone on return,
    also when it fails. ``t0``: when the run's start-up began (``startup_s`` counts from
    it); ``session``: the engine-session block of ready.json (None: a private process).
    """

    paths.scratch.mkdir(parents=True, exist_ok=True)
    # Per run (a session may have served another value): the new checkpoint records it.
    spark.conf.set("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    if cfg.warmup_events:
        warm_up(spark, cfg, paths, cfg.warmup_events)
    warmed_s = time.monotonic() - t0
    recorder = ProgressRecorder(paths.progress_csv, paths.status)
    spark.streams.addListener(recorder)
    queries: dict[str, Any] = {}
    try:
        # The query's thread inherits the pool (Structured Streaming guide, scheduler pools).
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "ctr")
        queries["ctr"] = build(spark, cfg, paths).start()
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "set_aside")
        started_s = time.monotonic() - t0
        # Ready once every query finished a first batch: on a fresh topic Spark runs batch
        # 0 at once, and it carries the one-off costs (code generation, JIT, Kafka clients;
        # 5-20 s here), which would otherwise land on the first seconds of the measured load.
        warmed_up = False
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        while time.monotonic() < deadline and not _stop_asked(paths, stop):
            if all(q.lastProgress is not None for q in queries.values()):
                warmed_up = True
                break
            if not all(q.isActive for q in queries.values()):
                break
            time.sleep(0.2)
        write_json_atomic(paths.ready, {
            "spark_version": spark.version,
            "startup_s": round(time.monotonic() - t0, 3),
            "batch_warmup_done_s": round(warmed_s, 3),
            "queries_started_s": round(started_s, 3),
            "warmed_up": warmed_up,
            "queries": {name: str(q.id) for name, q in queries.items()},
            "session_conf": session_conf(cfg, Path(spark.conf.get("spark.local.dir"))),
            "engine_reported": _engine_reported(spark, queries["ctr"]),
            "session": session,
        })
        log.info("queries started after %.1f s, first batches done after %.1f s", started_s,
                 time.monotonic() - t0)
        failed: dict[str, str] = {}
        while not _stop_asked(paths, stop):
            for name, query in queries.items():
                if not query.isActive:
                    error = query.exception()
                    failed[name] = str(error) if error is not None else "stopped"
            if failed:
                break
            if paths.set_aside_request.exists() and not paths.set_aside.exists():
                log.info("setting aside the rejected records")
                report = set_aside_rejects(spark, cfg)
                write_json_atomic(paths.set_aside, report)
                log.info("set aside %s", report)
                continue
            time.sleep(STOP_POLL_S)
        log.info("stopping (%s)", stop.reason or ("query ended" if failed else
                                                  "stop file" if paths.run_dir.exists() else
                                                  "run directory gone"))
        final = {name: q.lastProgress for name, q in queries.items()}
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()
        spark.streams.removeListener(recorder)
        recorder.close()
    if paths.run_dir.exists():  # gone: the driver gave up on the run; do not recreate it
        write_json_atomic(paths.final, {"last_progress": final, "failed": failed,
                                        "stop": stop.reason or "stop file"})
    if failed:
        log.error("query failed: %s", failed)
        return 1
    return 0


def run(cfg: JobConfig, paths: JobPaths) -> int:
    """A one-shot job: its own Spark session (and JVM) for one run."""
    stop = StopFlag().install()
    t0 = time.monotonic()
    spark = make_session(cfg, paths.scratch, f"sdsbench-ctr-{cfg.run_id}")
    try:
        return serve_run(spark, cfg, paths, stop, t0)
    finally:
        spark.stop()


def reset_session(spark: SparkSession) -> bool:
    """Between runs of a session: nothing of the previous run left (queries, cached data,
    the scheduler pool), then a full GC so the next run starts on a clean heap. False when
    the session is unusable (the server then exits; the next run starts a new one)."""
    try:
        for query in spark.streams.active:
            query.stop()
        spark.streams.resetTerminated()
        spark.catalog.clearCache()
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]
        spark._jvm.System.gc()  # type: ignore[union-attr]
        spark.range(1).count()  # the session still runs jobs
        return True
    except Exception:  # noqa: BLE001 - any failure here means: do not serve another run
        log.exception("the Spark session cannot be reset: exiting")
        return False


def serve(first: JobConfig, session_dir: Path) -> int:
    """Engine-session server: one Spark session (driver JVM) serving runs one at a time
    (``sdsbench.engine_session``). ``first`` (the first run's job config, read once:
    its directory is renamed later) fixes the JVM-level settings (``session_settings``);
    a run with other ones is refused (the driver's session key keeps them apart). A
    failed run is reported (code 1) and the server takes the next one."""


    t_start = time.monotonic()
    server = SessionServer(session_dir)
    stop = StopFlag(server).install()
    session_warmup_events = server.session_warmup_events
    settings = session_settings(first)
    local_dir = session_dir / "tmp"
    spark = make_session(first, local_dir, "sdsbench-ctr-session")
    key = session_dir.name.split("-", 1)[-1]
    server.announce(engine="spark", key=key, spark_version=spark.version, settings=settings,
                    session_warmup_events=session_warmup_events,
                    jvm_start_s=round(time.monotonic() - t_start, 3))
    session_warmed = session_warmup_events == 0
    try:
        for request in server.requests():
            picked_up = time.monotonic()
            log.info("run %s: serving (%d runs served before)", request.run_id,
                     server.runs_served)
            code, report = 1, {}
            try:
                cfg = JobConfig.from_dict(json.loads(request.config.read_text()))
                if session_settings(cfg) != settings:
                    raise ValueError(f"run settings {session_settings(cfg)} are not the "
                                     f"session's {settings}")
                paths = JobPaths(request.run_dir)
                # The first run's start-up includes the JVM's (as a one-shot job's does).
                t0 = t_start if server.runs_served == 0 else picked_up
                block: dict[str, Any] = {
                    "key": key, "server_pid": os.getpid(),
                    "reused": server.runs_served > 0,
                    "runs_served_before": server.runs_served,
                    "session_warmup_events": 0, "session_warmup_s": None,
                }
                if not session_warmed:
                    # Once per session, before the first run's own warm-up (which follows).
                    tw = time.monotonic()
                    # Many small batches: a micro-batch's fixed work (planning, state
                    # store commit, offsets) is what a 4-batch warm-up leaves cold; measured,
                    # quick run 2026-11-24: the first run of a session had CTR batches
                    # 446-520 ms (median, first half) vs 314 ms in a reused session.
                    warm_up(spark, cfg, paths, session_warmup_events, SESSION_WARMUP_LABEL,
                            batches=SESSION_WARMUP_BATCHES)
                    session_warmed = True
                    block["session_warmup_events"] = session_warmup_events
                    block["session_warmup_s"] = round(time.monotonic() - tw, 3)
                code = serve_run(spark, cfg, paths, stop, t0, block)
            except Exception as exc:  # noqa: BLE001 - the run fails, the server goes on
                log.exception("run %s failed", request.run_id)
                report = {"error": repr(exc)}
            healthy = reset_session(spark)
            log.info("run %s: done (code %d)", request.run_id, code)
            server.finished(request, code, seconds=round(time.monotonic() - picked_up, 3),
                            **report)
            if not healthy:
                return 1
        return 0
    finally:
        spark.stop()
        shutil.rmtree(local_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = job_arguments(__doc__.splitlines()[0], argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = JobConfig.from_dict(json.loads(args.config.read_text()))
    if args.session_dir is not None:
        return serve(cfg, args.session_dir)
    return run(cfg, JobPaths(args.run_dir))


if __name__ == "__main__":
    sys.exit(main())
