"""The shared contract: input event schema, campaign mapping, windows, output record.

Every pipeline (A1-A3 in Python, Spark, Flink) and the analysis import these
definitions, so an event or a result means the same thing everywhere.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# ---------------------------------------------------------------- input events
# YSB schema. Types are logical: "string" or "long" (64-bit integer).
EVENT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("user_id", "string"),
    ("page_id", "string"),
    ("ad_id", "string"),
    ("ad_type", "string"),
    ("event_type", "string"),
    ("event_time_ns", "long"),  # event time, ns since the Unix epoch
    ("insertion_time_ms", "long"),  # wall time the generator handed the event to the sink
)
EVENT_FIELDS: tuple[str, ...] = tuple(name for name, _ in EVENT_SCHEMA)
EVENT_TYPES: tuple[str, ...] = ("view", "click", "purchase")
AD_TYPES: tuple[str, ...] = ("banner", "modal", "sponsored-search", "mail", "mobile")

# Events whose event time lies further in the future than this (relative to the
# checker's clock), or at/below zero, are "absurd": set aside, never allowed to
# move a watermark.
MAX_FUTURE_SKEW_MS = 60_000

# --------------------------------------------------------------------- windows
WINDOW_MS = 10_000  # fixed, non-overlapping (tumbling) windows of 10 s


def window_start_ms(time_ms: int, window_ms: int = WINDOW_MS) -> int:
    """Start of the tumbling window containing ``time_ms`` (floor, also for negatives)."""
    return (time_ms // window_ms) * window_ms


def event_window_start_ms(event_time_ns: int, window_ms: int = WINDOW_MS) -> int:
    return window_start_ms(event_time_ns // 1_000_000, window_ms)


# ------------------------------------------------------------ campaign mapping
# A fixed mapping (YSB keeps it in Redis): ad index i belongs to campaign
# i // ads_per_campaign; ids are name-based UUIDs so every process derives the
# same ids without sharing a file.
_NAMESPACE = uuid.UUID("6f1d6c3e-5b0a-4c7e-9a57-5d8b1f3c2a10")


@dataclass(frozen=True)
class AdCatalog:
    campaigns: int
    ads_per_campaign: int
    ad_ids: tuple[str, ...]
    campaign_of_ad: dict[str, int]

    @property
    def n_ads(self) -> int:
        return len(self.ad_ids)


@lru_cache(maxsize=8)
def ad_catalog(campaigns: int = 10, ads_per_campaign: int = 100) -> AdCatalog:
    """The fixed ad -> campaign mapping; campaign ids are 0..campaigns-1."""
    if campaigns < 1 or ads_per_campaign < 1:
        raise ValueError("campaigns and ads_per_campaign must be >= 1")
    ad_ids = tuple(
        str(uuid.uuid5(_NAMESPACE, f"ad-{i}")) for i in range(campaigns * ads_per_campaign)
    )
    mapping = {ad: i // ads_per_campaign for i, ad in enumerate(ad_ids)}
    return AdCatalog(campaigns, ads_per_campaign, ad_ids, mapping)


# ------------------------------------------------------- validation (Python side)
# Reasons an input record is set aside (dead-lettered). Engines use the same codes.
REJECT_REASONS: tuple[str, ...] = (
    "not_json",
    "missing_field",
    "bad_type",
    "bad_event_type",
    "unknown_ad",
    "absurd_timestamp",
)


def validate_event(
    raw: bytes | str, catalog: AdCatalog, now_ms: int
) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and check one input record: ``(event, None)`` or ``(None, reason)``."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, "not_json"
    if not isinstance(event, dict):
        return None, "not_json"
    for name, kind in EVENT_SCHEMA:
        if name not in event or event[name] is None:
            return None, "missing_field"
        value = event[name]
        if kind == "long":
            if not isinstance(value, int) or isinstance(value, bool):
                return None, "bad_type"
        elif not isinstance(value, str):
            return None, "bad_type"
    if event["event_type"] not in EVENT_TYPES:
        return None, "bad_event_type"
    if event["ad_id"] not in catalog.campaign_of_ad:
        return None, "unknown_ad"
    if not is_plausible_event_time(event["event_time_ns"], now_ms):
        return None, "absurd_timestamp"
    return event, None


def is_plausible_event_time(event_time_ns: int, now_ms: int) -> bool:
    return 0 < event_time_ns and event_time_ns // 1_000_000 <= now_ms + MAX_FUTURE_SKEW_MS


# -------------------------------------------------------------- output record
# One record per (campaign, event-time window) result, identical for A3, Spark
# and Flink. The record's event time is the window end (window_end_ms).
# result_time_ms is the engine's own clock when it produced the record; the
# analysis also reads the output topic's broker append time (LogAppendTime),
# which is measured the same way for every engine.
OUTPUT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("pipeline", "string"),  # a3 | spark | flink
    ("campaign_id", "long"),
    ("window_start_ms", "long"),
    ("window_end_ms", "long"),  # = the output record's event time
    ("views", "long"),
    ("clicks", "long"),
    ("ctr", "double"),  # clicks / views; null when views == 0
    ("result_time_ms", "long"),
    ("min_insertion_ms", "long"),
    ("max_insertion_ms", "long"),
)
OUTPUT_FIELDS: tuple[str, ...] = tuple(name for name, _ in OUTPUT_SCHEMA)

# Per-run topic names; every pipeline and the analysis build them from here.


def input_topic(run_id: str) -> str:
    return f"ysb-{run_id}"


def output_topic(run_id: str) -> str:
    return f"ctr-{run_id}"


def dead_letter_topic(run_id: str) -> str:
    return f"dlq-{run_id}"


def ctr(clicks: int, views: int) -> float | None:
    return clicks / views if views else None


def output_record(
    pipeline: str,
    campaign_id: int,
    window_start: int,
    views: int,
    clicks: int,
    result_time_ms: int,
    min_insertion_ms: int,
    max_insertion_ms: int,
    window_ms: int = WINDOW_MS,
) -> dict[str, Any]:
    """Build the shared output record (used by A3; Spark and Flink emit the same fields)."""
    return {
        "pipeline": pipeline,
        "campaign_id": int(campaign_id),
        "window_start_ms": int(window_start),
        "window_end_ms": int(window_start + window_ms),
        "views": int(views),
        "clicks": int(clicks),
        "ctr": ctr(clicks, views),
        "result_time_ms": int(result_time_ms),
        "min_insertion_ms": int(min_insertion_ms),
        "max_insertion_ms": int(max_insertion_ms),
    }


def parse_output_record(raw: bytes | str) -> dict[str, Any]:
    """Parse an output record and check it has exactly the contract's fields."""
    record = json.loads(raw)
    missing = [f for f in OUTPUT_FIELDS if f not in record]
    if missing:
        raise ValueError(f"output record lacks fields {missing}: {record!r}")
    return record


# ------------------------------------------------------- engine metrics read by the analysis
# Cumulative counters of the Spark job's JVM, one column each in metrics/spark_progress.csv
# (engines.spark.progress.JvmCounters writes them, sdsbench.analysis.cpu_cost reads them).
SPARK_JVM_COUNTERS: tuple[str, ...] = (
    "jvm_cpu_ms", "jit_compile_ms", "gc_ms", "codegen_compilations")
