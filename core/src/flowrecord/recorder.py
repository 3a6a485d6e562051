"""The recorder: the one API that integrations and users call.

It holds the ambient context — the current run and task, in context variables so
each thread (and asyncio task) keeps its own — turns every call into an immutable
event, and hands it to the dispatcher. Integrations open and close runs and
tasks; user code only logs. Outside any run, the first logging call opens an
implicit run for the script, closed when the interpreter exits.

Run and task ids are deterministic (see :mod:`flowrecord._ids`): the many
processes of one pipeline run, each opening "the" run, converge on one record.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import dataclasses
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowrecord._frozen import frozen, set_field
from flowrecord._ids import new_event_id, run_id_for, stable_id, task_id_for
from flowrecord.config import Config, load_config
from flowrecord.errors import FlowrecordWarning
from flowrecord.events import (
    ArtifactEvent,
    CodeSnapshotEvent,
    DatasetEvent,
    Event,
    GateDecisionEvent,
    ParamEvent,
    RunEvent,
    State,
    SystemUsageEvent,
    TagEvent,
    TaskEvent,
    ValidationEvent,
)

if TYPE_CHECKING:
    import pluggy

    from flowrecord.collectors.validation import ValidationResult
    from flowrecord.dispatcher import Dispatcher

__all__ = [
    "RunHandle",
    "TaskHandle",
    "check_drift",
    "current_run",
    "current_task",
    "end_run",
    "end_task",
    "flush",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "run",
    "set_tags",
    "start_run",
    "start_task",
    "task",
    "validate",
]

log = logging.getLogger("flowrecord")

MAX_KEY_LENGTH = 250


# ---------------------------------------------------------------------------
# handles
# ---------------------------------------------------------------------------


# Written out rather than made with @dataclass: every task process imports this
# module, and each dataclass costs about a millisecond of generated code.


@frozen
class RunHandle:
    """An open pipeline run, as seen by this process."""

    __slots__ = ("implicit", "orchestrator", "pipeline", "run_id", "run_key")

    run_id: str
    orchestrator: str
    pipeline: str
    run_key: str
    implicit: bool

    def __init__(
        self, run_id: str, orchestrator: str, pipeline: str, run_key: str, implicit: bool = False
    ) -> None:
        set_field(self, "run_id", run_id)
        set_field(self, "orchestrator", orchestrator)
        set_field(self, "pipeline", pipeline)
        set_field(self, "run_key", run_key)
        set_field(self, "implicit", implicit)


class TaskHandle:
    """An open task attempt, as seen by this process (compared by identity)."""

    __slots__ = (
        "_closed",
        "_redacted",
        "_sampler",
        "_t0",
        "attributes",
        "map_index",
        "name",
        "run",
        "started_at",
        "task_id",
        "try_number",
    )

    def __init__(
        self,
        task_id: str,
        run: RunHandle,
        name: str,
        try_number: int,
        map_index: int | None,
        started_at: float,
        attributes: Mapping[str, Any] | None = None,
        _t0: float = 0.0,
    ) -> None:
        self.task_id = task_id
        self.run = run
        self.name = name
        self.try_number = try_number
        self.map_index = map_index
        self.started_at = started_at
        self.attributes: Mapping[str, Any] = {} if attributes is None else attributes
        self._t0 = _t0
        self._sampler: Any = None
        self._closed = False
        self._redacted: dict[str, str] | None = None  # attributes as recorded, once per attempt

    def __repr__(self) -> str:
        return (
            f"TaskHandle(task_id={self.task_id!r}, name={self.name!r}, "
            f"try_number={self.try_number!r}, map_index={self.map_index!r})"
        )

    @property
    def run_id(self) -> str:
        return self.run.run_id


# ---------------------------------------------------------------------------
# the per-process runtime: configuration, plugins, dispatcher
# ---------------------------------------------------------------------------


class Runtime:
    """What one process needs to record: config, backends, dispatcher.

    Built-in backends are called directly (:class:`~flowrecord.dispatcher.DirectCallers`);
    the pluggy plugin manager is built only when something needs it: a
    third-party backend or an added plugin, tracing, the lifecycle registry's
    hooks (:attr:`pm`).
    """

    def __init__(self, config: Config, extra_plugins: Mapping[str, Any] | None = None) -> None:
        from flowrecord.dispatcher import DirectCallers, Dispatcher, subset_callers
        from flowrecord.plugins import BUILTIN_BACKENDS, load_backend

        self.config = config
        if config.redact_patterns:
            from flowrecord.collectors.secrets import add_patterns

            add_patterns(config.redact_patterns)
        self._plugins: dict[str, Any] = {}
        self._pm: pluggy.PluginManager | None = None
        self._pm_lock = threading.Lock()
        errors: dict[str, str] = {}
        for name in config.backends:
            try:
                self._plugins[name] = load_backend(name)
            except Exception as exc:  # the backend's events still spool, for later
                errors[name] = f"{type(exc).__name__}: {exc}"
                log.warning("flowrecord: backend %r unavailable: %s", name, errors[name])
        for name, plugin in (extra_plugins or {}).items():
            self._plugins[name] = plugin
        direct = not config.trace and all(
            name in BUILTIN_BACKENDS and name not in (extra_plugins or {}) for name in self._plugins
        )
        settings = config.as_mapping()
        callers: dict[str, Any] = {}
        for name in [*config.backends, *(extra_plugins or {})]:
            if name in errors:
                callers[name] = None
                continue
            try:
                caller = (
                    DirectCallers(self._plugins[name]) if direct else subset_callers(self.pm, name)
                )
                caller("flowrecord_backend_configure")(config=settings)
                callers[name] = caller
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                callers[name] = None
                log.warning("flowrecord: backend %r failed to configure: %s", name, errors[name])
        self.errors = errors
        self.dispatcher: Dispatcher = Dispatcher(callers, home=config.home, errors=errors)
        self._code_runs: set[str] = set()
        #: Background code captures; a flush waits for them so short tasks keep theirs.
        self.capture_threads: list[threading.Thread] = []

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy plugin manager with every backend registered, built on first use."""
        if self._pm is None:
            with self._pm_lock:
                if self._pm is None:
                    from flowrecord.plugins import make_plugin_manager

                    self._pm = make_plugin_manager(self._plugins.items(), trace=self.config.trace)
        return self._pm

    def wait_for_captures(self, deadline: float) -> None:
        for thread in list(self.capture_threads):
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                self.capture_threads.remove(thread)

    def submit(self, event: Event) -> None:
        self.dispatcher.submit(event)

    def add_backend(self, name: str, plugin: Any, *, spool: bool = True) -> None:
        """Register *plugin* in the live plugin manager and give it a worker."""
        from flowrecord.dispatcher import subset_callers

        if name in self._plugins:
            return
        pm = self.pm
        with self._pm_lock:
            self._plugins[name] = plugin
            pm.register(plugin, name=name)
        callers = subset_callers(pm, name)
        try:
            callers("flowrecord_backend_configure")(config=self.config.as_mapping())
        except Exception as exc:
            log.warning("flowrecord: backend %r failed to configure: %s", name, exc)
        self.dispatcher.add_worker(name, callers, spool=spool)

    def remove_backend(self, name: str) -> None:
        self.dispatcher.remove_worker(name)
        with self._pm_lock:
            plugin = self._plugins.pop(name, None)
            if plugin is not None and self._pm is not None:
                self._pm.unregister(plugin)

    def local_store(self) -> Any:
        """The local store when the ``local`` backend is active, else None."""
        plugin = self._plugins.get("local")
        if plugin is None or "local" in self.errors:
            return None
        try:
            return plugin._store()
        except Exception:
            return None

    def close(self) -> None:
        from flowrecord.dispatcher import DirectCallers

        self.wait_for_captures(time.monotonic() + self.config.flush_timeout_s)
        self.dispatcher.close(self.config.flush_timeout_s)
        if self._pm is not None:
            with contextlib.suppress(Exception):
                self._pm.hook.flowrecord_backend_close()
            return
        for plugin in list(self._plugins.values()):
            with contextlib.suppress(Exception):
                DirectCallers(plugin)("flowrecord_backend_close")()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
