"""The dispatcher: moves events from the user's thread to the backends, never the reverse.

Each active backend gets a worker thread and a buffer. ``submit`` only appends to
the buffer, so recording costs the caller well under a microsecond whatever the
backend does. A worker takes the whole buffer at once and sends it in batches
through the backend's hooks; a batch the backend cannot take
(it raises, or it is too slow at a flush deadline) is written to the backend's
spool directory as JSON lines and replayed later, by the next process that
starts or by ``flowrecord sync``. Backends are idempotent on ``event_id``, so a
batch that is both delivered late and replayed from the spool does no harm.

Spool files are claimed by renaming them, so many processes replaying at once
never send the same file concurrently.

A failure is transient (the backend is down, locked, full) unless it is clearly
about the data: an event the backend refuses with a ``TypeError``,
``ValueError``, ``KeyError`` or an SQLite integrity or binding error will be
refused on every try (:func:`failure_kind`). Such a batch is split in halves
until the events it refuses are alone; every other event is delivered, and the
refused ones are kept as *dead letters* (``<spool>/dead/*.jsonl``, each with its
error and time) instead of blocking the backend forever. A failure of any other
type stays transient, but a spool file whose replay failed
:data:`EXAMINE_AFTER` times is examined the same way: an event that still fails
alone while the backend takes others is a dead letter too. Dead letters are
counted, logged once, listed by ``flowrecord sync --list-dead`` and sent again
by ``flowrecord sync --retry-dead`` once the backend is fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowrecord._ids import new_event_id
from flowrecord.errors import EventRefused
from flowrecord.events import (
    Event,
    MetricBatch,
    MetricPoint,
    RunEvent,
    State,
    TaskEvent,
    event_from_dict,
    event_to_dict,
    metric_point,
)

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "DirectCallers",
    "Dispatcher",
    "SpoolStats",
    "dead_letter_dirs",
    "failure_kind",
    "hook_for",
    "list_dead_letters",
    "replay_spool",
    "retry_dead_letters",
    "send_batch",
    "spool_dirs",
]

log = logging.getLogger("flowrecord")

#: Largest batch a worker hands to a backend at once. A power of two: the local
#: store writes a full batch of metric points as one SQL statement.
MAX_BATCH = 4096
#: Most events in one spool file.
SPOOL_FILE_EVENTS = 1000
#: How long a worker woken from idle waits for more events before writing them.
#: Flushes and shutdown do not wait for it. Longer means fewer, bigger
#: transactions and fewer times the writer takes the GIL from the task (set it
#: to 0.05 and run benchmarks/bench_dagster.py to see the difference); shorter
#: means less for a SIGKILL to catch in memory.
LINGER_S = 0.2
#: How long a failing backend is left alone before the worker tries it again.
RETRY_AFTER_S = 5.0
#: A claimed spool file whose owner is gone is released after this many seconds.
STALE_CLAIM_S = 60.0
#: A spool file whose replay failed this many times (with errors of no known
#: kind) is examined event by event for events the backend refuses for good.
EXAMINE_AFTER = 5
#: Name of the directory, inside a backend's spool directory, of its dead letters.
DEAD_DIR = "dead"
#: Most examined files per replay left waiting (their events failed alone and
#: nothing else was delivered yet to show that the backend is up) before the
#: replay stops: past that, the backend is more likely down than the events bad.
MAX_DEFERRED = 4
#: Longest error text kept beside a dead letter.
ERROR_TEXT_MAX = 2000

TRANSIENT = "transient"
PERMANENT = "permanent"
UNKNOWN = "unknown"

_HOOK_ARG = {
    "flowrecord_run_started": "runs",
    "flowrecord_run_finished": "runs",
    "flowrecord_task_started": "tasks",
    "flowrecord_task_finished": "tasks",
    "flowrecord_metrics_logged": "metrics",
    "flowrecord_params_logged": "params",
    "flowrecord_tags_set": "tags",
    "flowrecord_dataset_logged": "datasets",
    "flowrecord_artifact_logged": "artifacts",
    "flowrecord_validation_recorded": "validations",
    "flowrecord_system_usage_recorded": "usages",
    "flowrecord_code_captured": "snapshots",
    "flowrecord_gate_decided": "decisions",
}

_KIND_HOOK = {
    "metric": "flowrecord_metrics_logged",
    "param": "flowrecord_params_logged",
    "tag": "flowrecord_tags_set",
    "dataset": "flowrecord_dataset_logged",
    "artifact": "flowrecord_artifact_logged",
    "validation": "flowrecord_validation_recorded",
    "system": "flowrecord_system_usage_recorded",
    "code": "flowrecord_code_captured",
    "gate": "flowrecord_gate_decided",
}


def hook_for(event: Event) -> str:
    """Name of the hook that carries *event* (a plain tuple is a metric point)."""
    if type(event) is tuple:
        return "flowrecord_metrics_logged"
    if isinstance(event, RunEvent):
        return (
            "flowrecord_run_started" if event.state is State.STARTED else "flowrecord_run_finished"
        )
    if isinstance(event, TaskEvent):
        return (
            "flowrecord_task_started"
            if event.state is State.STARTED
            else "flowrecord_task_finished"
        )
    return _KIND_HOOK[event.kind]


def _runs_of(batch: Sequence[Event]) -> Iterator[tuple[str, list[Event]]]:
    """Consecutive events of the same hook, so order is kept while batching."""
    current: str | None = None
    chunk: list[Event] = []
    for event in batch:
        hook = hook_for(event)
        if hook != current and chunk:
            yield current, chunk  # type: ignore[misc]
            chunk = []
        current = hook
        chunk.append(event)
    if chunk:
        yield current, chunk  # type: ignore[misc]


def _grouped(runs: list[tuple[str, list[Event]]]) -> list[tuple[str, list[Event]]]:
    """*runs* merged by hook, hooks in order of first appearance, events in order."""
    merged: dict[str, list[Event]] = {}
    for hook, chunk in runs:
        found = merged.get(hook)
        if found is None:
            merged[hook] = chunk
        else:
            found.extend(chunk)
    return list(merged.items())


def send_batch(callers: Callable[[str], Any], batch: Sequence[Event]) -> None:
    """Deliver *batch* through the hooks *callers* returns for each hook name.

    A batch of mixed events is framed by ``flowrecord_batch_begin`` and
    ``flowrecord_batch_end``, so a backend can write it in one transaction: a
    task's start, datasets, end and system usage are one commit, not four. A
    backend whose begin answers True (its writes commute across hooks, as the
    local store's do) gets the batch grouped by hook: twenty tasks' events are
    four hook calls, not eighty.
    """
    if set(map(type, batch)) == {tuple}:
        # Only metric points (the high-volume case): one hook call, no per-event work.
        callers("flowrecord_metrics_logged")(metrics=MetricBatch(batch))  # type: ignore[arg-type]
        return
    runs = list(_runs_of(batch))
    if len(runs) == 1:
        _send_run(callers, *runs[0])
        return
    if any(callers("flowrecord_batch_begin")()) and len(runs) > 2:
        runs = _grouped(runs)
    try:
        for hook, chunk in runs:
            _send_run(callers, hook, chunk)
    except BaseException:
        with contextlib.suppress(Exception):  # the hook's own error is the one to report
            callers("flowrecord_batch_end")(ok=False)
        raise
    callers("flowrecord_batch_end")(ok=True)


def _send_run(callers: Callable[[str], Any], hook: str, chunk: list[Any]) -> None:
    if hook == "flowrecord_metrics_logged":
        chunk = MetricBatch([e if type(e) is tuple else metric_point(e) for e in chunk])  # type: ignore[assignment]
    callers(hook)(**{_HOOK_ARG[hook]: chunk})


# ---------------------------------------------------------------------------
# transient and permanent failures
# ---------------------------------------------------------------------------


def failure_kind(exc: BaseException) -> str:
    """Whether sending again may succeed: :data:`TRANSIENT`, :data:`PERMANENT` or :data:`UNKNOWN`.

    Transient: an ``OSError`` (refused or reset connections, timeouts, a full or
    read-only disk) or ``sqlite3.OperationalError`` (locked, busy, disk full), also
    when it is the cause or context of the error raised. Permanent: the error says
    the event itself is wrong (``TypeError``, ``ValueError``, ``KeyError``, an
    SQLite integrity, data or binding error). A reply the client could not decode
    (``JSONDecodeError``, ``UnicodeDecodeError``) and every other type are
    unknown, and handled as transient. A backend that knows better raises
    :class:`~flowrecord.errors.EventRefused` (permanent, whatever its cause: an
    HTTP client's 4xx error is an ``OSError``).

    >>> failure_kind(ConnectionRefusedError()), failure_kind(ValueError("bad"))
    ('transient', 'permanent')
    """
    if isinstance(exc, EventRefused):
        return PERMANENT
    sqlite3 = sys.modules.get("sqlite3")  # an SQLite error means it is imported already
    operational = sqlite3.OperationalError if sqlite3 is not None else OSError
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, OSError | operational):
            return TRANSIENT
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return UNKNOWN
    if isinstance(exc, TypeError | ValueError | KeyError):
        return PERMANENT
    if sqlite3 is not None:
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
            return TRANSIENT  # the store was closed under us (shutdown), not a bad event
        if isinstance(
            exc,
            sqlite3.IntegrityError
            | sqlite3.DataError
            | sqlite3.ProgrammingError
            | sqlite3.InterfaceError,
        ):
            return PERMANENT
    return UNKNOWN


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]


class _Outcome:
    """What :func:`_isolate` made of a batch: each event delivered, dead or left."""

    __slots__ = ("dead", "delivered", "failure", "left", "unproven")

    def __init__(self) -> None:
        self.delivered = 0
        #: Refused for good, with the error text.
        self.dead: list[tuple[Any, str]] = []
        #: Not delivered (:attr:`failure` says why): to be sent again.
        self.left: list[Any] = []
        self.failure: BaseException | None = None
        #: The events left failed for no transient reason, but nothing showed the
        #: backend up (it took none of them): bad events, or a backend refusing
        #: everything? :func:`replay_spool` decides once other events went through.
        self.unproven = False


def _isolate(
    callers: Callable[[str], Any],
    events: Sequence[Any],
    *,
    failed: BaseException | None = None,
    examine: bool = False,
    proven_up: bool = False,
) -> _Outcome:
    """Deliver *events*; split what fails in halves until the refused events are alone.

    A failing part is split while its error is permanent (with *examine*, also
    of no known kind); a transient error (without *examine*, also an unknown
    one) stops at once and leaves the rest for later. An event failing alone with
    a permanent error is dead; with an unknown one (*examine*), only if the
    backend took other events, else it is left :attr:`~_Outcome.unproven`. So is
    everything when failures run far past what finding a few bad events takes
    with nothing delivered (a backend refusing every event is broken, its events
    are not bad). Events delivered twice on the way
    (a backend that wrote part of a failed call) do no harm: backends dedupe on
    event id.

    :param failed: *events* were just sent as one batch and failed with this.
    :param proven_up: the backend took other events just now.
    """
    out = _Outcome()
    todo: deque[tuple[Sequence[Any], BaseException | None]] = deque()
    if failed is not None:
        todo.append((events, failed))
    else:
        todo.extend((events[i : i + MAX_BATCH], None) for i in range(0, len(events), MAX_BATCH))
    # Splitting down to one bad event costs about two failures per halving. Many
    # more with nothing delivered: the backend may refuse everything; stop early.
    budget = 2 * max(1, len(events)).bit_length() + 4
    failures = 0
    suspects: list[tuple[Any, str]] = []  # failed alone, error of no known kind
    while todo:
        chunk, exc = todo.popleft()
        if exc is None:
            try:
                send_batch(callers, chunk)
            except Exception as error:
                exc = error
            else:
                out.delivered += len(chunk)
                continue
        failures += 1
        kind = failure_kind(exc)
        up = proven_up or out.delivered > 0
        if kind == TRANSIENT or (kind == UNKNOWN and not examine) or (failures > budget and not up):
            out.failure = exc
            out.unproven = kind != TRANSIENT and not up and (kind == PERMANENT or examine)
            if out.unproven:  # nothing is known to be bad: all of it waits
                out.left = [e for e, _ in out.dead]
                out.dead = []
            out.left += [e for e, _ in suspects]
            out.left += chunk
            for rest, _ in todo:
                out.left += rest
            return out
        if len(chunk) > 1:
            mid = len(chunk) // 2
            todo.appendleft((chunk[mid:], None))
            todo.appendleft((chunk[:mid], None))
        elif kind == PERMANENT:
            out.dead.append((chunk[0], _describe(exc)))
        else:
            suspects.append((chunk[0], _describe(exc)))
            out.failure = exc
    if suspects and not (proven_up or out.delivered):
        out.left = [e for e, _ in suspects]  # out.failure: the last one's error
        out.unproven = True
        return out
    out.dead += suspects
    out.failure = None
    return out


# ---------------------------------------------------------------------------
# spool files
# ---------------------------------------------------------------------------


def _fallback_root(home: Path) -> Path:
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"flowrecord-spool-{os.getuid()}-{digest}"


def spool_dirs(home: Path, backend: str) -> list[Path]:
    """Where events for *backend* may be spooled: under the home, then a temp fallback."""
    return [home / "spool" / backend, _fallback_root(home) / backend]


def _spool_name(stem: str, attempts: int) -> str:
    """A spool file's name: its stem (an event id, so names sort oldest first) and,
    once its replay has failed, how many times it did."""
    return f"{stem}.jsonl" if attempts <= 0 else f"{stem}.f{attempts}.jsonl"


def _parse_spool_name(name: str) -> tuple[str, int]:
    """(stem, failed replays) of a spool file name, claimed or not."""
    base = name.split(".claimed-")[0].removesuffix(".jsonl")
    stem, dot, tail = base.rpartition(".")
    if dot and tail[:1] == "f" and tail[1:].isdigit():
        return stem, int(tail[1:])
    return base, 0


def _write_file(dirs: Sequence[Path], payload: str, name: str | None = None) -> Path | None:
    """Write *payload* durably as *name* (a new one by default) in the first of *dirs*
    that takes it; None when none does."""
    for directory in dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            final = directory / (name or f"{new_event_id()}.jsonl")
            tmp = directory / f".{final.name}.tmp"
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            return final
        except OSError as exc:
            log.warning(
                "flowrecord: cannot spool to %s (%s); trying the next place", directory, exc
            )
            with contextlib.suppress(OSError, UnboundLocalError):
                tmp.unlink()
    return None


def _spool_payload(events: Iterable[Event]) -> str:
    return "".join(json.dumps(event_to_dict(e), default=str) + "\n" for e in events)


def _write_spool(dirs: Sequence[Path], events: Sequence[Event]) -> Path | None:
    final = _write_file(dirs, _spool_payload(events))
    if final is None:
        log.error("flowrecord: %d events could not be spooled anywhere and are lost", len(events))
    return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release_stale_claims(directory: Path) -> None:
    host = socket.gethostname()
    for claimed in directory.glob("*.jsonl.claimed-*"):
        try:
            _, _, owner = claimed.name.partition(".jsonl.claimed-")
            owner_host, _, pid_text = owner.rpartition("-")
            age = time.time() - claimed.stat().st_mtime
            gone = owner_host == host and not _pid_alive(int(pid_text))
            if gone or age > STALE_CLAIM_S * 10:
                os.replace(claimed, claimed.with_name(claimed.name.split(".claimed-")[0]))
        except (OSError, ValueError):
            continue


def _claim(path: Path) -> Path | None:
    claimed = path.with_name(f"{path.name}.claimed-{socket.gethostname()}-{os.getpid()}")
    try:
        os.replace(path, claimed)
    except OSError:
        return None  # another process claimed it first
    return claimed


def _unclaim(claimed: Path) -> None:
    with contextlib.suppress(OSError):
        os.replace(claimed, claimed.with_name(claimed.name.split(".claimed-")[0]))


def _read_spool(path: Path) -> tuple[list[Event], list[tuple[str, str]]]:
    """The events of a spool file, and its lines that are not events, with the error."""
    events: list[Event] = []
    unreadable: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(event_from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                # A torn line, or an event of a newer flowrecord: the rest replays,
                # the line is kept as a dead letter.
                log.warning("flowrecord: unreadable spooled event in %s: %s", path, exc)
                unreadable.append((line, _describe(exc)))
    return events, unreadable


class SpoolStats:
    """Counts of one replay: files and events sent, files that failed, dead letters made."""

    def __init__(self) -> None:
        self.files = 0
        self.events = 0
        self.failed_files = 0
        #: Events the backend refused for good, now dead letters (for
        #: :func:`retry_dead_letters`: the ones refused again).
        self.dead = 0
        #: The error of the first of them.
        self.dead_error: str | None = None
        self.errors: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "events": self.events,
            "failed_files": self.failed_files,
            "dead": self.dead,
            "dead_error": self.dead_error,
            "errors": self.errors,
        }


def pending_spool_files(dirs: Iterable[Path]) -> list[Path]:
    """Unclaimed spool files, oldest first."""
    files: list[Path] = []
    for directory in dirs:
        if directory.is_dir():
            _release_stale_claims(directory)
            files.extend(directory.glob("*.jsonl"))
    return sorted(files, key=lambda p: _parse_spool_name(p.name)[0])


# -- dead letters -------------------------------------------------------------


def dead_letter_dirs(spool: Sequence[Path]) -> list[Path]:
    """Where the dead letters of a backend whose spool directories are *spool* go."""
    return [directory / DEAD_DIR for directory in spool]


def _dead_entry(event: Any, error: str, failed_at: float) -> dict[str, Any]:
    return {"failed_at": failed_at, "error": error, "event": event_to_dict(event)}


def _bury(
    spool: Sequence[Path], dead: Sequence[tuple[Any, str]], lines: Sequence[tuple[str, str]] = ()
) -> Path | None:
    """Write refused events (and unreadable spool *lines*) as one dead-letter file
    (the caller says so: a worker logs it, ``flowrecord sync`` reports it)."""
    now = time.time()
    entries = [_dead_entry(e, error, now) for e, error in dead]
    entries += [{"failed_at": now, "error": error, "line": line} for line, error in lines]
    payload = "".join(json.dumps(x, default=str) + "\n" for x in entries)
    return _write_file(dead_letter_dirs(spool), payload)


def _warn_dead(backend: str, count: int, error: str, spool: Sequence[Path]) -> None:
    log.warning(
        "flowrecord: backend %r refused %d event(s) for good (%s); kept as dead letters"
        " under %s (list: flowrecord sync --list-dead; after a fix: flowrecord sync"
        " --retry-dead)",
        backend,
        count,
        error,
        dead_letter_dirs(spool)[0],
    )


def _dead_files(spool: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for directory in dead_letter_dirs(list(spool)):
        if directory.is_dir():
            _release_stale_claims(directory)
            files.extend(directory.glob("*.jsonl"))
    return sorted(files, key=lambda p: p.name)


def _read_dead(path: Path) -> list[dict[str, Any]]:
    entries = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if not isinstance(entry, dict):  # never thrown away, even a torn one
                    entry = {"error": "unreadable dead letter", "line": line.strip()}
                entries.append(entry)
    return entries


def list_dead_letters(spool: Sequence[Path]) -> list[dict[str, Any]]:
    """The dead letters of the backend whose spool directories are *spool*, oldest first.

    Each is ``{"event_id", "kind", "run_id", "task_id", "error", "failed_at", "file"}``
    (ids and kind are None for a line that is not an event). An event set aside
    twice (by a worker, and by a replay of a copy spooled at a missed flush
    deadline) is listed once.
    """
    out = []
    seen: set[str] = set()
    for path in _dead_files(spool):
        try:
            entries = _read_dead(path)
        except OSError:
            continue  # retried (claimed) or removed just now
        for entry in entries:
            data = entry.get("event")
            event: dict[str, Any] = data if isinstance(data, dict) else {}
            event_id = event.get("event_id")
            if event_id is not None:
                if event_id in seen:
                    continue
                seen.add(event_id)
            out.append(
                {
                    "event_id": event_id,
                    "kind": event.get("kind"),
                    "run_id": event.get("run_id"),
                    "task_id": event.get("task_id"),
                    "error": entry.get("error"),
                    "failed_at": entry.get("failed_at"),
                    "file": str(path),
                }
            )
    return out


def retry_dead_letters(spool: Sequence[Path], callers: Callable[[str], Any]) -> SpoolStats:
    """Send the dead letters in *spool*'s dead-letter directories again (after a fix).

    What the backend takes is removed; what it refuses for good again stays with
    the new error (counted in :attr:`SpoolStats.dead`); what fails for a transient
    reason stays as it was (:attr:`SpoolStats.failed_files`), and the retry stops.
    """
    stats = SpoolStats()
    for path in _dead_files(spool):
        claimed = _claim(path)
        if claimed is None:
            continue
        try:
            entries = _read_dead(claimed)
        except OSError as exc:
            _unclaim(claimed)
            stats.failed_files += 1
            stats.errors.append(f"{path.name}: {_describe(exc)}")
            continue
        events: list[Any] = []
        origin: dict[int, dict[str, Any]] = {}
        keep: list[dict[str, Any]] = []  # lines that are still not events
        now = time.time()
        for entry in entries:
            try:
                data = entry["event"] if "event" in entry else json.loads(entry["line"])
                event = event_from_dict(data)
            except (KeyError, TypeError, ValueError) as exc:
                keep.append({**entry, "failed_at": now, "error": _describe(exc)})
                continue
            origin[id(event)] = entry
            events.append(event)
        out = _isolate(callers, events) if events else _Outcome()
        stats.events += out.delivered
        stats.dead += len(out.dead) + len(keep)
        if out.dead or keep:
            stats.dead_error = stats.dead_error or (
                out.dead[0][1] if out.dead else keep[0]["error"]
            )
        keep += [_dead_entry(e, error, now) for e, error in out.dead]
        keep += [origin[id(e)] for e in out.left]
        if not keep:
            with contextlib.suppress(OSError):
                claimed.unlink()
            stats.files += 1
        else:
            payload = "".join(json.dumps(x, default=str) + "\n" for x in keep)
            if _write_file([claimed.parent], payload, path.name) is None:
                _unclaim(claimed)  # as it was: nothing lost
            else:
                with contextlib.suppress(OSError):
                    claimed.unlink()
        if out.failure is not None:
            stats.failed_files += 1
            stats.errors.append(f"{path.name}: {_describe(out.failure)}")
            break
    return stats


# -- replay -------------------------------------------------------------------


class _Claimed:
    """A spool file this process claimed: where it was, where it is, how many events."""

    __slots__ = ("claimed", "on_disk", "path")

    def __init__(self, path: Path, claimed: Path, on_disk: int) -> None:
        self.path = path
        self.claimed = claimed
        self.on_disk = on_disk

    def settle(self, remaining: Sequence[Event] | None) -> None:
        """Done with it: delete it, or put *remaining* (None: all of it) back with one
        more failed replay."""
        if remaining is not None and not remaining:
            with contextlib.suppress(OSError):
                self.claimed.unlink()
            return
        stem, attempts = _parse_spool_name(self.path.name)
        name = _spool_name(stem, attempts + 1)
        if remaining is None or len(remaining) == self.on_disk:
            with contextlib.suppress(OSError):
                os.replace(self.claimed, self.claimed.with_name(name))
            return
        if _write_file([self.claimed.parent], _spool_payload(remaining), name) is None:
            _unclaim(self.claimed)  # the whole file again: what was delivered is deduped
            return
        with contextlib.suppress(OSError):
            self.claimed.unlink()


def replay_spool(
    dirs: Sequence[Path],
    callers: Callable[[str], Any],
    *,
    progress: Callable[[int, int], None] | None = None,
    stop_on_error: bool = True,
) -> SpoolStats:
    """Send every spooled batch in *dirs* through *callers*; delete what was delivered.

    Events the backend refuses for good become dead letters (see :func:`_isolate`)
    and do not hold back the files after them. A file that fails for a transient
    reason stays, its failed replays counted in its name, and stops the replay
    (unless not *stop_on_error*): the backend is down, later files would fail too.
    After :data:`EXAMINE_AFTER` failed replays, errors of no known kind are
    examined too. Events whose failure proves nothing while the backend took no
    other event (:attr:`_Outcome.unproven`) wait until the files after them were
    tried; if some of those went through, they are split again with that proof.
    """
    stats = SpoolStats()
    files = pending_spool_files(dirs)
    deferred: list[tuple[_Claimed, list[Event], bool]] = []
    for i, path in enumerate(files):
        claimed = _claim(path)
        if claimed is None:
            continue
        try:
            events, unreadable = _read_spool(claimed)
        except (OSError, UnicodeDecodeError) as exc:
            _unclaim(claimed)
            stats.failed_files += 1
            stats.errors.append(f"{path.name}: {_describe(exc)}")
            failed = True
        else:
            file = _Claimed(path, claimed, len(events) + len(unreadable))
            examine = _parse_spool_name(path.name)[1] >= EXAMINE_AFTER
            out = _isolate(callers, events, examine=examine, proven_up=stats.events > 0)
            wait = out.unproven and len(deferred) < MAX_DEFERRED
            failed = _record(stats, file, out, unreadable, dirs, wait=wait)
            if wait and not failed:
                deferred.append((file, out.left, examine))
        if progress is not None:
            progress(i + 1, len(files))
        if failed and stop_on_error:
            break
    for file, left, examine in deferred:
        if stats.events > 0:  # the backend takes events: what still fails is bad
            out = _isolate(callers, left, examine=examine, proven_up=True)
        else:
            out = _Outcome()
            out.left = left
            out.failure = RuntimeError("the backend took no event of this replay")
        _record(stats, file, out, [], dirs)
    return stats


def _record(
    stats: SpoolStats,
    file: _Claimed,
    out: _Outcome,
    unreadable: Sequence[tuple[str, str]],
    spool: Sequence[Path],
    *,
    wait: bool = False,
) -> bool:
    """Bury the dead letters of a replayed file and settle it; True when it failed.

    With *wait*, the file stays claimed for a second look (its dead letters are
    buried already).
    """
    stats.events += out.delivered
    if out.dead or unreadable:
        if _bury(spool, out.dead, unreadable) is None:
            # Nowhere to keep them: the file stays whole, nothing is lost.
            file.settle(None)
            stats.failed_files += 1
            stats.errors.append(f"{file.path.name}: its dead letters could not be written")
            return True
        stats.dead += len(out.dead) + len(unreadable)
        stats.dead_error = stats.dead_error or (out.dead[0][1] if out.dead else unreadable[0][1])
    if wait:
        return False
    file.settle(out.left)
    if out.failure is None:
        stats.files += 1
        return False
    stats.failed_files += 1
    stats.errors.append(f"{file.path.name}: {_describe(out.failure)}")
    return True


# ---------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Worker:
    """One backend's buffer, thread, and spool.

    Callers append to :attr:`buffer` (``list.append`` is atomic) and wake the
    thread only when it said it was going to sleep (:attr:`idle`), so the
    caller's cost is an append and a flag test, with no lock. The thread takes
    the whole buffer in one slice and delivers it in batches of
    :data:`MAX_BATCH`. Whoever takes items off the buffer (the thread, or
    :meth:`spool_pending` at a missed deadline) holds :attr:`lock`: appends only
    ever add at the end, so a slice followed by a delete of the same length
    removes exactly what was taken.
    """

    def __init__(
        self,
        name: str,
        callers: Callable[[str], Any] | None,
        spool: Sequence[Path],
        error: str | None = None,
    ) -> None:
        self.name = name
        self.callers = callers
        self.spool = list(spool)
        self.buffer: list[Any] = []
        self.idle = False
        # Tokens that wake the thread; a spare token only costs one empty round.
        self.wakeup: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.inflight: list[Any] = []  # events, flush markers and None, as taken
        self.delivered_upto = 0  # inflight[:delivered_upto] reached the backend or the spool
        self.lock = threading.Lock()
        self.retry_at = 0.0 if callers is not None and error is None else float("inf")
        self.error = error
        self.delivered = 0
        self.spooled = 0
        self.replayed = 0
        self.lost = 0
        self.dead = 0
        self.thread = threading.Thread(target=self._loop, name=f"flowrecord-{name}", daemon=True)
        self.thread.start()

    def put(self, item: Any) -> None:
        """Queue *item* (an event, a flush marker, or None to stop).

        A flush marker or a stop always sends a token, so that the thread stops
        lingering for more events at once: someone is waiting.
        """
        self.buffer.append(item)
        if self.idle or item is None or type(item) is _Flush:
            self.idle = False
            self.wakeup.put(None)

    # -- worker thread ------------------------------------------------------

    def _urgent(self) -> bool:
        # Only markers need an answer now; scanning stops at the first one.
        return any(item is None or type(item) is _Flush for item in self.buffer[:64])

    def _take(self) -> list[Any]:
        with self.lock:
            items = self.buffer[:]
            del self.buffer[: len(items)]
            # Taken but not yet delivered: spool_pending must still see these.
            self.inflight = items
            self.delivered_upto = 0
        return items

    def _loop(self) -> None:
        self._replay()
        while True:
            items = self._take()
            if not items:
                # Say we are going to sleep, then look again: an append made
                # before the flag was visible is seen here, one made after it
                # sends a token.
                self.idle = True
                if self.buffer:
                    self.idle = False
                    continue
                self.wakeup.get()
                self.idle = False
                # Woken by a first event after a quiet spell: let the ones that
                # follow it (the rest of a task's start, its end) join it in one
                # batch. One write per burst rather than per event keeps the
                # thread from competing with the task for the GIL; a flush or a
                # stop cuts the wait short (it always sends a token).
                if LINGER_S > 0 and not self._urgent():
                    with contextlib.suppress(queue.Empty):
                        self.wakeup.get(timeout=LINGER_S)
                continue
            flushes: list[_Flush] = []
            stop = False
            if set(map(type, items)) == {tuple}:
                events = items  # metric points only, the common case under load
            else:
                events = []
                for item in items:
                    if item is None:
                        stop = True
                    elif type(item) is _Flush:
                        flushes.append(item)
                    else:
                        events.append(item)
                with self.lock:
                    self.inflight = events
            for start in range(0, len(events), MAX_BATCH):
                self._deliver(events[start : start + MAX_BATCH])
                self.delivered_upto = start + MAX_BATCH
            with self.lock:
                self.inflight = []
            for f in flushes:
                f.done.set()
            if stop:
                return

    def _deliver(self, batch: list[Event]) -> None:
        if self.callers is None or time.monotonic() < self.retry_at:
            self._spool(batch)
            return
        if self.error is not None:
            # Back from a failure: what was spooled is older than this batch and may
            # hold what it refers to (a run's start), so replay it first.
            self._replay()
            if time.monotonic() < self.retry_at:  # the replay failed again
                self._spool(batch)
                return
        try:
            send_batch(self.callers, batch)
        except Exception as exc:
            if failure_kind(exc) != PERMANENT:
                self._failed(exc, batch)
                return
            # The backend refuses something in this batch for good: deliver the
            # rest now, keep only what it refuses.
            out = _isolate(self.callers, batch, failed=exc)
            self.delivered += out.delivered
            if out.dead:
                self._bury(out.dead)
            if out.failure is not None:
                self._failed(out.failure, out.left)
            else:
                self.error = None
        else:
            self.delivered += len(batch)
            self.error = None

    def _failed(self, exc: BaseException, batch: Sequence[Event]) -> None:
        self.retry_at = time.monotonic() + RETRY_AFTER_S
        if self.error is None:
            log.warning(
                "flowrecord: backend %r failed (%s); spooling its events for replay",
                self.name,
                _describe(exc),
            )
        self.error = _describe(exc)
        self._spool(batch)

    def _bury(self, dead: Sequence[tuple[Any, str]]) -> None:
        if not self.spool:  # an in-process listener: nowhere to keep them
            log.warning(
                "flowrecord: listener %r refused %d event(s) (%s); dropped",
                self.name,
                len(dead),
                dead[0][1],
            )
            self.lost += len(dead)
            return
        if _bury(self.spool, dead) is not None:
            self.dead += len(dead)
            _warn_dead(self.name, len(dead), dead[0][1], self.spool)
        else:  # in the spool they are at least kept; the replay tries again
            self._spool([e for e, _ in dead])

    def _spool(self, batch: Sequence[Event]) -> None:
        if not self.spool:  # an in-process listener: nothing could replay into it later
            self.lost += len(batch)
            return
        # Small files: a nearly full disk (or a file-size limit) still takes them.
        for start in range(0, len(batch), SPOOL_FILE_EVENTS):
            chunk = batch[start : start + SPOOL_FILE_EVENTS]
            if _write_spool(self.spool, chunk) is not None:
                self.spooled += len(chunk)
            else:
                self.lost += len(chunk)

    def _replay(self) -> None:
        if self.callers is None or time.monotonic() < self.retry_at:
            return
        try:
            if not pending_spool_files(self.spool):
                return
            stats = replay_spool(self.spool, self.callers)
        except Exception as exc:  # a broken spool must not kill the worker
            log.warning("flowrecord: replay for %r failed: %s", self.name, exc)
            return
        self.replayed += stats.events
        self.dead += stats.dead
        if stats.dead:
            _warn_dead(self.name, stats.dead, stats.dead_error or "?", self.spool)
        if stats.failed_files:
            self.retry_at = time.monotonic() + RETRY_AFTER_S

    # -- caller side --------------------------------------------------------

    def spool_pending(self) -> int:
        """Write what is queued or in flight to the spool (called at a missed deadline)."""
        with self.lock:
            # The batch in flight may still arrive too: backends dedupe on event id.
            inflight = self.inflight[self.delivered_upto :]
            items = self.buffer[:]
            del self.buffer[: len(items)]
        pending: list[Event] = [e for e in inflight if e is not None and type(e) is not _Flush]
        for item in items:
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not None:
                pending.append(item)
        self._spool(pending)
        return len(pending)


class Dispatcher:
    """Fans events out to backends on background threads.

    >>> d = Dispatcher({"local": callers}, home=Path(".flowrecord"))  # doctest: +SKIP
    >>> d.submit(event); d.flush(2.0)                                  # doctest: +SKIP
    """

    def __init__(
        self,
        backends: dict[str, Callable[[str], Any] | None],
        *,
        home: Path,
        errors: dict[str, str] | None = None,
    ) -> None:
        errors = errors or {}
        self.home = home
        self.workers = [
            _Worker(name, callers, spool_dirs(home, name), errors.get(name))
            for name, callers in backends.items()
        ]
        self._closed = False

    def submit(self, event: Event | MetricPoint) -> None:
        """Queue *event* for every backend. Never blocks, never raises."""
        if self._closed:
            return
        for worker in self.workers:
            # _Worker.put, inlined: this runs once per metric point.
            worker.buffer.append(event)
            if worker.idle:
                worker.idle = False
                worker.wakeup.put(None)

    def flush(self, timeout: float | None = 2.0) -> bool:
        """Wait until what was submitted so far is delivered or spooled.

        At the deadline, whatever a backend has not taken yet is spooled, so the
        caller never waits longer than *timeout* and nothing is lost.

        :return: True when every backend took everything in time.
        """
        markers = []
        for worker in self.workers:
            marker = _Flush()
            worker.put(marker)
            markers.append((worker, marker))
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for worker, marker in markers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not marker.done.wait(remaining):
                ok = False
                worker.spool_pending()
        return ok

    def close(self, timeout: float | None = 2.0) -> bool:
        """Flush, then stop the workers (at interpreter exit)."""
        if self._closed:
            return True
        ok = self.flush(timeout)
        self._closed = True
        for worker in self.workers:
            worker.put(None)
        for worker in self.workers:
            worker.thread.join(0.5)
        return ok

    def add_worker(
        self, name: str, callers: Callable[[str], Any] | None, *, spool: bool = True
    ) -> None:
        """Start delivering to one more backend (from the next event on).

        :param spool: False for in-process listeners: what they fail to take is dropped.
        """
        worker = _Worker(name, callers, spool_dirs(self.home, name) if spool else [])
        # Replace the list rather than append: submit() may be iterating it.
        self.workers = [*self.workers, worker]

    def remove_worker(self, name: str, timeout: float = 2.0) -> None:
        """Stop delivering to backend *name*, after a bounded flush of what it has."""
        gone = [w for w in self.workers if w.name == name]
        self.workers = [w for w in self.workers if w.name != name]
        for worker in gone:
            marker = _Flush()
            worker.put(marker)
            if not marker.done.wait(timeout):
                worker.spool_pending()
            worker.put(None)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per backend: events delivered, spooled, replayed, lost and dead-lettered
        (refused for good, kept under ``<spool>/dead``), and the last error."""
        return {
            w.name: {
                "delivered": w.delivered,
                "spooled": w.spooled,
                "replayed": w.replayed,
                "lost": w.lost,
                "dead": w.dead,
                "error": w.error,
            }
            for w in self.workers
        }


class DirectCallers:
    """Hook callers that call one plugin's marked methods directly, without pluggy.

    What :func:`subset_callers` gives for a plugin registered alone, for the
    built-in backends: ``callers(hook)(**kwargs)`` calls the plugin's method of
    that name with the arguments it declares and returns ``[result]``, or ``[]``
    for None (pluggy's list of results); a hook the plugin does not implement
    returns ``[]``. A task process that records to built-in backends alone so
    imports no pluggy and builds no plugin manager, which was milliseconds of every
    short task's process (Metaflow runs each task in its own).
    """

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self._cache: dict[str, Callable[..., list[Any]]] = {}

    def __call__(self, hook: str) -> Callable[..., list[Any]]:
        caller = self._cache.get(hook)
        if caller is None:
            caller = self._cache[hook] = self._make(hook)
        return caller

    def _make(self, hook: str) -> Callable[..., list[Any]]:
        from flowrecord._impl import IMPL_ATTRIBUTE

        method = getattr(self.plugin, hook, None)
        if method is None or getattr(method, IMPL_ATTRIBUTE, None) is None:
            return _no_results
        code = getattr(method, "__func__", method).__code__
        first = 1 if hasattr(method, "__self__") else 0
        accepted = frozenset(code.co_varnames[first : code.co_argcount + code.co_kwonlyargcount])

        def call(**kwargs: Any) -> list[Any]:
            result = method(**{k: v for k, v in kwargs.items() if k in accepted})
            return [] if result is None else [result]

        return call


def _no_results(**kwargs: Any) -> list[Any]:
    return []


def subset_callers(pm: pluggy.PluginManager, plugin_name: str) -> Callable[[str], Any]:
    """Hook callers that reach only the plugin registered as *plugin_name*.

    Plugins registered later (a listener joining a live runtime) stay excluded: the
    cached callers are rebuilt whenever the set of registered plugins changes.
    """
    cache: dict[str, Any] = {}
    known: list[int] = []

    def callers(hook: str) -> Any:
        plugins = pm.get_plugins()
        if len(plugins) != (known[0] if known else -1):
            cache.clear()
            known[:] = [len(plugins)]
        caller = cache.get(hook)
        if caller is None:
            others = [p for name, p in pm.list_name_plugin() if name != plugin_name]
            caller = cache[hook] = pm.subset_hook_caller(hook, remove_plugins=others)
        return caller

    return callers
