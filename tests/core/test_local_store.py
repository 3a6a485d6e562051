"""The embedded store: concurrent writers, idempotent merges, refusing foreign files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import flowrecord
from flowrecord.backends.local import LocalBackend, LocalStore, StoreError
from flowrecord.dispatcher import send_batch, subset_callers
from flowrecord.events import State, TaskEvent
from flowrecord.plugins import make_plugin_manager

pytestmark = pytest.mark.unit


def _callers(home: Path):
    pm = make_plugin_manager([("local", LocalBackend(home))])
    return subset_callers(pm, "local")


def _task(state: State, ts: float, **kw) -> TaskEvent:
    return TaskEvent(event_id=f"e{ts}", ts=ts, run_id="r", task_id="t", state=state, name="n", **kw)


def test_late_started_never_reopens_a_finished_task(tmp_path: Path):
    """Events arriving out of order (finished before started) keep the final state."""
    callers = _callers(tmp_path)
    send_batch(callers, [_task(State.SUCCEEDED, 2.0, duration_s=1.0)])
    send_batch(callers, [_task(State.STARTED, 1.0)])
    (row,) = LocalStore(tmp_path).query("SELECT state, duration_s FROM tasks")
    assert row["state"] == "succeeded"
    assert row["duration_s"] == 1.0


def test_foreign_sqlite_file_is_refused(tmp_path: Path):
    """A SQLite database that is not a flowrecord store is never written to."""
    path = tmp_path / "flowrecord.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a flowrecord store"):
        LocalStore(tmp_path).connect()
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("customers",)]


def test_garbage_file_is_refused(tmp_path: Path):
    """A store path holding random bytes gives a StoreError, not a crash."""
    (tmp_path / "flowrecord.db").write_bytes(os.urandom(4096))
    with pytest.raises(StoreError):
        LocalStore(tmp_path).connect()


def test_foreign_store_does_not_fail_the_task(tmp_path: Path):
    """With the store unusable, the task still succeeds and its events are spooled."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "flowrecord.db").write_bytes(b"not a database at all" * 100)
    from flowrecord.dispatcher import pending_spool_files, spool_dirs
    from flowrecord.testing import isolated

    with isolated(home):
        with flowrecord.run("p"), flowrecord.task("t"):
            flowrecord.log_metric("a", 1.0)
        flowrecord.flush(5)
    assert pending_spool_files(spool_dirs(home, "local"))


def test_store_written_by_newer_version_is_refused(tmp_path: Path):
    """A store whose schema is newer than this flowrecord is refused with a clear message."""
    store = LocalStore(tmp_path)
    store.connect().execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match="newer"):
        LocalStore(tmp_path).connect()


def test_registry_versions_and_aliases(tmp_path: Path):
    """The local registry numbers versions, moves aliases and keeps their history."""
    store = LocalStore(tmp_path)
    v1 = store.register_version(
        "churn",
        "run1",
        "task1",
        "s3://m/1",
        {"auc": 0.8},
        [{"name": "train", "fingerprint": "xxh3:1", "role": "train"}],
        {},
    )
    v2 = store.register_version("churn", "run2", "task2", "s3://m/2", {"auc": 0.9}, [], {})
    assert (v1["version"], v2["version"]) == ("1", "2")
    store.set_alias("churn", "champion", "1", "first")
    move = store.set_alias("churn", "champion", "2", "better")
    assert move["previous_version"] == "1"
    assert store.get_alias("churn", "champion") == "2"
    assert store.get_version("churn", "2")["aliases"] == ["champion"]
    with pytest.raises(KeyError):
        store.set_alias("churn", "champion", "7", None)
    (model,) = store.list_models()
    assert model["versions"] == ["1", "2"] and model["aliases"] == {"champion": "2"}
    history = store.query("SELECT version, previous_version FROM alias_history ORDER BY id")
    assert [tuple(r) for r in history] == [("1", None), ("2", "1")]


def test_opening_a_made_store_needs_no_write_lock_and_a_newer_one_is_refused(tmp_path: Path):
    """A process opens an existing store while another holds the write lock; newer schemas stop it.

    Each short task process opens the store once: waiting for the write lock
    just to read the schema version would queue them behind every writer.
    """
    import time

    from flowrecord.backends.local import STORE_SCHEMA_VERSION

    LocalStore(tmp_path).connect()  # made
    path = next(tmp_path.glob("*.db"))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process, mid-write
    try:
        started = time.monotonic()
        store = LocalStore(tmp_path)
        assert store.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0
        assert time.monotonic() - started < 5  # the busy timeout is 60 s
        store.close()
    finally:
        writer.execute("ROLLBACK")
    writer.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(STORE_SCHEMA_VERSION + 1),)
    )
    writer.close()
    with pytest.raises(StoreError, match="newer flowrecord"):
        LocalStore(tmp_path).connect()


def test_a_damaged_schema_version_is_a_store_error_and_events_wait_in_the_spool(tmp_path: Path):
    """Garbage in the store's version row is a clear StoreError, and the events are kept.

    A ValueError would read as "this event is wrong" and send every event to the
    dead letters; a StoreError is not about the events, which the spool keeps.
    """
    from flowrecord.dispatcher import PERMANENT, failure_kind

    LocalStore(tmp_path).connect()
    path = next(tmp_path.glob("*.db"))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'v2-beta' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="damaged schema version") as caught:
        LocalStore(tmp_path).connect()
    assert failure_kind(caught.value) != PERMANENT