_extra_plugins: dict[str, Any] = {}
_unspooled: set[str] = set()


def get_runtime() -> Runtime | None:
    """This process's runtime, created on first use; None when recording is disabled."""
    global _runtime
    rt = _runtime
    if rt is not None:
        return rt
    with _runtime_lock:
        if _runtime is None:
            config = load_config()
            if not config.enabled:
                return None
            try:
                _runtime = Runtime(config, _extra_plugins)
            except Exception as exc:  # never fail the user's code for tracking
                log.warning("flowrecord: recording disabled in this process: %s", exc)
                return None
        return _runtime


def register_backend(name: str, plugin: Any, *, spool: bool = True) -> None:
    """Add a backend plugin object for this process (tests, embedding, in-process listeners).

    If recording has started already, the plugin joins the live runtime at once and
    receives the events recorded from then on.

    :param spool: keep what the plugin failed to take for replay. Set it False for
        in-process listeners (a card renderer, say) that ``flowrecord sync`` could
        never replay into later.
    """
    _extra_plugins[name] = plugin
    if not spool:
        _unspooled.add(name)
    rt = _runtime
    if rt is not None:
        rt.add_backend(name, plugin, spool=spool)


def unregister_backend(name: str) -> None:
    """Remove a plugin added with :func:`register_backend` (from the live runtime too)."""
    _extra_plugins.pop(name, None)
    _unspooled.discard(name)
    rt = _runtime
    if rt is not None:
        rt.remove_backend(name)


def shutdown() -> None:
    """End an implicit run, flush and close the backends; the next call starts afresh."""
    global _runtime
    _end_implicit_run()
    with _runtime_lock:
        rt, _runtime = _runtime, None
    if rt is not None:
        rt.close()


