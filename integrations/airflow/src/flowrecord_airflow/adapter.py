"""Translate what Airflow says about a task instance into flowrecord calls.

The listener (:mod:`flowrecord_airflow.listener`) hands every hook to the
functions here. They name things the way Airflow does — the DAG is the pipeline,
the DAG run's ``run_id`` is the run key, the ``task_id`` (with its task-group
prefix) is the task name, the try number and map index complete the attempt —
and they find what a task read and wrote: the Assets in its inlets and outlets
(with the ``extra`` of the asset events it emitted) and, for TaskFlow tasks, the
resolved arguments and the return value. Data frames and Arrow tables become
datasets, scalar arguments become params, a returned dict of numbers becomes
metrics. Fingerprints, profiles, redaction and delivery all happen in core.

Nothing here may fail or alter the user's task: each public function catches
and logs its own errors (logger ``flowrecord``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import numbers
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from flowrecord import recorder
from flowrecord.events import State

if TYPE_CHECKING:
    from flowrecord.recorder import RunHandle, TaskHandle

__all__ = [
    "ORCHESTRATOR",
    "TaskIdentity",
    "close_run",
    "dataset_name",
    "finish_task",
    "flush_before_stop",
    "identity_of",
    "start_task",
]

log = logging.getLogger("flowrecord")

#: The ``orchestrator`` of every run recorded from Airflow.
ORCHESTRATOR = "airflow"

#: Airflow task states (their ``.value``) and the flowrecord state each one ends in.
_FINAL_STATES = {
    "success": State.SUCCEEDED,
    "failed": State.FAILED,
    "up_for_retry": State.RETRYING,
    "skipped": State.SKIPPED,
    "upstream_failed": State.SKIPPED,
}


# ---------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskIdentity:
    """Who a task instance attempt is, in Airflow's words."""

    dag_id: str
    """The DAG: flowrecord's pipeline."""
    run_id: str
    """The DAG run's id: flowrecord's run key."""
    task_id: str
    """The task id, with its task-group prefix: flowrecord's task name."""
    try_number: int
    map_index: int | None
    """The map index of a mapped task, None for an unmapped one (Airflow's -1)."""

    @property
    def key(self) -> tuple[str, str, str, int, int | None]:
        return (self.dag_id, self.run_id, self.task_id, self.try_number, self.map_index)


def identity_of(ti: Any) -> TaskIdentity:
    """The identity of a task instance (a runtime one in a task, a model one elsewhere)."""
    map_index = getattr(ti, "map_index", -1)
    return TaskIdentity(
        dag_id=str(ti.dag_id),
        run_id=str(ti.run_id),
        task_id=str(ti.task_id),
        try_number=int(getattr(ti, "try_number", 1) or 0),
        map_index=None if map_index is None or int(map_index) < 0 else int(map_index),
    )


def dataset_name(dag_id: str, task_id: str, key: str | None = None) -> str:
    """The name flowrecord gives the value a task returned (or pushed under *key*).

    A downstream task that receives it as an argument records the same name, so
    producer and consumer meet on one dataset.
    """
    if key in (None, "", "return_value"):
        return f"{dag_id}.{task_id}"
    return f"{dag_id}.{task_id}.{key}"


# ---------------------------------------------------------------------------
# the attempts open in this process
# ---------------------------------------------------------------------------

_open: dict[tuple[str, str, str, int, int | None], TaskHandle] = {}
_open_lock = threading.Lock()
#: The runs this process opened, so that its later tasks do not open them again.
_runs: dict[tuple[str, str], RunHandle] = {}
#: DAG runs whose tasks ended in this very process without waiting for delivery.
_unflushed: set[tuple[str, str]] = set()


def _forget_after_fork() -> None:
    # A forked task process must not close the parent's attempts.
    global _open_lock
    _open.clear()
    _returned.clear()
    _pull_return.clear()
    _runs.clear()
    _unflushed.clear()
    _open_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _run_of(ident: TaskIdentity, ti: Any) -> RunHandle:
    """The run of *ident*, opened once per process (every process opens the same run)."""
    key = (ident.dag_id, ident.run_id)
    run = _runs.get(key)
    if run is None:
        run = recorder.start_run(
            ident.dag_id,
            ident.run_id,
            orchestrator=ORCHESTRATOR,
            tags=_run_tags(_context_of(ti)),
            activate=False,
        )
        _runs[key] = run
    return run


