"""A1 (generator -> PostgreSQL, one thread) and the shared window query runner."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from engines.a1.coupled_loop import PostgresSink
from engines.common import pg_schema
from engines.common.query_runner import QUERY_COLUMNS, RESULT_COLUMNS, WindowQueryRunner
from sdsbench import contract, runner
from sdsbench.config import load_config
from sdsbench.experiments import make_spec
from sdsbench.workload.generator import EventSource

COUNTS = ["views", "clicks", "purchases"]
KEY = ["campaign_id", "window_start_ms"]


# ------------------------------------------------------------------ helpers
@pytest.fixture
def run_env(services):
    """Runs use the session's services as external endpoints (each real run keeps its
    own services state in ``run_services_dir``)."""
    return services


def _config(services, **sections) -> dict:
    return load_config(
        overrides={
            "services": {
                "postgres": {"dsn": services.pg_dsn},
                "kafka": {"bootstrap_servers": services.kafka_bootstrap},
            },
            "run": {"drain_timeout_s": 30},
            **sections,
        }
    )


def _schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return row is not None


def _exact_match(truth: pd.DataFrame, counted: pd.DataFrame) -> pd.DataFrame:
    """Rows where the final recount differs from the truth (empty when exact)."""
    merged = truth[KEY + COUNTS].merge(
        counted[KEY + COUNTS], on=KEY, how="outer", suffixes=("_truth", "_db")
    ).fillna(0)
    differs = pd.Series(False, index=merged.index)
    for c in COUNTS:
        differs |= merged[f"{c}_truth"] != merged[f"{c}_db"]
    return merged[differs]


# ------------------------------------------------------------------ schema
def test_run_schema_names_are_valid_and_distinct():
    assert pg_schema.run_schema_name("a1-constant-r2000") != pg_schema.run_schema_name(
        "a1_constant_r2000"
    )
    long_name = pg_schema.run_schema_name("a2-mmpp-r100000-" + "x" * 80)
    assert len(long_name) <= 63 and long_name.startswith("sds_")
    assert pg_schema.run_schema_name("abc") == "sds_abc"


# ----------------------------------------------------------- query runner
def test_window_query_runner_queries_each_window_once_when_due(pg_dsn, tmp_path):
    """Known clicks in three past windows: run_due() queries exactly the windows whose
    end + grace has passed, with the YSB join to campaigns, and records each query."""
    catalog = contract.ad_catalog()
    schema = pg_schema.run_schema_name(f"test-qr-{time.time_ns()}")
    pg_schema.create_run_schema(pg_dsn, schema, catalog)
    base_ms = 1_600_000_000_000  # a window start, long past
    ad_c0, ad_c3 = catalog.ad_ids[0], catalog.ad_ids[350]  # campaigns 0 and 3
    rows = []
    for window, ad, n in ((0, ad_c0, 3), (0, ad_c3, 2), (1, ad_c3, 4), (2, ad_c0, 1)):
        for i in range(n):
            t_ms = base_ms + window * 10_000 + 100 * i
            rows.append(("u", "p", ad, "banner", "click", t_ms * 1_000_000, t_ms + 5))
    rows.append(("u", "p", ad_c0, "banner", "view", base_ms * 1_000_000, base_ms))
    try:
        with pg_schema.connect(pg_dsn, schema) as conn:
            with conn.cursor() as cur:
                pg_schema.copy_events(cur, rows)
            conn.commit()
            qr = WindowQueryRunner(conn, "a1", tmp_path, base_ms + 1234, grace_ms=500)
            assert qr.next_due_ms() == base_ms + 10_500
            assert qr.run_due(at_ms=base_ms + 10_499) == 0
            assert qr.run_due(at_ms=base_ms + 20_500) == 2
            qr.finish(pg_schema.last_click_time_ns(conn.cursor()) // 1_000_000)
            qr.close()
            assert qr.windows_run == 3
    finally:
        pg_schema.drop_run_schema(pg_dsn, schema)
    results = pd.read_csv(tmp_path / "results.csv")
    queries = pd.read_csv(tmp_path / "metrics" / "queries.csv")
    assert tuple(results.columns) == RESULT_COLUMNS
    assert tuple(queries.columns) == QUERY_COLUMNS
    got = {(r.window_start_ms - base_ms, r.campaign_id): r.clicks for r in results.itertuples()}
    assert got == {(0, 0): 3, (0, 3): 2, (10_000, 3): 4, (20_000, 0): 1}
    assert list(queries["window_start_ms"] - base_ms) == [0, 10_000, 20_000]
    assert list(queries["clicks"]) == [5, 4, 1]
    assert (queries["query_latency_ms"] > 0).all()
    first = results[results.window_start_ms == base_ms]
    # max insertion over the counted clicks of campaign 0 in window 0: the 3rd click
    assert first[first.campaign_id == 0].max_insertion_ms.item() == base_ms + 200 + 5
    assert (results.e2e_latency_ms == results.query_end_ms - results.max_insertion_ms).all()


# ------------------------------------------------------------ COPY vs INSERT
def test_copy_and_insert_store_the_same_rows(pg_dsn, tmp_path):
    config = load_config()
    spec = {"run_id": "t", "pipeline": "a1", "duration_s": 1.0, "seed": 7,
            "arrival": {"process": "constant", "rate_eps": 3000}}
    counts = {}
    start_ns = time.time_ns() + 3600 * 10**9  # windows never due: no queries
    for method in ("copy", "insert"):
        schema = pg_schema.run_schema_name(f"test-{method}-{time.time_ns()}")
        pg_schema.create_run_schema(pg_dsn, schema, contract.ad_catalog())
        source = EventSource(spec, config)
        source.start_ns = start_ns
        try:
            with pg_schema.connect(pg_dsn, schema) as conn:
                qr = WindowQueryRunner(conn, "a1", tmp_path / method, source.start_ns // 10**6, 0)
                sink = PostgresSink(conn, qr, method, max_copy_rows=500, flush_interval_ms=10**6)
                for batch in source:
                    sink.offer(batch, batch.due_ns // 1_000_000)
                report = sink.close(1.0)
                qr.close()
                counts[method] = pd.DataFrame(
                    pg_schema.final_counts(conn.cursor(), contract.WINDOW_MS),
                    columns=pg_schema.FINAL_COUNT_COLUMNS,
                )
        finally:
            pg_schema.drop_run_schema(pg_dsn, schema)
        assert report["messages"] == 3000 and report["insert_method"] == method
        assert report["rows_per_flush_max"] <= 500 + 15  # a flush follows the batch that fills
    assert counts["copy"]["events"].sum() == 3000
    pd.testing.assert_frame_equal(counts["copy"], counts["insert"])


# ------------------------------------------------------------ a real A1 run
def test_a1_run_counts_match_truth_and_queries_are_recorded(run_services_dir, run_env, tmp_path):
    config = _config(run_env)
    spec = make_spec(config, "a1", "constant", 2000, duration_s=12,
                     run_id=f"a1-test-{time.time_ns()}")
    out = runner.execute_run(config, spec, tmp_path / "run", run_services_dir)

    truth = pd.read_csv(out / "generator" / "truth.csv")
    rate = pd.read_csv(out / "generator" / "rate.csv")
    final = pd.read_csv(out / "final_counts.csv")
    queries = pd.read_csv(out / "metrics" / "queries.csv")
    results = pd.read_csv(out / "results.csv")

    assert truth[COUNTS].to_numpy().sum() == rate["sent"].sum() == rate["scheduled"].sum() == 24000
    assert _exact_match(truth, final).empty, "final recount differs from the generator truth"

    # One query per window, consecutive, covering every window with clicks.
    starts = queries["window_start_ms"].tolist()
    assert starts == list(range(starts[0], starts[-1] + 1, contract.WINDOW_MS))
    assert set(truth[truth.clicks > 0].window_start_ms) <= set(starts)
    assert (queries["query_latency_ms"] > 0).all()
    assert (queries["start_delay_ms"] >= 0).all()

    # Processing-time semantics: an on-time click was inserted before its window's query
    # (the loop flushes first), so a query can only miss delayed clicks, never add any.
    merged = truth.merge(results[KEY + ["clicks"]], on=KEY, how="left", suffixes=("", "_q"))
    merged["clicks_q"] = merged["clicks_q"].fillna(0)
    assert (merged.clicks_q <= merged.clicks).all()
    assert (merged.clicks_q >= merged.clicks - merged.clicks_delayed).all()
    assert (results["e2e_latency_ms"] >= 0).all()

    rejects = pd.read_csv(out / "rejects.csv")
    assert set(rejects["reason"]) == set(contract.REJECT_REASONS)
    assert (Path(out) / "metrics" / "resources.csv").exists()
    assert not _schema_exists(run_env.pg_dsn, pg_schema.run_schema_name(spec["run_id"]))