def flush(timeout: float | None = None) -> bool:
    """Wait (at most *timeout*, default the configured flush timeout) for delivery.

    Whatever a backend has not taken by then is spooled. Returns True when all was
    delivered in time.
    """
    rt = _runtime
    if rt is None:
        return True
    budget = rt.config.flush_timeout_s if timeout is None else timeout
    deadline = time.monotonic() + budget
    if rt.capture_threads:
        rt.wait_for_captures(deadline)
    return rt.dispatcher.flush(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    # The parent's worker threads do not exist in the child: start afresh there.
    global _runtime, _runtime_lock, _implicit, _active_lock
    _runtime = None
    _runtime_lock = threading.Lock()
    _active_lock = threading.Lock()
    _implicit = None
    _active_tasks.clear()
    _active_runs.clear()


_flush_all = flush

os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit() -> None:
    with contextlib.suppress(Exception):
        shutdown()


def _emit(event: Event) -> None:
    rt = get_runtime()
    if rt is not None:
        rt.submit(event)


# ---------------------------------------------------------------------------
# ambient context
# ---------------------------------------------------------------------------

_run_var: contextvars.ContextVar[RunHandle | None] = contextvars.ContextVar(
    "flowrecord_run", default=None
)
_task_var: contextvars.ContextVar[TaskHandle | None] = contextvars.ContextVar(
    "flowrecord_task", default=None
)
# Open tasks and runs of this process: a thread the user started inside a task has
# an empty context; when exactly one task is open, that thread logs into it.
_active_tasks: dict[str, TaskHandle] = {}
_active_runs: dict[str, RunHandle] = {}
_active_lock = threading.Lock()
_implicit: RunHandle | None = None
_implicit_error: str | None = None


def current_task() -> TaskHandle | None:
    """The task open in this context (or the only one open in this process)."""
    handle = _task_var.get()
    if handle is not None and not handle._closed:
        return handle
    if len(_active_tasks) == 1:
        with contextlib.suppress(StopIteration, RuntimeError):
            return next(iter(_active_tasks.values()))
    return None


def current_run() -> RunHandle | None:
    """The run open in this context (or the only one open in this process)."""
    handle = _run_var.get()
    if handle is not None:
        return handle
    task_handle = current_task()
    if task_handle is not None:
        return task_handle.run
    if len(_active_runs) == 1:
        with contextlib.suppress(StopIteration, RuntimeError):
            return next(iter(_active_runs.values()))
    return None


def _target() -> tuple[str, str | None]:
    """(run_id, task_id) that a logging call writes to, opening an implicit run if needed."""
    task_handle = current_task()
    if task_handle is not None:
        return task_handle.run.run_id, task_handle.task_id
    run_handle = current_run()
    if run_handle is None:
        run_handle = _open_implicit_run()
    return run_handle.run_id, None


def _open_implicit_run() -> RunHandle:
    global _implicit
    with _active_lock:
        if _implicit is not None:
            return _implicit
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    handle = start_run(
        script or "python",
        run_key=new_event_id(),
        orchestrator="python",
        _implicit=True,
        activate=False,
    )
    with _active_lock:
        _implicit = handle
    previous_hook = sys.excepthook

    def _hook(exc_type: Any, exc: Any, tb: Any) -> None:
        global _implicit_error
        _implicit_error = f"{exc_type.__name__}: {exc}"
        previous_hook(exc_type, exc, tb)

    sys.excepthook = _hook
    return handle


def _end_implicit_run() -> None:
    global _implicit
    handle = _implicit
    if handle is None:
        return
    _implicit = None
    state = State.FAILED if _implicit_error else State.SUCCEEDED
    end_run(handle, state=state, error=_implicit_error)


# ---------------------------------------------------------------------------
# runs and tasks
# ---------------------------------------------------------------------------


def start_run(
    pipeline: str,
    run_key: str | None = None,
    *,
    orchestrator: str = "python",
    tags: Mapping[str, Any] | None = None,
    activate: bool = True,
    _implicit: bool = False,
) -> RunHandle:
    """Open (or join) the run *run_key* of *pipeline* and make it current.

    Every process that opens the same (orchestrator, pipeline, run_key) gets the
    same ``run_id``; the store merges them.

    >>> import flowrecord
    >>> run = flowrecord.start_run("nightly", "2026-11-22")
    >>> flowrecord.end_run(run)
    """
    _check_name("pipeline", pipeline)
    key = run_key if run_key is not None else new_event_id()
    handle = RunHandle(
        run_id=run_id_for(orchestrator, pipeline, key),
        orchestrator=orchestrator,
        pipeline=pipeline,
        run_key=str(key),
        implicit=_implicit,
    )
    with _active_lock:
        _active_runs[handle.run_id] = handle
    if activate:
        _run_var.set(handle)
    _emit(
        RunEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=handle.run_id,
            state=State.STARTED,
            orchestrator=orchestrator,
            pipeline=pipeline,
            run_key=handle.run_key,
            tags=_redacted_tags(tags or {}),
        )
    )
    _capture_code_once(handle)
    return handle


def end_run(
    run: RunHandle | None = None,
    *,
    state: State | str = State.SUCCEEDED,
    error: str | BaseException | None = None,
) -> None:
    """Close *run* (default: the current one) with its final *state*."""
    handle = run or current_run()
    if handle is None:
        return
    final = State(state)
    with _active_lock:
        _active_runs.pop(handle.run_id, None)
    if _run_var.get() is handle:
        _run_var.set(None)
    _emit(
        RunEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=handle.run_id,
            state=final,
            orchestrator=handle.orchestrator,
            pipeline=handle.pipeline,
            run_key=handle.run_key,
            error=_error_text(error),
        )
    )


