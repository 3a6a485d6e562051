"""The translation: what Dagster says about a run, turned into recorder calls.

Dagster's public API has no hook that runs *before* a step's body (hooks run
after it), yet a task has to be open while the body runs, so that
``flowrecord.log_metric`` inside an asset lands in it and the system sampler
covers it. Every Dagster event goes through ``DagsterInstance.handle_new_event``
in the process and thread that logged it, and the instance calls the listeners
registered for that run right there: ``STEP_START`` is logged by the step's own
thread just before the body. So each process that takes part in a run attaches
one :class:`RunRecorder` as such a listener (``instance.add_event_listener``),
from the recording resource (every step process) and from the executor (the
process that orchestrates, which alone sees the run end); steps start and end
tasks on ``STEP_START``/``STEP_RESTARTED`` and ``STEP_SUCCESS``/``FAILURE``/
``UP_FOR_RETRY``, materialisations say which assets a step produced, and
``RUN_SUCCESS``/``FAILURE``/``CANCELED`` close the run.

``add_event_listener`` is a plain method of the public ``DagsterInstance`` but is
not in Dagster's documented API. Should a Dagster release drop it, the recording
hook (public API, run after each step) replays the step's events instead: tasks,
states and lineage are still recorded, only their timing and the metrics the
body logs are lost (they land on the run). Every entry point here swallows and
logs its own errors: recording never fails or changes a step.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from flowrecord import recorder
from flowrecord.events import State
from flowrecord.recorder import RunHandle, TaskHandle
from flowrecord_dagster._catalog import Catalog, NodeFacts, key_name

__all__ = [
    "RunRecorder",
    "StepRecord",
    "asset_uri",
    "attach",
    "recorder_for",
    "replay_step",
    "step_of_current_task",
]

log = logging.getLogger("flowrecord")

ORCHESTRATOR = "dagster"

_T = dg.DagsterEventType
_STEP_START = {_T.STEP_START.value, _T.STEP_RESTARTED.value}
_STEP_END = {
    _T.STEP_SUCCESS.value: State.SUCCEEDED,
    _T.STEP_FAILURE.value: State.FAILED,
    _T.STEP_UP_FOR_RETRY.value: State.RETRYING,
}
_RUN_END = {
    _T.RUN_SUCCESS.value: State.SUCCEEDED,
    _T.RUN_FAILURE.value: State.FAILED,
    _T.RUN_CANCELED.value: State.FAILED,
}
_MATERIALIZATION = _T.ASSET_MATERIALIZATION.value
_SKIPPED = _T.STEP_SKIPPED.value
# The engine's words for a step it will not run (dagster/_core/execution/plan/active.py).
_ABANDONED = "Dependencies for step "
_ABANDON_DEPS = re.compile(r"(?:failed|were not executed): \[([^\]]*)\]")
_WATCHED = frozenset({*_STEP_START, *_STEP_END, *_RUN_END, _MATERIALIZATION, _SKIPPED})

# Run tags worth keeping on each task: the partition a run materialises.
_PARTITION_TAG = "dagster/partition"
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def asset_uri(key: dg.AssetKey, partitions: Sequence[str] | None = None) -> str:
    """Where a Dagster asset (partition) lives, as a URI: ``dagster://asset/raw/orders?partition=p``."""
    uri = f"dagster://asset/{key_name(key)}"
    if partitions:
        uri += "?partition=" + ",".join(partitions)
    return uri


@dataclass(eq=False)
class StepRecord:
    """One step attempt being recorded in this process."""

    task: TaskHandle
    step_key: str
    node: NodeFacts | None
    run: RunRecorder
    read: set[str] = field(default_factory=set)
    """Dataset names already recorded as inputs (by the IO managers)."""
    written: set[str] = field(default_factory=set)
    """Dataset names already recorded as outputs (by the IO managers)."""
    materialized: dict[dg.AssetKey, list[str]] = field(default_factory=dict)
    """Assets the step materialised, with their partitions."""