def open_attempt(ident: TaskIdentity) -> TaskHandle | None:
    """The handle of *ident* if this process opened it and has not closed it."""
    with _open_lock:
        return _open.get(ident.key)


# ---------------------------------------------------------------------------
# task start
# ---------------------------------------------------------------------------


def start_task(ti: Any) -> None:
    """Open the run (idempotent) and the attempt of *ti*, and record what it reads.

    Called in the task's own process, after its templates were rendered and
    before it executes, so the system sampler measures the task and the
    attempt is the current task of the thread that runs the user's code.
    """
    try:
        ident = identity_of(ti)
        handle = open_attempt(ident)
        if handle is not None:
            # A deferred task resuming in this process: same attempt, keep it.
            return
        run = _run_of(ident, ti)
        handle = recorder.start_task(
            ident.task_id,
            run=run,
            try_number=ident.try_number,
            map_index=ident.map_index,
            attributes=_task_attributes(ti, ident),
            activate=True,
        )
        with _open_lock:
            _open[ident.key] = handle
    except Exception as exc:
        log.warning("flowrecord: could not open the record of task %s: %s", _label(ti), exc)
        return
    _record_inputs(ti, ident)
    _guarded(_capture_return_value, ti, ident)


def _context_of(ti: Any) -> Mapping[str, Any]:
    # Airflow rebuilds part of the context on every call (about a millisecond):
    # ask for it only where it is needed.
    getter = getattr(ti, "get_template_context", None)
    if getter is None:
        return {}
    try:
        return getter() or {}
    except Exception as exc:  # no context in this process: record without it
        log.debug("flowrecord: no template context for %s: %s", _label(ti), exc)
        return {}


def _run_tags(context: Mapping[str, Any]) -> dict[str, Any]:
    # dag_id and run_id are already the run's pipeline and run key.
    tags: dict[str, Any] = {}
    dag_run = context.get("dag_run")
    for attr in ("run_type", "logical_date", "triggered_by"):
        value = getattr(dag_run, attr, None)
        if value is not None:
            tags[f"airflow.{attr}"] = str(getattr(value, "value", value))
    return tags


def _task_attributes(ti: Any, ident: TaskIdentity) -> dict[str, Any]:
    task = getattr(ti, "task", None)
    attributes: dict[str, Any] = {
        "dag_id": ident.dag_id,
        "task_id": ident.task_id,
        "run_id": ident.run_id,
        "try_number": ident.try_number,
        "map_index": -1 if ident.map_index is None else ident.map_index,
    }
    if task is None:
        return attributes
    optional = {
        "operator": getattr(task, "task_type", None) or type(task).__name__,
        "max_tries": getattr(ti, "max_tries", None),
        "queue": getattr(task, "queue", None),
        "pool": getattr(task, "pool", None),
        "hostname": getattr(ti, "hostname", None),
        "rendered_map_index": getattr(ti, "rendered_map_index", None),
    }
    group = getattr(task, "task_group", None)
    group_id = getattr(group, "group_id", None)
    if group_id:
        optional["task_group"] = group_id
    if getattr(task, "is_setup", False):
        optional["role"] = "setup"
    elif getattr(task, "is_teardown", False):
        optional["role"] = "teardown"
    attributes.update({k: v for k, v in optional.items() if v is not None})
    return attributes


# ---------------------------------------------------------------------------
# task end
# ---------------------------------------------------------------------------


def finish_task(ti: Any, hook_state: str, error: object = None) -> None:
    """Record what *ti* wrote and close its attempt (flushing, bounded in time).

    :param hook_state: ``success``, ``failed`` or ``skipped``: which hook fired.
        A failed attempt that Airflow will retry reads ``up_for_retry`` on the
        task instance and is recorded as ``retrying``.
    """
    try:
        ident = identity_of(ti)
    except Exception as exc:
        log.warning("flowrecord: task instance without identity: %s", exc)
        return
    with _open_lock:
        handle = _open.pop(ident.key, None)
    if handle is None:
        # Not opened in this process: the scheduler saw a task die, or someone set
        # the state through the API. Record the outcome the orchestrator reports.
        _record_outside_outcome(ti, ident, hook_state, error)
        return
    state = _state_for(ti, hook_state)
    if state is State.SUCCEEDED:
        _record_outputs(ti, ident)
    _returned.pop(ident.key, None)
    _pull_return.discard(ident.key)
    try:
        # A task process leaves with os._exit, so its events must be out before it
        # does (bounded wait). Under dag.test() the task ran in the caller's
        # process, which goes on: the writer delivers them in its own time, in
        # bigger batches, and the DAG run's end flushes.
        flush = not _in_process_task()
        recorder.end_task(handle, state=state, error=_error_of(error), flush=flush)
        if not flush:
            _unflushed.add((ident.dag_id, ident.run_id))
    except Exception as exc:
        log.warning("flowrecord: could not close the record of task %s: %s", _label(ti), exc)


