"""A3 emitter process: advance WATERMARK_NOW(), fire complete windows, publish CTR results.

Every ``fire_interval_ms``:

1. ``advance_watermark()`` (a short transaction) locks the watermark row (FOR UPDATE:
   consumers' batches in flight finish first, new ones wait) and moves it to the min over
   partitions (monotonic);
2. in a second transaction, the CTR query (engines/a3/sql.py) aggregates every (campaign,
   window) whose end the watermark has passed since ``firing_progress.fired_through_ms``;
   they are recorded in ``fired_windows``; under lateness policy ``update``, windows that
   accepted late events are recounted;
3. each result is produced to the run's output topic as the shared contract record and the
   producer is flushed; only then does the firing transaction commit (with the new
   ``fired_through_ms``). A failed delivery rolls the firing back, so it is retried at the
   next tick (at-least-once towards Kafka; a crash between the flush and the commit would
   emit a window twice, never zero times).

After the transaction it appends one row to ``metrics/watermark.csv``.

    python -m engines.a3.ctr_emitter --job RUN_DIR/logs/a3-job.json

Job keys used: dsn, schema, bootstrap, output_topic, partitions (count), fire_interval_ms,
lateness_policy, watermark_csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from engines.a3 import sql as a3sql
from engines.a3.watermark import END_OF_INPUT_MS
from engines.common import pg_schema
from sdsbench import contract
from sdsbench.process_control import StopFlag

PROGRESS_INTERVAL_S = 5.0
# Longer than a Kafka node's failover: a SIGKILLed node is noticed after
# broker.session.timeout.ms (9 s), then its partitions get a new leader. At 10 s a
# leader kill left results undelivered once and the emitter stopped (30 windows lost).
FLUSH_TIMEOUT_S = 60.0


def watermark_columns(partitions: int) -> list[str]:
    return [
        "time_ms",  # wall clock of the sample
        "watermark_ms",  # WATERMARK_NOW() after this tick (monotonic); empty = none yet or +inf
        "end_of_input",  # 1 once the input has ended (drain): WATERMARK_NOW() = +infinity
        "low_watermark_ms",  # this tick's candidate, min over non-idle partitions
        "injector_watermark_ms",  # min over partitions of the injector (marker) watermark
        "max_event_time_ms",  # newest event time durable in PostgreSQL
        "idle_partitions",
        "held_partitions",  # non-idle partitions with no watermark yet: they hold it back
        "fired_windows",  # cumulative (campaign, window) results emitted
        "updates",  # cumulative re-emissions for late events (policy update)
        "fire_ms",  # wall time of this tick's firing transaction (CTR query + Kafka flush)
        *[f"p{p}_watermark_ms" for p in range(partitions)],
    ]


def _ms(value: int | None) -> str:
    """A watermark cell: empty for none and for +infinity (see the end_of_input column), so
    plots and statistics of the column never meet an infinite value."""
    if value is None or value >= END_OF_INPUT_MS:
        return ""
    return str(value)


def _label(value: int | None) -> str:
    return "inf" if value is not None and value >= END_OF_INPUT_MS else str(value)


def result_record(row: tuple, result_time_ms: int) -> dict[str, Any]:
    """A CTR query row -> the shared output record (CTR is NULL when views == 0)."""
    campaign_id, window_start, views, clicks, min_ins, max_ins = row
    return contract.output_record(
        "a3", campaign_id, window_start, views, clicks, result_time_ms, min_ins, max_ins
    )


class CtrEmitter:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.s = settings
        self.stop = StopFlag()  # main() installs it for SIGTERM / SIGINT
        self.fired = 0
        self.updates = 0
        self.ticks = 0
        self.delivery_errors: list[str] = []
        self._last_candidate: int | None = None
        self._last_fire_ms = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors.append(str(err))

    def tick(self, conn: Any, producer: Any) -> tuple[int | None, list[tuple]]:
        """One tick: advance, fire; returns (WATERMARK_NOW(), partition rows)."""
        with conn.transaction():
            # Short: the row lock is held only while the new minimum is computed, so
            # consumers wait for milliseconds, not for the CTR query.
            previous, current = conn.execute(
                "SELECT previous_ms, watermark_ms FROM advance_watermark()"
            ).fetchone()
            (candidate,) = conn.execute("SELECT low_watermark_ms()").fetchone()
            partitions = conn.execute(a3sql.PARTITION_STATE).fetchall()
        self._last_candidate = candidate
        t0 = time.monotonic()
        self.fire(conn, producer)
        self._last_fire_ms = round((time.monotonic() - t0) * 1000)
        self.ticks += 1
        return current, partitions

    def fire(self, conn: Any, producer: Any) -> None:
        """Emit every window WATERMARK_NOW() has passed since ``fired_through_ms``, and
        (policy update) every window that accepted late events, in one transaction that
        commits only after Kafka acknowledged the records.

        No lock on the watermark is needed here: on-time events of these windows were
        classified before the advance (which waited for their transactions), so they are
        all committed; later ones are classified late against the new watermark."""
        out: list[tuple[bytes, bytes]] = []
        fired_rows: list[tuple] = []
        updates = 0
        with conn.transaction():
            through, current = conn.execute(
                "SELECT fired_through_ms, WATERMARK_NOW_MS() FROM firing_progress FOR UPDATE"
            ).fetchone()
            t = time.time_ns() // 1_000_000
            if current is not None and (through is None or current > through):
                # Windows not complete at the last firing start at its floor.
                from_ms = 0 if through is None else contract.window_start_ms(through)
                for row in conn.execute(a3sql.CTR_QUERY, {"from_ms": from_ms}).fetchall():
                    record = result_record(row, time.time_ns() // 1_000_000)
                    out.append((f"{row[0]}:{row[1]}".encode(), json.dumps(record).encode()))
                    fired_rows.append((row[0], row[1], current, t, t))
                conn.execute("UPDATE firing_progress SET fired_through_ms = %s", (current,))
            if self.s["lateness_policy"] == "update":
                # Locked: a consumer adding late events to one of these windows waits, then
                # sets needs_emit again (emitted next tick); none is cleared unseen.
                dirty = conn.execute(
                    "SELECT campaign_id, window_start_ms FROM late_windows WHERE needs_emit "
                    "ORDER BY campaign_id, window_start_ms FOR UPDATE"
                ).fetchall()
                for campaign_id, start in dirty:
                    views, clicks, min_ins, max_ins = conn.execute(
                        a3sql.RECOUNT_QUERY, {"start_ms": start, "campaign_id": campaign_id}
                    ).fetchone()
                    conn.execute(
                        "UPDATE late_windows SET needs_emit = false "
                        "WHERE campaign_id = %s AND window_start_ms = %s",
                        (campaign_id, start),
                    )
                    if views + clicks == 0:
                        continue
                    row = (campaign_id, start, views, clicks, min_ins, max_ins)
                    record = result_record(row, time.time_ns() // 1_000_000)
                    out.append((f"{campaign_id}:{start}".encode(), json.dumps(record).encode()))
                    fired_rows.append((campaign_id, start, current, t, t))
                    updates += 1
            if fired_rows:
                conn.cursor().executemany(a3sql.RECORD_FIRED, fired_rows)
            if out:
                self._publish(producer, out)
        self.fired += len(fired_rows) - updates
        self.updates += updates

    def _publish(self, producer: Any, records: list[tuple[bytes, bytes]]) -> None:
        topic = self.s["output_topic"]
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        if remaining or self.delivery_errors:
            errors, self.delivery_errors = self.delivery_errors, []
            raise RuntimeError(
                f"{remaining} results undelivered, errors {errors[:3]}: firing rolled back"
            )

    def metrics_row(self, current: int | None, partitions: list[tuple]) -> list[str]:
        injectors = [inj for _, _, inj, _, _ in partitions]
        max_times = [m for _, _, _, m, _ in partitions if m is not None]
        return [
            str(time.time_ns() // 1_000_000),
            _ms(current),
            "1" if current is not None and current >= END_OF_INPUT_MS else "0",
            _ms(self._last_candidate),
            _ms(None if any(i is None for i in injectors) or not injectors else min(injectors)),
            _ms(max(max_times) if max_times else None),
            str(sum(1 for *_, idle in partitions if idle)),
            str(sum(1 for _, wm, _, _, idle in partitions if wm is None and not idle)),
            str(self.fired),
            str(self.updates),
            str(self._last_fire_ms),
            *[_ms(wm) for _, wm, _, _, _ in partitions],
        ]

    def run(self) -> int:
        from confluent_kafka import Producer


        s = self.s
        conn = pg_schema.connect(s["dsn"], s["schema"])
        producer = Producer(
            {
                "bootstrap.servers": s["bootstrap"],
                "client.id": "a3-ctr-emitter",
                "linger.ms": 0,
                "acks": "all",
                "enable.idempotence": True,
            }
        )
        interval_s = int(s["fire_interval_ms"]) / 1000
        path = Path(s["watermark_csv"])
        path.parent.mkdir(parents=True, exist_ok=True)
        next_progress = time.monotonic() + PROGRESS_INTERVAL_S
        current: int | None = None
        # Append: an emitter restarted after a crash (fault runs) keeps its predecessor's rows.
        with path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            if fh.tell() == 0:
                writer.writerow(watermark_columns(int(s["partitions"])))
            next_tick = time.monotonic()
            while not self.stop.requested:
                current, partitions = self.tick(conn, producer)
                writer.writerow(self.metrics_row(current, partitions))
                fh.flush()
                if time.monotonic() >= next_progress:
                    print(
                        f"[a3-emitter] watermark {_label(current)} fired {self.fired:,} "
                        f"updates {self.updates:,} ticks {self.ticks:,}",
                        flush=True,
                    )
                    next_progress += PROGRESS_INTERVAL_S
                next_tick += interval_s
                time.sleep(max(0.0, next_tick - time.monotonic()))
                next_tick = max(next_tick, time.monotonic() - interval_s)
        conn.close()
        print(f"[a3-emitter] stopped: watermark {_label(current)} fired {self.fired:,}", flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job file (see module doc)")
    args = parser.parse_args(argv)
    with open(args.job) as fh:
        emitter = CtrEmitter(json.load(fh))
    emitter.stop.install()
    return emitter.run()


if __name__ == "__main__":
    sys.exit(main())
