"""The dispatcher: never blocks or fails the caller, spools what a backend cannot take,
replays it exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _bursts import task_burst

import flowrecord
from flowrecord import recorder
from flowrecord.dispatcher import (
    Dispatcher,
    pending_spool_files,
    replay_spool,
    spool_dirs,
    subset_callers,
)
from flowrecord.events import (
    MetricEvent,
    RunEvent,
    State,
    TaskEvent,
    event_from_dict,
    event_to_dict,
)
from flowrecord.hookspecs import hookimpl
from flowrecord.plugins import make_plugin_manager
from flowrecord.testing import isolated

pytestmark = pytest.mark.unit


class FlakyBackend:
    """A backend that is down until told otherwise, and dedupes on event id like a real one."""

    def __init__(self, down: bool = True, delay: float = 0.0) -> None:
        self.down = down
        self.delay = delay
        self.seen: dict[str, Any] = {}
        self.calls = 0

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise ConnectionError("backend is down")
        for m in metrics:
            self.seen[m.event_id] = m

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[Any]) -> None:
        if self.down:
            raise ConnectionError("backend is down")
        for r in runs:
            self.seen[r.event_id] = r


def _metric(i: int) -> MetricEvent:
    return MetricEvent(
        event_id=flowrecord._ids.new_event_id(),
        ts=time.time(),
        run_id="r",
        task_id="t",
        key="k",
        value=float(i),
        step=i,
    )


def _dispatcher(tmp_path: Path, backend: Any) -> Dispatcher:
    pm = make_plugin_manager([("flaky", backend)])
    return Dispatcher({"flaky": subset_callers(pm, "flaky")}, home=tmp_path)


def test_events_roundtrip_through_json():
    """Every event kind survives to_dict -> JSON -> from_dict unchanged."""
    run = RunEvent(
        event_id="e",
        ts=1.0,
        run_id="r",
        state=State.FAILED,
        orchestrator="o",
        pipeline="p",
        run_key="k",
        tags={"a": "b"},
        error="x",
    )
    assert event_from_dict(json.loads(json.dumps(event_to_dict(run)))) == run
    metric = _metric(3)
    assert event_from_dict(json.loads(json.dumps(event_to_dict(metric)))) == metric


def test_unknown_or_newer_events_are_refused():
    """A spooled event of an unknown kind or a newer schema gives a clear ValueError."""
    with pytest.raises(ValueError, match="unknown event kind"):
        event_from_dict({"kind": "nope"})
    with pytest.raises(ValueError, match="newer"):
        event_from_dict({"kind": "metric", "schema_version": 999})


def test_dead_backend_spools_and_replays_exactly_once(tmp_path: Path):
    """Events a dead backend refused are spooled; once it is back, replay delivers each once."""
    backend = FlakyBackend(down=True)
    d = _dispatcher(tmp_path, backend)
    events = [_metric(i) for i in range(1000)]
    t0 = time.perf_counter()
    for e in events:
        d.submit(e)
    d.flush(5)
    assert time.perf_counter() - t0 < 5
    assert backend.seen == {}
    files = pending_spool_files(spool_dirs(tmp_path, "flaky"))
    assert files
    backend.down = False
    pm = make_plugin_manager([("flaky", backend)])
    stats = replay_spool(spool_dirs(tmp_path, "flaky"), subset_callers(pm, "flaky"))
    assert stats.events == 1000
    assert set(backend.seen) == {e.event_id for e in events}
    # a second replay finds nothing left
    assert replay_spool(spool_dirs(tmp_path, "flaky"), subset_callers(pm, "flaky")).events == 0
    d.close(1)


def test_replaying_a_batch_twice_creates_no_duplicates(flowrecord_home: Path):
    """The local store ignores events it already has, so a batch sent twice is stored once."""
    from flowrecord.backends.local import LocalBackend, LocalStore

    backend = LocalBackend(flowrecord_home)
    pm = make_plugin_manager([("local", backend)])
    batch = [_metric(i) for i in range(100)]
    run = RunEvent(
        event_id="e1",
        ts=1.0,
        run_id="r",
        state=State.STARTED,
        orchestrator="o",
        pipeline="p",
        run_key="k",
    )
    callers = subset_callers(pm, "local")
    from flowrecord.dispatcher import send_batch

    send_batch(callers, [run, *batch])
    send_batch(callers, [run, *batch])
    store = LocalStore(flowrecord_home)
    assert store.query("SELECT count(*) AS n FROM metric_points")[0]["n"] == 100
    assert store.query("SELECT count(*) AS n FROM runs")[0]["n"] == 1


def test_slow_backend_never_holds_the_caller_past_the_flush_timeout(tmp_path: Path):
    """A backend that takes seconds per batch costs the task at most the flush timeout."""
    backend = FlakyBackend(down=False, delay=3.0)
    d = _dispatcher(tmp_path, backend)
    t0 = time.perf_counter()
    for i in range(10):
        d.submit(_metric(i))
    submit_s = time.perf_counter() - t0
    ok = d.flush(0.3)
    waited = time.perf_counter() - t0
    assert submit_s < 0.05
    assert ok is False
    assert waited < 1.5
    # what was not delivered in time is on disk, not lost
    spooled = sum(
        len(p.read_text().splitlines()) for p in pending_spool_files(spool_dirs(tmp_path, "flaky"))
    )
    assert spooled >= 1


def test_submit_is_cheap():
    """Queueing an event costs the caller microseconds, whatever the backend does."""
    backend = FlakyBackend(down=False, delay=0.5)
    import tempfile

    d = _dispatcher(Path(tempfile.mkdtemp()), backend)
    events = [_metric(i) for i in range(10000)]
    t0 = time.perf_counter()
    for e in events:
        d.submit(e)
    per_event = (time.perf_counter() - t0) / len(events)
    assert per_event < 50e-6


def test_torn_spool_line_is_skipped_rest_replays(tmp_path: Path):
    """A spool file whose last line was cut by a crash still replays its whole lines."""
    directory = spool_dirs(tmp_path, "flaky")[0]
    directory.mkdir(parents=True)
    good = [_metric(i) for i in range(3)]
    text = "".join(json.dumps(event_to_dict(e)) + "\n" for e in good) + '{"kind": "met'
    (directory / "0001.jsonl").write_text(text)
    backend = FlakyBackend(down=False)
    pm = make_plugin_manager([("flaky", backend)])
    stats = replay_spool(spool_dirs(tmp_path, "flaky"), subset_callers(pm, "flaky"))
    assert stats.events == 3
    assert set(backend.seen) == {e.event_id for e in good}


def test_concurrent_replayers_send_each_file_once(tmp_path: Path):
    """Several replayers racing over one spool claim each file once."""
    directory = spool_dirs(tmp_path, "flaky")[0]
    directory.mkdir(parents=True)
    all_events = []
    for f in range(40):
        batch = [_metric(i) for i in range(5)]
        all_events += batch
        (directory / f"{f:04d}.jsonl").write_text(
            "".join(json.dumps(event_to_dict(e)) + "\n" for e in batch)
        )
    counts: dict[str, int] = {}
    lock = threading.Lock()

    class Counting:
        @hookimpl
        def flowrecord_metrics_logged(self, metrics):
            with lock:
                for m in metrics:
                    counts[m.event_id] = counts.get(m.event_id, 0) + 1

    pm = make_plugin_manager([("flaky", Counting())])
    threads = [
        threading.Thread(
            target=replay_spool, args=(spool_dirs(tmp_path, "flaky"), subset_callers(pm, "flaky"))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(counts) == len(all_events)
    assert set(counts.values()) == {1}


def test_unwritable_home_falls_back_to_temp_spool(tmp_path: Path):
    """With the home unwritable, a failing backend's events spool to the temp fallback."""
    # A path below a regular file cannot be created, even by root (chmod would not stop root).
    (tmp_path / "a-file").write_text("x")
    home = tmp_path / "a-file" / "home"
    backend = FlakyBackend(down=True)
    d = _dispatcher(home, backend)
    try:
        d.submit(_metric(1))
        d.flush(5)
        primary, fallback = spool_dirs(home, "flaky")
        assert not primary.exists()
        assert pending_spool_files([fallback])
    finally:
        import shutil

        shutil.rmtree(spool_dirs(home, "flaky")[1].parent, ignore_errors=True)


