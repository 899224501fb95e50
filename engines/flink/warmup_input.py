"""Synthetic input for the Flink job's warm-up runs: valid events, written to a topic of
the run's own before the job starts (the job runs its plan over them first)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Producer

from sdsbench import contract


def warmup_records(n: int, catalog: contract.AdCatalog, now_ms: int) -> Iterator[bytes]:
    """``n`` valid synthetic events (compact JSON, like the generator's) with event times
    spread over the 30 s before ``now_ms - 60 s``, so the warm-up fires windows too."""
    users = [str(uuid.UUID(int=i + 1)) for i in range(100)]
    span_ns = 30_000 * 1_000_000
    start_ns = (now_ms - 90_000) * 1_000_000
    for i in range(n):
        yield json.dumps({
            "user_id": users[i % 100], "page_id": users[(i * 7) % 100],
            "ad_id": catalog.ad_ids[(i * 7919) % catalog.n_ads],
            "ad_type": contract.AD_TYPES[i % len(contract.AD_TYPES)],
            "event_type": contract.EVENT_TYPES[i % len(contract.EVENT_TYPES)],
            "event_time_ns": start_ns + span_ns * i // max(n, 1),
            "insertion_time_ms": now_ms,
        }, separators=(",", ":")).encode()


def fill_warmup_topic(bootstrap: str, topic: str, n: int, catalog: contract.AdCatalog) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "queue.buffering.max.messages": 500_000})
    for record in warmup_records(n, catalog, time.time_ns() // 1_000_000):
        while True:
            try:
                producer.produce(topic, record)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not write the warm-up events to {topic}")
