"""Dead letters: an event a backend refuses for good is set aside, counted and kept,
and never holds back the events after it; transient failures still only spool."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _bursts import task_burst

import flowrecord
from flowrecord import recorder
from flowrecord._ids import new_event_id
from flowrecord.backends.local import LocalBackend, LocalStore
from flowrecord.cli import main
from flowrecord.dispatcher import (
    EXAMINE_AFTER,
    PERMANENT,
    TRANSIENT,
    UNKNOWN,
    Dispatcher,
    dead_letter_dirs,
    failure_kind,
    list_dead_letters,
    pending_spool_files,
    replay_spool,
    retry_dead_letters,
    spool_dirs,
    subset_callers,
)
from flowrecord.events import MetricEvent, ParamEvent, event_to_dict
from flowrecord.hookspecs import hookimpl
from flowrecord.plugins import make_plugin_manager
from flowrecord.testing import RecordingBackend

pytestmark = pytest.mark.unit


class PoisonBackend(RecordingBackend):
    """Refuses every batch holding an event whose key is :attr:`poison` (a backend bug
    for one kind of value), with :attr:`error`; ConnectionError for all while
    :attr:`down`. A batch is one transaction: a refused batch keeps nothing, so
    :attr:`received` counts each event exactly as often as the backend stored it."""

    def __init__(self, poison: str | None = "poison", error: type[Exception] = ValueError) -> None:
        super().__init__()
        self.poison = poison
        self.error = error
        self.down = False
        self.received: Counter[str] = Counter()
        self.attempts = 0  # hook calls, refused ones included
        self._batch: list[tuple[str, list[Any]]] | None = None

    @hookimpl
    def flowrecord_batch_begin(self) -> None:
        self._batch = []

    @hookimpl
    def flowrecord_batch_end(self, ok: bool) -> None:
        batch, self._batch = self._batch or [], None
        if ok:
            for hook, events in batch:
                self._store(hook, events)

    def _keep(self, hook: str, events: Sequence[Any]) -> None:
        events = list(events)
        self.attempts += 1
        if self.down:
            raise ConnectionError("backend is down")
        if self.poison is not None and any(getattr(e, "key", None) == self.poison for e in events):
            raise self.error(f"cannot store a value for {self.poison!r}")
        if self._batch is not None:
            self._batch.append((hook, events))
        else:
            self._store(hook, events)

    def _store(self, hook: str, events: list[Any]) -> None:
        with self._lock:
            self.received.update(e.event_id for e in events)
        super()._keep(hook, events)


def _metric(i: int, key: str = "loss", run_id: str = "r") -> MetricEvent:
    return MetricEvent(
        event_id=new_event_id(),
        ts=time.time(),
        run_id=run_id,
        task_id="t",
        key=key,
        value=i,
        step=i,
    )


def _dispatcher(home: Path, name: str, backend: Any) -> Dispatcher:
    pm = make_plugin_manager([(name, backend)])
    return Dispatcher({name: subset_callers(pm, name)}, home=home)


def _callers(name: str, backend: Any) -> Any:
    return subset_callers(make_plugin_manager([(name, backend)]), name)


def _dead_lines(home: Path, name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for directory in dead_letter_dirs(spool_dirs(home, name))
        if directory.is_dir()
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _write_spool_file(home: Path, name: str, events: Sequence[Any], suffix: str = "") -> Path:
    """A spool file as an earlier process leaves it (ids sort oldest first)."""
    directory = spool_dirs(home, name)[0]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{new_event_id()}{suffix}.jsonl"
    path.write_text("".join(json.dumps(event_to_dict(e)) + "\n" for e in events))
    return path


# ---------------------------------------------------------------------------
# which failures are permanent
# ---------------------------------------------------------------------------


def test_failure_kinds_are_conservative(tmp_path: Path):
    """Only clear data errors are permanent; I/O and SQLite lock errors, also as a cause,
    are transient; undecodable replies and other types are unknown."""
    db = tmp_path / "x.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(sqlite3.IntegrityError) as integrity:
        conn.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(sqlite3.Error) as binding:
        conn.execute("INSERT INTO t VALUES (?)", ({"a": 1},))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError) as locked:
        sqlite3.connect(db, timeout=0).execute("INSERT INTO t VALUES ('b')")
    holder.execute("ROLLBACK")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError) as closed:
        conn.execute("SELECT 1")

    try:
        try:
            raise ConnectionResetError("peer went away")
        except OSError as exc:
            raise ValueError(f"bad reply: {exc}")  # noqa: B904 - the context is the point
    except ValueError as exc:
        from_oserror = exc

    assert failure_kind(integrity.value) == PERMANENT
    assert failure_kind(binding.value) == PERMANENT
    assert failure_kind(ValueError("x")) == failure_kind(TypeError("x")) == PERMANENT
    assert failure_kind(KeyError("x")) == PERMANENT
    assert failure_kind(locked.value) == TRANSIENT
    assert failure_kind(closed.value) == TRANSIENT
    assert failure_kind(ConnectionRefusedError()) == failure_kind(TimeoutError()) == TRANSIENT
    assert failure_kind(from_oserror) == TRANSIENT
    assert failure_kind(json.JSONDecodeError("x", "<html>", 0)) == UNKNOWN
    assert failure_kind(RuntimeError("500 from server")) == UNKNOWN


# ---------------------------------------------------------------------------
# the worker
# ---------------------------------------------------------------------------


def test_a_poison_event_is_dead_lettered_and_every_other_delivered_once(tmp_path: Path):
    """One refused event among thousands: all others are stored exactly once, the bad
    one is a dead letter with its error and time, and the worker carries on at once."""
    backend = PoisonBackend()
    d = _dispatcher(tmp_path, "poison", backend)
    try:
        good = task_burst("r1", 50) + [_metric(i) for i in range(3000)]
        bad = _metric(7, key="poison")
        events = [*good[:1700], bad, *good[1700:]]
        for event in events:
            d.submit(event)
        assert d.flush(10)
        assert backend.received == Counter(e.event_id for e in good)
        stats = d.stats()["poison"]
        assert (stats["dead"], stats["spooled"], stats["lost"]) == (1, 0, 0)
        assert stats["error"] is None
        (letter,) = _dead_lines(tmp_path, "poison")
        assert letter["event"]["event_id"] == bad.event_id and letter["event"]["key"] == "poison"
        assert letter["error"].startswith("ValueError: cannot store")
        assert abs(letter["failed_at"] - time.time()) < 60
        # Not stuck: the next events go straight through, nothing waits in the spool.
        later = [_metric(i, run_id="r2") for i in range(10)]
        started = time.monotonic()
        for event in later:
            d.submit(event)
        assert d.flush(5)
        assert time.monotonic() - started < 2
        assert all(backend.received[e.event_id] == 1 for e in later)
        assert pending_spool_files(spool_dirs(tmp_path, "poison")) == []
        assert d.stats()["poison"]["dead"] == 1
    finally:
        d.close(2)


def test_the_local_store_keeps_a_batch_but_the_param_it_cannot_bind(tmp_path: Path):
    """With the real local store, a param whose value SQLite cannot bind is a dead letter;
    the run, tasks and metrics of the same batch are stored once each."""
    home = tmp_path / "home"
    d = _dispatcher(home, "local", LocalBackend(home))
    try:
        burst = task_burst("r1", 5)
        bad = ParamEvent(
            event_id=new_event_id(), ts=1.0, run_id="r1", task_id="r1-t0", key="k", value={"a": 1}
        )
        for event in [*burst[:3], bad, *burst[3:]]:
            d.submit(event)
        assert d.flush(10)
        assert d.stats()["local"]["dead"] == 1
        (letter,) = _dead_lines(home, "local")
        assert letter["event"]["event_id"] == bad.event_id
        assert "ProgrammingError" in letter["error"] or "InterfaceError" in letter["error"]
        store = LocalStore(home)
        assert store.query("SELECT count(*) FROM tasks WHERE state = 'succeeded'")[0][0] == 5
        points = store.query("SELECT count(*), count(DISTINCT event_id) FROM metric_points")[0]
        assert tuple(points) == (10, 10)
        assert store.query("SELECT count(*) FROM params")[0][0] == 0
        store.close()
    finally:
        d.close(2)


def test_a_transient_error_spools_and_replays_with_nothing_dead(tmp_path: Path):
    """A backend that is down (ConnectionError) gets its events spooled and replayed
    once it is back; nothing is a dead letter."""
    backend = PoisonBackend()
    backend.down = True
    d = _dispatcher(tmp_path, "poison", backend)
    events = task_burst("r1", 20)
    try:
        for event in events:
            d.submit(event)
        assert d.flush(5)
        stats = d.stats()["poison"]
        assert stats["spooled"] == len(events) and stats["dead"] == 0
    finally:
        d.close(2)
    assert pending_spool_files(spool_dirs(tmp_path, "poison"))
    backend.down = False
    replayed = replay_spool(spool_dirs(tmp_path, "poison"), _callers("poison", backend))
    assert (replayed.events, replayed.dead, replayed.failed_files) == (len(events), 0, 0)
    assert backend.received == Counter(e.event_id for e in events)
    assert _dead_lines(tmp_path, "poison") == []
    assert not any(d.exists() for d in dead_letter_dirs(spool_dirs(tmp_path, "poison")))


def test_a_failed_replay_is_counted_in_the_file_name(tmp_path: Path):
    """Each failed replay of a spool file adds one to the count in its name."""
    backend = PoisonBackend()
    backend.down = True
    _write_spool_file(tmp_path, "poison", [_metric(1)])
    callers = _callers("poison", backend)
    for expected in (1, 2, 3):
        assert replay_spool(spool_dirs(tmp_path, "poison"), callers).failed_files == 1
        (path,) = pending_spool_files(spool_dirs(tmp_path, "poison"))
        assert path.name.endswith(f".f{expected}.jsonl")
    backend.down = False
    assert replay_spool(spool_dirs(tmp_path, "poison"), callers).events == 1
    assert pending_spool_files(spool_dirs(tmp_path, "poison")) == []


# ---------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------


def test_a_poison_event_spooled_by_an_earlier_process_does_not_block_later_files(
    tmp_path: Path,
):
    """A spool file holding a refused event is delivered but for that event, and the
    files after it are delivered too, when the next process starts."""
    backend = PoisonBackend()
    first = [_metric(i) for i in range(500)]
    bad = _metric(0, key="poison")
    files = [[*first[:200], bad, *first[200:]], task_burst("r2", 10), task_burst("r3", 10)]
    for events in files:
        _write_spool_file(tmp_path, "poison", events)
    good = [e for events in files for e in events if e is not bad]
    d = _dispatcher(tmp_path, "poison", backend)  # its worker replays the spool first
    try:
        d.submit(_metric(1, run_id="new"))
        assert d.flush(10)
        stats = d.stats()["poison"]
    finally:
        d.close(2)
    assert stats["replayed"] == len(good) and stats["dead"] == 1
    assert pending_spool_files(spool_dirs(tmp_path, "poison")) == []
    assert all(backend.received[e.event_id] == 1 for e in good)
    assert bad.event_id not in backend.received
    (letter,) = _dead_lines(tmp_path, "poison")
    assert letter["event"]["event_id"] == bad.event_id


def test_a_file_failing_transiently_after_a_dead_letter_keeps_only_the_rest(tmp_path: Path):
    """A dead letter found before a transient failure is buried once: the file kept for
    the next replay holds only the events not delivered yet."""

    class DownAfterFour(PoisonBackend):
        def _keep(self, hook: str, events: Sequence[Any]) -> None:
            if self.attempts >= 4:  # the fifth call finds the backend gone
                self.down = True
            super()._keep(hook, events)

    backend = DownAfterFour()
    events = [_metric(i) for i in range(8)]
    events[0] = _metric(0, key="poison")
    _write_spool_file(tmp_path, "poison", events)
    callers = _callers("poison", backend)
    # whole, [0:4], [0:2] and [0:1] fail on the poison; [1:2] finds the backend down
    stats = replay_spool(spool_dirs(tmp_path, "poison"), callers)
    assert (stats.dead, stats.failed_files, stats.events) == (1, 1, 0)
    (path,) = pending_spool_files(spool_dirs(tmp_path, "poison"))
    assert path.name.endswith(".f1.jsonl")
    kept = [json.loads(line)["event_id"] for line in path.read_text().splitlines()]
    assert kept == [e.event_id for e in events[1:]]
    backend.down, backend.attempts = False, -1000
    stats = replay_spool(spool_dirs(tmp_path, "poison"), callers)
    assert (stats.events, stats.dead, stats.failed_files) == (7, 0, 0)
    assert len(_dead_lines(tmp_path, "poison")) == 1
    assert backend.received == Counter(e.event_id for e in events[1:])


def test_an_unknown_error_is_examined_after_repeated_failures(tmp_path: Path):
    """An error of no known kind is transient at first; once the file failed
    EXAMINE_AFTER times, the event failing alone is a dead letter, the rest delivered."""
    backend = PoisonBackend(error=RuntimeError)
    events = [_metric(i) for i in range(40)]
    bad = _metric(0, key="poison")
    _write_spool_file(tmp_path, "poison", [*events[:10], bad, *events[10:]])
    later = _write_spool_file(tmp_path, "poison", [_metric(99)])
    callers = _callers("poison", backend)
    for _ in range(EXAMINE_AFTER):
        stats = replay_spool(spool_dirs(tmp_path, "poison"), callers)
        assert (stats.dead, stats.failed_files, stats.events) == (0, 1, 0)
    assert later.exists()  # held back while the error is taken as transient
    stats = replay_spool(spool_dirs(tmp_path, "poison"), callers)
    assert (stats.dead, stats.failed_files, stats.events) == (1, 0, 41)
    assert all(backend.received[e.event_id] == 1 for e in events)
    assert pending_spool_files(spool_dirs(tmp_path, "poison")) == []
    assert _dead_lines(tmp_path, "poison")[0]["error"].startswith("RuntimeError")


def test_an_examined_file_of_only_failing_events_waits_for_proof(tmp_path: Path):
    """An examined file whose every event fails with an unknown error is a dead letter
    only once the backend took other events in the same replay."""
    backend = PoisonBackend(error=RuntimeError)
    bad = _metric(0, key="poison")
    _write_spool_file(tmp_path, "poison", [bad], suffix=f".f{EXAMINE_AFTER}")
    callers = _callers("poison", backend)
    stats = replay_spool(spool_dirs(tmp_path, "poison"), callers)
    assert (stats.dead, stats.failed_files) == (0, 1)  # nothing shows the backend is up
    (path,) = pending_spool_files(spool_dirs(tmp_path, "poison"))
    assert path.name.endswith(f".f{EXAMINE_AFTER + 1}.jsonl")
    good = _write_spool_file(tmp_path, "poison", [_metric(1)])
    stats = replay_spool(spool_dirs(tmp_path, "poison"), callers)
    assert (stats.dead, stats.failed_files, stats.events) == (1, 0, 1)
    assert not good.exists() and pending_spool_files(spool_dirs(tmp_path, "poison")) == []


def test_a_backend_refusing_everything_dead_letters_nothing(tmp_path: Path):
    """When every event fails with a 'permanent' error and none goes through, the backend
    is broken, not the events: they stay in the spool."""
    backend = PoisonBackend(poison="loss", error=TypeError)  # every metric is refused
    _write_spool_file(tmp_path, "poison", [_metric(i) for i in range(1000)])
    stats = replay_spool(spool_dirs(tmp_path, "poison"), _callers("poison", backend))
    assert (stats.dead, stats.failed_files, stats.events) == (0, 1, 0)
    assert _dead_lines(tmp_path, "poison") == []
    (path,) = pending_spool_files(spool_dirs(tmp_path, "poison"))
    assert len(path.read_text().splitlines()) == 1000
    # About two calls per halving on the way to the first event, not one per event.
    assert backend.attempts <= 2 * (1000).bit_length() + 5


def test_an_unreadable_spool_line_is_kept_as_a_dead_letter(tmp_path: Path):
    """A spool line that is no event (torn, or from a newer flowrecord) is not dropped:
    it is kept as a dead letter while the rest of its file replays."""
    directory = spool_dirs(tmp_path, "poison")[0]
    directory.mkdir(parents=True)
    good = [_metric(i) for i in range(3)]
    newer = json.dumps({**event_to_dict(_metric(9)), "schema_version": 999})
    text = "".join(json.dumps(event_to_dict(e)) + "\n" for e in good) + newer + "\n"
    (directory / f"{new_event_id()}.jsonl").write_text(text)
    backend = PoisonBackend()
    stats = replay_spool(spool_dirs(tmp_path, "poison"), _callers("poison", backend))
    assert (stats.events, stats.dead) == (3, 1)
    (letter,) = _dead_lines(tmp_path, "poison")
    assert letter["line"] == newer and "newer" in letter["error"]
    (listed,) = list_dead_letters(spool_dirs(tmp_path, "poison"))
    assert listed["event_id"] is None and "newer" in listed["error"]


def test_retry_dead_letters_delivers_after_a_fix_and_keeps_what_still_fails(tmp_path: Path):
    """Dead letters sent again: refused again they stay (with the new error), once
    the backend is fixed they are delivered once and their file is gone."""
    backend = PoisonBackend()
    d = _dispatcher(tmp_path, "poison", backend)
    bad = [_metric(i, key="poison") for i in range(3)]
    try:
        for event in [_metric(1), *bad, _metric(2)]:
            d.submit(event)
        assert d.flush(5)
        assert d.stats()["poison"]["dead"] == 3
    finally:
        d.close(2)
    spool = spool_dirs(tmp_path, "poison")
    callers = _callers("poison", backend)
    still = retry_dead_letters(spool, callers)
    assert (still.events, still.dead) == (0, 3)
    assert len(list_dead_letters(spool)) == 3
    backend.poison = None  # the fix
    fixed = retry_dead_letters(spool, callers)
    assert (fixed.events, fixed.dead, fixed.failed_files) == (3, 0, 0)
    assert all(backend.received[e.event_id] == 1 for e in bad)
    assert list_dead_letters(spool) == []
    assert retry_dead_letters(spool, callers).events == 0


def test_dead_letters_are_written_by_concurrent_replayers_once(tmp_path: Path):
    """Replayers racing over one spool bury each refused event once."""
    for f in range(20):
        _write_spool_file(
            tmp_path, "poison", [_metric(i) for i in range(5)] + [_metric(f, "poison")]
        )
    backend = PoisonBackend()
    threads = [
        threading.Thread(
            target=replay_spool, args=(spool_dirs(tmp_path, "poison"), _callers("poison", backend))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    letters = _dead_lines(tmp_path, "poison")
    assert len(letters) == len({x["event"]["event_id"] for x in letters}) == 20
    assert sum(backend.received.values()) == len(backend.received) == 100


# ---------------------------------------------------------------------------
# flowrecord sync
# ---------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sync_lists_and_retries_dead_letters(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str]
):
    """`sync` reports dead letters (exit 1), `--list-dead` shows them, and `--retry-dead`
    delivers them once the backend is fixed (exit 0, nothing left)."""
    backend = PoisonBackend()
    recorder.register_backend("poison", backend)
    try:
        with flowrecord.run("p", "dead-run"), flowrecord.task("t"):
            flowrecord.log_metric("loss", 0.5)
            flowrecord.log_metric("poison", 1.0)
        assert flowrecord.flush(5)
        stats = recorder.get_runtime().dispatcher.stats()["poison"]  # type: ignore[union-attr]
        assert stats["dead"] == 1

        code, out, err = _cli(capsys, "sync", "--list-dead", "--json")
        assert code == 0, err
        doc = json.loads(out)
        (letter,) = doc["dead_letters"]
        assert (letter["backend"], letter["kind"], doc["count"]) == ("poison", "metric", 1)
        assert letter["error"].startswith("ValueError") and letter["failed_at"].endswith("+00:00")
        code, out, _ = _cli(capsys, "sync", "--list-dead")
        assert code == 0 and letter["event_id"] in out and "--retry-dead" in out

        code, out, err = _cli(capsys, "sync", "--json")
        doc = json.loads(out)
        (report,) = [b for b in doc["backends"] if b["backend"] == "poison"]
        assert code == 1 and not doc["ok"] and report["dead_letters"] == 1
        assert "dead letters" in err and "--retry-dead" in err and err.count("\n") == 1

        code, out, err = _cli(capsys, "sync", "--retry-dead")  # not fixed yet
        assert code == 1 and "Dead letters" in out
        assert json.loads(_cli(capsys, "sync", "--list-dead", "--json")[1])["count"] == 1

        backend.poison = None
        code, out, err = _cli(capsys, "sync", "--retry-dead", "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["ok"] and doc["dead_retried"] == 1 and doc["dead_letters"] == 0
        assert backend.received[letter["event_id"]] == 1
        assert sorted(e.key for e in backend.events("metric")) == ["loss", "poison"]
        code, out, _ = _cli(capsys, "sync", "--list-dead")
        assert code == 0 and "No dead letters" in out
    finally:
        recorder.unregister_backend("poison")


def test_sync_dead_letters_a_poison_event_and_delivers_the_rest(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str]
):
    """`sync` of a spool holding a refused event delivers every other event and the
    files after it, and counts the new dead letter."""
    backend = PoisonBackend()
    bad = _metric(0, key="poison")
    first = [_metric(i) for i in range(10)] + [bad]
    second = task_burst("r2", 3)
    _write_spool_file(flowrecord_home, "poison", first)
    _write_spool_file(flowrecord_home, "poison", second)
    recorder.register_backend("poison", backend)
    try:
        code, out, _ = _cli(capsys, "sync", "--json")
    finally:
        recorder.unregister_backend("poison")
    doc = json.loads(out)
    (report,) = [b for b in doc["backends"] if b["backend"] == "poison"]
    assert code == 1
    assert (report["files"], report["events"], report["dead"], report["left"]) == (2, 23, 1, 0)
    assert report["dead_letters"] == 1 and report["failed_files"] == 0
    assert all(backend.received[e.event_id] == 1 for e in first[:-1] + second)


def test_a_backend_saying_refused_is_believed_whatever_the_cause():
    """EventRefused is permanent even when it wraps an OSError (an HTTP client's 4xx error)."""
    from flowrecord.errors import EventRefused

    try:
        try:
            raise ConnectionError("400 Client Error: Bad Request")
        except ConnectionError as http_error:
            raise EventRefused("the endpoint refused it") from http_error
    except EventRefused as refused:
        assert failure_kind(refused) == PERMANENT
    assert failure_kind(ConnectionError("reset")) == TRANSIENT
