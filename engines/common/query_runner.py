"""Run the window query for each 10 s window as it closes in processing time (A1, A2).

A window ``[s, s + window_ms)`` of event time is queried once, as soon as the wall
clock passes its end plus ``grace_ms`` (the grace lets in-flight rows land). Whatever
arrives later (disorder, a slow ingest) is missed by that query; the run's final recount
(``final_counts.csv``) tells such misses apart from loss.

Two files are written, one row appended (and flushed) per query:

- ``results.csv``: one row per (window, campaign) result, ``RESULT_COLUMNS``;
- ``metrics/queries.csv``: one row per query, also for windows with no clicks,
  ``QUERY_COLUMNS``.

Definitions (as coded):

- ``query_latency_ms``  = wall time of the window query (execute + fetch);
- ``e2e_latency_ms``    = query end - max insertion time of the clicks counted for that
  campaign (the generator's ``insertion_time_ms``: when the event was handed to the sink);
- ``e2e_from_window_end_ms`` = query end - window end;
- ``start_delay_ms``    = query start - due time (window end + grace): how late the
  query started, e.g. because A1's single loop was busy inserting.

Used in-process by A1's loop (``WindowQueryRunner.run_due``) and as its own process by
A2 (``main``), which finishes when told to (SIGTERM): it then runs every remaining
window up to the one holding the last stored click, still waiting for each to close.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Any, TextIO

import psycopg

from engines.common import pg_schema
from sdsbench import contract
from sdsbench.process_control import StopFlag

log = logging.getLogger("sdsbench.query_runner")

RESULT_COLUMNS = (
    "pipeline",
    "campaign_id",
    "window_start_ms",
    "window_end_ms",
    "clicks",
    "query_start_ms",
    "query_end_ms",
    "query_latency_ms",
    "max_insertion_ms",
    "e2e_latency_ms",
    "e2e_from_window_end_ms",
)
QUERY_COLUMNS = (
    "pipeline",
    "window_start_ms",
    "window_end_ms",
    "due_ms",
    "query_start_ms",
    "query_end_ms",
    "query_latency_ms",
    "start_delay_ms",
    "result_rows",
    "clicks",
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _csv_writer(path: Path, columns: tuple[str, ...]) -> tuple[TextIO, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("w", newline="")
    writer = csv.writer(fh)
    writer.writerow(columns)
    fh.flush()
    return fh, writer


class WindowQueryRunner:
    """Queries windows in order, each once, when the wall clock passes its end + grace."""

    def __init__(
        self,
        conn: psycopg.Connection,
        pipeline: str,
        run_dir: Path,
        first_window_start_ms: int,
        grace_ms: int,
        window_ms: int = contract.WINDOW_MS,
    ) -> None:
        self._conn = conn
        self._pipeline = pipeline
        self._window_ms = window_ms
        self._grace_ms = grace_ms
        self.next_window_start_ms = contract.window_start_ms(first_window_start_ms, window_ms)
        self.windows_run = 0
        self._results_fh, self._results = _csv_writer(run_dir / "results.csv", RESULT_COLUMNS)
        self._queries_fh, self._queries = _csv_writer(
            run_dir / "metrics" / "queries.csv", QUERY_COLUMNS
        )

    def next_due_ms(self) -> int:
        """Wall-clock time at which the next window may be queried."""
        return self.next_window_start_ms + self._window_ms + self._grace_ms

    def run_due(self, at_ms: int | None = None) -> int:
        """Query every window that is due at ``at_ms`` (default: now); return how many."""
        ran = 0
        while (at_ms if at_ms is not None else now_ms()) >= self.next_due_ms():
            self.run_next()
            ran += 1
        return ran

    def run_next(self) -> None:
        """Query the next window now (whether due or not) and record it."""
        start = self.next_window_start_ms
        end = start + self._window_ms
        due = self.next_due_ms()
        t0_ns = time.time_ns()
        with self._conn.cursor() as cur:
            rows = pg_schema.window_counts(cur, start, self._window_ms)
        t1_ns = time.time_ns()
        # End the read-only transaction so the next query sees rows committed meanwhile.
        self._conn.commit()
        q_start, q_end = t0_ns // 1_000_000, t1_ns // 1_000_000
        latency_ms = (t1_ns - t0_ns) / 1e6
        for campaign_id, clicks, max_ins in rows:
            self._results.writerow(
                (self._pipeline, campaign_id, start, end, clicks, q_start, q_end,
                 f"{latency_ms:.3f}", max_ins, q_end - max_ins, q_end - end)
            )
        self._queries.writerow(
            (self._pipeline, start, end, due, q_start, q_end, f"{latency_ms:.3f}",
             q_start - due, len(rows), sum(r[1] for r in rows))
        )
        self._results_fh.flush()
        self._queries_fh.flush()
        self.next_window_start_ms = end
        self.windows_run += 1

    def finish(self, last_window_start_ms: int | None) -> None:
        """Query every window up to ``last_window_start_ms``, each when it is due."""
        if last_window_start_ms is None:
            return
        while self.next_window_start_ms <= last_window_start_ms:
            wait_ms = self.next_due_ms() - now_ms()
            if wait_ms > 0:
                time.sleep(wait_ms / 1000)
            self.run_next()

    def close(self) -> None:
        self._results_fh.close()
        self._queries_fh.close()


def last_data_window_ms(
    conn: psycopg.Connection, window_ms: int = contract.WINDOW_MS
) -> int | None:
    """Start of the window holding the last stored click (None if there is none)."""
    with conn.cursor() as cur:
        last_ns = pg_schema.last_click_time_ns(cur)
    conn.commit()
    return None if last_ns is None else contract.event_window_start_ms(last_ns, window_ms)


# ------------------------------------------------------------------ A2's process

def main(argv: list[str] | None = None) -> int:
    """Standalone query runner (A2): ``--job`` JSON with dsn, schema, run_dir, ..."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job JSON written by the pipeline")
    args = parser.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s query_runner %(message)s")
    stop = StopFlag().install()

    window_ms = int(job.get("window_ms", contract.WINDOW_MS))
    conn = pg_schema.connect(job["dsn"], job["schema"])
    first_ns = None
    while first_ns is None and not stop.requested:
        with conn.cursor() as cur:
            first_ns = pg_schema.first_event_time_ns(cur)
        conn.commit()
        if first_ns is None:
            time.sleep(0.1)
    if first_ns is None:
        log.info("stopped before any event was stored")
        conn.close()
        return 0
    # The first stored row need not be the earliest: delayed events carry event times up
    # to the disorder bound earlier, and other partitions may lag. Wait until the first
    # row's window is due, then start at the window of the earliest click stored by then
    # (index-backed min), so no window with clicks is skipped and no empty one is queried.
    first_ms = contract.event_window_start_ms(first_ns, window_ms)
    while not stop.requested and now_ms() < first_ms + window_ms + int(job["grace_ms"]):
        time.sleep(0.1)
    with conn.cursor() as cur:
        earliest_click_ns = pg_schema.first_click_time_ns(cur)
    conn.commit()
    if earliest_click_ns is not None:
        first_ms = min(first_ms, contract.event_window_start_ms(earliest_click_ns, window_ms))
    runner = WindowQueryRunner(
        conn, job["pipeline"], Path(job["run_dir"]), first_ms, int(job["grace_ms"]), window_ms
    )
    log.info("first window %d", runner.next_window_start_ms)
    try:
        while not stop.requested:
            runner.run_due()
            time.sleep(max(0.0, min(0.2, (runner.next_due_ms() - now_ms()) / 1000)))
        last = last_data_window_ms(conn, window_ms)
        log.info("finishing: windows up to %s", last)
        runner.finish(last)
    finally:
        runner.close()
        conn.close()
    log.info("done: %d windows", runner.windows_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