def test_backend_that_fails_to_load_still_spools(tmp_path: Path):
    """A named backend that is not installed loses nothing: its events wait in the spool."""
    with isolated(tmp_path / "home", backends="local,nosuchbackend"):
        with flowrecord.run("p"), flowrecord.task("t"):
            flowrecord.log_metric("a", 1.0)
        flowrecord.flush(5)
        rt = recorder.get_runtime()
        assert rt is not None and "nosuchbackend" in rt.errors
    files = pending_spool_files(spool_dirs(tmp_path / "home", "nosuchbackend"))
    lines = [json.loads(x) for p in files for x in p.read_text().splitlines()]
    assert any(e["kind"] == "metric" and e["key"] == "a" for e in lines)


def test_dead_backend_does_not_block_the_local_store(tmp_path: Path):
    """With one backend down, the other still gets every event at once."""
    flaky = FlakyBackend(down=True)
    recorder.register_backend("flaky", flaky)
    try:
        with isolated(tmp_path / "home") as rec:
            with flowrecord.run("p"), flowrecord.task("t"):
                for i in range(100):
                    flowrecord.log_metric("a", float(i))
            flowrecord.flush(5)
            assert len(rec.events("metric")) == 100
    finally:
        recorder.unregister_backend("flaky")
    assert pending_spool_files(spool_dirs(tmp_path / "home", "flaky"))


