"""The embedded store: concurrent writers, idempotent merges, refusing foreign files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import flowrecord
from flowrecord.backends.local import LocalBackend, LocalStore, StoreError
from flowrecord.dispatcher import send_batch, subset_callers
from flowrecord.events import RunEvent, State, TaskEvent
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


def test_runs_from_many_processes_merge(tmp_path: Path):
    """Several 'started' for one run keep the earliest start; a finish sets the state."""
    callers = _callers(tmp_path)

    def run(state: State, ts: float) -> RunEvent:
        return RunEvent(
            event_id=f"r{ts}",
            ts=ts,
            run_id="r",
            state=state,
            orchestrator="o",
            pipeline="p",
            run_key="k",
        )

    send_batch(callers, [run(State.STARTED, 5.0), run(State.STARTED, 3.0)])
    send_batch(callers, [run(State.FAILED, 9.0)])
    send_batch(callers, [run(State.STARTED, 4.0)])
    (row,) = LocalStore(tmp_path).query("SELECT * FROM runs")
    assert row["started_at"] == 3.0
    assert row["state"] == "failed"
    assert row["ended_at"] == 9.0


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


def test_unwritable_store_directory_does_not_fail_the_task(tmp_path: Path):
    """A home that cannot be created leaves the task running; events spool to the fallback."""
    (tmp_path / "a-file").write_text("x")
    home = tmp_path / "a-file" / "home"  # below a regular file: not creatable, even by root
    from flowrecord.dispatcher import pending_spool_files, spool_dirs
    from flowrecord.testing import isolated

    try:
        with isolated(home):
            with flowrecord.run("p"), flowrecord.task("t") as t:
                flowrecord.log_metric("a", 1.0)
            flowrecord.flush(5)
        assert t._closed
        assert pending_spool_files([spool_dirs(home, "local")[1]])
    finally:
        import shutil

        shutil.rmtree(spool_dirs(home, "local")[1].parent, ignore_errors=True)


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import flowrecord
    # The store file may not grow past 1 MiB: SQLite gets "disk full" (EFBIG) while
    # small spool files still fit, as on a nearly full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
    with flowrecord.run("p", "full"), flowrecord.task("t"):
        for i in range(60000):
            flowrecord.log_metric("m", float(i), step=i)
    print("task finished")
    flowrecord.flush(30)
    from flowrecord.recorder import get_runtime
    assert get_runtime().dispatcher.stats()["local"]["lost"] == 0
    """
)


@pytest.mark.reliability
def test_full_disk_does_not_fail_the_task_and_loses_nothing(tmp_path: Path):
    """When the store cannot grow, the task still succeeds and every point is in the store
    or the spool, and `replay` completes it once space is back."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "FLOWRECORD_HOME": str(home),
        "FLOWRECORD_CAPTURE_CODE": "0",
        "FLOWRECORD_SYSTEM_SAMPLING": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "task finished" in proc.stdout
    from flowrecord.dispatcher import pending_spool_files, replay_spool, spool_dirs

    assert pending_spool_files(spool_dirs(home, "local"))
    stats = replay_spool(spool_dirs(home, "local"), _callers(home))
    assert stats.failed_files == 0
    store = LocalStore(home)
    assert store.query("SELECT count(DISTINCT event_id) FROM metric_points")[0][0] == 60000
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"


def test_store_written_by_newer_version_is_refused(tmp_path: Path):
    """A store whose schema is newer than this flowrecord is refused with a clear message."""
    store = LocalStore(tmp_path)
    store.connect().execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match="newer"):
        LocalStore(tmp_path).connect()


_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import flowrecord
    start_at = float(sys.argv[1]); worker = int(sys.argv[2]); n = int(sys.argv[3])
    while time.time() < start_at:
        time.sleep(0.001)
    run = flowrecord.start_run("concurrency", "shared-run", orchestrator="test")
    task = flowrecord.start_task(f"worker-{worker}", run=run)
    for i in range(n):
        flowrecord.log_metric("i", float(i), step=i)
        if i % 500 == 0:
            flowrecord.log_param(f"p{i}", i)
    flowrecord.end_task(task, flush=True)
    flowrecord.shutdown()
    """
)


@pytest.mark.slow
@pytest.mark.reliability
def test_eight_processes_write_one_new_store_at_once(tmp_path: Path):
    """8 processes x 5,000 events start together on a store that does not exist yet:
    nothing is lost or duplicated and the database passes its integrity check."""
    home = tmp_path / "new-home"
    n, workers = 5000, 8
    env = {
        **os.environ,
        "FLOWRECORD_HOME": str(home),
        "FLOWRECORD_CAPTURE_CODE": "0",
        "FLOWRECORD_FLUSH_TIMEOUT": "60",
    }
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(start_at), str(w), str(n)], env=env)
        for w in range(workers)
    ]
    codes = [p.wait(timeout=240) for p in procs]
    assert codes == [0] * workers
    store = LocalStore(home)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    assert store.query("SELECT count(*) FROM metric_points")[0][0] == n * workers
    assert store.query("SELECT count(DISTINCT event_id) FROM metric_points")[0][0] == n * workers
    assert store.query("SELECT count(*) FROM params")[0][0] == workers * len(range(0, n, 500))
    assert store.query("SELECT count(*) FROM runs")[0][0] == 1
    states = store.query("SELECT state, count(*) FROM tasks GROUP BY state")
    assert [tuple(r) for r in states] == [("succeeded", workers)]
    from flowrecord.dispatcher import pending_spool_files, spool_dirs

    assert pending_spool_files(spool_dirs(home, "local")) == []


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