@contextlib.contextmanager
def run(
    pipeline: str,
    run_key: str | None = None,
    *,
    orchestrator: str = "python",
    tags: Mapping[str, Any] | None = None,
) -> Iterator[RunHandle]:
    """A run as a context manager: failed if the body raises, else succeeded.

    >>> import flowrecord
    >>> with flowrecord.run("demo") as r:
    ...     flowrecord.log_metric("auc", 0.91)
    """
    token_prev = _run_var.get()
    handle = start_run(pipeline, run_key, orchestrator=orchestrator, tags=tags)
    try:
        yield handle
    except BaseException as exc:
        end_run(handle, state=State.FAILED, error=exc)
        raise
    else:
        end_run(handle, state=State.SUCCEEDED)
    finally:
        _run_var.set(token_prev)


def start_task(
    name: str,
    *,
    run: RunHandle | None = None,
    try_number: int = 1,
    map_index: int | None = None,
    attributes: Mapping[str, Any] | None = None,
    sample_system: bool | None = None,
    activate: bool = True,
) -> TaskHandle:
    """Open one attempt of task *name* in *run* (default: the current run) and make it current.

    Starts the system-usage sampler for this process.
    """
    _check_name("task name", name)
    run_handle = run or current_run() or _open_implicit_run()
    now = time.time()
    handle = TaskHandle(
        task_id=task_id_for(run_handle.run_id, name, try_number, map_index),
        run=run_handle,
        name=name,
        try_number=int(try_number),
        map_index=map_index,
        started_at=now,
        attributes=dict(attributes or {}),
        _t0=time.perf_counter(),
    )
    rt = get_runtime()
    if rt is not None:
        sampling = rt.config.system_sampling if sample_system is None else sample_system
        if sampling:
            handle._sampler = _start_sampler(rt.config.sample_interval_s)
    with _active_lock:
        _active_tasks[handle.task_id] = handle
    if activate:
        _task_var.set(handle)
    _emit(_task_event(handle, State.STARTED, now))
    return handle


def end_task(
    task: TaskHandle | None = None,
    *,
    state: State | str = State.SUCCEEDED,
    error: str | BaseException | None = None,
    flush: bool = False,
) -> None:
    """Close *task* (default: the current one) with its final *state*.

    :param flush: wait (bounded by the configured flush timeout) until the task's
        events reached the backends or the spool; integrations whose process ends
        with the task set it.
    """
    handle = task or current_task()
    if handle is None or handle._closed:
        return
    handle._closed = True
    now = time.time()
    duration = time.perf_counter() - handle._t0
    with _active_lock:
        _active_tasks.pop(handle.task_id, None)
    if _task_var.get() is handle:
        _task_var.set(None)
    sampler, handle._sampler = handle._sampler, None
    if sampler is not None:
        try:
            summary, samples = sampler.stop()
            _emit(
                SystemUsageEvent(
                    event_id=new_event_id(),
                    ts=now,
                    run_id=handle.run.run_id,
                    task_id=handle.task_id,
                    summary=summary,
                    samples=tuple(samples),
                )
            )
        except Exception as exc:
            log.warning("flowrecord: system sampling failed: %s", exc)
    _emit(_task_event(handle, State(state), now, duration=duration, error=_error_text(error)))
    if flush:
        _flush_all()