def _in_process_task() -> bool:
    """Whether this task ran inside the process that asked for it (``dag.test()``)."""
    try:
        from airflow.sdk.execution_time import task_runner

        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    except Exception:
        return False
    return type(comms).__name__ == "InProcessSupervisorComms"


def _state_for(ti: Any, hook_state: str) -> State:
    if hook_state == "success":
        return State.SUCCEEDED
    if hook_state == "skipped":
        return State.SKIPPED
    ti_state = _state_value(getattr(ti, "state", None))
    if ti_state == "up_for_retry":
        return State.RETRYING
    return State.FAILED


def _state_value(state: object) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


def _error_of(error: object) -> str | BaseException | None:
    if error is None or isinstance(error, BaseException | str):
        return error
    return str(error)


def _record_outside_outcome(ti: Any, ident: TaskIdentity, hook_state: str, error: object) -> None:
    """Close an attempt that its own process did not close (killed, or set by hand)."""
    try:
        state = _state_for(ti, hook_state)
        run = recorder.start_run(
            ident.dag_id, ident.run_id, orchestrator=ORCHESTRATOR, activate=False
        )
        attributes = _task_attributes(ti, ident)
        attributes["recorded_by"] = "orchestrator"
        handle = recorder.start_task(
            ident.task_id,
            run=run,
            try_number=ident.try_number,
            map_index=ident.map_index,
            attributes=attributes,
            sample_system=False,
            activate=False,
        )
        _backdate(handle, getattr(ti, "start_date", None))
        recorder.end_task(handle, state=state, error=_error_of(error))
    except Exception as exc:
        log.warning("flowrecord: could not record the outcome of %s: %s", _label(ti), exc)


def _backdate(handle: TaskHandle, start_date: Any) -> None:
    # The duration of an attempt closed from outside runs from Airflow's start date.
    try:
        started = float(start_date.timestamp())
    except (AttributeError, TypeError, ValueError):
        return
    elapsed = max(0.0, time.time() - started)
    handle.started_at = started
    handle._t0 = time.perf_counter() - elapsed


def flush_before_stop(component: str) -> None:
    """Flush (bounded by FLOWRECORD_FLUSH_TIMEOUT) before an Airflow component exits.

    A task process has flushed at its attempt's end already, unless an attempt
    is still open: a deferred task leaves its process without an end hook.
    """
    with _open_lock:
        still_open = bool(_open)
    if component == "TaskRunnerMarker" and not still_open:
        return
    recorder.flush()


# ---------------------------------------------------------------------------
# DAG run end
# ---------------------------------------------------------------------------


def close_run(dag_run: Any, succeeded: bool, message: str | None = None) -> None:
    """Close the run of *dag_run* with its final state.

    Tasks the scheduler skipped or never started (branching, trigger rules,
    upstream failures) get no task hooks; they are recorded here, once, as
    skipped attempts with try number 0.
    """
    try:
        dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
        run = _runs.pop((dag_id, run_id), None) or recorder.start_run(
            dag_id, run_id, orchestrator=ORCHESTRATOR, activate=False
        )
    except Exception as exc:
        log.warning("flowrecord: could not close the DAG run record: %s", exc)
        return
    failed: list[str] = []
    try:
        for ti in _task_instances(dag_run):
            _record_never_started(run, ti)
            if _state_value(getattr(ti, "state", None)) == "failed":
                failed.append(str(ti.task_id))
    except Exception as exc:
        log.warning("flowrecord: could not record the skipped tasks of %s: %s", run_id, exc)
    try:
        if succeeded:
            recorder.end_run(run, state=State.SUCCEEDED)
        else:
            reason = message or "DAG run failed"
            if failed:
                reason = f"{reason}; failed tasks: {', '.join(sorted(set(failed)))}"
            recorder.end_run(run, state=State.FAILED, error=reason)
        if (dag_id, run_id) in _unflushed:
            # dag.test(): its tasks did not wait for their events (see finish_task);
            # the run's whole record is out when it returns (bounded wait). A
            # scheduler, which ran no task, never waits here.
            _unflushed.discard((dag_id, run_id))
            recorder.flush()
    except Exception as exc:
        log.warning("flowrecord: could not close the DAG run record: %s", exc)


