"""COPY FROM STDIN vs multi-row INSERT into A1's ``events`` table (with its index).

The same generated YSB rows are loaded with each method and batch size, one transaction
per batch (as A1's loop commits), into a fresh schema each time; prints rows/s.

    python -m engines.a1.bench_insert --dsn postgresql://... [--rows 200000]

Without ``--dsn`` it uses the running stack of ``scripts/services.py`` (.run/services).
"""

from __future__ import annotations

import argparse
import time

from engines.common import pg_schema
from sdsbench import contract
from sdsbench.config import load_config
from sdsbench.workload.generator import EventSource

METHODS = {"copy": pg_schema.copy_events, "insert": pg_schema.insert_events}


def bench(dsn: str, rows: list[tuple], batch_rows: int, method: str) -> float:
    """Rows per second loading ``rows`` in transactions of ``batch_rows``."""
    schema = pg_schema.run_schema_name(f"bench-{method}-{time.time_ns()}")
    pg_schema.create_run_schema(dsn, schema, contract.ad_catalog())
    try:
        with pg_schema.connect(dsn, schema) as conn:
            t0 = time.perf_counter()
            for i in range(0, len(rows), batch_rows):
                with conn.cursor() as cur:
                    METHODS[method](cur, rows[i : i + batch_rows])
                conn.commit()
            return len(rows) / (time.perf_counter() - t0)
    finally:
        pg_schema.drop_run_schema(dsn, schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: the running services)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[500, 5000, 50000])
    args = parser.parse_args(argv)
    dsn = args.dsn
    if dsn is None:
        from sdsbench.paths import services_state_dir
        from sdsbench.services.stack import load_services

        services = load_services(services_state_dir())
        if services is None:
            parser.error("no --dsn and no running services (scripts/services.py up)")
        dsn = services.pg_dsn
    spec = {"run_id": "bench", "pipeline": "a1", "duration_s": 1.0, "seed": 1,
            "arrival": {"process": "constant", "rate_eps": args.rows}}
    source = EventSource(spec, load_config())
    source.start_ns = time.time_ns()
    rows = [row for batch in source for row in batch.rows(time.time_ns() // 1_000_000)]
    print(f"{len(rows)} YSB rows, one transaction per batch")
    for batch_rows in args.batch_rows:
        for method in METHODS:
            rate = bench(dsn, rows, batch_rows, method)
            print(f"batch {batch_rows:>6}  {method:<6} {rate:>10,.0f} rows/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