@contextlib.contextmanager
def task(
    name: str,
    *,
    run: RunHandle | None = None,
    try_number: int = 1,
    map_index: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[TaskHandle]:
    """A task attempt as a context manager: failed if the body raises, else succeeded.

    >>> import flowrecord
    >>> with flowrecord.run("demo"), flowrecord.task("train"):
    ...     flowrecord.log_metric("loss", 0.1, step=1)
    """
    previous = _task_var.get()
    handle = start_task(
        name, run=run, try_number=try_number, map_index=map_index, attributes=attributes
    )
    try:
        yield handle
    except BaseException as exc:
        end_task(handle, state=State.FAILED, error=exc)
        raise
    else:
        end_task(handle, state=State.SUCCEEDED)
    finally:
        _task_var.set(previous)


def _task_event(
    handle: TaskHandle,
    state: State,
    ts: float,
    *,
    duration: float | None = None,
    error: str | None = None,
) -> TaskEvent:
    return TaskEvent(
        event_id=new_event_id(),
        ts=ts,
        run_id=handle.run.run_id,
        task_id=handle.task_id,
        state=state,
        name=handle.name,
        try_number=handle.try_number,
        map_index=handle.map_index,
        started_at=handle.started_at,
        duration_s=duration,
        error=error,
        host=_HOST,
        pid=os.getpid(),
        attributes=_task_attributes(handle),
    )


def _task_attributes(handle: TaskHandle) -> dict[str, str]:
    # The start and the end event carry the same attributes: redact them once.
    if handle._redacted is None:
        handle._redacted = _redacted_tags(handle.attributes) if handle.attributes else {}
    return handle._redacted


def _hostname() -> str:
    # What socket.gethostname() says (query.py compares with it), without
    # importing socket at ``import flowrecord`` where uname can tell.
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


_HOST = _hostname()


def _error_text(error: str | BaseException | None) -> str | None:
    if error is None:
        return None
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text[:8192]


def _start_sampler(interval: float) -> Any:
    try:
        from flowrecord.collectors.system import SystemSampler

        sampler = SystemSampler(interval)
        sampler.start()
        return sampler
    except Exception as exc:
        log.debug("flowrecord: no system sampling: %s", exc)
        return None


def _capture_code_once(handle: RunHandle) -> None:
    """Capture code and environment once per run, in the background.

    Across processes, a marker file in the home decides who captures; the store
    keeps one snapshot per run in any case.
    """
    rt = get_runtime()
    if rt is None or not rt.config.capture_code or handle.run_id in rt._code_runs:
        return
    rt._code_runs.add(handle.run_id)
    marker_dir = rt.config.home / "code"
    try:
        marker_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker_dir / handle.run_id, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        return
    except OSError:
        pass  # unwritable home: capture anyway, the store dedupes per run

    def _capture() -> None:
        try:
            from flowrecord.collectors.code import capture_code

            info = capture_code()
            # submit to this runtime: at exit the global one is already gone
            rt.submit(
                CodeSnapshotEvent(
                    event_id=new_event_id(),
                    ts=time.time(),
                    run_id=handle.run_id,
                    commit=info.get("commit"),
                    branch=info.get("branch"),
                    dirty=info.get("dirty"),
                    diff=info.get("diff"),
                    diff_truncated=bool(info.get("diff_truncated")),
                    repo_root=info.get("repo_root"),
                    python=info.get("python", ""),
                    platform=info.get("platform", ""),
                    packages=info.get("packages", {}),
                    environment=info.get("environment", {}),
                    untracked=tuple(info.get("untracked") or ()),
                    warnings=tuple(info.get("warnings", ())),
                )
            )
        except Exception as exc:
            log.warning("flowrecord: code snapshot failed: %s", exc)

    thread = threading.Thread(target=_capture, name="flowrecord-code", daemon=True)
    rt.capture_threads.append(thread)
    thread.start()


# ---------------------------------------------------------------------------
# logging calls
# ---------------------------------------------------------------------------


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {MAX_KEY_LENGTH}")


def _as_float(key: str, value: object) -> float:
    if type(value) is int:  # the common case, before the slower ABC checks
        return float(value)
    if isinstance(value, bool):
        return float(value)
    import numbers  # not at import: a metric is an int or a float nearly always

    if isinstance(value, numbers.Real):
        return float(value)
    # numpy scalars and 0-d arrays / tensors expose __float__; strings do not count.
    if not isinstance(value, str | bytes) and hasattr(value, "__float__"):
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    raise TypeError(f"metric {key!r} must be a number, not {type(value).__name__}: {value!r:.80}")


# Metric keys already checked: a training loop logs the same few keys many times.
_checked_keys: set[str] = set()


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record one metric point in the current task (or run).

    NaN and infinities are recorded as such (a diverging loss is worth knowing).

    :raises TypeError: *key* is not a str or *value* is not a number.
    :raises ValueError: *key* is empty or longer than 250 characters.

    >>> import flowrecord
    >>> flowrecord.log_metric("auc", 0.91)
    """
    # The hot path of a training loop: each step below has a fast case first.
    if type(key) is not str or key not in _checked_keys:
        _check_key(key)
    number = value if type(value) is float else _as_float(key, value)
    if step is not None and not isinstance(step, int):
        raise TypeError(f"step must be an int, not {type(step).__name__}")
    handle = _task_var.get()
    task_id: str | None
    if handle is not None and not handle._closed:
        run_id, task_id = handle.run.run_id, handle.task_id
    else:
        run_id, task_id = _target()
    rt = _runtime or get_runtime()
    if rt is not None:
        rt.dispatcher.submit((new_event_id(), time.time(), run_id, task_id, key, number, step))


def _check_key(key: object) -> None:
    _check_name("metric key", key)
    if len(_checked_keys) < 10_000:  # bounded: keys made from data must not grow it forever
        _checked_keys.add(key)  # type: ignore[arg-type]


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Record several metric points at once (all checked before any is recorded)."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, not {type(metrics).__name__}")
    checked = []
    for key, value in metrics.items():
        if type(key) is not str or key not in _checked_keys:
            _check_key(key)
        checked.append((key, value if type(value) is float else _as_float(key, value)))
    if step is not None and not isinstance(step, int):
        raise TypeError(f"step must be an int, not {type(step).__name__}")
    run_id, task_id = _target()
    now = time.time()
    rt = _runtime or get_runtime()
    if rt is None:
        return
    submit = rt.dispatcher.submit
    for key, number in checked:
        submit((new_event_id(), now, run_id, task_id, key, number, step))


def _render_param(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    kind = type(value)
    if kind is int or kind is float:  # what json.dumps writes for them, without it
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    try:
        import json

        return json.dumps(value, default=repr, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _param_event(
    run_id: str, task_id: str | None, key: str, value: object, limit: int
) -> ParamEvent:
    from flowrecord.collectors.secrets import redact, redact_value

    # Redact the object, then its text form too: an object's repr may carry a DSN.
    text = redact_value(_render_param(redact(key, value)))
    truncated = False
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        text = text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")
        truncated = True
        warnings.warn(
            f"param {key!r} is longer than {limit} bytes and was cut",
            FlowrecordWarning,
            stacklevel=3,
        )
    return ParamEvent(
        event_id=new_event_id(),
        ts=time.time(),
        run_id=run_id,
        task_id=task_id,
        key=key,
        value=text,
        truncated=truncated,
    )


def log_param(key: str, value: object) -> None:
    """Record a parameter; secrets are redacted, values over 64 KiB are cut (with a warning).

    >>> import flowrecord
    >>> flowrecord.log_param("learning_rate", 0.01)
    """
    _check_name("param key", key)
    rt = get_runtime()
    limit = rt.config.max_param_bytes if rt else 65536
    run_id, task_id = _target()
    _emit(_param_event(run_id, task_id, key, value, limit))


def log_params(params: Mapping[str, object]) -> None:
    """Record several parameters (keys checked before any is recorded)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, not {type(params).__name__}")
    for key in params:
        _check_name("param key", key)
    rt = get_runtime()
    limit = rt.config.max_param_bytes if rt else 65536
    run_id, task_id = _target()
    for key, value in params.items():
        _emit(_param_event(run_id, task_id, key, value, limit))


# Redacted text of (rules version, key, type, value) for scalar tag values: an
# orchestrator's task attributes (DAG id, operator, queue, pool, host...) repeat
# from task to task, and redacting each anew was a large share of the time an
# Airflow task spends in flowrecord's hooks (bench_airflow.py prints that time).
_redacted_cache: dict[tuple[int, str, type, object], str] = {}
_CACHED_TYPES = frozenset({str, int, float, bool, type(None)})
_CACHE_LIMIT = 4096


def _redacted_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    if not tags:
        return {}
    from flowrecord.collectors.secrets import redact, redact_value, rules_version

    version = rules_version()
    cache = _redacted_cache
    out = {}
    for key, value in tags.items():
        k = str(key)
        kind = type(value)
        if kind in _CACHED_TYPES and (kind is not str or len(value) <= 256):
            ck = (version, k, kind, value)
            text = cache.get(ck)
            if text is None:
                text = redact_value(_render_param(redact(k, value)))
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[ck] = text
            out[k] = text
        else:
            out[k] = redact_value(_render_param(redact(k, value)))
    return out


def set_tags(tags: Mapping[str, Any] | None = None, /, **more: Any) -> None:
    """Set tags on the current task (or on the run outside a task); values are redacted.

    >>> import flowrecord
    >>> flowrecord.set_tags({"team": "fraud"}, owner="ana")
    """
    merged = {**(tags or {}), **more}
    for key in merged:
        _check_name("tag key", key)
    run_id, task_id = _target()
    _emit(
        TagEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run_id,
            task_id=task_id,
            tags=_redacted_tags(merged),
        )
    )


