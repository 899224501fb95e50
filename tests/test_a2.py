"""A2 (generator -> Kafka -> consumer group -> PostgreSQL): exactly-once store, dead
letters, a real run against the truth, and a consumer killed with SIGKILL mid-run."""

from __future__ import annotations

import json
import signal
import threading
import time

import pandas as pd
import psutil
import psycopg
import pytest

from engines.a2.consumer import store_batch
from engines.common import pg_schema
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


def _config(services) -> dict:
    return load_config(
        overrides={
            "services": {
                "postgres": {"dsn": services.pg_dsn},
                "kafka": {"bootstrap_servers": services.kafka_bootstrap},
            },
            "run": {"drain_timeout_s": 40},
            "a2": {"consumers": 2, "partitions": 4},
        }
    )


def _differences(truth: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    merged = truth[KEY + COUNTS].merge(
        final[KEY + COUNTS], on=KEY, how="outer", suffixes=("_truth", "_db")
    ).fillna(0)
    differs = pd.Series(False, index=merged.index)
    for c in COUNTS:
        differs |= merged[f"{c}_truth"] != merged[f"{c}_db"]
    return merged[differs]


def _events(n: int, seed: int = 3) -> list[bytes]:
    """n valid contract events as JSON (from the generator's own encoder)."""
    spec = {"run_id": "t", "pipeline": "a2", "duration_s": 1.0, "seed": seed,
            "arrival": {"process": "constant", "rate_eps": n}}
    source = EventSource(spec, load_config())
    source.start_ns = time.time_ns()
    lines = [line for batch in source for line in batch.json_lines(time.time_ns() // 10**6)]
    assert len(lines) == n
    return lines


def _malformed(catalog: contract.AdCatalog) -> dict[str, bytes]:
    """One record per reject reason."""
    good = json.loads(_events(1)[0])
    return {
        "not_json": b"{not json",
        "missing_field": json.dumps({k: v for k, v in good.items() if k != "ad_id"}).encode(),
        "bad_type": json.dumps(good | {"event_time_ns": "soon"}).encode(),
        "bad_event_type": json.dumps(good | {"event_type": "hover"}).encode(),
        "unknown_ad": json.dumps(good | {"ad_id": "no-such-ad"}).encode(),
        "absurd_timestamp": json.dumps(good | {"event_time_ns": -5}).encode(),
    }


# --------------------------------------------------- exactly-once store_batch
def test_store_batch_stores_each_offset_once_and_sets_malformed_aside(pg_dsn):
    catalog = contract.ad_catalog()
    schema = pg_schema.run_schema_name(f"test-a2-store-{time.time_ns()}")
    pg_schema.create_run_schema(pg_dsn, schema, catalog, kafka_partitions=2)
    events = _events(20)
    bad = _malformed(catalog)
    # partition 0: offsets 0..9 valid; partition 1: 10 valid then the 6 malformed ones
    records = [(0, i, events[i]) for i in range(10)]
    records += [(1, i, events[10 + i]) for i in range(10)]
    records += [(1, 10 + i, raw) for i, raw in enumerate(bad.values())]
    now_ms = time.time_ns() // 10**6
    try:
        with pg_schema.connect(pg_dsn, schema) as conn:
            first = store_batch(conn, records[:15], catalog, now_ms)
            assert (first.stored, first.rejected, first.duplicates) == (15, 0, 0)
            assert first.next_offsets == {0: 10, 1: 5}
            # A replay after a crash: the same records again plus the rest of the batch.
            second = store_batch(conn, records, catalog, now_ms)
            assert (second.stored, second.rejected, second.duplicates) == (5, 6, 15)
            assert dict(second.reasons) == {reason: 1 for reason in bad}
            assert second.next_offsets == {0: 10, 1: 16}
            # A zombie that still reads partition 0 from offset 3 stores nothing and learns
            # where the partition really is.
            zombie = store_batch(conn, records[3:6], catalog, now_ms)
            assert (zombie.stored, zombie.duplicates, zombie.ahead) == (0, 3, {0: 10})
            (n_events,) = conn.execute("SELECT count(*) FROM events").fetchone()
            dead = conn.execute("SELECT reason, kafka_partition, kafka_offset, raw"
                                " FROM dead_letters ORDER BY kafka_offset").fetchall()
            offsets = dict(conn.execute("SELECT * FROM kafka_offsets").fetchall())
    finally:
        pg_schema.drop_run_schema(pg_dsn, schema)
    assert n_events == 20
    assert [(r[0], r[1], r[2]) for r in dead] == [
        (reason, 1, 10 + i) for i, reason in enumerate(bad)
    ]
    assert bytes(dead[0][3]) == bad["not_json"]
    assert offsets == {0: 10, 1: 16}


def test_store_batch_sets_aside_values_postgres_cannot_hold(pg_dsn):
    """Valid JSON and contract types, but a NUL in a string, an integer beyond bigint or
    a lone surrogate: the batch is stored row by row and only those become dead letters."""
    catalog = contract.ad_catalog()
    schema = pg_schema.run_schema_name(f"test-a2-unstorable-{time.time_ns()}")
    pg_schema.create_run_schema(pg_dsn, schema, catalog, kafka_partitions=1)
    events = _events(5)
    good = json.loads(events[0])
    poison = [
        json.dumps(good | {"user_id": "a\u0000b"}).encode(),
        json.dumps(good | {"insertion_time_ms": 2**70}).encode(),
        json.dumps(good | {"page_id": "\ud800x"}).encode(),  # escaped by json.dumps
    ]
    records = [(0, i, raw) for i, raw in enumerate([*events[:2], *poison, *events[2:]])]
    try:
        with pg_schema.connect(pg_dsn, schema) as conn:
            outcome = store_batch(conn, records, catalog, time.time_ns() // 10**6)
            (n_events,) = conn.execute("SELECT count(*) FROM events").fetchone()
            dead = [r[0] for r in conn.execute(
                "SELECT kafka_offset FROM dead_letters ORDER BY 1").fetchall()]
    finally:
        pg_schema.drop_run_schema(pg_dsn, schema)
    assert (outcome.stored, outcome.rejected, dict(outcome.reasons)) == (5, 3, {"bad_type": 3})
    assert n_events == 5 and dead == [2, 3, 4]
    assert outcome.next_offsets == {0: 8}


# ------------------------------------------------------------ real A2 runs
def _consumers() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "engines.a2.consumer" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _when_input_flows(bootstrap: str, topic: str, timeout_s: float = 30) -> None:
    """Block until the run's input topic holds data (the generator is sending)."""
    from sdsbench.services.kafka import end_offsets

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if sum(end_offsets(bootstrap, topic).values()) > 0:
                return
        except Exception:  # noqa: BLE001 - the topic may not exist yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no data in {topic}")


def _check_run(out, services) -> tuple[pd.DataFrame, dict]:
    truth = pd.read_csv(out / "generator" / "truth.csv")
    final = pd.read_csv(out / "final_counts.csv")
    diff = _differences(truth, final)
    assert diff.empty, f"final recount differs from the truth:\n{diff}"
    a2 = json.loads((out / "metrics" / "a2.json").read_text())
    assert a2["drain"]["caught_up"] and a2["drain"]["records_left"] == 0
    assert a2["stored_events"] == truth[COUNTS].to_numpy().sum() == 24000
    queries = pd.read_csv(out / "metrics" / "queries.csv")
    assert (queries["query_latency_ms"] > 0).all()
    assert set(truth[truth.clicks > 0].window_start_ms) <= set(queries["window_start_ms"])
    lag = pd.read_csv(out / "metrics" / "lag.csv")
    assert set(lag["partition"]) == {0, 1, 2, 3} and lag["end_offset"].max() > 0
    results = pd.read_csv(out / "results.csv")
    assert (results["e2e_latency_ms"] > 0).all()
    # the run's schema is gone
    with psycopg.connect(services.pg_dsn) as conn:
        assert conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                            (a2["schema"],)).fetchone() is None
    return truth, a2


def test_a2_run_matches_truth_and_counts_dead_letters(run_services_dir, run_env, tmp_path):
    """Malformed records injected into the input topic mid-run are counted per reason
    and set aside; the run goes on and every valid event is counted exactly once."""
    from confluent_kafka import Producer

    config = _config(run_env)
    spec = make_spec(config, "a2", "constant", 2000, duration_s=12,
                     run_id=f"a2-test-dlq-{time.time_ns()}")
    topic = contract.input_topic(spec["run_id"])
    bad = _malformed(contract.ad_catalog())
    injected = threading.Event()

    def inject() -> None:
        _when_input_flows(run_env.kafka_bootstrap, topic)
        time.sleep(2)
        producer = Producer({"bootstrap.servers": run_env.kafka_bootstrap})
        for i, raw in enumerate(bad.values()):
            producer.produce(topic, raw, partition=i % 4)
        producer.produce(topic, bad["not_json"], partition=3)
        if producer.flush(10) == 0:
            injected.set()

    injector = threading.Thread(target=inject, daemon=True)
    injector.start()
    out = runner.execute_run(config, spec, tmp_path / "run", run_services_dir)
    injector.join(timeout=5)
    assert injected.is_set()
    _, a2 = _check_run(out, run_env)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects == {reason: 1 for reason in bad} | {"not_json": 2}
    assert a2["rejected"] == rejects


def test_a2_consumer_killed_mid_run_loses_and_duplicates_nothing(
    run_services_dir, run_env, tmp_path
):
    """SIGKILL one consumer while events flow; the supervisor restarts it, the group
    rebalances, and the stored events still equal the truth exactly."""
    config = _config(run_env)
    spec = make_spec(config, "a2", "constant", 2000, duration_s=12,
                     run_id=f"a2-test-kill-{time.time_ns()}")
    topic = contract.input_topic(spec["run_id"])
    killed: list[int] = []

    def kill_one() -> None:
        _when_input_flows(run_env.kafka_bootstrap, topic)
        time.sleep(3)
        victims = _consumers()
        if victims:
            victims[0].send_signal(signal.SIGKILL)
            killed.append(victims[0].pid)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    out = runner.execute_run(config, spec, tmp_path / "run", run_services_dir)
    killer.join(timeout=5)
    assert killed, "no consumer was killed"
    _, a2 = _check_run(out, run_env)
    restarts = a2["consumer_restarts"]
    assert [r["pid"] for r in restarts] == killed
    assert restarts[0]["returncode"] == -signal.SIGKILL and restarts[0]["new_pid"]
    # The killed consumer's successor stored events after the restart.
    index = restarts[0]["consumer"]
    per_second = pd.read_csv(out / "metrics" / f"consumer-{index}.csv")
    assert (per_second[per_second.pid == restarts[0]["new_pid"]]["stored"].sum()) > 0
