"""A1: generator -> PostgreSQL -> window query, tightly coupled in one program.

The runner does not launch generators for A1 (``owns_generator``): ``start`` spawns
``engines.a1.coupled_loop``, one process, one thread, that generates the open-loop
schedule, inserts each batch and runs each window's query as the window closes (see
that module). A subprocess rather than the runner's own process so the resource
sampler measures exactly the coupled program, and the runner's threads do not share
its interpreter lock.

Run outputs: ``generator/`` (truth.csv, rate.csv, summary.json: written by the loop
with the shared recorders), ``results.csv`` + ``metrics/queries.csv`` (the query
runner), ``final_counts.csv`` (recount of every window over the complete table),
``rejects.csv`` (dead letters per reason: the generator's bad records in malformed-input
runs, checked by the loop; all zero otherwise, valid events arrive as typed tuples),
``metrics/a1.json``, ``logs/a1.log``.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from engines.common import outputs, pg_schema
from engines.common.processes import spawn_module, terminate, write_job
from sdsbench import contract
from sdsbench.experiments import pipeline_params
from sdsbench.rundir import write_json_atomic, write_rejects

log = logging.getLogger("sdsbench.a1")


class A1Error(RuntimeError):
    """The coupled loop failed or did not finish: the run has no valid truth."""


@dataclass
class _State:
    params: dict[str, Any]
    schema: str
    job_path: Path
    loop: subprocess.Popen | None = None
    returncode: int | None = None


class Pipeline:
    owns_generator = True

    def prepare(self, ctx: Any) -> None:
        params = pipeline_params(ctx.config, ctx.spec)
        workload = ctx.config["workload"]
        catalog = contract.ad_catalog(workload["campaigns"], workload["ads_per_campaign"])
        schema = pg_schema.run_schema_name(ctx.run_id)
        pg_schema.create_run_schema(ctx.services.pg_dsn, schema, catalog)
        job = {
            "dsn": ctx.services.pg_dsn,
            "schema": schema,
            "run_dir": str(ctx.run_dir),
            "spec": ctx.spec,
            "config": ctx.config,
            "params": params,
            "window_ms": contract.WINDOW_MS,
        }
        ctx.extra["a1"] = _State(params, schema, write_job(ctx.run_dir, "a1-job", job))

    def start(self, ctx: Any) -> None:
        st: _State = ctx.extra["a1"]
        st.loop = spawn_module(
            "engines.a1.coupled_loop", ["--job", str(st.job_path)], ctx.run_dir / "logs" / "a1.log"
        )
        ctx.processes.append(st.loop)

    def generator_sink(self, ctx: Any) -> dict[str, Any]:
        # Never used by the runner (owns_generator); the loop is its own sink.
        return {"kind": "null"}

    def drain(self, ctx: Any, timeout_s: float) -> None:
        """Wait for the loop: the whole schedule, then the last window's query."""
        st: _State = ctx.extra["a1"]
        grace_s = int(st.params["query_grace_ms"]) / 1000
        budget_s = (
            float(ctx.spec["duration_s"]) + contract.WINDOW_MS / 1000 + grace_s + timeout_s + 5.0
        )
        try:
            st.returncode = st.loop.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            st.returncode = terminate([st.loop], float(st.params["stop_timeout_s"]))[0]
            raise A1Error(
                f"A1 loop still running after {budget_s:.0f} s; see {ctx.run_dir}/logs/a1.log"
            ) from None
        if st.returncode != 0:
            raise A1Error(f"A1 loop exited with {st.returncode}; see {ctx.run_dir}/logs/a1.log")

    def collect(self, ctx: Any) -> None:
        st: _State = ctx.extra["a1"]
        with pg_schema.connect(ctx.services.pg_dsn, st.schema) as conn:
            windows = outputs.write_final_counts(
                conn, ctx.run_dir / "final_counts.csv", contract.WINDOW_MS
            )
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM events")
                (stored_events,) = cur.fetchone()
            rejects = outputs.reject_counts(conn)
        write_rejects(ctx.run_dir / "rejects.csv", rejects)
        write_json_atomic(
            ctx.run_dir / "metrics" / "a1.json",
            {
                "schema": st.schema,
                "params": st.params,
                "stored_events": int(stored_events),
                "rejected": rejects,
                "final_count_rows": windows,
                "loop_returncode": st.returncode,
            },
        )

    def stop(self, ctx: Any) -> None:
        st: _State | None = ctx.extra.get("a1")
        if st is None:
            return
        if st.loop is not None and st.loop.poll() is None:
            terminate([st.loop], float(st.params["stop_timeout_s"]))
        if st.params.get("keep_data"):
            return
        try:
            pg_schema.drop_run_schema(ctx.services.pg_dsn, st.schema)
        except psycopg.Error as exc:  # cleanup must not hide the run's outcome
            log.warning("a1: dropping schema %s failed: %s", st.schema, exc)
