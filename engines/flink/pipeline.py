"""The A4f PipelineDriver: runs ``engines.flink.ctr_job`` in ``.venv/flink``. Start, kill,
restart and stop are the JVM engines' shared driver (``engines.common.jvm_driver``: an
engine session or a private job process); this module supplies what is Flink's own.

    prepare  per-run topics (input, output with LogAppendTime, dead letters, and the
             Flink-only late-event topic), the job config, the warm-up topic
    start    the job first runs its plan over the warm-up topic (JIT warm-up, nothing
             written to Kafka; ``warmup_events``), then is submitted; it runs once Flink's
             REST API shows every vertex RUNNING; then the REST sampler
             (``engines.flink.metrics``) and the consumer-lag sampler start
    drain    wait until the job covered the input's end offsets by a completed checkpoint
             and its watermark has stopped moving, then for one more completed checkpoint
             (see below)
    collect  results.csv (output topic); rejects.csv (events set aside per reason, the
             shared format; each dead-letter record in flink/dead_letters.csv);
             metrics/late.csv (late-event topic); metrics/flink_summary.json
             (``engines.flink.outputs`` reads them back)

Records that are not JSON. Flink's JSON format skips them silently. By default
(``not_json_dead_letters: false``) the job reads the input once and counts them exactly:
records in the topic - records the JSON source emitted (its ``numRecordsOut``, REST);
when that is not zero, ``collect`` re-reads the input topic and lists them
(flink/dead_letters.csv). With ``not_json_dead_letters: true`` a second source in the job
reads the topic as text and dead-letters them itself.

Engine sessions (``flink.session``, ``sdsbench.engine_session``). A session pays the
gateway JVM's start and cold warm-up once and serves runs one at a time (``ctr_job``
session mode: a fresh mini-cluster per job, so the job's own settings apply; shared is the
JVM: heap, JIT code, loaded classes). Each run
still runs its own warm-up before it reports ready; the first run of a session also runs
``session.warmup_events`` (its own topic). The key: heap, JVM options, jars, interpreter,
idle timeout, session warm-up size. A remote ``jobmanager_address``, ``reuse: false``, a
busy session and a fault run's restart use a private job process; a fault run's kill ends
the whole session (the next run starts a new one). ready.json and flink_summary.json say
which session served the run (``session``: key, reused, runs served before).

Drain rule. Event-time windows fire only when the watermark passes their end, and the
watermark moves only with new events. After the generator stops, the watermark stays at
(the largest event time seen in the slowest partition - watermark_delay_ms); windows whose
end lies above it are never emitted (no synthetic end-of-input event is sent: the truth
would not know it, and the idle timeout only stops a silent partition from holding the
watermark back, it never advances it). ``final_watermark_ms`` (in
metrics/flink_summary.json) is the first-level window operator's input watermark after the
drain; a window [s, e) has fired iff ``e - 1 <= final_watermark_ms``, and the analysis
compares with the generator truth only those windows (``comparable_windows``). Same rule
as the Spark driver.

Drained means: (1) a checkpoint completed whose barrier followed the input topic's end
offsets (the JSON source's position, REST, reached them before it was triggered), or the
consumer group of the JSON source (and of the raw source) committed those offsets -- Flink
commits on checkpoint completion, after every operator processed the records before the
barrier; (2) the window operator's watermark has not moved for ``max(2 s, 3 watermark
intervals)``, counted at the earliest from when the partitions went idle (``idle_timeout_ms``
+ one watermark interval after (1): an idle partition stops holding the watermark back,
which moves it once more); (3) one more checkpoint, triggered after that, completed -- so
the sinks have flushed (at-least-once) or committed (exactly-once) the last windows. A
record the source fetched but had not emitted when the barrier of (1) passed is among
the stream's last: it moves the watermark when emitted, and (2) waits for that. The driver
triggers the checkpoints of (1) and (3) through the REST API (``POST
/jobs/:jobid/checkpoints``, Flink >= 1.19) instead of waiting for the periodic ones, and
does not wait for the offset commit itself: the source's Kafka consumer sends it only when
its poll returns, up to 10 s on an idle topic. So a drain takes about the idle timeout +
one watermark interval + the quiet time + a checkpoint (measured: docs/flink.md).

Lag. ``metrics/lag.csv`` (the shared LAG_COLUMNS) pairs the topic's end offsets with the
JSON source's position (its ``currentOffset`` gauge + 1 per partition, read through the
REST API every ``metrics_interval_ms``): records in the topic the job has not read yet.
The offsets Flink commits to the group ``sdsbench-flink-<run id>`` on each checkpoint
(the ``committed_offset`` a Kafka tool would show) trail by up to a checkpoint interval;
they are used only for the drain.

Memory. PyFlink's local mode runs the whole engine in the gateway JVM it starts, which
PyFlink gives no -Xmx (a quarter of RAM by default); the driver caps it with
``JVM_ARGS=-Xmx<heap_mb>m`` (pyflink_gateway_server reads JVM_ARGS). Flink's logs go to
``flink/logs`` of the run (FLINK_LOG_DIR); in a session, to the session directory's
``flink-logs``, and each run gets its part copied to its ``flink/logs``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.common.jvm_driver import (
    JvmJobDriver,
    JvmRun,
    engine_python,
    reached,
)
from engines.flink.checkpoints import CheckpointTrigger, latest_checkpoint
from engines.flink.job_config import REJECT_COLUMNS, JobConfig, JobPaths, late_topic
from engines.flink.metrics import FlinkRest, RestError, RestSampler
from engines.flink.outputs import (
    LATE_COLUMNS,
    late_table,
    read_transactional_output,
    scan_not_json,
)
from engines.flink.warmup_input import fill_warmup_topic
from sdsbench import contract
from sdsbench.config import section_keys
from sdsbench.engine_session import EngineSession
from sdsbench.measurement.lag import KafkaGroupCommitted
from sdsbench.measurement.output_reader import (
    read_json_topic,
    read_output_topic,
    write_results,
)
from sdsbench.rundir import write_csv_atomic, write_json_atomic, write_rejects
from sdsbench.services.kafka import create_topic, end_offsets
from sdsbench.services.ports import free_port
from sdsbench.topics import create_run_topics

log = logging.getLogger("sdsbench.flink")

def group_id(run_id: str) -> str:
    return f"sdsbench-flink-{run_id}"


def warmup_topic(run_id: str) -> str:
    return f"flink-warmup-{run_id}"


def session_warmup_topic(run_id: str) -> str:
    return f"flink-session-warmup-{run_id}"


def session_settings(params: dict[str, Any], jars: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """What is fixed when the gateway JVM starts (part of the session key). The rest
    (parallelism, checkpointing, state backend, REST port, flink_options) is set per job
    on the job's own mini-cluster."""
    return {"heap_mb": int(params["heap_mb"]), "jvm_args": jvm_args(int(params["heap_mb"])),
            "python": str(engine_python("flink")), "jars": sorted(str(j) for j in jars)}


