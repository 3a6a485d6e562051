"""The local store fails in the middle of a run: the task neither fails nor waits on
it, its events spool, and replay puts each of them in the store exactly once."""

from __future__ import annotations

import json
import os
import selectors
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _child_env import child_env

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.dispatcher import pending_spool_files, replay_spool, spool_dirs
from flowrecord.testing import isolated

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

BEFORE, DURING, AFTER = 5000, 20000, 5000
PARAM_EVERY = 1000
#: Generous bound on a task's wall time while the store is out (flush timeout is 2 s).
TASK_WALL_LIMIT_S = 30.0


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's next stdout line, failing the test if none comes within *timeout*."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"the task process said nothing for {timeout:.0f}s")
    return proc.stdout.readline().strip()


def _assert_each_event_once(home: Path) -> None:
    store = LocalStore(home)
    try:
        assert store.query("PRAGMA integrity_check")[0][0] == "ok"
        counts = {
            r["key"]: (r["n"], r["ids"])
            for r in store.query(
                "SELECT key, count(*) AS n, count(DISTINCT event_id) AS ids"
                " FROM metric_points GROUP BY key"
            )
        }
        assert counts == {
            "before": (BEFORE, BEFORE),
            "during": (DURING, DURING),
            "after": (AFTER, AFTER),
        }
        params = store.query("SELECT count(*), count(DISTINCT event_id) FROM params")[0]
        assert tuple(params) == (DURING // PARAM_EVERY,) * 2
        states = {r["name"]: r["state"] for r in store.query("SELECT name, state FROM tasks")}
        assert states == {"before": "succeeded", "during": "succeeded", "after": "succeeded"}
        assert store.query("SELECT state FROM runs")[0][0] == "succeeded"
    finally:
        store.close()


# The task process: one task before the outage (delivered), one during it, one after.
# It reports on stdout and waits on stdin for the test to start and end the outage.
_LOCKED_WRITER = textwrap.dedent(
    """
    import json, sys, time
    import flowrecord
    from flowrecord.recorder import get_runtime

    BEFORE, DURING, AFTER, EVERY = map(int, sys.argv[1:5])
    run = flowrecord.start_run("outage", "locked-run", orchestrator="test")
    with flowrecord.task("before", run=run):
        for i in range(BEFORE):
            flowrecord.log_metric("before", float(i), step=i)
    assert flowrecord.flush(30), "the store took nothing before the outage"
    print("delivered", flush=True)
    sys.stdin.readline()  # the store is locked now
    t0 = time.monotonic()
    task = flowrecord.start_task("during", run=run)
    for i in range(DURING):
        flowrecord.log_metric("during", float(i), step=i)
        if i % EVERY == 0:
            flowrecord.log_param(f"p{i}", i)
    flowrecord.end_task(task, flush=True)  # as an integration ending its process would
    took = time.monotonic() - t0
    print(json.dumps({"took": took, "stats": get_runtime().dispatcher.stats()}), flush=True)
    sys.stdin.readline()  # the lock is gone
    with flowrecord.task("after", run=run):
        for i in range(AFTER):
            flowrecord.log_metric("after", float(i), step=i)
    flowrecord.end_run(run)
    assert flowrecord.flush(60), "the store took nothing after the outage"
    print(json.dumps({"stats": get_runtime().dispatcher.stats()}), flush=True)
    """
)


def test_store_locked_mid_run_spools_then_sync_delivers_each_event_once(tmp_path: Path):
    """Another process holds the store's write lock while a task logs 20,000 points: the
    task ends on time and succeeds while the lock is still held, its events spool, and
    `flowrecord sync` afterwards leaves each event in the store exactly once."""
    home = tmp_path / "home"
    env = child_env(home)
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKED_WRITER, *map(str, (BEFORE, DURING, AFTER, PARAM_EVERY))],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    try:
        assert _read_line(proc, 120) == "delivered"
        # The outage: a writer that never lets go (WAL mode: EXCLUSIVE blocks writers).
        holder = sqlite3.connect(home / "flowrecord.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        during = json.loads(_read_line(proc, 120))
        holder.execute("ROLLBACK")
        holder.close()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        after = json.loads(_read_line(proc, 120))
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # The task finished (the lock was still held when it said so) in bounded time.
    assert during["took"] < TASK_WALL_LIMIT_S
    local = during["stats"]["local"]
    assert local["spooled"] >= DURING and local["lost"] == 0
    assert after["stats"]["local"]["lost"] == 0
    # What was spooled is still there (the worker's late write does not clear it) ...
    assert pending_spool_files(spool_dirs(home, "local"))
    # ... until `flowrecord sync` replays it; the backend ignores what it already has.
    sync = subprocess.run(
        [sys.executable, "-m", "flowrecord.cli", "sync", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    report = json.loads(sync.stdout)
    assert report["ok"] and report["left"] == 0 and report["events"] >= DURING
    assert pending_spool_files(spool_dirs(home, "local")) == []
    _assert_each_event_once(home)


# The file-size limit stands in for a disk that fills up mid-run, then gets space back.
_FILLED_WRITER = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    import flowrecord
    from flowrecord import dispatcher
    from flowrecord.recorder import get_runtime

    BEFORE, DURING, AFTER, EVERY = map(int, sys.argv[1:5])
    home = os.environ["FLOWRECORD_HOME"]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    run = flowrecord.start_run("outage", "full-run", orchestrator="test")
    with flowrecord.task("before", run=run):
        for i in range(BEFORE):
            flowrecord.log_metric("before", float(i), step=i)
    assert flowrecord.flush(30), "the store took nothing before the outage"
    # No file of this process may grow any further: every write to the store's WAL
    # now fails, while the small spool files still fit.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    wal = os.path.getsize(os.path.join(home, "flowrecord.db-wal"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal, hard))
    t0 = time.monotonic()
    task = flowrecord.start_task("during", run=run)
    for i in range(DURING):
        flowrecord.log_metric("during", float(i), step=i)
        if i % EVERY == 0:
            flowrecord.log_param(f"p{i}", i)
    flowrecord.end_task(task, flush=True)
    took = time.monotonic() - t0
    during = get_runtime().dispatcher.stats()["local"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
    time.sleep(dispatcher.RETRY_AFTER_S + 0.5)  # the worker leaves a failed backend alone
    with flowrecord.task("after", run=run):
        for i in range(AFTER):
            flowrecord.log_metric("after", float(i), step=i)
    flowrecord.end_run(run)
    assert flowrecord.flush(60), "the store took nothing after the outage"
    after = get_runtime().dispatcher.stats()["local"]
    print(json.dumps({"took": took, "during": during, "after": after}), flush=True)
    """
)


def test_disk_full_mid_run_then_the_same_process_replays_each_event_once(tmp_path: Path):
    """The store's disk fills in the middle of a run: writes fail, the task still succeeds
    promptly, its events spool, and once space is back the same process replays them
    before its next batch; each event ends up in the store once, nothing left spooled."""
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-c", _FILLED_WRITER, *map(str, (BEFORE, DURING, AFTER, PARAM_EVERY))],
        env=child_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["took"] < TASK_WALL_LIMIT_S
    during, after = report["during"], report["after"]
    assert during["error"] is not None, "the store never failed: no outage was simulated"
    assert during["spooled"] >= DURING and during["lost"] == 0
    assert after["error"] is None and after["lost"] == 0
    assert after["replayed"] == during["spooled"]
    assert pending_spool_files(spool_dirs(home, "local")) == []
    _assert_each_event_once(home)


def test_unwritable_store_directory_does_not_fail_the_task(tmp_path: Path):
    """A home that cannot be created leaves the task running; events spool to the fallback."""
    (tmp_path / "a-file").write_text("x")
    home = tmp_path / "a-file" / "home"  # below a regular file: not creatable, even by root
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


def test_full_disk_does_not_fail_the_task_and_loses_nothing(tmp_path: Path, callers_for):
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
    assert pending_spool_files(spool_dirs(home, "local"))
    stats = replay_spool(spool_dirs(home, "local"), callers_for(home))
    assert stats.failed_files == 0
    store = LocalStore(home)
    assert store.query("SELECT count(DISTINCT event_id) FROM metric_points")[0][0] == 60000
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
