"""What the A4f driver reads back after a run: the exactly-once output as a
``read_committed`` reader sees it, the records Flink's JSON format skipped (not JSON), and
the late-event records as ``metrics/late.csv`` rows."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from sdsbench import contract
from sdsbench.measurement.output_reader import RESULT_COLUMNS

# Same columns and vocabulary as A3's metrics/late.csv (policy drop | update).
LATE_COLUMNS = (
    "campaign_id", "window_start_ms", "views_dropped", "clicks_dropped", "purchases_dropped",
    "views_accepted", "clicks_accepted", "purchases_accepted", "policy", "allowed_ms",
)
EVENT_TYPE_COLUMNS = {"view": "views", "click": "clicks", "purchase": "purchases"}


def read_transactional_output(bootstrap: str, topic: str, timeout_s: float = 60.0) -> Any:
    """The output topic as ``read_output_topic`` returns it (same columns, contract check),
    for exactly-once runs. Transactions end with a commit marker that occupies an offset no
    consumer receives, so "the last record's offset + 1 = end offset" never holds; the
    consumer's position (which moves past markers) is compared with the end instead."""


    consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                         "group.id": f"sdsbench-flink-eo-reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    rows = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise RuntimeError(f"output topic {topic} does not exist")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.topics[topic].partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        deadline = time.monotonic() + timeout_s
        while True:
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0
                   for tp in positions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: not at the end offsets {ends}")
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.offset() >= ends[msg.partition()]:
                continue
            record = contract.parse_output_record(msg.value())
            record.update(append_time_ms=msg.timestamp()[1], partition=msg.partition(),
                          offset=msg.offset())
            rows.append(record)
    finally:
        consumer.close()
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def first_json_value(raw: bytes | None) -> Any:
    """The first JSON value of ``raw`` as Flink's JSON format reads it (Jackson: trailing
    content ignored, no NaN/Infinity); raises ValueError when there is none."""
    if raw is None:
        raise ValueError("null record")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    decoder = json.JSONDecoder(parse_constant=no_constants)
    return decoder.raw_decode(raw.decode("utf-8").lstrip())[0]


def scan_not_json(bootstrap: str, topic: str, end_offsets: dict[int, int]) -> list[dict[str, Any]]:
    """Dead-letter rows for the records of ``topic`` (up to ``end_offsets``) that are not
    a JSON object: what Flink's JSON format skipped. Reads the whole topic once."""

    consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                         "group.id": f"sdsbench-flink-scan-{time.time_ns()}",
                         "fetch.max.bytes": 16 * 2**20})
    rows: list[dict[str, Any]] = []
    try:
        for partition, end in sorted(end_offsets.items()):
            if end <= 0:
                continue
            consumer.assign([TopicPartition(topic, partition, 0)])
            position = 0
            while position < end:
                messages = consumer.consume(10_000, timeout=10)
                if not messages:
                    raise RuntimeError(f"scan of {topic}[{partition}] stopped at {position} "
                                       f"of {end}")
                for msg in messages:
                    if msg.error() or msg.offset() >= end:
                        continue
                    position = msg.offset() + 1
                    try:
                        ok = isinstance(first_json_value(msg.value()), dict)
                    except (ValueError, UnicodeDecodeError):
                        ok = False
                    if not ok:
                        value = msg.value()
                        rows.append({"reason": "not_json", "count": 1, "partition": partition,
                                     "offset": msg.offset(), "kafka_time_ms": msg.timestamp()[1],
                                     "raw": None if value is None
                                     else value.decode("utf-8", "replace")})
    finally:
        consumer.close()
    return rows


def late_table(records: list[dict[str, Any]], catalog: contract.AdCatalog,
               allowed_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Late-event records -> (metrics/late.csv rows per campaign and window, reject rows
    for late events of unknown ads)."""
    counts: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rejects = []
    for rec in records:
        campaign = catalog.campaign_of_ad.get(rec["ad_id"])
        if campaign is None:
            rejects.append({"reason": "unknown_ad", "count": 1, "partition": rec["partition"],
                            "offset": rec["offset"], "kafka_time_ms": None,
                            "raw": json.dumps(rec, sort_keys=True)})
            continue
        column = f"{EVENT_TYPE_COLUMNS[rec['event_type']]}_{rec['verdict']}"
        counts[(campaign, int(rec["window_start_ms"]))][column] += 1
    policy = "drop" if allowed_ms == 0 else "update"
    rows = []
    for (campaign, start), per_column in sorted(counts.items()):
        row: dict[str, Any] = {"campaign_id": campaign, "window_start_ms": start,
                               "policy": policy, "allowed_ms": allowed_ms}
        for name in EVENT_TYPE_COLUMNS.values():
            for verdict in ("dropped", "accepted"):
                row[f"{name}_{verdict}"] = per_column.get(f"{name}_{verdict}", 0)
        rows.append(row)
    return rows, rejects
