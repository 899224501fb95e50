"""The A4s PipelineDriver: runs ``engines.spark.ctr_job`` in ``.venv/spark``. Start, kill,
restart and stop are the JVM engines' shared driver (``engines.common.jvm_driver``: an
engine session or a private job process); this module supplies what is Spark's own.

    prepare  per-run topics (input, output with LogAppendTime, dead letters) + job config
    start    the job is ready once the CTR query ran a first batch (each run runs its own
             warm-up first); then consumer lag is sampled
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

Fault runs: ``kill`` SIGKILLs the whole engine session (or the private process); the
restart runs on the same checkpoint location in a private job process.

Drain rule (append mode). A window is emitted once the watermark passes its end, and the
watermark moves only with new data, so after the generator stops the windows whose end is
above the final watermark stay open and are never emitted. The run records the final
watermark (``final_watermark_ms`` in metrics/spark_summary.json); the analysis compares
with the generator truth only windows with ``window_end_ms <= final_watermark_ms``. No
synthetic end-of-stream event is sent (the truth would not know it). In update mode every
window is emitted each time it changes; readers take the last record per
(campaign_id, window_start_ms), and the same comparison rule applies. Micro-batches:
drained once the input is read and no batch ran for a while (the no-data batch that
applies the final watermark has run). Real-time mode: its batches end every trigger_ms
with or without data; drained once a batch ended after the one that read the last record.

Lag. Spark commits no consumer-group offsets. ``metrics/lag.csv`` (the shared LAG_COLUMNS
format) pairs the topic's end offsets, sampled by the driver every second, with the end
offsets of the CTR query's latest finished batch (from the job's progress listener).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engines.common.jvm_driver import (
    JvmJobDriver,
    JvmRun,
    reached,
)
from engines.spark.job_config import JobConfig, JobPaths, session_settings
from engines.spark.late_audit import audit_late_events, spark_reported_drops
from sdsbench import contract
from sdsbench.config import ConfigError, section_keys
from sdsbench.measurement.output_reader import read_json_topic, read_output_topic, write_results
from sdsbench.rundir import write_csv_atomic, write_json_atomic, write_rejects
from sdsbench.services.kafka import end_offsets
from sdsbench.topics import create_run_topics

log = logging.getLogger("sdsbench.spark")

DEAD_LETTER_COLUMNS = ("reason", "partition", "offset", "kafka_time_ms", "raw")
WATERMARK_COLUMNS = ("time_ms", "watermark_ms", "batch_id")
SET_ASIDE_TIMEOUT_S = 900.0  # longest wait for the job's set-aside of rejected records


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
            "master", "driver_memory", "execution", "trigger_ms", "watermark_delay_ms",
            "output_mode", "shuffle_partitions", "max_offsets_per_trigger", "campaign_lookup",
            "warmup_events", "extra_conf")},
    })


def cluster_master(master: str, services: Any) -> tuple[str, dict[str, str]]:
    """``spark.master`` as the job gets it: ``cluster`` / ``cluster[N]`` is the stack's
    standalone master (``services.spark``), with one core per executor and, for
    ``[N]``, ``spark.cores.max`` N (N executors); anything else as it is, no extra conf."""
    m = re.fullmatch(r"cluster(?:\[(\d+)\])?", master)
    if m is None:
        return master, {}
    if not getattr(services, "spark_master", None):
        raise RuntimeError(f"spark.master {master!r}: the services run no Spark cluster "
                           "(set services.spark.workers > 0, e.g. config/cluster.yaml)")
    # All executors registered before the first batch (the default starts with whatever
    # registered in 30 s: the first batches would run on fewer cores than configured).
    conf = {"spark.executor.cores": "1", "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s"}
    if m.group(1):
        conf["spark.cores.max"] = m.group(1)
    return services.spark_master, conf


def check_real_time_slots(params: dict[str, Any], partitions: int) -> None:
    """Real-time mode runs the source stage and the aggregation's shuffle stage at once,
    as long-running tasks: a local master needs a task slot for each input partition and
    each shuffle partition (else Spark fails the query: CONCURRENT_SCHEDULER_INSUFFICIENT_SLOT)."""
    m = re.fullmatch(r"local\[(\d+)\]", str(params["master"]))
    needed = partitions + int(params["shuffle_partitions"])
    if params["execution"] == "real_time" and m is not None and int(m.group(1)) < needed:
        raise ConfigError(
            f"config key spark.master: real-time mode needs {needed} task slots ({partitions} "
            f"input partitions + {params['shuffle_partitions']} shuffle partitions), "
            f"{params['master']} has {m.group(1)}: use local[{needed}]")


def read_status(paths: JobPaths) -> dict[str, Any]:
    """The job's latest progress per query ({} before the first batch)."""
    try:
        return json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return {}


def end_offsets_of(status: dict[str, Any], query: str) -> dict[int, int]:
    offsets = (status.get(query) or {}).get("end_offsets") or {}
    return {int(p): int(o) for p, o in offsets.items()}


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


@dataclass
class SparkRun(JvmRun):
    """The run's state in the driver (``ctx.extra["spark"]``)."""


