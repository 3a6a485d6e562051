"""Many writers on one local store at once: processes (some creating the store) and
threads of one process, each in its own task. Nothing is lost, nothing is duplicated,
and the database passes its integrity check."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.dispatcher import pending_spool_files, send_batch, spool_dirs
from flowrecord.events import RunEvent, State
from flowrecord.testing import isolated

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


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
    assert pending_spool_files(spool_dirs(home, "local")) == []


def test_runs_from_many_processes_merge(tmp_path: Path, callers_for):
    """Several 'started' for one run keep the earliest start; a finish sets the state."""
    callers = callers_for(tmp_path)

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


def test_eight_threads_each_in_its_own_task(tmp_path: Path):
    """8 threads of one process, each in its own task, log 5,000 points and 10 params at
    once: every point lands in its own thread's task, once, and every task succeeds."""
    home = tmp_path / "home"
    n, workers = 5000, 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0", FLOWRECORD_SYSTEM_SAMPLING="0"):
        run = flowrecord.start_run("threads", "thread-run", orchestrator="test")

        def work(worker: int) -> None:
            try:
                barrier.wait(30)
                with flowrecord.task(f"worker-{worker}", run=run) as handle:
                    assert flowrecord.current_task() is handle
                    for i in range(n):
                        # The value says which thread wrote it: worker * 1e6 + i.
                        flowrecord.log_metric("v", worker * 1_000_000.0 + i, step=i)
                        if i % 500 == 0:
                            flowrecord.log_param(f"p{i}", worker)
                    assert flowrecord.current_task() is handle
            except BaseException as exc:  # surfaced below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        flowrecord.end_run(run)
        assert flowrecord.flush(60)
    assert errors == []
    store = LocalStore(home)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    assert store.query("SELECT count(*) FROM metric_points")[0][0] == n * workers
    assert store.query("SELECT count(DISTINCT event_id) FROM metric_points")[0][0] == n * workers
    rows = store.query(
        "SELECT t.name, t.state, count(*) AS points, count(DISTINCT m.step) AS steps,"
        " min(m.value) AS lo, max(m.value) AS hi"
        " FROM metric_points m JOIN tasks t USING (task_id) GROUP BY t.task_id ORDER BY t.name"
    )
    assert len(rows) == workers
    for worker, row in enumerate(rows):
        assert row["name"] == f"worker-{worker}"
        assert row["state"] == "succeeded"
        assert (row["points"], row["steps"]) == (n, n)
        assert (row["lo"], row["hi"]) == (worker * 1_000_000.0, worker * 1_000_000.0 + n - 1)
    params = store.query(
        "SELECT t.name, count(*), min(p.value), max(p.value)"
        " FROM params p JOIN tasks t USING (task_id) GROUP BY t.task_id ORDER BY t.name"
    )
    assert [tuple(r) for r in params] == [
        (f"worker-{w}", len(range(0, n, 500)), str(w), str(w)) for w in range(workers)
    ]
    assert store.query("SELECT state FROM runs")[0][0] == "succeeded"
    assert pending_spool_files(spool_dirs(home, "local")) == []