def log_dataset(
    obj_or_path: object,
    name: str | None = None,
    role: str = "input",
    uri: str | None = None,
    *,
    fingerprint: str | None = None,
    data_type: str | None = None,
) -> DatasetEvent:
    """Record that the current task read (``role="input"``) or wrote (``"output"``) a dataset.

    Data frames (pandas, polars), Arrow tables and files or directories are
    fingerprinted over their full content, with schema, row count and a column
    profile. Any other object is linked by name and type only. An output with a
    history of row counts is checked for a sudden change of volume.

    :param fingerprint: a content id the caller already has (an orchestrator's own
        artifact hash, say); the object is then not read at all.
    :param data_type: what to call the object's type in the record.
    :param uri: where the dataset lives (a str or a path); a password in it is
        redacted before any backend sees it.
    :raises TypeError: *uri*, *fingerprint* or *data_type* is not a non-empty str.

    >>> import flowrecord, pandas as pd
    >>> flowrecord.log_dataset(pd.DataFrame({"x": [1, 2]}), name="train", role="output")
    """
    if role not in ("input", "output"):
        raise ValueError(f"role must be 'input' or 'output', not {role!r}")
    if name is not None:
        _check_name("dataset name", name)
    if uri is not None:
        uri = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
        if not isinstance(uri, str) or not uri:
            raise TypeError(f"uri must be a non-empty str or path, not {uri!r}")
    if data_type is not None and (not isinstance(data_type, str) or not data_type):
        raise TypeError(f"data_type must be a non-empty str, not {data_type!r}")
    run_id, task_id = _target()
    rt = get_runtime()
    from flowrecord.collectors.datasets import DatasetDescription, describe

    try:
        if fingerprint is not None:
            if not isinstance(fingerprint, str) or not fingerprint:
                raise TypeError("fingerprint must be a non-empty str")
            info = DatasetDescription(
                data_type=data_type or type(obj_or_path).__name__,
                fingerprint=fingerprint,
                schema=(),
                row_count=None,
                size_bytes=None,
                profile={},
                warnings=(),
                uri=None,
            )
        else:
            info = describe(obj_or_path, with_profile=rt.config.profile_datasets if rt else True)
            if data_type is not None:
                info = dataclasses.replace(info, data_type=data_type)
    except TypeError:
        raise
    except Exception as exc:  # a collector bug must not fail the task
        log.warning("flowrecord: could not describe dataset: %s", exc)
        info = DatasetDescription(
            data_type=type(obj_or_path).__name__,
            fingerprint=None,
            schema=(),
            row_count=None,
            size_bytes=None,
            profile={},
            warnings=(f"describe failed: {exc}",),
            uri=None,
        )
    from flowrecord.collectors.secrets import redact_value

    # A connection URI may carry a password (``postgresql://u:pw@h/db``): neither
    # the URI nor a name made from it may take it to a backend.
    resolved_name = redact_value(name or _default_dataset_name(obj_or_path, info))
    resolved_uri = uri or info.uri
    event = DatasetEvent(
        event_id=new_event_id(),
        ts=time.time(),
        run_id=run_id,
        task_id=task_id,
        name=resolved_name,
        role=role,
        uri=redact_value(resolved_uri) if resolved_uri else resolved_uri,
        data_type=info.data_type,
        fingerprint=info.fingerprint,
        schema=tuple(info.schema),
        row_count=info.row_count,
        size_bytes=info.size_bytes,
        profile=info.profile,
        warnings=tuple(info.warnings),
    )
    _emit(event)
    if role == "output" and info.row_count is not None and rt is not None:
        _check_volume(rt, event)
    return event


