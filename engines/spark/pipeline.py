"""The A4s PipelineDriver: runs ``engines.spark.ctr_job`` in ``.venv/spark``, in the Spark
engine session (``spark.session.reuse``) or as a private job process.

    prepare  per-run topics (input, output with LogAppendTime, dead letters) + job config
    start    hand the run to the engine session whose JVM-level settings match (started
             by the first run that needs it; ``engines.common.engine_session``), or, with
             ``session.reuse: false`` or when the session is busy, start a private job
             process (its own process group); wait until the CTR query ran a first batch
             (each run runs its own warm-up either way); start sampling consumer lag
    drain    wait until the CTR query consumed the input topic's end offsets and has been
             quiet (no batch) for a while, so the no-data batch that applies the final
             watermark has run
    collect  results.csv (output topic); asks the job to set the rejected records aside
             (one batch pass over the input topic -> dead-letter topic, outside the
             measured load; skipped when the streaming query observed no reject and the
             job never restarted) and meanwhile runs the late-event audit
             (metrics/late.csv, metrics/spark_batches.csv); rejects.csv (dead letters per
             reason, the shared format; each record in spark/dead_letters.csv),
             metrics/watermark.csv, metrics/spark_summary.json (with ready.json's
             ``session`` block: which runs shared a JVM)
    stop     ask the job to stop (stop file); a session: wait until the server reports the
             run done (else kill the session: it may be wedged), copy the run's part of the
             server log to spark/job.log, release it; a private process: SIGTERM, then
             SIGKILL to its group. Delete the run's topics.

Fault runs: ``kill`` SIGKILLs the whole engine session (or the private process); the
restart is always a private job process, and the next run starts a new session.

Drain rule (append mode). A window is emitted once the watermark passes its end, and the
watermark moves only with new data, so after the generator stops the windows whose end is
above the final watermark stay open and are never emitted. The run records the final
watermark (``final_watermark_ms`` in metrics/spark_summary.json); the analysis compares
with the generator truth only windows with ``window_end_ms <= final_watermark_ms``. No
synthetic end-of-stream event is sent (the truth would not know it). In update mode every
window is emitted each time it changes; readers take the last record per
(campaign_id, window_start_ms), and the same comparison rule applies.

Lag. Spark commits no consumer-group offsets. ``metrics/lag.csv`` (the shared LAG_COLUMNS
format) pairs the topic's end offsets, sampled by the driver every second, with the end
offsets of the CTR query's latest finished batch (from the job's progress listener).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.common.engine_session import EngineSession, open_session, sessions_root
from engines.spark.ctr_job import JobConfig, JobPaths, session_settings
from sdsbench import contract
from sdsbench.experiments import pipeline_params
from sdsbench.rundir import write_json_atomic

log = logging.getLogger("sdsbench.spark")

REPO_ROOT = Path(__file__).resolve().parents[2]
SPARK_PYTHON = REPO_ROOT / ".venv" / "spark" / "bin" / "python"
SPARK_JARS_DIR = REPO_ROOT / ".deps" / "spark-jars"
# Keys of the config's spark: section the driver reads (the schema describes them).
PARAM_KEYS = (
    "master", "driver_memory", "trigger_ms", "watermark_delay_ms",
    "output_mode", "shuffle_partitions", "max_offsets_per_trigger", "campaign_lookup",
    "late_audit", "startup_timeout_s", "stop_timeout_s", "keep_topics", "warmup_events",
    "session", "extra_conf",
)
DEAD_LETTER_COLUMNS = ("reason", "partition", "offset", "kafka_time_ms", "raw")
WATERMARK_COLUMNS = ("time_ms", "watermark_ms", "batch_id")
SET_ASIDE_TIMEOUT_S = 900.0  # longest wait for the job's set-aside of rejected records


def spark_params(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The run's ``spark:`` settings (config section + run overrides), all keys present."""
    return pipeline_params(config, spec, required=PARAM_KEYS)


