"""Shared pytest fixtures.

Services: ``services`` starts a private PostgreSQL cluster and a real Apache Kafka broker
(KRaft) once per test session, on free loopback ports, under a fresh directory in /tmp
(reachable by the ``postgres`` user when the tests run as root), and stops both at the end.
``pg_dsn`` and ``kafka_bootstrap`` are its endpoints. Tests that do not ask for them start
nothing.

Engine sessions (Spark, Flink JVMs that serve several runs) of every test live in one
directory for the whole test session (tests give each run a private services state dir,
which would otherwise scatter them) and are stopped at its end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdsbench.services.stack import Services, start_services, stop_services

# ---------------------------------------------------------------- tiers
SERVICE_FIXTURES = {"services", "pg_dsn", "kafka_bootstrap"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the real servers (directly or through a fixture) with
    ``services``: ``make test-fast`` leaves them and the ``jvm`` tests out."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


# ---------------------------------------------------------------- services


@pytest.fixture(scope="session", autouse=True)
def engine_sessions_dir() -> Iterator[Path]:
    """One directory for the session's engine sessions; all stopped at the end."""
    from sdsbench.engine_session import SESSIONS_ENV, stop_sessions

    path = Path(tempfile.mkdtemp(prefix="sdsbench-test-sessions-"))
    old = os.environ.get(SESSIONS_ENV)
    os.environ[SESSIONS_ENV] = str(path)
    try:
        yield path
    finally:
        stop_sessions(path)
        if old is None:
            os.environ.pop(SESSIONS_ENV, None)
        else:
            os.environ[SESSIONS_ENV] = old
        shutil.rmtree(path, ignore_errors=True)


TEST_SERVICES_CONFIG = {
    "postgres": {"dsn": None, "port": 0, "fsync": False},
    "kafka": {
        "bootstrap_servers": None,
        "broker": "apache-kafka",
        "heap_mb": 512,
        "port": 0,
        "partitions": 4,
    },
}


@pytest.fixture(scope="session")
def services_config() -> dict:
    """The ``services:`` config the session's stack was started with."""
    return TEST_SERVICES_CONFIG


@pytest.fixture(scope="session")
def services_state_dir() -> Iterator[Path]:
    """A fresh directory for the session's services (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="sdsbench-test-services-"))
    path.chmod(0o755)  # the postgres user must traverse it when we are root
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def services(services_state_dir: Path) -> Iterator[Services]:
    """PostgreSQL + Apache Kafka for the whole session; stopped at the end."""
    try:
        svc = start_services(TEST_SERVICES_CONFIG, services_state_dir)
    except Exception:
        stop_services(services_state_dir)
        raise
    try:
        yield svc
    finally:
        stop_services(services_state_dir)


@pytest.fixture
def run_services_dir(tmp_path: Path) -> Path:
    """A private services state directory for a real run (``runner.execute_run``): the run
    records and looks up its services and engine sessions there, never in the checkout's
    ``.run/services``."""
    path = tmp_path / "services-state"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def pg_dsn(services: Services) -> str:
    """DSN of the session's PostgreSQL database ``sdsbench``."""
    return services.pg_dsn


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    """Bootstrap servers of the session's Kafka broker."""
    return services.kafka_bootstrap