def _default_dataset_name(obj: object, info: Any) -> str:
    if isinstance(obj, str | os.PathLike) and info.data_type in ("file", "directory"):
        return Path(os.fspath(obj)).name or os.fspath(obj)
    if info.fingerprint:
        return f"{info.data_type}:{info.fingerprint.split(':')[-1][:12]}"
    return info.data_type


def _check_volume(rt: Runtime, event: DatasetEvent) -> None:
    store = rt.local_store()
    if store is None:
        return
    try:
        # the store answers newest first; the check reads history oldest first
        history = list(reversed(store.dataset_row_history(event.name, before=event.ts)))
        from flowrecord.collectors.checks import check_volume

        result = check_volume(int(event.row_count or 0), history)
    except Exception as exc:
        log.debug("flowrecord: volume check skipped: %s", exc)
        return
    if any(str(c.get("reason", "")).startswith("insufficient history") for c in result.checks):
        return  # nothing to compare with yet: recording "passed" would be noise
    _emit_validation(event.run_id, event.task_id, event.name, event.fingerprint, result, "record")


def _emit_validation(
    run_id: str,
    task_id: str | None,
    dataset_name: str,
    fingerprint: str | None,
    result: ValidationResult,
    policy: str,
) -> ValidationEvent:
    event_id = new_event_id()
    event = ValidationEvent(
        event_id=event_id,
        ts=time.time(),
        run_id=run_id,
        task_id=task_id,
        dataset_name=dataset_name,
        fingerprint=fingerprint,
        validator=result.validator,
        schema_name=result.schema_name,
        passed=result.passed,
        policy=policy,
        checks=tuple(result.checks),
        failure_count=result.failure_count,
        failure_sample=tuple(result.failure_sample),
        error=result.error,
        validation_id=event_id,
    )
    _emit(event)
    return event


def record_validation(
    result: ValidationResult,
    name: str,
    *,
    fingerprint: str | None = None,
    policy: str = "record",
) -> ValidationEvent:
    """Record a validation computed outside :func:`validate` (a check of your own,
    a retraining trigger), with the same shape and ids as every other.

    :param name: the dataset (or subject) the result is about.
    :param fingerprint: the dataset version it was computed on, when known.
    :param policy: as for :func:`validate`; ``fail`` raises
        :class:`~flowrecord.collectors.validation.ValidationFailed` after recording
        a failed result, ``warn`` warns.
    :raises TypeError: *result* is not a ``ValidationResult``.
    :raises ValueError: *policy* is not ``record``, ``warn`` or ``fail``.
    """
    from flowrecord.collectors.validation import ValidationResult as _Result

    if not isinstance(result, _Result):
        raise TypeError(
            f"record_validation expects a ValidationResult, not {type(result).__name__}"
        )
    if policy not in ("record", "warn", "fail"):
        raise ValueError(f"policy must be 'record', 'warn' or 'fail', not {policy!r}")
    if not isinstance(name, str) or not name:
        raise ValueError("record_validation needs a non-empty dataset name")
    run_id, task_id = _target()
    event = _emit_validation(run_id, task_id, name, fingerprint, result, policy)
    _apply_policy(name, result, policy)
    return event


def _apply_policy(dataset_name: str, result: ValidationResult, policy: str) -> None:
    if result.passed or policy == "record":
        return
    from flowrecord.collectors.validation import ValidationFailed

    failure = ValidationFailed(dataset_name, result)
    if policy == "warn":
        warnings.warn(str(failure), FlowrecordWarning, stacklevel=3)
    else:
        raise failure


