"""The A4f job's settings and files: what the driver (``engines.flink.pipeline``, main
virtualenv) writes and the job (``engines.flink.ctr_job``, Flink virtualenv) reads.
Standard library only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
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

PIPELINE_NAME = "flink"
DELIVERY_GUARANTEES = ("at-least-once", "exactly-once")
STATE_BACKENDS = ("hashmap", "rocksdb")
# Dead-letter records: the Spark job's columns plus ``count`` (1 per record; an
# unknown-ad record stands for all events of one ad in one window).
REJECT_COLUMNS = ("reason", "count", "partition", "offset", "kafka_time_ms", "raw")
# Late-event records (one per late event): what the late topic holds.
LATE_SCHEMA: tuple[tuple[str, str], ...] = (
    ("ad_id", "string"),
    ("window_start_ms", "long"),
    ("event_type", "string"),
    ("event_time_ms", "long"),
    ("watermark_ms", "long"),  # the watermark the event met (CURRENT_WATERMARK)
    ("verdict", "string"),  # dropped | accepted (within allowed lateness: window re-emitted)
    ("partition", "long"),
    ("offset", "long"),
)
LATE_VERDICTS = ("dropped", "accepted")
MAX_INTERVAL_MS = 999_999  # SQL intervals are SECOND(3): Flink accepts a leading precision of 3


def late_topic(run_id: str) -> str:
    """The run's late-event topic (Flink only; created and deleted by the driver)."""
    return f"flink-late-{run_id}"


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class JobConfig(JvmJobConfig):
    """Everything the job needs; ``engines.flink.pipeline.job_config`` builds it."""

    late_topic: str
    group_id: str  # consumer group of the JSON source (offsets committed on checkpoints)
    parallelism: int
    watermark_delay_ms: int
    idle_timeout_ms: int | None
    allowed_lateness_ms: int
    watermark_interval_ms: int
    buffer_timeout_ms: int | None  # execution.buffer-timeout.interval; None: Flink's default
    checkpoint_interval_ms: int
    state_backend: str
    delivery_guarantee: str
    jobmanager_address: str | None  # host:port of a remote cluster's REST; None: local
    rest_port: int  # REST port of the local mini-cluster (ignored for a remote cluster)
    metrics_interval_ms: int  # how often the REST API refreshes the metrics it serves
    checkpoint_dir: str
    not_json_dead_letters: bool  # read the topic a second time, as text (see module doc)
    warmup_topic: str | None  # synthetic events to run the plan over first; None: no warm-up
    flink_options: dict[str, str] = field(default_factory=dict)  # extra Flink settings
    # Engine sessions: synthetic events a fresh session runs once before this run's own
    # warm-up (set by the driver only for the first run of a session); None: none.
    session_warmup_topic: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Validate a job config; the error names the bad key."""
        check_keys("flink", cls, data, optional=("flink_options", "session_warmup_topic"))
        check_ints("flink", data, ("campaigns", "ads_per_campaign", "parallelism",
                                   "watermark_interval_ms", "checkpoint_interval_ms",
                                   "rest_port", "metrics_interval_ms"), 1)
        check_ints("flink", data, ("watermark_delay_ms", "allowed_lateness_ms"), 0,
                   MAX_INTERVAL_MS)
        if not isinstance(data["not_json_dead_letters"], bool):
            raise ValueError("flink job config key not_json_dead_letters: must be a boolean")
        check_ints("flink", data, ("idle_timeout_ms", "buffer_timeout_ms"), 1, nullable=True)
        check_choice("flink", data, "state_backend", STATE_BACKENDS)
        check_choice("flink", data, "delivery_guarantee", DELIVERY_GUARANTEES)
        check_jars("flink", data["jars"])
        options = {str(k): str(v) for k, v in (data.get("flink_options") or {}).items()}
        return cls(**{**data, "jars": tuple(data["jars"]), "flink_options": options})


    @property
    def rest_url(self) -> str:
        if self.jobmanager_address:
            return f"http://{self.jobmanager_address}"
        return f"http://127.0.0.1:{self.rest_port}"


@dataclass(frozen=True)
class JobPaths(JobFiles):
    """Where the job and its driver keep files inside the run directory."""

    engine = "flink"

    @property
    def flink_dir(self) -> Path:
        return self.engine_dir

    @property
    def log_dir(self) -> Path:
        return self.flink_dir / "logs"  # the Flink JVM's own log4j files

    @property
    def sql(self) -> Path:
        return self.flink_dir / "job.sql"  # the statements the job ran


def warmup_config(cfg: JobConfig, session: bool = False) -> JobConfig:
    """The job's config for the warm-up run over ``cfg.warmup_topic`` (``session``: over
    ``cfg.session_warmup_topic``, the once-per-session warm-up)."""
    topic = cfg.session_warmup_topic if session else cfg.warmup_topic
    if topic is None:
        raise ValueError("no warm-up topic")
    suffix = "-session-warmup" if session else "-warmup"
    return replace(cfg, input_topic=topic, group_id=cfg.group_id + suffix,
                   run_id=cfg.run_id + suffix)


def load_job_config(path: Path) -> JobConfig:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return JobConfig.from_dict(data)
