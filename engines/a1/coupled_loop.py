"""A1's single program: generate, insert into PostgreSQL and query, in ONE thread.

This is the tightly coupled baseline of the course's first assignment. The open-loop
schedule is the shared generator's (``run_open_loop`` with ``EventSource``), so truth.csv
and rate.csv mean exactly what they mean for the other pipelines; only the sink differs:
``PostgresSink`` inserts each batch into ``events`` (COPY FROM STDIN, or multi-row INSERT
for comparison) and, in the same thread, runs the window query of every window whose
end + grace has passed. While the database inserts or queries, nothing is generated: the
producer waits, and rate.csv records how far behind the schedule it fell (behind_ms_max)
and how many events it managed per second (sent vs scheduled).

Batching: every tick's batch is committed before the loop sleeps for the next tick
(``idle``), so on schedule each batch is its own COPY + commit. When the loop is behind
there is no idle time; consecutive batches are then gathered into one COPY of at most
``max_copy_rows`` rows or ``flush_interval_ms`` of age, which is how a coupled program
catches up. A window query always runs after a flush, so it sees every row handed over.

``insertion_time_ms`` of a row = wall time at which the loop handed its batch to the sink
(just before it is buffered/COPYed).

Malformed input (``workload.malformed`` / the spec's ``malformed``): valid events reach the
sink as typed tuples, so there is nothing to parse; the generator's bad records reach it
as the raw bytes a wire would carry. The sink checks each with ``contract.validate_event``
(the validator A2 and A3 use) and stores it in ``dead_letters`` (raw bytes + reason,
partition and offset null) in the same transaction as the batch's rows; the loop never
stops for bad input. Only bad records are validated: A1's cost per valid event is the
same as in a run without injection.

Run as a subprocess by ``engines.a1.pipeline`` (so the runner samples its CPU apart from
its own threads): ``python -m engines.a1.coupled_loop --job <run>/logs/a1-job.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from engines.common import pg_schema
from engines.common.query_runner import WindowQueryRunner, last_data_window_ms
from sdsbench import contract
from sdsbench.process_control import StopFlag
from sdsbench.rundir import write_json_atomic, write_text_atomic
from sdsbench.workload.events import Batch
from sdsbench.workload.generator import (
    EventSource,
    default_start_ns,
    loop_summary,
    part_dir,
    run_open_loop,
)
from sdsbench.workload.launcher import merge_outputs

log = logging.getLogger("sdsbench.a1")

INSERT_METHODS = ("copy", "insert")
START_LEAD_S = 1.0  # schedule start after the loop is ready (connection, imports done)


class PostgresSink:
    """A generator sink that writes into PostgreSQL and runs due window queries."""

    kind = "postgres"

    def __init__(
        self,
        conn: psycopg.Connection,
        runner: WindowQueryRunner,
        insert_method: str = "copy",
        max_copy_rows: int = 50_000,
        flush_interval_ms: int = 50,
        catalog: contract.AdCatalog | None = None,
    ) -> None:
        if insert_method not in INSERT_METHODS:
            raise ValueError(f"a1.insert_method must be one of {INSERT_METHODS}")
        self._conn = conn
        self._runner = runner
        self._method = insert_method
        self._max_rows = max_copy_rows
        self._flush_interval_ms = flush_interval_ms
        self._buffer: list[tuple] = []
        self._dead: list[tuple] = []  # (partition, offset, reason, raw, rejected_ms)
        self._catalog = catalog or contract.ad_catalog()
        self._buffer_since_ms = 0
        self.messages = 0
        self.rejected = 0
        self.flushes = 0
        self.insert_ms = 0.0
        self.max_flush_rows = 0

    # --------------------------------------------------------------- the sink
    def offer(self, batch: Batch, insertion_ms: int) -> int:
        if not self._buffer:
            self._buffer_since_ms = insertion_ms
        self._buffer.extend(batch.rows(insertion_ms))
        if batch.bad is not None:
            self._set_aside(batch.bad_lines(insertion_ms), insertion_ms)
        if (
            len(self._buffer) >= self._max_rows
            or insertion_ms - self._buffer_since_ms >= self._flush_interval_ms
        ):
            self.flush()
        self._query_if_due()
        return len(batch)

    def _set_aside(self, records: list[bytes], now_ms: int) -> None:
        """Check raw records; bad ones wait in the dead-letter buffer for the next flush."""
        for raw in records:
            event, reason = contract.validate_event(raw, self._catalog, now_ms)
            if event is None:
                self._dead.append((None, None, reason, raw, now_ms))
            else:  # a raw record that is valid after all is stored like any event
                self._buffer.append(tuple(event[f] for f in contract.EVENT_FIELDS))

    def idle(self, timeout_s: float) -> None:
        t_end = time.monotonic() + timeout_s
        self.flush()
        self._query_if_due()
        remaining = t_end - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def wait_for_space(self, timeout_s: float) -> None:  # offer always accepts everything
        time.sleep(timeout_s)

    def send_markers(self, watermark_ns: int) -> int:  # A1 has no watermarks
        return 0

    def close(self, timeout_s: float) -> dict[str, Any]:
        self.flush()
        return {
            "kind": self.kind,
            "messages": self.messages,
            "rejected": self.rejected,
            "insert_method": self._method,
            "flushes": self.flushes,
            "rows_per_flush_mean": self.messages / self.flushes if self.flushes else 0.0,
            "rows_per_flush_max": self.max_flush_rows,
            "insert_ms_total": round(self.insert_ms, 3),
        }

    # ----------------------------------------------------------------- helpers
    def flush(self) -> None:
        """Insert and commit the buffered rows (one transaction)."""
        if not self._buffer and not self._dead:
            return
        rows, self._buffer = self._buffer, []
        dead, self._dead = self._dead, []
        t0 = time.perf_counter()
        with self._conn.cursor() as cur:
            if self._method == "copy":
                pg_schema.copy_events(cur, rows)
            else:
                pg_schema.insert_events(cur, rows)
            if dead:
                pg_schema.copy_dead_letters(cur, dead)
        self._conn.commit()
        self.rejected += len(dead)
        self.insert_ms += (time.perf_counter() - t0) * 1000
        self.messages += len(rows)
        self.flushes += 1
        self.max_flush_rows = max(self.max_flush_rows, len(rows))

    def _query_if_due(self) -> None:
        if time.time_ns() // 1_000_000 >= self._runner.next_due_ms():
            self.flush()
            self._runner.run_due()


def _summary(source: EventSource, result: Any, sink_info: dict[str, Any]) -> dict[str, Any]:
    """The per-process generator summary, in the shape ``merge_outputs`` reads (the same
    fields ``sdsbench.workload.generator.run_process`` writes)."""
    return {
        **source.describe(),
        "start_ns": source.start_ns,
        "schedule_end_ns": source.end_ns,
        "sink": sink_info,
        **loop_summary(result),
    }



def run(job: dict[str, Any], stop: StopFlag) -> int:
    run_dir = Path(job["run_dir"])
    spec, config, params = job["spec"], job["config"], job["params"]
    source = EventSource(spec, config, 0, 1)
    conn = pg_schema.connect(job["dsn"], job["schema"])
    source.start_ns = default_start_ns(START_LEAD_S)
    start_ms = source.start_ns // 1_000_000
    # Delayed events reach back up to max_delay_ms before the schedule start.
    disorder = config["workload"]["disorder"]
    max_disorder_ms = int(disorder["max_delay_ms"]) if disorder["fraction"] > 0 else 0
    runner = WindowQueryRunner(
        conn, "a1", run_dir, start_ms - max_disorder_ms, int(params["query_grace_ms"]),
        int(job["window_ms"]),
    )
    sink = PostgresSink(
        conn, runner, params["insert_method"], int(params["max_copy_rows"]),
        int(params["flush_interval_ms"]), source.factory.catalog,
    )
    try:
        result = run_open_loop(
            source, sink, progress=sys.stderr, should_stop=lambda: stop.requested
        )
        if not result.interrupted:
            # Processing-time semantics to the end: the last windows are queried when
            # they close, like all others.
            runner.finish(last_data_window_ms(conn, int(job["window_ms"])))
    finally:
        runner.close()
        conn.close()
    out = run_dir / "generator"
    part = part_dir(out, 0)
    part.mkdir(parents=True, exist_ok=True)
    if result.bookkeeping_error:  # bookkeeping must agree exactly
        raise AssertionError(result.bookkeeping_error)
    result.truth.write_csv(part / "truth.csv")
    result.malformed.write_csv(part / "malformed.csv")
    result.rate.write_csv(part / "rate.csv")
    if source.schedule.state_path is not None:
        write_text_atomic(part / "mmpp_states.csv", source.schedule.state_path.csv_text())
    write_json_atomic(
        part / "summary.json",
        _summary(source, result, {"kind": "postgres", "schema": job["schema"]}),
    )
    if result.interrupted:
        log.warning("a1 loop interrupted")
        return 130
    merge_outputs(out, 1)
    log.info("a1 loop done: %d events, %d windows queried", sink.messages, runner.windows_run)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job JSON written by engines.a1.pipeline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s a1 %(message)s")
    stop = StopFlag().install()
    return run(json.loads(Path(args.job).read_text()), stop)


if __name__ == "__main__":
    raise SystemExit(main())