def use_session(params: dict[str, Any]) -> bool:
    """Runs share a session unless turned off or the job goes to a remote cluster."""
    return bool(params["session"]["reuse"]) and not params["jobmanager_address"]


def job_config(run_id: str, bootstrap: str, params: dict[str, Any], workload: dict[str, Any],
               jars: list[str], rest_port: int, paths: JobPaths) -> JobConfig:
    return JobConfig.from_dict({
        "warmup_topic": warmup_topic(run_id) if params["warmup_events"] > 0 else None,
        "run_id": run_id,
        "bootstrap": bootstrap,
        "input_topic": contract.input_topic(run_id),
        "output_topic": contract.output_topic(run_id),
        "dead_letter_topic": contract.dead_letter_topic(run_id),
        "late_topic": late_topic(run_id),
        "group_id": group_id(run_id),
        "campaigns": int(workload["campaigns"]),
        "ads_per_campaign": int(workload["ads_per_campaign"]),
        "jars": jars,
        "rest_port": rest_port,
        "checkpoint_dir": str(paths.flink_dir / "checkpoints"),
        **{k: params[k] for k in (
            "parallelism", "watermark_delay_ms", "idle_timeout_ms", "allowed_lateness_ms",
            "watermark_interval_ms", "buffer_timeout_ms", "checkpoint_interval_ms",
            "state_backend",
            "delivery_guarantee", "jobmanager_address", "not_json_dead_letters",
            "metrics_interval_ms", "flink_options")},
    })


CLUSTER = "cluster"  # flink.jobmanager_address: the stack's standalone cluster