class RunRecorder:
    """Records one Dagster run as seen by this process; registered as an instance listener."""

    def __init__(self, catalog: Catalog, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
        self.catalog = catalog
        self.instance = instance
        self.run_id = run.run_id
        self.job = run.job_name
        self.run_config: Mapping[str, Any] = run.run_config or {}
        tags = dict(run.tags or {})
        self.partition = tags.get(_PARTITION_TAG)
        self.partition_range = (
            f"{tags[_RANGE_TAGS[0]]}...{tags[_RANGE_TAGS[1]]}"
            if all(t in tags for t in _RANGE_TAGS)
            else None
        )
        self.listening = False
        self.steps: dict[str, StepRecord] = {}
        self._retries: dict[str, int] = {}
        self.handle: RunHandle = recorder.start_run(
            self.job,
            self.run_id,
            orchestrator=ORCHESTRATOR,
            tags={k: v for k, v in tags.items() if not k.startswith(".dagster")},
            activate=False,
        )

    # -- the listener ------------------------------------------------------

    def __call__(self, entry: dg.EventLogEntry) -> None:
        """Instance listener: called with every event logged for the run in this process."""
        event = entry.dagster_event
        if event is None:
            # A step abandoned because an upstream step failed (a blocking check, a
            # failed asset) gets no event of its own, only the engine's log line.
            message = entry.user_message or ""
            if entry.step_key and message.startswith(_ABANDONED):
                try:
                    self.step_abandoned(entry.step_key, message)
                except Exception as exc:
                    log.warning("flowrecord: could not record abandoned step: %s", exc)
            return
        if event.event_type_value not in _WATCHED:
            return
        try:
            self.on_event(event)
        except Exception as exc:  # a listener that raises would fail the step
            log.warning("flowrecord: could not record Dagster event %s: %s", event, exc)

    def on_event(self, event: dg.DagsterEvent) -> None:
        kind = event.event_type_value
        if kind in _STEP_START:
            self.step_started(event.step_key or "", restarted=kind != _T.STEP_START.value)
        elif kind == _MATERIALIZATION:
            self.step_materialized(event)
        elif kind in _STEP_END:
            self.step_ended(event, _STEP_END[kind])
        elif kind == _SKIPPED:
            self.step_skipped(event.step_key or "")
        elif kind in _RUN_END:
            self.run_ended(_RUN_END[kind], _T(kind).name)

    # -- steps -------------------------------------------------------------

    def step_started(self, step_key: str, *, restarted: bool = False) -> StepRecord:
        node = self.catalog.node_for_step(step_key)
        # The Dagster run id and the job are the run's key and pipeline already.
        # ("step", not "step_key": the redaction of secrets takes "step_key" for one.)
        attributes: dict[str, Any] = {"step": step_key, "kind": node.kind if node else "op"}
        if node is not None and node.keys:
            # Attributes are recorded as text: one comma-separated list.
            attributes["asset_keys"] = ",".join(key_name(k) for k in node.keys)
        if node is not None and node.checks:
            attributes["checks"] = ",".join(node.checks)
        if self.partition is not None:
            attributes["partition_key"] = self.partition
        if self.partition_range is not None:
            attributes["partition_range"] = self.partition_range
        task = recorder.start_task(
            self.catalog.task_name(step_key),
            run=self.handle,
            try_number=self._attempt(step_key) if restarted else 1,
            attributes=attributes,
        )
        record = StepRecord(task=task, step_key=step_key, node=node, run=self)
        self.steps[step_key] = record
        with _lock:
            _by_task[task.task_id] = record
        params = self._params(step_key)
        if params:
            recorder.log_params(params)
        return record

    def step_materialized(self, event: dg.DagsterEvent) -> None:
        record = self.steps.get(event.step_key or "")
        key = event.asset_key
        if record is None or key is None:
            return
        partitions = record.materialized.setdefault(key, [])
        if event.partition is not None:
            partitions.append(event.partition)

    def step_ended(self, event: dg.DagsterEvent, state: State) -> None:
        record = self.steps.pop(event.step_key or "", None)
        if record is None:
            return
        try:
            if state is State.RETRYING:
                self._retries[record.step_key] = self._retries.get(record.step_key, 0) + 1
            self._record_lineage(record)
        finally:
            with _lock:
                _by_task.pop(record.task.task_id, None)
            recorder.end_task(record.task, state=state, error=_error_of(event))

    def step_skipped(self, step_key: str) -> None:
        # A step Dagster skips (an optional input never came) never starts: no sampling.
        node = self.catalog.node_for_step(step_key)
        task = recorder.start_task(
            self.catalog.task_name(step_key),
            run=self.handle,
            attributes={"step": step_key, "kind": node.kind if node else "op"},
            sample_system=False,
            activate=False,
        )
        recorder.end_task(task, state=State.SKIPPED)

    def step_abandoned(self, step_key: str, message: str) -> None:
        """Record a step Dagster did not execute because what it depends on failed."""
        if step_key in self.steps:
            return
        node = self.catalog.node_for_step(step_key)
        failed = _ABANDON_DEPS.findall(message)
        blockers = sorted({k.strip().strip("'\"") for group in failed for k in group.split(",")})
        attributes: dict[str, Any] = {"step": step_key, "kind": node.kind if node else "op"}
        if blockers:
            attributes["skipped_by"] = ",".join(b for b in blockers if b)
        task = recorder.start_task(
            self.catalog.task_name(step_key),
            run=self.handle,
            attributes=attributes,
            sample_system=False,
            activate=False,
        )
        recorder.end_task(task, state=State.SKIPPED, error=message)

    def run_ended(self, state: State, kind: str) -> None:
        for step_key in list(self.steps):
            record = self.steps.pop(step_key)
            recorder.end_task(record.task, state=State.FAILED, error=f"run ended: {kind}")
        recorder.end_run(self.handle, state=state, error=None if state is State.SUCCEEDED else kind)
        with _lock:
            _recorders.pop((id(self.instance), self.run_id), None)

    # -- details -------------------------------------------------------------

    def _attempt(self, step_key: str) -> int:
        """The try number of a restarted step: 1 + the retries Dagster logged for it."""
        try:
            retries = self.instance.all_logs(self.run_id, of_type=_T.STEP_UP_FOR_RETRY)
            count = sum(1 for e in retries if e.step_key == step_key)
        except Exception:  # an instance without all_logs: what this process saw
            count = self._retries.get(step_key, 0)
        # A restarted step failed at least once before, whatever the log says.
        return max(count, 1) + 1

    def _params(self, step_key: str) -> dict[str, Any]:
        """The run config that configures this step: its op's config and the resources'."""
        params: dict[str, Any] = {}
        ops: Any = self.run_config.get("ops") or {}
        path = _node_path(step_key)
        for i, name in enumerate(path):
            entry = ops.get(name) if isinstance(ops, Mapping) else None
            if not isinstance(entry, Mapping):
                break
            if i == len(path) - 1:
                config = entry.get("config")
                if isinstance(config, Mapping):
                    params.update({str(k): v for k, v in config.items()})
                elif config is not None:
                    params["config"] = config
            ops = entry.get("ops") or {}
        resources = self.run_config.get("resources") or {}
        if isinstance(resources, Mapping):
            for name, entry in resources.items():
                if isinstance(entry, Mapping) and entry.get("config") is not None:
                    params[f"resources.{name}"] = entry["config"]
        return params

    def _record_lineage(self, record: StepRecord) -> None:
        """Datasets the IO managers did not see: non-data deps and ``MaterializeResult`` assets."""
        node = record.node
        if node is None:
            return
        produced = list(record.materialized) or (
            list(node.keys) if node.kind != "asset_check" else []
        )
        for key in produced:
            name = key_name(key)
            if name not in record.written and key in record.materialized:
                recorder.log_dataset(
                    key, name=name, role="output", uri=asset_uri(key, record.materialized[key])
                )
                record.written.add(name)
        if node.kind == "asset_check":
            upstream = list(node.keys)
        elif node.kind == "graph_asset":
            # Only the op that materialises a graph asset stands for its dependencies.
            upstream = self.catalog.upstream_of(record.materialized)
        else:
            upstream = self.catalog.upstream_of(produced)
        for key in upstream:
            name = key_name(key)
            if name not in record.read:
                recorder.log_dataset(key, name=name, role="input", uri=asset_uri(key))
                record.read.add(name)


def _node_path(step_key: str) -> list[str]:
    base = step_key.split("[", 1)[0]
    return base.split(".")


def _error_of(event: dg.DagsterEvent) -> str | None:
    data: Any = event.step_failure_data if event.is_step_failure else None
    if data is None and event.is_step_up_for_retry:
        data = event.step_retry_data
    error = getattr(data, "error", None)
    if error is None:
        return None
    # Dagster wraps the user's exception (step execution error, retry from policy):
    # what the record wants is the user's own.
    while getattr(error, "cause", None) is not None and str(
        getattr(error, "cls_name", "")
    ).startswith(("Dagster", "RetryRequested")):
        error = error.cause
    name = getattr(error, "cls_name", None) or "Error"
    message = (getattr(error, "message", "") or "").strip()
    # Dagster's message repeats the class, module path included: keep what follows it.
    message = re.sub(rf"^(?:\w+\.)*{re.escape(name)}:\s*", "", message)
    return f"{name}: {message}" if message else name


# ---------------------------------------------------------------------------
# the per-process registry
# ---------------------------------------------------------------------------

_lock = threading.Lock()
_recorders: dict[tuple[int, str], RunRecorder] = {}
_by_task: dict[str, StepRecord] = {}


def attach(catalog: Catalog, instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunRecorder:
    """The recorder of *run* in this process, created and registered on first call."""
    key = (id(instance), run.run_id)
    with _lock:
        existing = _recorders.get(key)
        if existing is not None:
            return existing
    created = RunRecorder(catalog, instance, run)
    with _lock:
        existing = _recorders.setdefault(key, created)
    if existing is not created:
        return existing
    listen = getattr(instance, "add_event_listener", None)
    if callable(listen):
        try:
            listen(run.run_id, created)
            created.listening = True
        except Exception as exc:
            log.warning(
                "flowrecord: cannot listen to Dagster events, recording after steps: %s", exc
            )
    return created


def recorder_for(instance: dg.DagsterInstance, run_id: str) -> RunRecorder | None:
    """The recorder attached for *run_id* on *instance* in this process, if any."""
    with _lock:
        return _recorders.get((id(instance), run_id))


def step_of_current_task() -> StepRecord | None:
    """The step whose task is current in this context (the step an IO manager works for)."""
    task = recorder.current_task()
    if task is None:
        return None
    with _lock:
        return _by_task.get(task.task_id)


def replay_step(
    catalog: Catalog, context: dg.HookContext, events: Iterable[dg.DagsterEvent]
) -> None:
    """After a step, record it from its events when no listener could (see module docstring)."""
    run_id = context.run_id
    run_recorder = recorder_for(context.instance, run_id)
    if run_recorder is None:
        run = context.instance.get_run_by_id(run_id)
        if run is None:
            return
        run_recorder = attach(catalog, context.instance, run)
    if run_recorder.listening:
        return
    for event in events:
        if event.event_type_value in _WATCHED and event.event_type_value not in _RUN_END:
            run_recorder.on_event(event)