def spark_python() -> Path:
    """The Spark venv's interpreter (SDSBENCH_SPARK_PYTHON overrides, e.g. for a test venv)."""
    path = Path(os.environ.get("SDSBENCH_SPARK_PYTHON", SPARK_PYTHON))
    if not path.exists():
        raise RuntimeError(f"{path} missing: run `bash env/setup.sh spark`")
    return path


def connector_jars(jars_dir: Path = SPARK_JARS_DIR) -> list[str]:
    jars = sorted(str(p) for p in jars_dir.glob("*.jar"))
    if not any("spark-sql-kafka" in Path(j).name for j in jars):
        raise RuntimeError(
            f"no spark-sql-kafka connector in {jars_dir}: run `bash env/setup.sh spark`")
    return jars


def job_config(
    run_id: str, bootstrap: str, params: dict[str, Any], workload: dict[str, Any], jars: list[str]
) -> JobConfig:
    return JobConfig.from_dict({
        "run_id": run_id,
        "bootstrap": bootstrap,
        "input_topic": contract.input_topic(run_id),
        "output_topic": contract.output_topic(run_id),
        "dead_letter_topic": contract.dead_letter_topic(run_id),
        "campaigns": int(workload["campaigns"]),
        "ads_per_campaign": int(workload["ads_per_campaign"]),
        "jars": jars,
        **{k: params[k] for k in (
            "master", "driver_memory", "trigger_ms", "watermark_delay_ms", "output_mode",
            "shuffle_partitions",
            "max_offsets_per_trigger", "campaign_lookup", "warmup_events", "extra_conf")},
    })


def read_status(paths: JobPaths) -> dict[str, Any]:
    """The job's latest progress per query ({} before the first batch)."""
    try:
        return json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return {}


def end_offsets_of(status: dict[str, Any], query: str) -> dict[int, int]:
    offsets = (status.get(query) or {}).get("end_offsets") or {}
    return {int(p): int(o) for p, o in offsets.items()}


def reached(done: dict[int, int], target: dict[int, int]) -> bool:
    return all(done.get(p, 0) >= offset for p, offset in target.items())