#: The only task instance states close_run looks at: tasks that never ran, and failures.
_CLOSING_STATES = ("skipped", "upstream_failed", "failed")


def _task_instances(dag_run: Any) -> list[Any]:
    """The run's task instances that were skipped, never ran for a failure, or failed."""
    getter = getattr(dag_run, "get_task_instances", None)
    if getter is None:
        return []
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy.orm import object_session

    # Asking the database for these states only: loading every task instance of
    # a big run costs the run's end milliseconds, for rows nobody reads.
    states = [TaskInstanceState(s) for s in _CLOSING_STATES]
    session = object_session(dag_run)
    # The scheduler hands over a run bound to its session; dag.test() a detached one,
    # for which get_task_instances opens a short session of its own.
    if session is not None:
        return list(getter(state=states, session=session))
    return list(getter(state=states))


def _record_never_started(run: RunHandle, ti: Any) -> None:
    state_value = _state_value(getattr(ti, "state", None))
    if state_value not in ("skipped", "upstream_failed"):
        return
    if int(getattr(ti, "try_number", 0) or 0) != 0:
        return  # it ran (and skipped itself): its own process recorded it
    ident = identity_of(ti)
    attributes = _task_attributes(ti, ident)
    attributes["airflow_state"] = state_value
    attributes["recorded_by"] = "orchestrator"
    handle = recorder.start_task(
        ident.task_id,
        run=run,
        try_number=0,
        map_index=ident.map_index,
        attributes=attributes,
        sample_system=False,
        activate=False,
    )
    reason = "upstream failed" if state_value == "upstream_failed" else None
    recorder.end_task(handle, state=_FINAL_STATES[state_value], error=reason)


# ---------------------------------------------------------------------------
# inputs: inlets and TaskFlow arguments
# ---------------------------------------------------------------------------


def _record_inputs(ti: Any, ident: TaskIdentity) -> None:
    task = getattr(ti, "task", None)
    if task is None:
        return
    for asset in _assets(getattr(task, "inlets", None)):
        _guarded(_log_asset, asset, "input", None)
    if getattr(task, "python_callable", None) is None or not _is_taskflow(task):
        return
    try:
        arguments = _resolved_arguments(ti, task)
    except Exception as exc:
        log.debug("flowrecord: could not bind the arguments of %s: %s", _label(ti), exc)
        return
    sources: dict[str, str] | None = None  # looked up only when a frame comes in
    params: dict[str, Any] = {}
    for name, value in arguments.items():
        if _is_data(value):
            if sources is None:
                sources = _argument_sources(ti, ident)
            _guarded(
                recorder.log_dataset,
                value,
                name=sources.get(name) or f"{ident.dag_id}.{ident.task_id}.{name}",
                role="input",
            )
        elif _is_param(value):
            params[name] = value
    if params:
        _guarded(recorder.log_params, params)


def _is_taskflow(task: Any) -> bool:
    # A @task function: Airflow's decorated operators carry the decorator's name.
    return str(getattr(task, "custom_operator_name", "") or "").startswith("@task")


def _resolved_arguments(ti: Any, task: Any) -> dict[str, Any]:
    """The task function's arguments by name, as rendered, without the injected context.

    Context is recognised by name (Airflow's context keys) and, passed under
    another name, by identity with the task instance, the task or the DAG.
    """
    op_args = list(getattr(task, "op_args", None) or ())
    op_kwargs = dict(getattr(task, "op_kwargs", None) or {})
    signature = _signature(task.python_callable)
    bound = signature.bind_partial(*op_args, **op_kwargs)
    bound.apply_defaults()
    context_values = {id(v) for v in (ti, task, getattr(task, "dag", None)) if v is not None}
    context_keys = _known_context_keys()
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            items = list(value.items())
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            items = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(name, value)]
        for key, item in items:
            if key in context_keys or id(item) in context_values:
                continue
            out[key] = item
    return out


