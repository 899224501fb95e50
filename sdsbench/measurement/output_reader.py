"""Read a run's output topic (the shared result records) into a table."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from sdsbench.contract import OUTPUT_FIELDS, parse_output_record

RESULT_COLUMNS = [*OUTPUT_FIELDS, "append_time_ms", "partition", "offset"]


def read_output_topic(bootstrap: str, topic: str, idle_s: float = 3.0) -> pd.DataFrame:
    """All records of ``topic`` from the beginning, with the broker append time.

    Stops when the end offsets are reached and nothing new arrived for ``idle_s``.
    A record that breaks the contract raises: an engine must never emit one.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sdsbench-reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = list(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        rows = []
        done: dict[int, int] = {p: -1 for p in partitions}
        last_new = time.monotonic()
        while True:
            if all(done[p] + 1 >= ends[p] for p in partitions) and time.monotonic() - last_new > 0.5:
                break
            if time.monotonic() - last_new > idle_s:
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            last_new = time.monotonic()
            record = parse_output_record(msg.value())
            record["append_time_ms"] = msg.timestamp()[1]
            record["partition"] = msg.partition()
            record["offset"] = msg.offset()
            done[msg.partition()] = msg.offset()
            rows.append(record)
    finally:
        consumer.close()
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def write_results(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)

