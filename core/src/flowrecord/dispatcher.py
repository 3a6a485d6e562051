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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pluggy

from flowrecord._ids import new_event_id
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

__all__ = ["Dispatcher", "SpoolStats", "hook_for", "replay_spool", "send_batch", "spool_dirs"]

log = logging.getLogger("flowrecord")

#: Largest batch a worker hands to a backend at once. A power of two: the local
#: store writes a full batch of metric points as one SQL statement.
MAX_BATCH = 4096
#: Most events in one spool file.
SPOOL_FILE_EVENTS = 1000
#: How long a worker woken from idle waits for more events before writing them.
#: Flushes and shutdown do not wait for it.
LINGER_S = 0.05
#: How long a failing backend is left alone before the worker tries it again.
RETRY_AFTER_S = 5.0
#: A claimed spool file whose owner is gone is released after this many seconds.
STALE_CLAIM_S = 60.0

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


def send_batch(callers: Callable[[str], Any], batch: Sequence[Event]) -> None:
    """Deliver *batch* through the hooks *callers* returns for each hook name.

    A batch of mixed events is framed by ``flowrecord_batch_begin`` and
    ``flowrecord_batch_end``, so a backend can write it in one transaction: a
    task's start, datasets, end and system usage are one commit, not four.
    """
    if set(map(type, batch)) == {tuple}:
        # Only metric points (the high-volume case): one hook call, no per-event work.
        callers("flowrecord_metrics_logged")(metrics=MetricBatch(batch))  # type: ignore[arg-type]
        return
    runs = list(_runs_of(batch))
    if len(runs) == 1:
        _send_run(callers, *runs[0])
        return
    callers("flowrecord_batch_begin")()
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
# spool files
# ---------------------------------------------------------------------------


def _fallback_root(home: Path) -> Path:
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"flowrecord-spool-{os.getuid()}-{digest}"


def spool_dirs(home: Path, backend: str) -> list[Path]:
    """Where events for *backend* may be spooled: under the home, then a temp fallback."""
    return [home / "spool" / backend, _fallback_root(home) / backend]


def _write_spool(dirs: Sequence[Path], events: Sequence[Event]) -> Path | None:
    payload = "".join(json.dumps(event_to_dict(e), default=str) + "\n" for e in events)
    for directory in dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            name = new_event_id()
            tmp = directory / f".{name}.tmp"
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            final = directory / f"{name}.jsonl"
            os.replace(tmp, final)
            return final
        except OSError as exc:
            log.warning(
                "flowrecord: cannot spool to %s (%s); trying the next place", directory, exc
            )
            with contextlib.suppress(OSError, UnboundLocalError):
                tmp.unlink()
    log.error("flowrecord: %d events could not be spooled anywhere and are lost", len(events))
    return None


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


def _read_spool(path: Path) -> list[Event]:
    events: list[Event] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(event_from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                # A torn last line (the writer was killed) is skipped, the rest replays.
                log.warning("flowrecord: skipping unreadable spooled event in %s: %s", path, exc)
    return events


class SpoolStats:
    """Counts of one replay: files and events sent, and files that failed."""

    def __init__(self) -> None:
        self.files = 0
        self.events = 0
        self.failed_files = 0
        self.errors: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "events": self.events,
            "failed_files": self.failed_files,
            "errors": self.errors,
        }


def pending_spool_files(dirs: Iterable[Path]) -> list[Path]:
    """Unclaimed spool files, oldest first."""
    files: list[Path] = []
    for directory in dirs:
        if directory.is_dir():
            _release_stale_claims(directory)
            files.extend(directory.glob("*.jsonl"))
    return sorted(files, key=lambda p: p.name)


def replay_spool(
    dirs: Sequence[Path],
    callers: Callable[[str], Any],
    *,
    progress: Callable[[int, int], None] | None = None,
    stop_on_error: bool = True,
) -> SpoolStats:
    """Send every spooled batch in *dirs* through *callers*; delete what was delivered."""
    stats = SpoolStats()
    files = pending_spool_files(dirs)
    for i, path in enumerate(files):
        claimed = _claim(path)
        if claimed is None:
            continue
        try:
            events = _read_spool(claimed)
            for start in range(0, len(events), MAX_BATCH):
                send_batch(callers, events[start : start + MAX_BATCH])
        except Exception as exc:
            _unclaim(claimed)
            stats.failed_files += 1
            stats.errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
            if stop_on_error:
                break
        else:
            with contextlib.suppress(OSError):
                claimed.unlink()
            stats.files += 1
            stats.events += len(events)
        if progress is not None:
            progress(i + 1, len(files))
    return stats


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
            self.retry_at = time.monotonic() + RETRY_AFTER_S
            if self.error is None:
                log.warning(
                    "flowrecord: backend %r failed (%s: %s); spooling its events for replay",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
            self.error = f"{type(exc).__name__}: {exc}"
            self._spool(batch)
        else:
            self.delivered += len(batch)
            self.error = None

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
        """Per backend: events delivered, spooled and replayed, and the last error."""
        return {
            w.name: {
                "delivered": w.delivered,
                "spooled": w.spooled,
                "replayed": w.replayed,
                "lost": w.lost,
                "error": w.error,
            }
            for w in self.workers
        }


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