def stack_jobmanager(services: Any) -> str:
    """host:port of the REST endpoint of the stack's standalone cluster (services.flink)."""
    if not getattr(services, "flink_rest", None):
        raise RuntimeError("flink.jobmanager_address: cluster, but the services run no Flink "
                           "cluster (set services.flink.taskmanagers > 0, e.g. "
                           "config/cluster.yaml)")
    return services.flink_rest


def jvm_args(heap_mb: int) -> str:
    """JVM options of PyFlink's gateway JVM (the whole engine in local mode)."""
    return (f"-Xmx{heap_mb}m -Xms{min(heap_mb, 256)}m -XX:+UseG1GC "
            "-XX:+ExitOnOutOfMemoryError")


@dataclass
class FlinkRun(JvmRun):
    """The run's state in the driver (``ctx.extra["flink"]``)."""

    job_id: str | None = None
    rest: FlinkRest | None = None
    sampler: RestSampler | None = None
    source_vertex: str | None = None


class Pipeline(JvmJobDriver):
    """Kafka -> Flink SQL -> Kafka (A4f)."""

    engine = "flink"
    connector = "connector-kafka"

    def job_env(self, run: FlinkRun) -> dict[str, str]:
        run.paths.log_dir.mkdir(parents=True, exist_ok=True)
        return {"JVM_ARGS": jvm_args(int(run.params["heap_mb"])),
                "FLINK_LOG_DIR": str(run.paths.log_dir)}  # a session's server sets its own

    def jvm_settings(self, run: FlinkRun) -> dict[str, Any]:
        return session_settings(run.params, run.job.jars)

    def use_session(self, run: FlinkRun) -> bool:
        return use_session(run.params)

    def before_submit(self, ctx: Any, run: FlinkRun, session: EngineSession,
                      job_config: Path) -> None:
        """A fresh session's first run also carries the session warm-up: its events, in
        a topic of their own (deleted in stop())."""
        if session.reused or int(run.params["session"]["warmup_events"]) <= 0:
            return
        topic = session_warmup_topic(ctx.run_id)
        partitions = int(ctx.config["services"]["kafka"]["partitions"])
        create_topic(ctx.services.kafka_bootstrap, topic, partitions)
        fill_warmup_topic(ctx.services.kafka_bootstrap, topic,
                          int(run.params["session"]["warmup_events"]),
                          contract.ad_catalog(run.job.campaigns, run.job.ads_per_campaign))
        run.job = dataclasses.replace(run.job, session_warmup_topic=topic)
        write_json_atomic(job_config, run.job.to_dict())

    def on_ready(self, run: FlinkRun) -> None:
        run.job_id = run.ready["job_id"]

    def job_running(self, run: FlinkRun) -> bool:
        return run.rest.all_running(run.job_id)

    def consumed_offsets(self, run: FlinkRun) -> dict[int, int]:
        # run.job_id and run.source_vertex change when a fault run restarts the job.
        return run.rest.consumed_offsets(run.job_id, run.source_vertex)

    def lag_interval_s(self, run: FlinkRun) -> float:
        return float(run.params["metrics_interval_ms"]) / 1000

    def scratch_dirs(self, run: FlinkRun) -> list[Path]:
        return [run.paths.flink_dir / "checkpoints"]

    def extra_topics(self, run: FlinkRun) -> list[str]:
        return [run.job.late_topic, run.job.warmup_topic, run.job.session_warmup_topic]

    def prepare(self, ctx: Any) -> None:
        params = self.params(ctx)
        if params["jobmanager_address"] == CLUSTER:
            params = {**params, "jobmanager_address": stack_jobmanager(ctx.services)}
            ctx.claim_cluster("flink")
        paths = JobPaths(ctx.run_dir)
        paths.flink_dir.mkdir(parents=True, exist_ok=True)
        job = job_config(ctx.run_id, ctx.services.kafka_bootstrap, params,
                         ctx.config["workload"], self.jars(), free_port(), paths)
        write_json_atomic(paths.job_config, job.to_dict())
        ctx.extra["flink"] = FlinkRun(params, paths, job)
        partitions = int(ctx.config["services"]["kafka"]["partitions"])
        create_run_topics(ctx.services, ctx.run_id, partitions)
        create_topic(ctx.services.kafka_bootstrap, job.late_topic, 1)
        if job.warmup_topic is not None:
            create_topic(ctx.services.kafka_bootstrap, job.warmup_topic, partitions)
            catalog = contract.ad_catalog(job.campaigns, job.ads_per_campaign)
            fill_warmup_topic(ctx.services.kafka_bootstrap, job.warmup_topic,
                              int(params["warmup_events"]), catalog)

    def start(self, ctx: Any) -> None:
        run: FlinkRun = ctx.extra["flink"]
        log.info("starting the Flink job (parallelism %d, %s)", run.job.parallelism,
                 run.job.jobmanager_address or "local mini-cluster")
        run.rest = FlinkRest(run.job.rest_url)
        run.startup_s = self.launch(ctx, run, run.paths.job_config, self.use_session(run))
        log.info("Flink job %s running after %.1f s", run.job_id, run.startup_s)
        run.sampler = RestSampler(run.rest, run.job_id, ctx.run_dir / "metrics",
                                  float(run.params["metrics_interval_ms"]) / 1000)
        run.sampler.start()
        run.source_vertex = self._source_vertex(run)
        self.start_lag_sampler(ctx, run)

    @staticmethod
    def _source_vertex(run: FlinkRun) -> str:
        """The job vertex of the JSON source (the input every result depends on)."""
        vertices = run.rest.job(run.job_id).get("vertices", [])
        for vertex in vertices:
            if vertex["name"].startswith("Source:") and ".events" in vertex["name"]:
                return vertex["id"]
        raise RuntimeError(f"no JSON source vertex in the job: {[v['name'] for v in vertices]}")

    def restart(self, ctx: Any) -> dict[str, Any]:
        """Fault runs: submit the job again from the killed job's last completed
        checkpoint (``execution.state-recovery.path``): sources resume from the
        checkpointed offsets, windows from their state. With the at-least-once sink,
        results written after that checkpoint are written again (measured as
        duplicates); the exactly-once sink's transactions after it were never committed,
        so readers see each result once. A new REST port (the old one may linger in
        TIME_WAIT) and no JIT warm-up."""
        run: FlinkRun = ctx.extra["flink"]
        checkpoint = latest_checkpoint(Path(run.job.checkpoint_dir) / str(run.job_id))
        if checkpoint is None:
            raise RuntimeError(f"no completed checkpoint of job {run.job_id} to restart from "
                               f"(the fault came before the first one)")
        old_job = run.job_id
        job = dataclasses.replace(
            run.job, warmup_topic=None, rest_port=free_port(),
            flink_options={**run.job.flink_options,
                           "execution.state-recovery.path": checkpoint.resolve().as_uri()})
        run.rest.url = job.rest_url
        run.job_id = None
        startup_s = self.relaunch(ctx, run, job)
        run.source_vertex = self._source_vertex(run)
        if run.sampler is not None:
            run.sampler.follow_job(run.job_id)
        return {"old_job_id": old_job, "job_id": run.job_id, "checkpoint": str(checkpoint),
                "pid": run.proc.pid, "startup_s": startup_s}

    def stop(self, ctx: Any) -> None:
        run: FlinkRun | None = ctx.extra.get("flink")
        if run is not None and run.sampler is not None:
            run.sampler.stop()
            run.sampler = None
        super().stop(ctx)

    def drain(self, ctx: Any, timeout_s: float) -> None:
        """Wait until the job processed everything the generator sent (see module doc).
        Checkpoints are triggered through the REST API when the rule waits for one (the
        source read the end offsets; the watermark is quiet) instead of waiting for the
        next periodic one."""
        run: FlinkRun = ctx.extra["flink"]
        bootstrap = ctx.services.kafka_bootstrap
        target = end_offsets(bootstrap, run.job.input_topic)
        groups = [run.job.group_id] + ([run.job.group_id + "-raw"]
                                       if run.job.not_json_dead_letters else [])
        committed_fns = [KafkaGroupCommitted(bootstrap, g, run.job.input_topic) for g in groups]
        quiet_s = max(2.0, 3 * run.job.watermark_interval_ms / 1000)
        idle_s = (run.job.idle_timeout_ms or 0) / 1000
        settle_at = 0.0
        trigger = CheckpointTrigger(run.rest, run.job_id)
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        caught_up_s = stable_ms = read_ms = None
        caught_up_by = None
        drained = False
        last_report = t0
        try:
            while True:
                self.check_alive(run, "during the drain")
                trigger.job_id = run.job_id  # a fault run may have restarted the job
                now = time.monotonic()
                if caught_up_s is None:
                    done = [fn() for fn in committed_fns]
                    if all(reached(d, target) for d in done):
                        caught_up_s, caught_up_by = now - t0, "committed offsets"
                    elif read_ms is None and self._source_read(run, target):
                        read_ms = time.time_ns() // 1_000_000
                    if caught_up_s is None and read_ms is not None and (
                            trigger.request() == "COMPLETED"
                            or run.sampler.completed_checkpoint_after(read_ms)):
                        # A checkpoint whose barrier followed the end offsets completed:
                        # what the offset commit would say, without waiting for the
                        # source's Kafka consumer to send it (up to its 10 s poll).
                        caught_up_s, caught_up_by = now - t0, "checkpoint after the end offsets"
                    if caught_up_s is not None:
                        # Every partition has had its last record by now; the watermark
                        # may still move when they go idle (idle timeout, then the next
                        # periodic watermark): quiet is counted from then at the earliest.
                        settle_at = now + idle_s + run.job.watermark_interval_ms / 1000
                elif stable_ms is None:
                    run.sampler.refresh_watermark()
                    if now - max(run.sampler.watermark_changed_at, settle_at) >= quiet_s:
                        stable_ms = time.time_ns() // 1_000_000
                        trigger.reset()
                elif trigger.request() == "COMPLETED" or \
                        run.sampler.completed_checkpoint_after(stable_ms):
                    drained = True
                    break
                if now > deadline:
                    log.warning("drain timed out after %.0f s (caught up: %s, watermark "
                                "stable: %s)", timeout_s, caught_up_s is not None,
                                stable_ms is not None)
                    break
                if now - last_report > 5:
                    if caught_up_s is None:
                        behind = sum(max(t - done[0].get(p, 0), 0) for p, t in target.items())
                        log.info("draining: %d records not yet committed by the job", behind)
                    else:
                        log.info("draining: waiting for the watermark and a checkpoint")
                    last_report = now
                time.sleep(0.1)
        finally:
            for fn in committed_fns:
                fn.close()
        run.drain = {
            "drained": drained,
            "drain_s": round(time.monotonic() - t0, 3),
            "caught_up_s": None if caught_up_s is None else round(caught_up_s, 3),
            "caught_up_by": caught_up_by,
            "checkpoints_triggered": trigger.triggered,
            "input_end_offsets": target,
            "final_watermark_ms": run.sampler.watermark_ms,
        }
        self.stop_lag_sampler(run)

    @staticmethod
    def _source_read(run: FlinkRun, target: dict[int, int]) -> bool:
        """True when the JSON source emitted every record up to ``target`` (REST)."""
        try:
            return reached(run.rest.consumed_offsets(run.job_id, run.source_vertex), target)
        except RestError:
            return False

    def collect(self, ctx: Any) -> None:
        run: FlinkRun = ctx.extra["flink"]
        bootstrap = ctx.services.kafka_bootstrap
        catalog = contract.ad_catalog(run.job.campaigns, run.job.ads_per_campaign)
        if run.job.delivery_guarantee == "exactly-once":
            results = read_transactional_output(bootstrap, run.job.output_topic)
        else:
            results = read_output_topic(bootstrap, run.job.output_topic)
        write_results(results, ctx.run_dir / "results.csv")
        rejects = [{k: rec.get(k) for k in REJECT_COLUMNS}
                   for _p, _o, rec in read_json_topic(bootstrap, run.job.dead_letter_topic)]
        late_records = [rec for _p, _o, rec in read_json_topic(bootstrap, run.job.late_topic)]
        late_rows, late_rejects = late_table(late_records, catalog, run.job.allowed_lateness_ms)
        rejects += late_rejects
        counts = self._record_counts(run)
        if not run.job.not_json_dead_letters and counts.get("skipped_by_json_format") != 0:
            # The job only counted them (records in - records parsed): list them here.
            found = scan_not_json(bootstrap, run.job.input_topic,
                                  run.drain.get("input_end_offsets") or {})
            counts["not_json_found_by_scan"] = len(found)
            skipped = counts.get("skipped_by_json_format")
            if skipped is not None and len(found) != skipped:
                log.warning("the JSON source skipped %s records, the scan found %d not-JSON",
                            counts.get("skipped_by_json_format"), len(found))
            rejects += found
        write_csv_atomic(run.paths.flink_dir / "dead_letters.csv", REJECT_COLUMNS, rejects)
        by_reason = {reason: 0 for reason in contract.REJECT_REASONS}
        for row in rejects:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + int(row["count"] or 0)
        write_rejects(ctx.run_dir / "rejects.csv", by_reason)
        write_csv_atomic(ctx.run_dir / "metrics" / "late.csv", LATE_COLUMNS, late_rows)
        summary: dict[str, Any] = {
            "pipeline": "flink",
            "settings": {k: run.params[k] for k in section_keys("flink")},
            "flink_version": run.ready.get("flink_version"),
            "flink_settings": run.ready.get("settings"),
            "connector_jars": [Path(j).name for j in run.job.jars],
            "jvm_args": jvm_args(int(run.params["heap_mb"])),
            "job_id": run.job_id,
            "startup_s": run.startup_s,
            "session": run.ready.get("session"),  # None: a private job process
            **run.drain,
            "comparable_windows": "window_end_ms - 1 <= final_watermark_ms",
            "output_records": len(results),
            "output_windows": int(results[["campaign_id", "window_start_ms"]]
                                  .drop_duplicates().shape[0]) if len(results) else 0,
            "rejected_events": sum(by_reason.values()),
            "rejected_by_reason": by_reason,
            "late_rule": ("window_end_ms - 1 + allowed_lateness_ms <= watermark at arrival: "
                          "dropped; exact at parallelism 1, an upper bound above"),
            "late_events": len(late_records),
            "late_dropped_events": sum(1 for r in late_records if r["verdict"] == "dropped"),
            "late_accepted_events": sum(1 for r in late_records if r["verdict"] == "accepted"),
            **counts,
        }
        if run.sampler is not None:
            run.sampler.stop()
            summary["rest_samples"] = run.sampler.samples
            rows = run.sampler.checkpoint_rows()
            durations = [r["end_to_end_duration_ms"] for r in rows
                         if r["status"] == "COMPLETED"]
            summary["checkpoints_completed"] = len(durations)
            summary["checkpoints_failed"] = sum(1 for r in rows if r["status"] == "FAILED")
            summary["checkpoint_duration_ms_max"] = max(durations) if durations else None
        self._save_plan(run)
        write_json_atomic(ctx.run_dir / "metrics" / "flink_summary.json", summary)

    def _record_counts(self, run: FlinkRun) -> dict[str, Any]:
        """Records the JSON source emitted vs records in the topic: the difference is what
        Flink's JSON format skipped as not JSON (cross-checks the raw path's count)."""
        if run.rest is None or run.job_id is None:
            return {}
        try:
            emitted = run.rest.operator_metric_sum(run.job_id, self._source_vertex(run),
                                                   "events.numRecordsOut")
        except (RestError, RuntimeError, KeyError) as exc:
            log.warning("could not read the source's record count: %s", exc)
            emitted = None
        in_topic = sum((run.drain.get("input_end_offsets") or {}).values())
        if run.restarts:
            # The restarted job's source counts only what it read itself: no difference
            # to take; collect scans the topic for not-JSON records instead.
            return {"input_records": in_topic, "json_source_records": emitted,
                    "skipped_by_json_format": None, "restarts": run.restarts}
        return {"input_records": in_topic, "json_source_records": emitted,
                "skipped_by_json_format": None if emitted is None else in_topic - int(emitted)}

    def _save_plan(self, run: FlinkRun) -> None:
        if run.rest is None or run.job_id is None:
            return
        # What the job really ran with (a session's JVM serves many jobs: the per-job
        # settings are read back from the job's own mini-cluster, not assumed).
        for name, path in (("job_plan.json", "/plan"), ("job_execution_config.json", "/config"),
                           ("job_checkpoint_config.json", "/checkpoints/config"),
                           # the cluster configuration the job ran under (buffer timeout,
                           # watermark interval, ...): key-value pairs
                           ("job_cluster_config.json", "/jobmanager/config")):
            try:
                write_json_atomic(run.paths.flink_dir / name,
                                  run.rest.get(f"/jobs/{run.job_id}{path}"))
            except RestError as exc:
                log.warning("could not save %s: %s", name, exc)
