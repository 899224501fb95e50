"""The A4s job's settings and files: what the driver (``engines.spark.pipeline``, main
virtualenv) writes and the job (``engines.spark.ctr_job``, Spark virtualenv) reads.
Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.common.jvm_job_config import (
    JvmJobConfig,
    check_choice,
    check_ints,
    check_jars,
    check_keys,
)
from sdsbench.engine_session import JobFiles

PIPELINE_NAME = "spark"
OUTPUT_MODES = ("append", "update")
# micro_batch: a processing-time trigger, one micro-batch after another; real_time: Spark's
# Real-Time Mode (4.3.0 on, its own virtualenv): long-running batches of trigger_ms whose
# tasks process each record as it arrives, update output mode only.
EXECUTIONS = ("micro_batch", "real_time")
REAL_TIME_MIN_BATCH_CONF = "spark.sql.streaming.realTimeMode.minBatchDuration"
REAL_TIME_MIN_BATCH_MS = 5000  # its default in Spark 4.3.0 (a shorter trigger fails the query)
CAMPAIGN_LOOKUPS = ("broadcast_join", "map_literal")
CORRUPT_COLUMN = "_corrupt_record"
REJECTS_OBSERVATION = "rejects"  # name of the per-batch reject counts in query progress
SESSION_WARMUP_BATCHES = 80  # ~5k events each at 400k: the size of a 250 ms batch at 20k/s
WARMUP_TIMEOUT_S = 120.0  # longest wait for a warm-up query, or the first batch


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class JobConfig(JvmJobConfig):
    """Everything the job needs; ``engines.spark.pipeline.job_config`` builds it."""

    master: str
    driver_memory: str
    execution: str
    trigger_ms: int
    watermark_delay_ms: int
    output_mode: str
    shuffle_partitions: int
    max_offsets_per_trigger: int | None
    campaign_lookup: str
    warmup_events: int
    extra_conf: dict[str, str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Validate a job config; the error names the bad key."""
        check_keys("spark", cls, data)
        check_ints("spark", data, ("trigger_ms", "shuffle_partitions", "campaigns",
                                   "ads_per_campaign"), 1)
        check_ints("spark", data, ("watermark_delay_ms", "warmup_events"), 0)
        check_ints("spark", data, ("max_offsets_per_trigger",), 1, nullable=True)
        check_choice("spark", data, "output_mode", OUTPUT_MODES)
        check_choice("spark", data, "campaign_lookup", CAMPAIGN_LOOKUPS)
        check_choice("spark", data, "execution", EXECUTIONS)
        if data["execution"] == "real_time":
            if data["output_mode"] != "update":
                raise ValueError("spark job config key output_mode: real-time mode runs in "
                                 f"update mode only, not {data['output_mode']!r}")
            if (data["trigger_ms"] < REAL_TIME_MIN_BATCH_MS
                    and REAL_TIME_MIN_BATCH_CONF not in data["extra_conf"]):
                raise ValueError(
                    f"spark job config key trigger_ms: real-time batches last at least "
                    f"{REAL_TIME_MIN_BATCH_MS} ms ({REAL_TIME_MIN_BATCH_CONF}), not "
                    f"{data['trigger_ms']}")
        extra = data["extra_conf"]
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise ValueError("spark job config key extra_conf: a mapping of strings to strings")
        check_jars("spark", data["jars"])
        return cls(**{**data, "jars": tuple(data["jars"])})



@dataclass(frozen=True)
class JobPaths(JobFiles):
    """Where the job and its driver keep files inside the run directory."""

    engine = "spark"

    @property
    def spark_dir(self) -> Path:
        return self.engine_dir

    def checkpoint(self, query: str) -> Path:
        return self.spark_dir / "checkpoint" / query

    @property
    def scratch(self) -> Path:
        return self.spark_dir / "tmp"

    @property
    def status(self) -> Path:
        return self.spark_dir / "status.json"  # latest progress per query (the driver polls it)

    @property
    def final(self) -> Path:
        return self.spark_dir / "final.json"

    @property
    def set_aside_request(self) -> Path:
        return self.spark_dir / "SET_ASIDE"  # the driver asks for the dead letters (collect)

    @property
    def set_aside(self) -> Path:
        return self.spark_dir / "set_aside.json"  # the job's report: records, rejects per reason

    @property
    def progress_csv(self) -> Path:
        return self.run_dir / "metrics" / "spark_progress.csv"


# ------------------------------------------------------------------ session
def session_settings(cfg: JobConfig) -> dict[str, Any]:
    """The settings that fix the JVM (an engine session's key): runs that agree on them
    can share one driver JVM; everything else of ``JobConfig`` is per run."""
    return {"master": cfg.master, "driver_memory": cfg.driver_memory, "jars": list(cfg.jars),
            "execution": cfg.execution,  # real_time: another virtualenv, another Spark
            "extra_conf": dict(cfg.extra_conf)}


def session_conf(cfg: JobConfig, local_dir: Path) -> dict[str, str]:
    """Spark settings of the job; all go through spark-submit, before the JVM starts
    (``spark.sql.shuffle.partitions`` is set again per run: a runtime SQL setting)."""
    return {
        # Local mode: the driver JVM is the whole engine, so its heap is the memory cap.
        "spark.driver.memory": cfg.driver_memory,
        # The connector and its runtime deps as local files: nothing is downloaded at run
        # time (spark.jars.packages would resolve from a repository).
        "spark.jars": ",".join(cfg.jars),
        # Default 200 shuffle partitions would schedule 200 tiny state-store tasks per
        # batch on 2 cores; the state here is 10 campaigns x a few open windows.
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.ui.enabled": "false",  # no web server competing for the 2 cores
        "spark.ui.showConsoleProgress": "false",  # no progress bars in the job log
        # Loopback only: the driver's RPC and block manager need no other interface.
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.session.timeZone": "UTC",
        # Keep the fields that did parse when another field has the wrong type, so a
        # rejected record is classified by its first bad field (as contract.validate_event).
        "spark.sql.json.enablePartialResults": "true",
        # After the last data batch, run a batch without data when the watermark moved,
        # so windows the final watermark closes are emitted (the drain rule relies on it).
        "spark.sql.streaming.noDataMicroBatches.enabled": "true",
        # Keep every batch's offsets and watermark in the checkpoint: the late-event audit
        # (engines.spark.late_audit) replays them. The default (100) would purge them.
        "spark.sql.streaming.minBatchesToRetain": "100000",
        "spark.local.dir": str(local_dir),
        # Checkpoint files (offsets, commits, state deltas: several per batch) through the
        # FileSystem API. The default FileContext manager, on the local file system without
        # Hadoop's native library, runs a `chmod` process per file created and a `readlink`
        # per rename (a JFR profile: ~1400 forks of the 2 GB JVM in a 30 s run; walCommit +
        # commitOffsets 150 ms a batch at 2000 ev/s, 30 ms with this manager). A rename
        # on one local file system is atomic, which is all the manager needs.
        "spark.sql.streaming.checkpointFileManagerClass":
            "org.apache.spark.sql.execution.streaming.checkpointing."
            "FileSystemBasedCheckpointFileManager",
        # The set-aside job (after the run) and the idle CTR query share the task slots;
        # FAIR keeps a CTR batch from waiting behind the whole set-aside job.
        "spark.scheduler.mode": "FAIR",
        # Anything else, e.g. a profiler's -XX options in spark.driver.extraJavaOptions.
        **cfg.extra_conf,
    }