def _signature(fn: Any) -> inspect.Signature:
    # Every task of a DAG built from one @task function asks for the same one.
    try:
        return _cached_signature(fn)
    except TypeError:  # an unhashable callable object
        return inspect.signature(fn)


_cached_signature = functools.lru_cache(maxsize=512)(inspect.signature)


@functools.cache
def _known_context_keys() -> frozenset[str]:
    try:
        from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS

        return frozenset(KNOWN_CONTEXT_KEYS)
    except Exception:  # pragma: no cover - older or newer SDK layouts
        return frozenset({"ti", "task_instance", "dag_run", "params", "ds", "logical_date"})


def _argument_sources(ti: Any, ident: TaskIdentity) -> dict[str, str]:
    """For arguments fed by an upstream task's output, the dataset name of that output."""
    sources: dict[str, str] = {}
    try:
        dag = ti.task.dag
        original = dag.task_dict.get(ident.task_id)
        if original is None:
            return sources
        candidates: dict[str, Any] = {}
        candidates.update(getattr(original, "op_kwargs", None) or {})
        expand_input = getattr(original, "expand_input", None)
        candidates.update(getattr(expand_input, "value", None) or {})
        partial_kwargs = getattr(original, "partial_kwargs", None) or {}
        candidates.update(partial_kwargs.get("op_kwargs", None) or {})
        positional = list(getattr(original, "op_args", None) or ())
        if positional:
            names = list(_signature(ti.task.python_callable).parameters)
            candidates.update(dict(zip(names, positional, strict=False)))
        for name, value in candidates.items():
            upstream = getattr(value, "operator", None)
            key = getattr(value, "key", None)
            upstream_id = getattr(upstream, "task_id", None)
            if upstream_id:
                sources[name] = dataset_name(ident.dag_id, upstream_id, key)
    except Exception as exc:
        log.debug("flowrecord: argument sources unknown: %s", exc)
    return sources


# ---------------------------------------------------------------------------
# outputs: outlets, asset events and the TaskFlow return value
# ---------------------------------------------------------------------------


def _record_outputs(ti: Any, ident: TaskIdentity) -> None:
    task = getattr(ti, "task", None)
    if task is None:
        return
    # Asset events exist only for tasks with outlets (assets or aliases).
    events = _outlet_events(_context_of(ti)) if getattr(task, "outlets", None) else {}
    for asset in _assets(getattr(task, "outlets", None)):
        extra = events.pop(_asset_key(asset), None)
        _guarded(_log_asset, asset, "output", extra)
    for (name, uri), extra in events.items():  # assets added through aliases
        _guarded(_log_asset, _AssetRef(name=name, uri=uri), "output", extra)
    _guarded(_record_return_value, ti, ident)


@dataclass(frozen=True, slots=True)
class _AssetRef:
    name: str | None
    uri: str | None


def _assets(objs: Any) -> Iterator[Any]:
    """The Asset-like objects in an inlets/outlets list (anything with a name or uri)."""
    for obj in objs or ():
        if getattr(obj, "uri", None) or getattr(obj, "name", None):
            # An AssetAlias has a name but no uri; what it resolves to arrives as events.
            if type(obj).__name__ == "AssetAlias":
                continue
            yield obj


def _asset_key(asset: Any) -> tuple[str | None, str | None]:
    return (getattr(asset, "name", None), getattr(asset, "uri", None))


def _outlet_events(context: Mapping[str, Any]) -> dict[tuple[str | None, str | None], dict]:
    """The ``extra`` of each asset event the task emitted, by (name, uri)."""
    out: dict[tuple[str | None, str | None], dict] = {}
    accessors = context.get("outlet_events") if context else None
    if not accessors:
        return out
    try:
        for target in list(accessors):
            accessor = accessors[target]
            if type(target).__name__ == "AssetAlias":
                for event in getattr(accessor, "asset_alias_events", None) or ():
                    key = getattr(event, "dest_asset_key", None)
                    out[(getattr(key, "name", None), getattr(key, "uri", None))] = dict(
                        getattr(event, "extra", None) or {}
                    )
            else:
                out[_asset_key(target)] = dict(getattr(accessor, "extra", None) or {})
    except Exception as exc:
        log.debug("flowrecord: outlet events unreadable: %s", exc)
    return out