def test_next_process_replays_spool_automatically(tmp_path: Path):
    """Events spooled for a backend are delivered by the next runtime that starts."""
    home = tmp_path / "home"
    flaky = FlakyBackend(down=True)
    recorder.register_backend("flaky", flaky)
    try:
        with isolated(home), flowrecord.run("p"), flowrecord.task("t"):
            flowrecord.log_metric("a", 1.0)
        assert flaky.seen == {}
        flaky.down = False
        with isolated(home):
            with flowrecord.run("p2"), flowrecord.task("t"):
                flowrecord.log_metric("b", 2.0)
            deadline = time.time() + 10
            while (
                time.time() < deadline
                and len([e for e in flaky.seen.values() if e.kind == "metric"]) < 2
            ):
                time.sleep(0.05)
    finally:
        recorder.unregister_backend("flaky")
    keys = sorted(e.key for e in flaky.seen.values() if e.kind == "metric")
    assert keys == ["a", "b"]


def test_a_burst_after_a_quiet_spell_is_written_in_one_batch(tmp_path: Path, monkeypatch):
    """Events that trickle in right after the worker wakes go to the backend together."""
    import flowrecord.dispatcher as dispatcher

    monkeypatch.setattr(dispatcher, "LINGER_S", 0.5)  # a loaded machine's sleeps run long
    backend = FlakyBackend(down=False)
    d = _dispatcher(tmp_path, backend)
    try:
        assert d.flush(5)
        time.sleep(0.05)  # the worker is idle now
        calls = backend.calls
        for i in range(5):  # a task's start, a few metrics, its end: a few ms apart
            d.submit(_metric(i))
            time.sleep(0.002)
        deadline = time.monotonic() + 5
        while len(backend.seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(backend.seen) == 5
        assert backend.calls - calls == 1
    finally:
        d.close()


def test_a_flush_does_not_wait_out_the_linger(tmp_path: Path, monkeypatch):
    """A flush right after an event is answered at once, not after the batching wait."""
    import flowrecord.dispatcher as dispatcher

    monkeypatch.setattr(dispatcher, "LINGER_S", 30.0)
    backend = FlakyBackend(down=False)
    d = _dispatcher(tmp_path, backend)
    try:
        assert d.flush(5)
        time.sleep(0.05)
        d.submit(_metric(1))
        started = time.monotonic()
        assert d.flush(20)
        assert time.monotonic() - started < 10
        assert len(backend.seen) == 1
    finally:
        d.close()


def test_a_mixed_batch_is_one_local_store_transaction(flowrecord_home: Path):
    """Runs of different hooks in one batch share one commit in the local store."""
    from flowrecord.backends.local import LocalBackend, LocalStore
    from flowrecord.dispatcher import send_batch

    backend = LocalBackend(flowrecord_home)
    pm = make_plugin_manager([("local", backend)])
    callers = subset_callers(pm, "local")
    send_batch(callers, task_burst("warm", 1, metrics=1))  # opens the connection and the schema
    statements: list[str] = []
    backend.store.connect().set_trace_callback(statements.append)
    events = task_burst("r1", 5, metrics=1)
    send_batch(callers, events)
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert len(commits) == 1, statements
    store = LocalStore(flowrecord_home)
    assert store.query("SELECT count(*) AS n FROM tasks WHERE run_id = 'r1'")[0]["n"] == 5
    assert store.query("SELECT count(*) AS n FROM metric_points WHERE run_id = 'r1'")[0]["n"] == 5


class _FailsOnTaskEnd:
    """A local store whose task-end writes fail until told otherwise."""

    def __init__(self, home: Path) -> None:
        from flowrecord.backends.local import LocalBackend

        self.inner = LocalBackend(home)
        self.fail = True

    @hookimpl
    def flowrecord_batch_begin(self) -> None:
        self.inner.flowrecord_batch_begin()

    @hookimpl
    def flowrecord_batch_end(self, ok: bool) -> None:
        self.inner.flowrecord_batch_end(ok)

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[Any]) -> None:
        self.inner.flowrecord_run_started(runs)

    @hookimpl
    def flowrecord_task_started(self, tasks: Sequence[Any]) -> None:
        self.inner.flowrecord_task_started(tasks)

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[Any]) -> None:
        if self.fail:
            raise ConnectionError("disk went away")
        self.inner.flowrecord_task_finished(tasks)

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        self.inner.flowrecord_metrics_logged(metrics)


