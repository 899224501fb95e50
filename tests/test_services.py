"""The real services: a private PostgreSQL cluster and an Apache Kafka broker (KRaft)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from sdsbench.paths import REPO_ROOT
from sdsbench.process_control import pid_alive
from sdsbench.services import ServiceError
from sdsbench.services import kafka as ksvc
from sdsbench.services import postgres as pgsvc
from sdsbench.services.ports import free_port, port_in_use
from sdsbench.services.stack import (
    check_services,
    ensure_services,
    load_services,
    normalize_config,
    start_services,
    stop_services,
)

pytestmark = pytest.mark.services  # every test here starts or stops real servers



def _topic() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- ports


def test_free_port_is_free_and_port_in_use_sees_a_listener():
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert port_in_use(port)


# ---------------------------------------------------------------- the stack


def test_stack_is_healthy_and_recorded(services, services_state_dir):
    assert check_services(services) == {"postgres": "ok", "kafka": "ok"}
    assert services.broker_kind == "apache-kafka"
    assert services.versions["kafka"].startswith("4.")
    assert services.versions["postgres"].startswith("15")
    recorded = load_services(services_state_dir)
    assert recorded == services
    assert json.loads((services_state_dir / "services.json").read_text())["pids"]["kafka"] > 0
    assert all(pid_alive(pid) for pid in services.pids.values())


def test_ensure_services_reuses_the_running_stack(services, services_state_dir, services_config):
    again = ensure_services(services_config, services_state_dir)
    assert again.pids == services.pids
    other = {**services_config, "postgres": {"dsn": None, "port": 0, "fsync": True}}
    with pytest.raises(ServiceError, match="another config"):
        ensure_services(other, services_state_dir)


def test_cli_status_reports_health(services_state_dir):
    r = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "services.py"),
            "status",
            "--state-dir",
            str(services_state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["health"] == {"postgres": "ok", "kafka": "ok"}


# ---------------------------------------------------------------- kafka


def test_kafka_produce_consume_exactly(kafka_bootstrap):
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic, n, partitions = _topic(), 5000, 4
    ksvc.create_topic(kafka_bootstrap, topic, partitions=partitions)
    assert topic in ksvc.list_topics(kafka_bootstrap)
    # Idempotence is what guarantees no duplicate and no reordering when librdkafka
    # retries under load (without it the order check below fails on a busy machine).
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
        }
    )
    errors: list[object] = []
    for i in range(n):
        producer.produce(
            topic,
            key=str(i % 97).encode(),
            value=f"msg-{i}".encode(),
            on_delivery=lambda err, _m: err and errors.append(err),
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors
    offsets = ksvc.end_offsets(kafka_bootstrap, topic)
    assert len(offsets) == partitions and sum(offsets.values()) == n

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": topic, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[int, list[int]] = {p: [] for p in range(partitions)}
    remaining = n
    try:
        for _ in range(600):
            if remaining == 0:
                break
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                got[msg.partition()].append(int(msg.value().decode().split("-")[1]))
                remaining -= 1
    finally:
        consumer.close()
    values = sorted(v for vs in got.values() for v in vs)
    assert values == list(range(n))  # every message exactly once
    for vs in got.values():  # produced in order within a partition => read in order
        assert vs == sorted(vs)
    ksvc.delete_topics(kafka_bootstrap, [topic])
    ksvc.delete_topics(kafka_bootstrap, [topic])  # missing_ok
    assert topic not in ksvc.list_topics(kafka_bootstrap)


def test_kafka_topic_config_and_errors(kafka_bootstrap):
    topic = _topic()
    ksvc.create_topic(kafka_bootstrap, topic, partitions=1, config={"retention.ms": 60000})
    with pytest.raises(ServiceError, match="could not create topic"):
        ksvc.create_topic(kafka_bootstrap, topic, partitions=1)
    ksvc.create_topic(kafka_bootstrap, topic, partitions=1, exist_ok=True)
    assert ksvc.end_offsets(kafka_bootstrap, topic) == {0: 0}
    ksvc.delete_topics(kafka_bootstrap, [topic])
    with pytest.raises(ServiceError, match="not found"):
        ksvc.end_offsets(kafka_bootstrap, "no-such-topic-" + uuid.uuid4().hex[:6])


# ---------------------------------------------------------------- postgres


def test_postgres_copy_roundtrip(pg_dsn):
    import psycopg

    rows = [
        (i, f"ad-{i % 100}", "click" if i % 3 == 0 else "view", 1_700_000_000_000 + i)
        for i in range(20_000)
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t_copy")
        conn.execute("CREATE TABLE t_copy (id int, ad text, kind text, ts bigint)")
        with conn.cursor() as cur:
            with cur.copy("COPY t_copy (id, ad, kind, ts) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        back = conn.execute("SELECT id, ad, kind, ts FROM t_copy ORDER BY id").fetchall()
        conn.execute("DROP TABLE t_copy")
    assert back == rows


def test_postgres_private_cluster_settings(pg_dsn):
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'max_connections', 'fsync', 'shared_buffers')"
            ).fetchall()
        )
        assert conn.execute("SELECT current_database()").fetchone()[0] == "sdsbench"
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["max_connections"] == "50"
    assert settings["fsync"] == "off"  # the test stack turns it off; the default is on
    assert int(settings["shared_buffers"]) * 8 == 512 * 1024  # 8 kB pages


# ---------------------------------------------------------------- external mode, errors


def test_external_endpoints_are_only_health_checked(services, tmp_path):
    cfg = {
        "postgres": {"dsn": services.pg_dsn},
        "kafka": {"bootstrap_servers": services.kafka_bootstrap},
    }
    ext = start_services(cfg, tmp_path / "ext")
    assert ext.external == {"postgres": True, "kafka": True}
    assert ext.pids == {"postgres": None, "kafka": None}
    assert ext.broker_kind == "external"
    assert check_services(ext) == {"postgres": "ok", "kafka": "ok"}
    assert stop_services(tmp_path / "ext") == []  # stops nothing it did not start
    assert check_services(services) == {"postgres": "ok", "kafka": "ok"}


def test_external_dsn_that_is_down_fails_clearly(tmp_path):
    port = free_port()
    with pytest.raises(ServiceError, match="not healthy"):
        pgsvc.health_check(f"postgresql://postgres@127.0.0.1:{port}/sdsbench", timeout=1)
    with pytest.raises(ServiceError, match="not healthy"):
        ksvc.health_check(f"127.0.0.1:{port}", timeout=1)


def test_port_in_use_gives_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} is already in use.*port: 0"):
            pgsvc.PostgresServer(tmp_path / "pg", port=port).start()
        with pytest.raises(ServiceError, match=f"port {port} is already in use.*port: 0"):
            ksvc.KafkaBroker(tmp_path / "kafka", port=port).start()


def test_missing_kafka_jars_and_noida_db_fail_clearly(tmp_path):
    with pytest.raises(ServiceError, match="env/setup.sh kafka"):
        ksvc.KafkaBroker(tmp_path / "k", lib_dir=tmp_path / "nolib").start()
    with pytest.raises(ServiceError, match="noida-db fallback not implemented"):
        normalize_config({"kafka": {"broker": "noida-db"}})
    with pytest.raises(ServiceError, match="unknown services.kafka.broker"):
        normalize_config({"kafka": {"broker": "calfkit"}})


def test_missing_postgres_binaries_fail_clearly(monkeypatch):
    monkeypatch.setattr(pgsvc.glob, "glob", lambda _p: [])
    monkeypatch.setattr(pgsvc.shutil, "which", lambda _n: None)
    with pytest.raises(ServiceError, match="env/setup.sh postgres"):
        pgsvc.find_pg_bin()


# ---------------------------------------------------------------- a second stack: start / stop


def test_second_stack_starts_and_stops_cleanly(services):
    state = Path(tempfile.mkdtemp(prefix="sdsbench-test-stack2-"))
    state.chmod(0o755)
    try:
        cfg = {"postgres": {"fsync": False}, "kafka": {"heap_mb": 384}}
        svc = start_services(cfg, state)
        assert svc.pg_dsn != services.pg_dsn and svc.kafka_bootstrap != services.kafka_bootstrap
        assert check_services(svc) == {"postgres": "ok", "kafka": "ok"}
        with pytest.raises(ServiceError, match="already running"):
            start_services(cfg, state)
        assert sorted(stop_services(state)) == ["kafka", "postgres"]
        assert not any(pid_alive(p) for p in svc.pids.values())
        assert load_services(state) is None
        assert stop_services(state) == []  # idempotent
        kafka_port = int(svc.kafka_bootstrap.rsplit(":", 1)[1])
        assert not port_in_use(kafka_port)
    finally:
        stop_services(state)
        shutil.rmtree(state, ignore_errors=True)