def _log_asset(asset: Any, role: str, extra: Mapping[str, Any] | None) -> None:
    name, uri = _asset_key(asset)
    path = _local_path(uri)
    # A local file is data we can fingerprint; anything else is linked by name and uri.
    target: object = path if path is not None else asset
    recorder.log_dataset(target, name=name or uri, role=role, uri=uri)
    if extra:
        key = f"asset_extra:{name or uri}"[:_MAX_KEY]
        recorder.set_tags({key: json.dumps(extra, default=str, sort_keys=True)})


def _local_path(uri: str | None) -> str | None:
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
    elif parsed.scheme == "" and uri.startswith("/"):
        path = uri
    else:
        return None
    return path if os.path.exists(path) else None


#: What each TaskFlow attempt of this process returned, until its end hook reads it.
_returned: dict[tuple[str, str, str, int, int | None], Any] = {}
#: Attempts whose return value can only be read back from XCom (see below).
_pull_return: set[tuple[str, str, str, int, int | None]] = set()
#: TaskFlow flavours whose function returns the task's value in another process or
#: image; what they return is read back from XCom. Other flavours (branch, bash,
#: sensor, short_circuit...) return control values, not data.
_RETURN_IN_XCOM = {"@task.virtualenv", "@task.external_python", "@task.docker", "@task.kubernetes"}


def _capture_return_value(ti: Any, ident: TaskIdentity) -> None:
    """Arrange to see what a TaskFlow task returns, without a round trip to XCom.

    For a plain ``@task`` function, the running copy of the operator (Airflow
    makes one per execution) gets a pass-through wrapper of the function that
    keeps a reference to its return value. Generator and coroutine functions,
    whose runner inspects the function itself, and flavours that run the
    function elsewhere are read back from XCom at the end instead.
    """
    task = ti.task
    flavour = str(getattr(task, "custom_operator_name", "") or "")
    if not getattr(task, "do_xcom_push", True):
        return
    if flavour in _RETURN_IN_XCOM:
        _pull_return.add(ident.key)
        return
    if flavour != "@task":
        return
    fn = task.python_callable
    if (
        inspect.isgeneratorfunction(fn)
        or inspect.iscoroutinefunction(fn)
        or inspect.isasyncgenfunction(fn)
    ):
        _pull_return.add(ident.key)
        return
    key = ident.key

    @functools.wraps(fn)
    def recording_return_value(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        _returned[key] = result
        return result

    task.python_callable = recording_return_value


def _record_return_value(ti: Any, ident: TaskIdentity) -> None:
    if ident.key in _pull_return:
        map_index = -1 if ident.map_index is None else ident.map_index
        value = ti.xcom_pull(task_ids=ident.task_id, key="return_value", map_indexes=map_index)
    else:
        value = _returned.pop(ident.key, None)
    if value is None:
        return
    name = dataset_name(ident.dag_id, ident.task_id)
    if _is_data(value):
        recorder.log_dataset(value, name=name, role="output")
        return
    if isinstance(value, Mapping):
        frames = {k: v for k, v in value.items() if isinstance(k, str) and _is_data(v)}
        for key, frame in frames.items():
            recorder.log_dataset(
                frame, name=dataset_name(ident.dag_id, ident.task_id, key), role="output"
            )
        rest = {k: v for k, v in value.items() if k not in frames}
        if rest and all(isinstance(k, str) and _is_number(v) for k, v in rest.items()):
            recorder.log_metrics(rest)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def _is_data(value: object) -> bool:
    try:
        from flowrecord.collectors.kinds import data_kind

        return data_kind(value) is not None
    except Exception:
        return False


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    # numpy scalars
    return (
        type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"
    )  # type: ignore[attr-defined]


_SCALARS = (str, int, float, bool, type(None))
_MAX_KEY = 250  # flowrecord's limit on key length


def _is_param(value: object) -> bool:
    if isinstance(value, _SCALARS) or _is_number(value):
        return True
    if isinstance(value, list | tuple):
        return len(value) <= 100 and all(isinstance(v, _SCALARS) for v in value)
    if isinstance(value, Mapping):
        return len(value) <= 100 and all(
            isinstance(k, str) and isinstance(v, _SCALARS) for k, v in value.items()
        )
    return False


def _guarded(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        log.warning("flowrecord: %s failed: %s", getattr(fn, "__name__", fn), exc)


def _label(ti: Any) -> str:
    with contextlib.suppress(Exception):
        return f"{ti.dag_id}.{ti.task_id}[{ti.run_id}]"
    return repr(ti)
