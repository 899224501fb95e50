"""A3 consumer process: Kafka -> PostgreSQL, plus the per-partition low watermark.

One process reads a fixed set of input partitions (manual assignment, no consumer group
rebalancing, so a partition's watermark always has exactly one writer) in batches. For
every batch, in ONE PostgreSQL transaction:

1. ``SELECT watermark_ms FROM watermark FOR SHARE``: the global watermark cannot move
   while the batch is being classified and written (see engines/a3/sql.py);
2. each event is on time, late-accepted or late-dropped (watermark.classify_lateness);
   on-time and accepted events are COPYed into ``events``, late counts are added to
   ``late_windows``; bad records go to ``dead_letters`` with their reason;
3. each partition's watermark (now that nothing of it is pending), injector markers,
   idleness and next Kafka offset are written.

Offsets live in PostgreSQL with the events (exactly-once ingest); a restarted consumer
resumes from them and from the stored producer markers.

    python -m engines.a3.consumer --job RUN_DIR/logs/a3-job.json --index I

The job file (written by engines/a3/pipeline.py) holds dsn, schema, bootstrap, topic,
partitions (count), consumers, producers, idle_timeout_ms, lateness_policy,
allowed_lateness_ms, batch_max_events, batch_max_wait_ms, campaigns, ads_per_campaign.
Consumer I reads the partitions p with p % consumers == I.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from engines.a3 import sql as a3sql
from engines.a3.watermark import (
    Marker,
    PartitionWatermark,
    Reject,
    classify_lateness,
    classify_record,
)
from engines.common import pg_schema
from sdsbench import contract
from sdsbench.process_control import StopFlag

PROGRESS_INTERVAL_S = 5.0
_TYPE_INDEX = {"view": 0, "click": 1, "purchase": 2}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Batch:
    """What one poll brought, before it is written."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[tuple[int, int, str, bytes, int]] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)


@dataclass
class Counters:
    events: int = 0
    markers: int = 0
    late_dropped: int = 0
    late_accepted: int = 0
    rejects: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    kafka_errors: int = 0
    batches: int = 0


def split_lateness(
    events: list[dict[str, Any]],
    watermark_ms: int | None,
    policy: str,
    allowed_ms: int,
    catalog: contract.AdCatalog,
    window_ms: int = contract.WINDOW_MS,
) -> tuple[list[tuple], dict[tuple[int, int], list[int]]]:
    """Rows to store, and late counts per (campaign, window_start):
    ``[dropped view, click, purchase, accepted view, click, purchase]``."""
    rows: list[tuple] = []
    late: dict[tuple[int, int], list[int]] = {}
    fields = contract.EVENT_FIELDS
    for event in events:
        start = contract.event_window_start_ms(event["event_time_ns"], window_ms)
        verdict = classify_lateness(start + window_ms, watermark_ms, policy, allowed_ms)  # type: ignore[arg-type]
        if verdict != "late_dropped":
            rows.append(tuple(event[f] for f in fields))
        if verdict != "on_time":
            key = (catalog.campaign_of_ad[event["ad_id"]], start)
            counts = late.setdefault(key, [0] * 6)
            offset = 0 if verdict == "late_dropped" else 3
            counts[offset + _TYPE_INDEX[event["event_type"]]] += 1
    return rows, late


def assigned_partitions(partitions: int, consumers: int, index: int) -> list[int]:
    """Fixed assignment: consumer ``index`` reads p with p % consumers == index."""
    return [p for p in range(partitions) if p % consumers == index]