def test_a_batch_that_fails_midway_leaves_nothing_and_replays_whole(tmp_path: Path):
    """A hook failing inside a batch rolls back the batch's earlier writes; replay stores it all once."""
    from flowrecord.backends.local import LocalStore

    home = tmp_path / "home"
    backend = _FailsOnTaskEnd(home)
    d = _dispatcher(tmp_path, backend)
    try:
        for event in task_burst("r2", 3, metrics=1):
            d.submit(event)
        assert d.flush(5)
    finally:
        d.close(2)
    store = LocalStore(home)
    # The run and task starts came before the failing hook in the same batch: rolled back.
    assert store.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM tasks")[0]["n"] == 0
    backend.fail = False
    pm = make_plugin_manager([("flaky", backend)])
    stats = replay_spool(spool_dirs(tmp_path, "flaky"), subset_callers(pm, "flaky"))
    assert stats.events == 1 + 3 * 3
    assert store.query("SELECT count(*) AS n FROM tasks WHERE state = 'succeeded'")[0]["n"] == 3
    assert store.query("SELECT count(*) AS n FROM metric_points")[0]["n"] == 3


class _HookLog:
    """A backend that notes each hook call (name and event ids), grouped or not as told."""

    def __init__(self, commutes: bool | None) -> None:
        self.commutes = commutes
        self.calls: list[tuple[str, list[str]]] = []

    @hookimpl
    def flowrecord_batch_begin(self) -> bool | None:
        return self.commutes

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[Any]) -> None:
        self.calls.append(("run_started", [r.event_id for r in runs]))

    @hookimpl
    def flowrecord_task_started(self, tasks: Sequence[Any]) -> None:
        self.calls.append(("task_started", [t.event_id for t in tasks]))

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[Any]) -> None:
        self.calls.append(("task_finished", [t.event_id for t in tasks]))

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        self.calls.append(("metrics", [m.event_id for m in metrics]))


