"""A2 consumer process: Kafka input topic -> PostgreSQL ``events``, exactly once.

One of ``a2.consumers`` processes of one consumer group. Per poll batch, ONE PostgreSQL
transaction

1. locks the ``kafka_offsets`` rows of the batch's partitions (``FOR UPDATE``),
2. drops records below the stored next offset (already stored: a replay after a crash,
   or a zombie consumer that lost its partition in a rebalance),
3. validates the rest (``contract.validate_event``): valid ones are COPYed into
   ``events``, malformed ones into ``dead_letters`` (raw bytes + reason; a value that
   passes validation but that PostgreSQL cannot hold counts as ``bad_type``),
4. advances ``kafka_offsets`` to the last offset + 1,

and commits. The Kafka offsets therefore live in PostgreSQL, committed atomically with
the rows they cover, and a (re)assigned partition is read from the offset stored there
(``on_assign``): a crash at any point replays only what PostgreSQL does not have, and
the row lock makes two consumers of one partition store each record once. That is
exactly-once into PostgreSQL without Kafka transactions. Kafka's own auto-commit is off;
after each PostgreSQL commit the same offsets are also committed to Kafka asynchronously,
only so that standard tools see the group's progress (they are never read back).

SIGTERM/SIGINT: finish the current batch, leave the group, exit 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import operator
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from engines.common import pg_schema
from sdsbench import contract
from sdsbench.process_control import StopFlag

log = logging.getLogger("sdsbench.a2.consumer")

# A validated event as a row in EVENT_FIELDS order (itemgetter: one C call per event).
_as_row = operator.itemgetter(*contract.EVENT_FIELDS)

METRIC_COLUMNS = (
    "time_ms", "consumer", "pid", "polled", "stored", "rejected", "duplicates", "batches",
    "db_ms", "max_batch",
)


@dataclass
class BatchOutcome:
    stored: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: Counter = field(default_factory=Counter)
    next_offsets: dict[int, int] = field(default_factory=dict)  # after this batch
    ahead: dict[int, int] = field(default_factory=dict)  # stored offset beyond the batch


def _lock_offsets(cur: psycopg.Cursor, partitions: list[int]) -> dict[int, int]:
    cur.execute(
        "SELECT kafka_partition, next_offset FROM kafka_offsets"
        " WHERE kafka_partition = ANY(%s) ORDER BY kafka_partition FOR UPDATE",
        (partitions,),
    )
    return {int(p): int(o) for p, o in cur.fetchall()}


# Errors of a value that passed validate_event but that PostgreSQL cannot hold: a NUL
# character in a string, an integer beyond bigint, a lone UTF-16 surrogate.
_UNSTORABLE = (psycopg.DataError, UnicodeEncodeError)
# ... such a record is set aside with this reason (its value has no valid column type).
UNSTORABLE_REASON = "bad_type"


def store_batch(
    conn: psycopg.Connection,
    records: list[tuple[int, int, bytes]],
    catalog: contract.AdCatalog,
    now_ms: int,
) -> BatchOutcome:
    """Store ``(partition, offset, value)`` records exactly once; one transaction.

    The batch is COPYed in one go; if PostgreSQL rejects a value (see ``_UNSTORABLE``)
    the transaction is rolled back and the batch is stored again row by row, each row in
    a savepoint, so only the offending records become dead letters: bad input never
    stops the consumer (a crash would replay the same record forever)."""
    try:
        return _store(conn, records, catalog, now_ms, row_by_row=False)
    except _UNSTORABLE as exc:
        log.warning("batch has a value PostgreSQL cannot store (%s); storing row by row", exc)
        return _store(conn, records, catalog, now_ms, row_by_row=True)


def _store(
    conn: psycopg.Connection,
    records: list[tuple[int, int, bytes]],
    catalog: contract.AdCatalog,
    now_ms: int,
    row_by_row: bool,
) -> BatchOutcome:
    outcome = BatchOutcome()
    partitions = sorted({p for p, _, _ in records})
    with conn.transaction(), conn.cursor() as cur:
        stored = _lock_offsets(cur, partitions)
        missing = [p for p in partitions if p not in stored]
        if missing:  # a partition added after prepare: it starts at offset 0
            cur.execute(
                "INSERT INTO kafka_offsets SELECT unnest(%s::int[]), 0 ON CONFLICT DO NOTHING",
                (missing,),
            )
            stored = _lock_offsets(cur, partitions)
        valid: list[tuple[int, int, bytes, tuple[Any, ...]]] = []
        dead: list[tuple[int, int, str, bytes, int]] = []
        last: dict[int, int] = {}  # last offset stored now, per partition
        batch_end: dict[int, int] = {}  # last offset + 1 in the batch, per partition
        for partition, offset, value in records:
            batch_end[partition] = max(offset + 1, batch_end.get(partition, 0))
            if offset < stored[partition]:
                outcome.duplicates += 1
                continue
            last[partition] = max(offset, last.get(partition, -1))
            event, reason = contract.validate_event(value, catalog, now_ms)
            if event is None:
                dead.append((partition, offset, reason, value, now_ms))
            else:
                valid.append((partition, offset, value, _as_row(event)))
        if valid and not row_by_row:
            outcome.stored = pg_schema.copy_events(cur, [v[3] for v in valid])
        for partition, offset, value, row in valid if row_by_row else ():
            try:
                with conn.transaction():  # a savepoint
                    pg_schema.copy_events(cur, [row])
                outcome.stored += 1
            except _UNSTORABLE:
                dead.append((partition, offset, UNSTORABLE_REASON, value, now_ms))
        if dead:
            outcome.rejected = pg_schema.copy_dead_letters(cur, dead)
            outcome.reasons.update(d[2] for d in dead)
        if last:
            cur.executemany(
                "UPDATE kafka_offsets SET next_offset = %s WHERE kafka_partition = %s",
                [(off + 1, p) for p, off in last.items()],
            )
        for p in partitions:
            outcome.next_offsets[p] = last[p] + 1 if p in last else stored[p]
            if stored[p] > batch_end[p]:
                outcome.ahead[p] = stored[p]
    return outcome


def read_offsets(conn: psycopg.Connection, partitions: list[int]) -> dict[int, int]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT kafka_partition, next_offset FROM kafka_offsets"
            " WHERE kafka_partition = ANY(%s)",
            (partitions,),
        )
        found = {int(p): int(o) for p, o in cur.fetchall()}
    conn.commit()
    return found



class _Metrics:
    """Per-second counters of one consumer, appended to metrics/consumer-<i>.csv."""

    def __init__(self, path: Path, index: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A restarted consumer appends to its predecessor's file; a predecessor killed
        # before its first flush leaves an empty file, which still needs the header.
        new = not path.exists() or path.stat().st_size == 0
        self._fh = path.open("a", newline="")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(METRIC_COLUMNS)
            self._fh.flush()
        self._index = index
        self._second = time.time_ns() // 1_000_000_000
        self._reset()

    def _reset(self) -> None:
        self.polled = self.stored = self.rejected = self.duplicates = self.batches = 0
        self.db_ms = 0.0
        self.max_batch = 0

    def add(self, polled: int, outcome: BatchOutcome, db_ms: float) -> None:
        self.polled += polled
        self.stored += outcome.stored
        self.rejected += outcome.rejected
        self.duplicates += outcome.duplicates
        self.batches += 1
        self.db_ms += db_ms
        self.max_batch = max(self.max_batch, polled)

    def tick(self, force: bool = False) -> None:
        second = time.time_ns() // 1_000_000_000
        if second == self._second and not force:
            return
        if self.polled or self.batches:
            self._csv.writerow(
                (self._second * 1000, self._index, os.getpid(), self.polled, self.stored,
                 self.rejected, self.duplicates, self.batches, f"{self.db_ms:.1f}", self.max_batch)
            )
            self._fh.flush()
        self._second = second
        self._reset()

    def close(self) -> None:
        self.tick(force=True)
        self._fh.close()


def run_consumer(job: dict[str, Any], index: int, stop: StopFlag) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    catalog = contract.ad_catalog(job["campaigns"], job["ads_per_campaign"])
    topic = job["topic"]
    conn = pg_schema.connect(job["dsn"], job["schema"])
    settings = {
        "bootstrap.servers": job["bootstrap"],
        "group.id": job["group"],
        "client.id": f"{job['group']}-{index}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": int(job["session_timeout_ms"]),
        # Eager assignment: on_assign may then set start offsets with assign().
        "partition.assignment.strategy": "range",
        **job.get("kafka_consumer_config", {}),
    }
    consumer = Consumer(settings)

    def on_assign(cons: Any, partitions: list[Any]) -> None:
        offsets = read_offsets(conn, [tp.partition for tp in partitions])
        for tp in partitions:
            tp.offset = offsets.get(tp.partition, 0)
        log.info("consumer %d assigned %s", index, {tp.partition: tp.offset for tp in partitions})
        cons.assign(partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    metrics = _Metrics(Path(job["run_dir"]) / "metrics" / f"consumer-{index}.csv", index)
    max_batch = int(job["max_batch_messages"])
    poll_s = int(job["poll_timeout_ms"]) / 1000
    try:
        while not stop.requested:
            messages = consumer.consume(num_messages=max_batch, timeout=poll_s)
            metrics.tick()
            records = []
            for msg in messages:
                if msg.error() is not None:
                    log.warning("consumer %d: %s", index, msg.error())
                    continue
                records.append((msg.partition(), msg.offset(), msg.value() or b""))
            if not records:
                continue
            t0 = time.perf_counter()
            outcome = store_batch(conn, records, catalog, time.time_ns() // 1_000_000)
            metrics.add(len(records), outcome, (time.perf_counter() - t0) * 1000)
            for partition, offset in outcome.ahead.items():
                # Another consumer stored past this batch (we were a zombie): skip ahead.
                try:
                    consumer.seek(TopicPartition(topic, partition, offset))
                except KafkaException as exc:  # no longer assigned: nothing to skip
                    log.info("consumer %d: seek %d skipped: %s", index, partition, exc)
            try:
                consumer.commit(
                    offsets=[TopicPartition(topic, p, o) for p, o in outcome.next_offsets.items()],
                    asynchronous=True,
                )
            except KafkaException as exc:  # informational only: PostgreSQL holds the truth
                log.debug("kafka commit failed: %s", exc)
    finally:
        metrics.close()
        consumer.close()
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job JSON written by the pipeline")
    parser.add_argument("--index", type=int, required=True, help="consumer index in the group")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s consumer-{args.index} %(message)s")
    stop = StopFlag().install()
    run_consumer(json.loads(Path(args.job).read_text()), args.index, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