def read_dead_letters(bootstrap: str, topic: str, idle_s: float = 3.0) -> list[dict[str, Any]]:
    """Every record of the dead-letter topic, decoded (the job writes JSON)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"sdsbench-dlq-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    rows: list[dict[str, Any]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        todo = {p for p in partitions if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        last_new = time.monotonic()
        while todo and time.monotonic() - last_new < idle_s:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            last_new = time.monotonic()
            record = json.loads(msg.value())
            rows.append({k: record.get(k) for k in DEAD_LETTER_COLUMNS})
            if msg.offset() + 1 >= ends[msg.partition()]:
                todo.discard(msg.partition())
    finally:
        consumer.close()
    return rows


def watermark_rows(progress_csv: Path) -> list[dict[str, Any]]:
    """The CTR query's watermark per batch, stamped with the batch's start (the time it took
    effect): ``metrics/watermark.csv`` in the columns the analysis reads."""
    rows = []
    if progress_csv.exists():
        with progress_csv.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["query"] == "ctr" and row["watermark_ms"]:
                    rows.append({"time_ms": row["batch_time_ms"],
                                 "watermark_ms": row["watermark_ms"],
                                 "batch_id": row["batch_id"]})
    return rows


def observed_rejects(progress_csv: Path) -> dict[str, int]:
    """The CTR query's per-batch reject counts (``observed_rejects`` column), summed per
    reason; a batch run again after a restart counts once (its last report)."""
    per_batch: dict[int, dict[str, int]] = {}
    if progress_csv.exists():
        with progress_csv.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["query"] == "ctr" and row.get("observed_rejects"):
                    per_batch[int(row["batch_id"])] = json.loads(row["observed_rejects"])
    total = {reason: 0 for reason in contract.REJECT_REASONS}
    for counts in per_batch.values():
        for reason, n in counts.items():
            total[reason] = total.get(reason, 0) + int(n)
    return total


def write_csv_atomic(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def end_process_group(pgid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, whatever is left of process group ``pgid`` (the job's)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@dataclass
class SparkRun:
    """Pipeline-private state of one run (kept in ``ctx.extra["spark"]``)."""

    params: dict[str, Any]
    paths: JobPaths
    job: JobConfig
    proc: subprocess.Popen | EngineSession | None = None  # the process serving the run
    session: EngineSession | None = None  # set when an engine session serves the run
    lag_sampler: Any = None
    lag_ends: Any = None
    drain: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0  # fault runs: times the job was killed and started again


class Pipeline:
    """Kafka -> Spark Structured Streaming -> Kafka (A4s)."""

    owns_generator = False

    def prepare(self, ctx: Any) -> None:
        from sdsbench.topics import create_run_topics

        params = spark_params(ctx.config, ctx.spec)
        paths = JobPaths(ctx.run_dir)
        job = job_config(ctx.run_id, ctx.services.kafka_bootstrap, params,
                         ctx.config["workload"], connector_jars())
        paths.spark_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(paths.job_config, job.to_dict())
        ctx.extra["spark"] = SparkRun(params, paths, job)
        partitions = int(ctx.config["services"]["kafka"]["partitions"])
        create_run_topics(ctx.services, ctx.run_id, partitions)

    def start(self, ctx: Any) -> None:
        run: SparkRun = ctx.extra["spark"]
        log.info("starting the Spark job (%s, %s)", run.job.master, run.job.output_mode)
        ready = self._launch(ctx, run, run.paths.job_config)
        log.info("Spark %s ready after %.1f s", ready.get("spark_version"), ready.get("startup_s"))
        self._start_lag_sampler(ctx, run)

    def _launch(self, ctx: Any, run: SparkRun, job_config: Path,
                private: bool = False) -> dict[str, Any]:
        """Hand the run to the engine session (``session.reuse``, not ``private``; a busy
        session: a private process) or start a private job process with ``job_config``;
        wait until the job reports ready."""
        paths = run.paths
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        python = spark_python()
        env["PYSPARK_PYTHON"] = str(python)
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # bind the driver to loopback only
        cmd = [str(python), "-m", "engines.spark.ctr_job", "--config", str(job_config)]
        session = None
        if run.params["session"]["reuse"] and not private:
            session = self._open_session(ctx, run, cmd, env)
        if session is not None:
            run.session = run.proc = session
            session.submit(ctx.run_id, job_config, paths.run_dir)
        else:
            with paths.log.open("ab") as out:
                # Own session: stop() can signal the job and its JVM together.
                run.proc = subprocess.Popen([*cmd, "--run-dir", str(paths.run_dir)],
                                            cwd=REPO_ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        ctx.processes.append(run.proc)
        deadline = time.monotonic() + float(run.params["startup_timeout_s"])
        while not paths.ready.exists():
            ended = self._job_ended(ctx, run)
            if ended is not None:
                raise RuntimeError(f"Spark job {ended} while starting; see {paths.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Spark job not ready after {run.params['startup_timeout_s']}"
                                   f" s; see {paths.log}")
            time.sleep(0.2)
        return json.loads(paths.ready.read_text())

    def _open_session(self, ctx: Any, run: SparkRun, cmd: list[str],
                      env: dict[str, str]) -> EngineSession | None:
        """The Spark engine session for the run's JVM-level settings (started if there is
        none); None when another run holds it."""
        sparams = run.params["session"]
        settings = {**session_settings(run.job),
                    "session_warmup_events": int(sparams["warmup_events"])}
        server_cmd = [*cmd, "--session-warmup-events", str(int(sparams["warmup_events"])),
                      "--idle-timeout-s", str(float(sparams["idle_timeout_s"]))]
        session = open_session("spark", settings, server_cmd, env,
                               sessions_root(ctx.services.state_dir),
                               float(run.params["startup_timeout_s"]))
        if session is None:
            log.warning("the Spark session is busy (another run): a private job process")
        return session

    @staticmethod
    def _job_ended(ctx: Any, run: SparkRun) -> str | None:
        """Why the job serving the run is gone (None while it runs): a private process
        exited, the session died, or the session reported the run done (it failed)."""
        if run.proc is None:
            return "was not started"
        if run.proc.poll() is not None:
            return f"exited with code {run.proc.returncode}"
        if run.session is not None:
            report = run.session.done(ctx.run_id)
            if report is not None:
                return f"ended (session report {report})"
        return None

    # ------------------------------------------------------------------- faults
    def kill(self, ctx: Any) -> dict[str, Any]:
        """Fault runs (sdsbench.faults): SIGKILL the driver's whole process group (the
        Python driver and the JVM that is the local[n] engine) mid-batch."""
        from sdsbench.faults import kill_process_group

        run: SparkRun = ctx.extra["spark"]
        session = run.session
        if session is not None:
            # The whole engine session goes (its JVM is the SUT); the next run starts a new one.
            run.session = None
            try:
                pids = session.kill()
            finally:
                session.release()  # also when the kill failed: never leave it locked
            return {"killed": "spark session (python + JVM)", "pids": pids}
        return {"killed": "spark driver (python + JVM)", "pids": kill_process_group(run.proc)}

    def restart(self, ctx: Any) -> dict[str, Any]:
        """Start the job again on the same checkpointLocation: each query resumes from the
        offsets and state of its last committed batch; a batch that was planned but not
        committed is run again, so its output may reach the Kafka sink twice
        (at-least-once: measured as duplicate records). No JIT warm-up this time (the
        backlog is waiting); the first start's ready.json is kept as ready-0.json. Always a
        private job process, as before sessions (the killed session is gone)."""
        run: SparkRun = ctx.extra["spark"]
        paths = run.paths
        restarts = run.restarts + 1
        if paths.ready.exists():
            paths.ready.rename(paths.spark_dir / f"ready-{restarts - 1}.json")
        config = paths.spark_dir / f"job_config-restart{restarts}.json"
        write_json_atomic(config, dataclasses.replace(run.job, warmup_events=0).to_dict())
        ready = self._launch(ctx, run, config, private=True)
        run.restarts = restarts
        return {"pid": run.proc.pid, "startup_s": ready.get("startup_s"),
                "warmed_up": ready.get("warmed_up")}

    def _start_lag_sampler(self, ctx: Any, run: SparkRun) -> None:
        from sdsbench.measurement.lag import KafkaEndOffsets, LagSampler

        run.lag_ends = KafkaEndOffsets(ctx.services.kafka_bootstrap, run.job.input_topic)
        run.lag_sampler = LagSampler(
            ctx.run_dir / "metrics" / "lag.csv", run.lag_ends,
            lambda: end_offsets_of(read_status(run.paths), "ctr"),
        )
        run.lag_sampler.start()

    def generator_sink(self, ctx: Any) -> dict[str, Any]:
        run: SparkRun = ctx.extra["spark"]
        return {"kind": "kafka", "bootstrap": ctx.services.kafka_bootstrap,
                "topic": run.job.input_topic, "watermark_markers": False,
                "marker_interval_ms": 0, "watermark_bound_ms": 0, "idle_partitions": []}

    def drain(self, ctx: Any, timeout_s: float) -> None:
        """Wait until the job consumed everything the generator sent (see module doc)."""
        from sdsbench.services.kafka import end_offsets

        run: SparkRun = ctx.extra["spark"]
        target = end_offsets(ctx.services.kafka_bootstrap, run.job.input_topic)
        quiet_ms = max(2000, 2 * run.job.trigger_ms)
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        caught_up_s = None
        drained = False
        last_report = t0
        while True:
            ended = self._job_ended(ctx, run)
            if ended is not None:
                raise RuntimeError(f"Spark job {ended} during the run; see {run.paths.log}")
            status = read_status(run.paths)
            ctr_done = end_offsets_of(status, "ctr")
            if reached(ctr_done, target):
                if caught_up_s is None:
                    caught_up_s = time.monotonic() - t0
                quiet_for_ms = time.time_ns() // 1_000_000 - status["ctr"]["received_ms"]
                if quiet_for_ms >= quiet_ms:
                    drained = True
                    break
            now = time.monotonic()
            if now > deadline:
                log.warning("drain timed out after %.0f s: ctr at %s of %s", timeout_s,
                            ctr_done, target)
                break
            if now - last_report > 5:
                behind = sum(max(t - ctr_done.get(p, 0), 0) for p, t in target.items())
                log.info("draining: %d records behind", behind)
                last_report = now
            time.sleep(0.2)
        status = read_status(run.paths)
        run.drain = {
            "drained": drained,
            "drain_s": round(time.monotonic() - t0, 3),
            "caught_up_s": None if caught_up_s is None else round(caught_up_s, 3),
            "input_end_offsets": target,
            "final_batch_id": (status.get("ctr") or {}).get("batch_id"),
            "final_watermark_ms": (status.get("ctr") or {}).get("watermark_ms"),
        }
        self._stop_lag_sampler(run)

    def _stop_lag_sampler(self, run: SparkRun) -> None:
        if run.lag_sampler is not None:
            run.lag_sampler.stop()
            run.lag_sampler = None
        if run.lag_ends is not None:
            run.lag_ends.close()
            run.lag_ends = None

    def collect(self, ctx: Any) -> None:
        from engines.spark.late_audit import audit_late_events, spark_reported_drops
        from sdsbench.measurement.output_reader import read_output_topic, write_results

        run: SparkRun = ctx.extra["spark"]
        bootstrap = ctx.services.kafka_bootstrap
        results = read_output_topic(bootstrap, run.job.output_topic)
        write_results(results, ctx.run_dir / "results.csv")
        observed = observed_rejects(run.paths.progress_csv)
        # The set-aside pass reads the whole input topic again (~5 s for 400k records).
        # It is skipped when the streaming query itself saw no reject in any batch: its
        # observed counts are exact per batch, and complete unless a kill lost a batch's
        # progress event (a restarted job: the set-aside runs).
        skip_set_aside = run.restarts == 0 and not any(observed.values())
        if not skip_set_aside:
            run.paths.set_aside_request.touch()  # the job works on it during the audit
        late = None
        if run.params["late_audit"]:
            catalog = contract.ad_catalog(run.job.campaigns, run.job.ads_per_campaign)
            late = audit_late_events(
                run.paths.checkpoint("ctr"), bootstrap, run.job.input_topic, catalog,
                ctx.run_dir / "metrics",
            )
        if skip_set_aside:
            set_aside: dict[str, Any] = {
                "skipped": "no rejects observed by the streaming query",
                "records": sum((run.drain.get("input_end_offsets") or {}).values()),
                "rejected_by_reason": dict(observed), "seconds": 0.0,
            }
            rejects: list[dict[str, Any]] = []
        else:
            set_aside = self._wait_set_aside(ctx, run)
            rejects = read_dead_letters(bootstrap, run.job.dead_letter_topic)
        write_csv_atomic(run.paths.spark_dir / "dead_letters.csv", DEAD_LETTER_COLUMNS, rejects)
        by_reason = {reason: 0 for reason in contract.REJECT_REASONS}
        for row in rejects:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
        # The shared format (engines/common/outputs.py): every contract reason, with count.
        write_csv_atomic(ctx.run_dir / "rejects.csv", ("reason", "count"),
                         [{"reason": r, "count": n} for r, n in sorted(by_reason.items())])
        write_csv_atomic(ctx.run_dir / "metrics" / "watermark.csv", WATERMARK_COLUMNS,
                         watermark_rows(run.paths.progress_csv))
        summary: dict[str, Any] = {
            "pipeline": "spark",
            "settings": {k: run.params[k] for k in PARAM_KEYS},
            **run.drain,
            "comparable_windows": "window_end_ms <= final_watermark_ms",
            "output_records": len(results),
            "output_windows": int(results[["campaign_id", "window_start_ms"]]
                                  .drop_duplicates().shape[0]) if len(results) else 0,
            "rejected": len(rejects),
            "rejected_by_reason": by_reason,
            # The streaming query's own per-batch counts (Dataset.observe), summed: a check
            # of the set-aside. A batch whose progress event a kill lost is missing here.
            "rejected_observed_by_reason": observed,
            "set_aside": set_aside,
            "rows_dropped_by_watermark_reported": spark_reported_drops(run.paths.progress_csv),
        }
        if late is not None:
            summary["late_audit"] = late
        first = run.paths.spark_dir / "ready-0.json"  # a restarted job's first start
        ready = json.loads((first if first.exists() else run.paths.ready).read_text())
        summary["restarts"] = run.restarts
        summary["spark_version"] = ready.get("spark_version")
        summary["startup_s"] = ready.get("startup_s")
        summary["session"] = ready.get("session")  # which runs shared a JVM (None: private)
        write_json_atomic(ctx.run_dir / "metrics" / "spark_summary.json", summary)

    def _wait_set_aside(self, ctx: Any, run: SparkRun) -> dict[str, Any]:
        """The job's report once it wrote the rejected records to the dead-letter topic
        (asked by ``set_aside_request``)."""
        t0 = time.monotonic()
        last_report = t0
        while not run.paths.set_aside.exists():
            ended = self._job_ended(ctx, run)
            if ended is not None:
                raise RuntimeError(f"Spark job {ended} before setting aside the rejected "
                                   f"records; see {run.paths.log}")
            now = time.monotonic()
            if now - t0 > SET_ASIDE_TIMEOUT_S:
                raise RuntimeError(f"no set-aside of rejected records after "
                                   f"{SET_ASIDE_TIMEOUT_S:.0f} s; see {run.paths.log}")
            if now - last_report > 10:
                log.info("waiting for the set-aside of rejected records (%.0f s)", now - t0)
                last_report = now
            time.sleep(0.2)
        return json.loads(run.paths.set_aside.read_text())

    def stop(self, ctx: Any) -> None:
        from sdsbench.services.kafka import terminate_pid
        from sdsbench.topics import delete_run_topics

        run: SparkRun | None = ctx.extra.get("spark")
        if run is None:
            return
        self._stop_lag_sampler(run)
        if run.session is not None:
            self._stop_session_run(ctx, run)
        elif run.proc is not None and run.proc.poll() is None:
            run.paths.stop_request.touch()
            try:
                run.proc.wait(timeout=float(run.params["stop_timeout_s"]))
            except subprocess.TimeoutExpired:
                log.warning("Spark job did not stop in %s s: terminating",
                            run.params["stop_timeout_s"])
                terminate_pid(run.proc.pid, timeout=20)
                run.proc.wait(timeout=10)
        if isinstance(run.proc, subprocess.Popen):
            # The JVM may outlive a killed Python parent: end what is left of its group.
            end_process_group(run.proc.pid)
        shutil.rmtree(run.paths.scratch, ignore_errors=True)
        if not run.params["keep_topics"]:
            try:
                delete_run_topics(ctx.services, ctx.run_id)
            except Exception as exc:  # noqa: BLE001 - results are collected; do not fail the run
                log.warning("could not delete the run's topics: %s", exc)

    def _stop_session_run(self, ctx: Any, run: SparkRun) -> None:
        """End the run the engine session serves (stop file) and wait until the server
        reports it done; a server that does not answer may be wedged: the session is
        killed (the next run starts a new one). Never leaves the session busy."""
        session = run.session
        assert session is not None
        run.paths.stop_request.touch()
        timeout_s = float(run.params["stop_timeout_s"])
        report = session.wait_done(ctx.run_id, timeout_s)
        session.copy_log(run.paths.log)  # before the release: the next run appends to it
        if report is None:
            log.warning("the Spark session did not report the run done (%.0f s, or it exited):"
                        " killing it", timeout_s)
            try:
                session.kill()
            finally:
                session.release()
        else:
            if report.get("code") != 0:
                log.warning("the Spark session reports the run failed: %s", report)
            session.release()
        run.session = None