class A3Consumer:
    def __init__(self, settings: dict[str, Any], index: int = 0) -> None:
        self.s = settings
        self.index = index
        self.catalog = contract.ad_catalog(settings["campaigns"], settings["ads_per_campaign"])
        self.producers = int(settings["producers"])
        self.partitions = assigned_partitions(
            int(settings["partitions"]), int(settings["consumers"]), index
        )
        self.idle_timeout_ms: int | None = settings.get("idle_timeout_ms")
        self.counters = Counters()
        self.stop = StopFlag()  # main() installs it for SIGTERM / SIGINT
        self.states: dict[int, PartitionWatermark] = {}
        self.idle: dict[int, bool] = {}

    # ------------------------------------------------------------ setup
    def _restore(self, conn: Any) -> dict[int, int]:
        """Start offsets and producer markers from PostgreSQL (restart-safe)."""
        offsets = dict(
            conn.execute(
                "SELECT kafka_partition, next_offset FROM kafka_offsets "
                "WHERE kafka_partition = ANY(%s)",
                (self.partitions,),
            ).fetchall()
        )
        rows = conn.execute(
            "SELECT kafka_partition, producer_marks_ms, max_event_time_ms FROM "
            "partition_watermarks WHERE kafka_partition = ANY(%s)",
            (self.partitions,),
        ).fetchall()
        conn.commit()
        start = now_ms()
        for p in self.partitions:
            self.states[p] = PartitionWatermark(p, self.producers, last_heard_ms=start)
            self.idle[p] = False
        for p, marks, max_time in rows:
            if marks and len(marks) == self.producers:
                self.states[p].marks_ms = list(marks)
            self.states[p].max_event_time_ms = max_time
        missing = set(self.partitions) - set(offsets)
        if missing:
            raise RuntimeError(f"no kafka_offsets rows for partitions {sorted(missing)}")
        return offsets

    # ------------------------------------------------------------ one batch
    def read(self, messages: list[Any]) -> Batch:
        batch = Batch()
        t = now_ms()
        for msg in messages:
            if msg.error():
                self.counters.kafka_errors += 1
                continue
            p, offset = msg.partition(), msg.offset()
            batch.next_offsets[p] = offset + 1
            state = self.states[p]
            record = classify_record(msg.value(), self.catalog, t, self.producers)
            if isinstance(record, Marker):
                state.observe_marker(record, t)
                self.counters.markers += 1
            elif isinstance(record, Reject):
                state.heard(t)
                raw = msg.value() or b""
                batch.rejects.append((p, offset, record.reason, raw[:4096], t))
                self.counters.rejects[record.reason] += 1
            else:
                state.observe_event(record["event_time_ns"] // 1_000_000, t)
                batch.events.append(record)
        return batch

    def write(self, conn: Any, batch: Batch) -> None:
        s = self.s
        with conn.transaction():
            cur = conn.cursor()
            (watermark,) = cur.execute(a3sql.LOCK_WATERMARK_SHARED).fetchone()
            rows, late = split_lateness(
                batch.events, watermark, s["lateness_policy"], int(s["allowed_lateness_ms"]),
                self.catalog,
            )
            if rows:
                pg_schema.copy_events(cur, rows)
            if late:
                # Sorted: consumers lock shared late_windows rows in one order (no deadlock).
                cur.executemany(
                    a3sql.ADD_LATE,
                    [
                        (c, w, *counts, counts[3] + counts[4] > 0)
                        for (c, w), counts in sorted(late.items())
                    ],
                )
            if batch.rejects:
                pg_schema.copy_dead_letters(cur, batch.rejects)
            # From here on the batch is durable iff the transaction commits; the
            # watermark written below is the one that holds once it has.
            for p in self.partitions:
                self.states[p].mark_durable()
            cur.executemany(
                a3sql.UPDATE_PARTITION,
                [
                    (
                        st.watermark_ms, st.injector_ms, st.marks_ms, st.max_event_time_ms,
                        self.idle[p], st.last_heard_ms, p,
                    )
                    for p, st in self.states.items()
                ],
            )
            if batch.next_offsets:
                cur.executemany(
                    a3sql.UPDATE_OFFSET, [(o, p) for p, o in batch.next_offsets.items()]
                )
        dropped = sum(sum(c[:3]) for c in late.values())
        self.counters.late_dropped += dropped
        self.counters.late_accepted += sum(sum(c[3:]) for c in late.values())
        self.counters.events += len(batch.events)
        self.counters.batches += 1

    def update_idle(self) -> bool:
        """Recompute idleness; True when a flag changed (then it must be written)."""
        t = now_ms()
        changed = False
        for p, state in self.states.items():
            idle = state.is_idle(t, self.idle_timeout_ms)
            if idle != self.idle[p]:
                self.idle[p] = idle
                changed = True
        return changed

    # ------------------------------------------------------------ main loop
    def run(self) -> int:
        from confluent_kafka import Consumer, TopicPartition


        s = self.s
        label = f"a3-consumer-{self.index}"
        conn = pg_schema.connect(s["dsn"], s["schema"])
        offsets = self._restore(conn)
        consumer = Consumer(
            {
                "bootstrap.servers": s["bootstrap"],
                "group.id": f"a3-{s['schema']}",  # never joined: offsets live in PostgreSQL
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "queued.max.messages.kbytes": 32768,
                "fetch.wait.max.ms": 50,
            }
        )
        consumer.assign([TopicPartition(s["topic"], p, offsets[p]) for p in self.partitions])
        max_events = int(s["batch_max_events"])
        wait_s = int(s["batch_max_wait_ms"]) / 1000
        next_progress = time.monotonic() + PROGRESS_INTERVAL_S
        print(f"[{label}] partitions {self.partitions} from offsets {offsets}", flush=True)
        try:
            while not self.stop.requested:
                messages = consumer.consume(max_events, wait_s)
                batch = self.read(messages)
                idle_changed = self.update_idle()
                if messages or idle_changed:
                    # A partition that speaks again is no longer idle in this very batch.
                    self.write(conn, batch)
                if time.monotonic() >= next_progress:
                    self.print_progress(label)
                    next_progress += PROGRESS_INTERVAL_S
        finally:
            consumer.close()
            conn.close()
            self.print_progress(label)
        return 0

    def print_progress(self, label: str) -> None:
        c = self.counters
        marks = {p: st.watermark_ms for p, st in self.states.items()}
        print(
            f"[{label}] events {c.events:,} markers {c.markers:,} late dropped "
            f"{c.late_dropped:,} accepted {c.late_accepted:,} rejects {dict(c.rejects)} "
            f"kafka errors {c.kafka_errors} batches {c.batches:,} watermarks {marks} "
            f"idle {[p for p, i in self.idle.items() if i]}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job file (see module doc)")
    parser.add_argument("--index", type=int, default=0, help="consumer index")
    args = parser.parse_args(argv)
    with open(args.job) as fh:
        worker = A3Consumer(json.load(fh), args.index)
    worker.stop.install()
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
