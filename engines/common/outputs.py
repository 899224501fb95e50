"""End-of-run outputs read back from PostgreSQL: the final recount and the rejects."""

from __future__ import annotations

from pathlib import Path

import psycopg

from engines.common import pg_schema
from sdsbench import contract
from sdsbench.rundir import csv_text, write_text_atomic


def write_final_counts(conn: psycopg.Connection, path: Path, window_ms: int) -> int:
    """Recount every (campaign, window) over the complete events table; return rows."""
    with conn.cursor() as cur:
        rows = pg_schema.final_counts(cur, window_ms)
    conn.commit()
    write_text_atomic(path, csv_text(pg_schema.FINAL_COUNT_COLUMNS, rows))
    return len(rows)


def reject_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Dead letters per reason; every contract reason is listed, zero when absent."""
    counts = {reason: 0 for reason in contract.REJECT_REASONS}
    with conn.cursor() as cur:
        cur.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
        for reason, count in cur.fetchall():
            counts[reason] = int(count)
    conn.commit()
    return counts
