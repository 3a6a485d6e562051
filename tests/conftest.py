"""Shared fixtures: an isolated flowrecord home per test, a recording backend, the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowrecord.backends.local import LocalStore
from flowrecord.testing import RecordingBackend, isolated


@pytest.fixture
def flowrecord_home(tmp_path: Path) -> Iterator[Path]:
    """A fresh FLOWRECORD_HOME; the runtime is shut down (flushed) after the test."""
    home = tmp_path / "home"
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0"):
        yield home


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[RecordingBackend]:
    """A RecordingBackend beside the local store, in a fresh home."""
    home = tmp_path / "home"
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0") as rec:
        rec.home = home  # type: ignore[attr-defined]
        yield rec


@pytest.fixture
def store(flowrecord_home: Path) -> LocalStore:
    """The local store of the test's home (open it after flushing)."""
    return LocalStore(flowrecord_home)


# ---------------------------------------------------------------------------
# PostgreSQL: the local server on these machines, else a testcontainers one
# ---------------------------------------------------------------------------


def _local_postgres(url: str) -> bool:
    try:
        import psycopg2

        psycopg2.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL of a PostgreSQL server (no database): 127.0.0.1:5432, else a container."""
    import os

    url = os.environ.get("FLOWRECORD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    if _local_postgres(f"{url}/postgres"):
        yield url
        return
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:  # pragma: no cover - testcontainers is a dev dependency
        pytest.fail("no PostgreSQL on 127.0.0.1:5432 and testcontainers is not installed")
    try:
        container = PostgresContainer("postgres:16", username="postgres", password="postgres")
        container.start()
    except Exception as exc:
        pytest.fail(f"no PostgreSQL on 127.0.0.1:5432 and no Docker engine to start one: {exc}")
    host = container.get_container_host_ip()
    port = container.get_exposed_port(5432)
    try:
        yield f"postgresql://postgres:postgres@{host}:{port}"
    finally:
        container.stop()


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """URL of a fresh, empty database on the test PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg2

    name = f"fr_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{postgres_server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