class Pipeline(JvmJobDriver):
    """Kafka -> Spark Structured Streaming -> Kafka (A4s)."""

    engine = "spark"
    connector = "spark-sql-kafka"

    def venv(self, run: SparkRun) -> str:
        return "spark_rt" if run.job.execution == "real_time" else "spark"

    def job_env(self, run: SparkRun) -> dict[str, str]:
        return {"PYSPARK_PYTHON": str(self.python(run)),
                "SPARK_LOCAL_IP": "127.0.0.1"}  # bind the driver to loopback only

    def jvm_settings(self, run: SparkRun) -> dict[str, Any]:
        return session_settings(run.job)

    def consumed_offsets(self, run: SparkRun) -> dict[int, int]:
        return end_offsets_of(read_status(run.paths), "ctr")

    def scratch_dirs(self, run: SparkRun) -> list[Path]:
        return [run.paths.scratch]

    def use_session(self, run: SparkRun) -> bool:
        # An application on a standalone cluster holds its executors while it lives: an
        # idle session would keep cores another run (another cores.max) needs.
        return super().use_session(run) and not run.job.master.startswith("spark://")

    def prepare(self, ctx: Any) -> None:
        params = self.params(ctx)
        master, conf = cluster_master(params["master"], ctx.services)
        if conf:
            params = {**params, "master": master,
                      "extra_conf": {**conf, **params["extra_conf"]}}
            ctx.claim_cluster("spark")
        partitions = int(ctx.config["services"]["kafka"]["partitions"])
        check_real_time_slots(params, partitions)
        paths = JobPaths(ctx.run_dir)
        job = job_config(ctx.run_id, ctx.services.kafka_bootstrap, params,
                         ctx.config["workload"], self.jars())
        paths.spark_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(paths.job_config, job.to_dict())
        ctx.extra["spark"] = SparkRun(params, paths, job)
        create_run_topics(ctx.services, ctx.run_id, partitions)

    def start(self, ctx: Any) -> None:
        run: SparkRun = ctx.extra["spark"]
        log.info("starting the Spark job (%s, %s)", run.job.master, run.job.output_mode)
        run.startup_s = self.launch(ctx, run, run.paths.job_config, self.use_session(run))
        log.info("Spark %s ready after %.1f s", run.ready.get("spark_version"),
                 run.ready.get("startup_s"))
        self.start_lag_sampler(ctx, run)

    def restart(self, ctx: Any) -> dict[str, Any]:
        """Fault runs: start the job again on the same checkpointLocation: each query
        resumes from the offsets and state of its last committed batch; a batch that was
        planned but not committed is run again, so its output may reach the Kafka sink
        twice (at-least-once: measured as duplicate records). No JIT warm-up this time
        (the backlog is waiting)."""
        run: SparkRun = ctx.extra["spark"]
        self.relaunch(ctx, run, replace(run.job, warmup_events=0))
        return {"pid": run.proc.pid, "startup_s": run.ready.get("startup_s"),
                "warmed_up": run.ready.get("warmed_up")}

    def drain(self, ctx: Any, timeout_s: float) -> None:
        """Wait until the job consumed everything the generator sent (see module doc)."""
        run: SparkRun = ctx.extra["spark"]
        target = end_offsets(ctx.services.kafka_bootstrap, run.job.input_topic)
        quiet_ms = max(2000, 2 * run.job.trigger_ms)
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        caught_up_s = None
        caught_up_batch = None
        drained = False
        last_report = t0
        while True:
            self.check_alive(run, "during the drain")
            status = read_status(run.paths)
            ctr_done = end_offsets_of(status, "ctr")
            if reached(ctr_done, target):
                if caught_up_s is None:
                    caught_up_s = time.monotonic() - t0
                    caught_up_batch = int(status["ctr"]["batch_id"])
                if run.job.execution == "real_time":
                    # Batches end every trigger_ms, data or not: the batch after the one
                    # that read the last record runs with the final watermark.
                    drained = int(status["ctr"]["batch_id"]) > caught_up_batch
                else:
                    quiet_for_ms = time.time_ns() // 1_000_000 - status["ctr"]["received_ms"]
                    drained = quiet_for_ms >= quiet_ms
                if drained:
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
        self.stop_lag_sampler(run)

    def collect(self, ctx: Any) -> None:
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
                reported_unit="events" if run.job.execution == "real_time" else "groups",
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
            rejects = [{k: record.get(k) for k in DEAD_LETTER_COLUMNS}
                       for _p, _o, record in read_json_topic(bootstrap,
                                                             run.job.dead_letter_topic)]
        write_csv_atomic(run.paths.spark_dir / "dead_letters.csv", DEAD_LETTER_COLUMNS, rejects)
        by_reason = {reason: 0 for reason in contract.REJECT_REASONS}
        for row in rejects:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
        write_rejects(ctx.run_dir / "rejects.csv", by_reason)
        write_csv_atomic(ctx.run_dir / "metrics" / "watermark.csv", WATERMARK_COLUMNS,
                         watermark_rows(run.paths.progress_csv))
        summary: dict[str, Any] = {
            "pipeline": "spark",
            "settings": {k: run.params[k] for k in section_keys("spark")},
            **run.drain,
            "comparable_windows": "window_end_ms <= final_watermark_ms",
            "output_records": len(results),
            "output_windows": int(results[["campaign_id", "window_start_ms"]]
                                  .drop_duplicates().shape[0]) if len(results) else 0,
            "rejected_events": len(rejects),
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
            self.check_alive(run, "before setting aside the rejected records")
            now = time.monotonic()
            if now - t0 > SET_ASIDE_TIMEOUT_S:
                raise RuntimeError(f"no set-aside of rejected records after "
                                   f"{SET_ASIDE_TIMEOUT_S:.0f} s; see {run.paths.log}")
            if now - last_report > 10:
                log.info("waiting for the set-aside of rejected records (%.0f s)", now - t0)
                last_report = now
            time.sleep(0.2)
        return json.loads(run.paths.set_aside.read_text())