def validate(
    obj: object,
    schema: object,
    name: str | None = None,
    *,
    policy: str | None = None,
) -> ValidationResult:
    """Validate a data frame against a pandera schema and record the result.

    :param policy: ``record`` (default: only record), ``warn`` (also warn) or
        ``fail`` (raise :class:`~flowrecord.collectors.validation.ValidationFailed`).
    :raises TypeError: *schema* is not a pandera schema or model, or does not fit *obj*.

    >>> import flowrecord, pandas as pd, pandera.pandas as pa
    >>> schema = pa.DataFrameSchema({"x": pa.Column(int, pa.Check.ge(0))})
    >>> flowrecord.validate(pd.DataFrame({"x": [1, 2]}), schema, name="train").passed
    True
    """
    from flowrecord.collectors.validation import check_policy, run_pandera, schema_name

    rt = get_runtime()
    resolved_policy = check_policy(policy or (rt.config.validation_policy if rt else "record"))
    result = run_pandera(obj, schema)
    run_id, task_id = _target()
    fingerprint = None
    with contextlib.suppress(Exception):
        from flowrecord.collectors.fingerprint import fingerprint as _fp

        fingerprint = _fp(obj)
    dataset_name = name or schema_name(schema) or type(obj).__name__
    _emit_validation(run_id, task_id, dataset_name, fingerprint, result, resolved_policy)
    _apply_policy(dataset_name, result, resolved_policy)
    return result


def check_drift(
    obj: object,
    reference: object,
    name: str | None = None,
    *,
    policy: str | None = None,
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.1,
) -> ValidationResult:
    """Compare *obj* with a *reference* (a profile dict, a frame, or a recorded dataset's
    fingerprint) by PSI and KS per numeric column, and record the result.
    """
    from flowrecord.collectors.checks import check_drift as _drift
    from flowrecord.collectors.validation import check_policy

    rt = get_runtime()
    resolved_policy = check_policy(policy or (rt.config.validation_policy if rt else "record"))
    ref_profile = _reference_profile(rt, reference)
    result = _drift(obj, ref_profile, psi_threshold=psi_threshold, ks_threshold=ks_threshold)
    run_id, task_id = _target()
    fingerprint = None
    with contextlib.suppress(Exception):
        from flowrecord.collectors.fingerprint import fingerprint as _fp

        fingerprint = _fp(obj)
    dataset_name = name or "dataset"
    _emit_validation(run_id, task_id, dataset_name, fingerprint, result, resolved_policy)
    _apply_policy(dataset_name, result, resolved_policy)
    return result


def _reference_profile(rt: Runtime | None, reference: object) -> dict[str, Any]:
    if isinstance(reference, Mapping):
        return dict(reference)
    if isinstance(reference, str):
        store = rt.local_store() if rt else None
        if store is None:
            raise LookupError("a reference given by fingerprint needs the local store")
        rows = store.query(
            "SELECT profile FROM datasets WHERE fingerprint = ? OR name = ? "
            "ORDER BY ts DESC LIMIT 1",
            (reference, reference),
        )
        if not rows or not rows[0]["profile"]:
            raise LookupError(f"no recorded dataset {reference!r} with a profile")
        import json

        return dict(json.loads(rows[0]["profile"]))
    from flowrecord.collectors.fingerprint import to_arrow
    from flowrecord.collectors.profile import profile

    return profile(to_arrow(reference))


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> ArtifactEvent:
    """Record a file or directory the task produced (size and content fingerprint).

    :raises FileNotFoundError: *path* does not exist.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"artifact {str(p)!r} does not exist")
    if name is not None:
        _check_name("artifact name", name)
    run_id, task_id = _target()
    fingerprint = None
    size = None
    try:
        from flowrecord.collectors.fingerprint import fingerprint_path

        fingerprint = fingerprint_path(p)
        size = (
            p.stat().st_size
            if p.is_file()
            else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        )
    except Exception as exc:
        log.warning("flowrecord: could not fingerprint artifact %s: %s", p, exc)
    event = ArtifactEvent(
        event_id=new_event_id(),
        ts=time.time(),
        run_id=run_id,
        task_id=task_id,
        name=name or p.name,
        path=str(p.resolve()),
        size_bytes=size,
        fingerprint=fingerprint,
    )
    _emit(event)
    return event


def record_gate_decision(
    *,
    model: str,
    version: str,
    gate: str,
    passed: bool,
    applied: bool,
    reasons: tuple[str, ...],
    evidence: Mapping[str, Any],
    decision_id: str | None = None,
) -> GateDecisionEvent:
    """Record a promotion gate's decision (used by :mod:`flowrecord.lifecycle`)."""
    run_id, task_id = _target()
    event_id = new_event_id()
    event = GateDecisionEvent(
        event_id=event_id,
        ts=time.time(),
        run_id=run_id,
        task_id=task_id,
        decision_id=decision_id or stable_id("gate", event_id),
        model=model,
        version=version,
        gate=gate,
        passed=passed,
        applied=applied,
        reasons=tuple(reasons),
        evidence=evidence,
    )
    _emit(event)
    return event