@pytest.mark.parametrize("commutes", [True, None])
def test_a_backend_whose_writes_commute_gets_the_batch_grouped_by_hook(commutes):
    """One call per hook, in order of first appearance and each hook's events in order; else exact order."""
    from flowrecord.dispatcher import send_batch

    backend = _HookLog(commutes)
    pm = make_plugin_manager([("log", backend)])
    events = task_burst("g", 4, metrics=2)
    send_batch(subset_callers(pm, "log"), events)
    names = {
        "run_started": lambda e: isinstance(e, RunEvent),
        "task_started": lambda e: isinstance(e, TaskEvent) and e.state is State.STARTED,
        "task_finished": lambda e: isinstance(e, TaskEvent) and e.state is State.SUCCEEDED,
        "metrics": lambda e: isinstance(e, MetricEvent),
    }
    if commutes:
        assert [hook for hook, _ in backend.calls] == [
            "run_started",
            "task_started",
            "metrics",
            "task_finished",
        ]
        for hook, ids in backend.calls:
            assert ids == [e.event_id for e in events if names[hook](e)]
    else:
        # Exact order: the calls, read in sequence, give back the batch as sent.
        assert len(backend.calls) == 1 + 3 * 4
        assert [i for _, ids in backend.calls for i in ids] == [e.event_id for e in events]


def test_grouped_delivery_stores_what_exact_order_stores(tmp_path: Path):
    """Retries, a run closed and a late start of a finished task end the same in the local store."""
    from flowrecord.backends.local import LocalBackend, LocalStore
    from flowrecord.dispatcher import send_batch
    from flowrecord.events import SystemUsageEvent

    def attempt(task_id: str, try_number: int, state: State, ts: float) -> TaskEvent:
        return TaskEvent(
            event_id=flowrecord._ids.new_event_id(),
            ts=ts,
            run_id="r",
            task_id=task_id,
            state=state,
            name="train",
            try_number=try_number,
        )

    run = [
        RunEvent(
            event_id=flowrecord._ids.new_event_id(),
            ts=ts,
            run_id="r",
            state=state,
            orchestrator="o",
            pipeline="p",
            run_key="r",
        )
        for ts, state in ((1.0, State.STARTED), (9.0, State.FAILED))
    ]
    usage = SystemUsageEvent(
        event_id=flowrecord._ids.new_event_id(),
        ts=4.0,
        run_id="r",
        task_id="t1",
        summary={"samples": 2},
        samples=({"t": 3.0, "cpu_percent": 50.0, "rss_bytes": 1, "gpus": []},) * 2,
    )
    late_start = attempt("t2", 2, State.STARTED, 6.0)
    events = [
        run[0],
        attempt("t1", 1, State.STARTED, 2.0),
        _metric(1),
        usage,
        attempt("t1", 1, State.FAILED, 4.0),
        attempt("t2", 2, State.STARTED, 5.0),
        attempt("t2", 2, State.SUCCEEDED, 7.0),
        late_start,  # a replayed start of an attempt already over: must not reopen it
        run[1],
    ]

    def stored(commutes: bool) -> dict[str, list[tuple]]:
        home = tmp_path / f"home-{commutes}"
        backend = LocalBackend(home)
        if not commutes:
            backend.flowrecord_batch_begin = lambda: backend._store().begin_batch()  # type: ignore[method-assign]
        pm = make_plugin_manager([("local", backend)])
        send_batch(subset_callers(pm, "local"), events)
        store = LocalStore(home)
        return {
            table: [tuple(r) for r in store.query(f"SELECT * FROM {table} ORDER BY 1, 2")]
            for table in ("runs", "tasks", "system_usage", "system_samples", "metric_points")
        }

    exact, grouped = stored(False), stored(True)
    assert grouped == exact
    assert [r[4] for r in grouped["runs"]] == ["failed"]
    assert [(r[0], r[5], r[6]) for r in grouped["tasks"]] == [
        ("t1", "failed", 2.0),
        ("t2", "succeeded", 5.0),
    ]
    assert len(grouped["system_samples"]) == 2
