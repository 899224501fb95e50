"""Read a run's topics back: the output topic (the shared result records) into a table,
and any topic of JSON records (dead letters, late events)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sdsbench.contract import OUTPUT_FIELDS, parse_output_record

RESULT_COLUMNS = [*OUTPUT_FIELDS, "append_time_ms", "partition", "offset"]


def read_output_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> pd.DataFrame:
    """All records of ``topic`` up to its end offsets at call time, with the broker
    append time (the topic uses LogAppendTime). Call it after the pipeline drained.
    A record that breaks the contract raises: an engine must never emit one.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sdsbench-reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # Engines may write transactionally; read only what they committed.
            "isolation.level": "read_committed",
        }
    )
    rows = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise RuntimeError(f"output topic {topic} does not exist")
        ends = {}
        for p in meta.topics[topic].partitions:
            ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} incomplete")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
            if msg.offset() >= ends[msg.partition()]:
                continue
            record = parse_output_record(msg.value())
            record["append_time_ms"] = msg.timestamp()[1]
            record["partition"] = msg.partition()
            record["offset"] = msg.offset()
            rows.append(record)
    finally:
        consumer.close()
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def read_json_topic(bootstrap: str, topic: str, timeout_s: float = 60.0,
                    idle_s: float = 3.0) -> list[tuple[int, int, dict[str, Any]]]:
    """Every record of ``topic`` (committed ones only) as (partition, offset, JSON value),
    up to its end offsets at call time; stops early after ``idle_s`` without a record
    (transaction markers occupy offsets no consumer sees)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"sdsbench-json-reader-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    out: list[tuple[int, int, dict[str, Any]]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic} does not exist")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.topics[topic].partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while pending and time.monotonic() - last_new < idle_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} incomplete")
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            last_new = time.monotonic()
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
            if msg.offset() < ends[msg.partition()]:
                out.append((msg.partition(), msg.offset(), json.loads(msg.value())))
    finally:
        consumer.close()
    return out


def write_results(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically, so a crash never leaves a half-written results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
