"""The events flowrecord records: the contract between integrations and backends.

Every observation (a run or task changing state, a metric, a dataset, a validation
result...) becomes one immutable event with a unique, time-sortable id (UUIDv7).
Backends receive events through the hooks in :mod:`flowrecord.hookspecs`; the
dispatcher serialises them to JSON when a backend cannot take them yet, so every
field is a JSON-compatible value. Changing the shape of an event is a change of
:data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from flowrecord._frozen import FACTORY as _FACTORY
from flowrecord._frozen import frozen as _frozen
from flowrecord._frozen import set_field as _set

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactEvent",
    "CodeSnapshotEvent",
    "DatasetEvent",
    "Event",
    "GateDecisionEvent",
    "MetricBatch",
    "MetricEvent",
    "ParamEvent",
    "RunEvent",
    "State",
    "SystemUsageEvent",
    "TagEvent",
    "TaskEvent",
    "ValidationEvent",
    "event_from_dict",
    "event_to_dict",
    "metric_point",
]

#: Version of the event shapes below. Backends may store it to read old records.
SCHEMA_VERSION = 1


class State(enum.StrEnum):
    """Lifecycle state of a run or a task."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    RETRYING = "retrying"
    """The attempt failed and the orchestrator will try again."""
    INCOMPLETE = "incomplete"
    """The process ended (or was killed) without reporting an outcome."""

    @property
    def is_final(self) -> bool:
        return self is not State.STARTED


def _set_common(event: Any, event_id: str, ts: float, run_id: str, task_id: str | None) -> None:
    """Set the fields every event carries (from an event class's ``__init__``)."""
    _set(event, "event_id", event_id)
    _set(event, "ts", ts)
    _set(event, "run_id", run_id)
    _set(event, "task_id", task_id)


# The events are written out rather than made by @dataclass(frozen=True, slots=True,
# kw_only=True), which cost every task process ~1 ms a class at import; _frozen
# gives them that dataclass's behaviour (see flowrecord._frozen).
@_frozen
class Event:
    """Fields every event carries."""

    __slots__ = ("event_id", "run_id", "task_id", "ts")

    event_id: str
    """UUIDv7, unique and sortable by creation time; the key of idempotent replay."""
    ts: float
    """Wall-clock time of the observation, seconds since the epoch."""
    run_id: str
    """Deterministic id of the pipeline run this event belongs to."""
    task_id: str | None
    """Deterministic id of the task, or None for a run-level event."""

    kind: ClassVar[str] = "event"

    _fields: ClassVar[tuple[str, ...]]
    """Names of the fields in order: what repr, equality, pickling and :func:`event_to_dict` walk."""
    _astuple: ClassVar[Callable[[Event], tuple[Any, ...]]]

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)


@_frozen
class RunEvent(Event):
    """A pipeline run started or reached a final state."""

    __slots__ = ("error", "orchestrator", "pipeline", "run_key", "state", "tags")

    state: State
    orchestrator: str
    """``airflow``, ``dagster``, ``metaflow`` or ``python`` for plain scripts."""
    pipeline: str
    """DAG id, job name or flow name."""
    run_key: str
    """The orchestrator's own id of the run (Airflow run_id, Dagster run id...)."""
    tags: Mapping[str, str]
    error: str | None

    kind: ClassVar[str] = "run"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        state: State,
        orchestrator: str,
        pipeline: str,
        run_key: str,
        tags: Mapping[str, str] = _FACTORY,
        error: str | None = None,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "state", state)
        _set(self, "orchestrator", orchestrator)
        _set(self, "pipeline", pipeline)
        _set(self, "run_key", run_key)
        _set(self, "tags", {} if tags is _FACTORY else tags)
        _set(self, "error", error)


@_frozen
class TaskEvent(Event):
    """A task attempt started or reached a final state."""

    __slots__ = (
        "attributes",
        "duration_s",
        "error",
        "host",
        "map_index",
        "name",
        "pid",
        "started_at",
        "state",
        "try_number",
    )

    state: State
    name: str
    """Task id, asset key, op or step name."""
    try_number: int
    map_index: int | None
    """Index of a mapped / foreach task, None when the task is not mapped."""
    started_at: float | None
    duration_s: float | None
    """Wall time of the attempt, set on the final event."""
    error: str | None
    """Error type and message of a failed attempt."""
    host: str | None
    pid: int | None
    attributes: Mapping[str, Any]
    """Orchestrator-specific identity (dag_id, asset key, partition...)."""

    kind: ClassVar[str] = "task"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        state: State,
        name: str,
        try_number: int = 1,
        map_index: int | None = None,
        started_at: float | None = None,
        duration_s: float | None = None,
        error: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        attributes: Mapping[str, Any] = _FACTORY,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "state", state)
        _set(self, "name", name)
        _set(self, "try_number", try_number)
        _set(self, "map_index", map_index)
        _set(self, "started_at", started_at)
        _set(self, "duration_s", duration_s)
        _set(self, "error", error)
        _set(self, "host", host)
        _set(self, "pid", pid)
        _set(self, "attributes", {} if attributes is _FACTORY else attributes)


@_frozen
class MetricEvent(Event):
    """One metric point."""

    __slots__ = ("key", "step", "value")

    key: str
    value: float
    step: int | None

    kind: ClassVar[str] = "metric"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        key: str,
        value: float,
        step: int | None = None,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "step", step)


#: A metric point as the recorder queues it: (event_id, ts, run_id, task_id, key, value, step).
#: Metrics are the one high-volume event, so they travel as plain tuples and become
#: :class:`MetricEvent` objects only when a backend looks at them.
MetricPoint = tuple[str, float, str, "str | None", str, float, "int | None"]


class MetricBatch(Sequence[MetricEvent]):
    """A batch of metric points that reads as a sequence of :class:`MetricEvent`.

    Backends that care for speed read :attr:`points` directly.
    """

    __slots__ = ("points",)

    def __init__(self, points: Sequence[MetricPoint]) -> None:
        self.points = points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return MetricBatch(self.points[index])
        return _point_event(self.points[index])

    def __iter__(self) -> Iterator[MetricEvent]:
        return map(_point_event, self.points)


def _point_event(p: MetricPoint) -> MetricEvent:
    return MetricEvent(
        event_id=p[0], ts=p[1], run_id=p[2], task_id=p[3], key=p[4], value=p[5], step=p[6]
    )


@_frozen
class ParamEvent(Event):
    """One parameter, already redacted and rendered as text."""

    __slots__ = ("key", "truncated", "value")

    key: str
    value: str
    truncated: bool
    """True when the value was cut to the size limit."""

    kind: ClassVar[str] = "param"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        key: str,
        value: str,
        truncated: bool = False,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "truncated", truncated)


@_frozen
class TagEvent(Event):
    """Tags set on the run (task_id None) or on a task; values already redacted."""

    __slots__ = ("tags",)

    tags: Mapping[str, str]

    kind: ClassVar[str] = "tag"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        tags: Mapping[str, str],
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "tags", tags)


@_frozen
class DatasetEvent(Event):
    """A dataset read or written by a task, with what was learnt of its content."""

    __slots__ = (
        "data_type",
        "fingerprint",
        "name",
        "profile",
        "role",
        "row_count",
        "schema",
        "size_bytes",
        "uri",
        "warnings",
    )

    name: str
    role: str
    """``input`` or ``output``."""
    uri: str | None
    data_type: str
    """``pandas``, ``polars``, ``arrow``, ``file``, ``directory`` or the Python type name."""
    fingerprint: str | None
    """Content hash of the full data; None when the object could not be fingerprinted."""
    schema: tuple[Mapping[str, Any], ...]
    """Columns as ``{"name", "type", "nullable"}``."""
    row_count: int | None
    size_bytes: int | None
    profile: Mapping[str, Any]
    """Per-column statistics, see :mod:`flowrecord.collectors.profile`."""
    warnings: tuple[str, ...]
    """Why parts of the description are missing (unsupported types...)."""

    kind: ClassVar[str] = "dataset"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        name: str,
        role: str,
        uri: str | None = None,
        data_type: str = "unknown",
        fingerprint: str | None = None,
        schema: tuple[Mapping[str, Any], ...] = (),
        row_count: int | None = None,
        size_bytes: int | None = None,
        profile: Mapping[str, Any] = _FACTORY,
        warnings: tuple[str, ...] = (),
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "name", name)
        _set(self, "role", role)
        _set(self, "uri", uri)
        _set(self, "data_type", data_type)
        _set(self, "fingerprint", fingerprint)
        _set(self, "schema", schema)
        _set(self, "row_count", row_count)
        _set(self, "size_bytes", size_bytes)
        _set(self, "profile", {} if profile is _FACTORY else profile)
        _set(self, "warnings", warnings)


@_frozen
class ValidationEvent(Event):
    """The outcome of validating one dataset."""

    __slots__ = (
        "checks",
        "dataset_name",
        "error",
        "failure_count",
        "failure_sample",
        "fingerprint",
        "passed",
        "policy",
        "schema_name",
        "validation_id",
        "validator",
    )

    dataset_name: str
    fingerprint: str | None
    validator: str
    """``pandera``, ``volume``, ``drift`` or another check family."""
    schema_name: str | None
    passed: bool
    policy: str
    """``record``, ``warn`` or ``fail``."""
    checks: tuple[Mapping[str, Any], ...]
    """One entry per check: ``{"check", "column", "failures", "passed", ...}``."""
    failure_count: int
    failure_sample: tuple[Mapping[str, Any], ...]
    """A bounded sample of failing cases."""
    error: str | None
    """Set when the validator itself raised instead of reporting failures."""
    validation_id: str | None
    """Stable id of this validation result (defaults to the event id)."""

    kind: ClassVar[str] = "validation"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        dataset_name: str,
        fingerprint: str | None,
        validator: str,
        schema_name: str | None,
        passed: bool,
        policy: str,
        checks: tuple[Mapping[str, Any], ...] = (),
        failure_count: int = 0,
        failure_sample: tuple[Mapping[str, Any], ...] = (),
        error: str | None = None,
        validation_id: str | None = None,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "dataset_name", dataset_name)
        _set(self, "fingerprint", fingerprint)
        _set(self, "validator", validator)
        _set(self, "schema_name", schema_name)
        _set(self, "passed", passed)
        _set(self, "policy", policy)
        _set(self, "checks", checks)
        _set(self, "failure_count", failure_count)
        _set(self, "failure_sample", failure_sample)
        _set(self, "error", error)
        _set(self, "validation_id", validation_id)


@_frozen
class SystemUsageEvent(Event):
    """System usage of a task's process, as a summary and a time series."""

    __slots__ = ("samples", "summary")

    summary: Mapping[str, Any]
    """``cpu_percent_peak/mean``, ``rss_bytes_peak/mean``, ``gpus`` (per GPU peaks/means)."""
    samples: tuple[Mapping[str, Any], ...]
    """Time series: ``{"t", "cpu_percent", "rss_bytes", "gpus": [...]}``."""

    kind: ClassVar[str] = "system"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        summary: Mapping[str, Any],
        samples: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "summary", summary)
        _set(self, "samples", samples)


@_frozen
class CodeSnapshotEvent(Event):
    """Code and environment of a run, captured once per run."""

    __slots__ = (
        "branch",
        "commit",
        "diff",
        "diff_truncated",
        "dirty",
        "environment",
        "packages",
        "platform",
        "python",
        "repo_root",
        "untracked",
        "warnings",
    )

    commit: str | None
    branch: str | None
    dirty: bool | None
    diff: str | None
    diff_truncated: bool
    repo_root: str | None
    python: str
    platform: str
    packages: Mapping[str, str]
    environment: Mapping[str, str]
    """Selected environment variables, redacted."""
    untracked: tuple[str, ...]
    """Names of untracked files in the checkout (their content is not captured)."""
    warnings: tuple[str, ...]

    kind: ClassVar[str] = "code"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        commit: str | None = None,
        branch: str | None = None,
        dirty: bool | None = None,
        diff: str | None = None,
        diff_truncated: bool = False,
        repo_root: str | None = None,
        python: str = "",
        platform: str = "",
        packages: Mapping[str, str] = _FACTORY,
        environment: Mapping[str, str] = _FACTORY,
        untracked: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "commit", commit)
        _set(self, "branch", branch)
        _set(self, "dirty", dirty)
        _set(self, "diff", diff)
        _set(self, "diff_truncated", diff_truncated)
        _set(self, "repo_root", repo_root)
        _set(self, "python", python)
        _set(self, "platform", platform)
        _set(self, "packages", {} if packages is _FACTORY else packages)
        _set(self, "environment", {} if environment is _FACTORY else environment)
        _set(self, "untracked", untracked)
        _set(self, "warnings", warnings)


@_frozen
class ArtifactEvent(Event):
    """A file or directory the task produced and asked to keep."""

    __slots__ = ("fingerprint", "name", "path", "size_bytes")

    name: str
    path: str
    size_bytes: int | None
    fingerprint: str | None

    kind: ClassVar[str] = "artifact"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        name: str,
        path: str,
        size_bytes: int | None = None,
        fingerprint: str | None = None,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "name", name)
        _set(self, "path", path)
        _set(self, "size_bytes", size_bytes)
        _set(self, "fingerprint", fingerprint)


@_frozen
class GateDecisionEvent(Event):
    """A promotion gate's decision, with its reasons and evidence."""

    __slots__ = (
        "applied",
        "decision_id",
        "evidence",
        "gate",
        "model",
        "passed",
        "reasons",
        "version",
    )

    decision_id: str
    model: str
    version: str
    gate: str
    passed: bool
    applied: bool
    reasons: tuple[str, ...]
    evidence: Mapping[str, Any]

    kind: ClassVar[str] = "gate"

    def __init__(
        self,
        *,
        event_id: str,
        ts: float,
        run_id: str,
        task_id: str | None = None,
        decision_id: str,
        model: str,
        version: str,
        gate: str,
        passed: bool,
        applied: bool = False,
        reasons: tuple[str, ...] = (),
        evidence: Mapping[str, Any] = _FACTORY,
    ) -> None:
        _set_common(self, event_id, ts, run_id, task_id)
        _set(self, "decision_id", decision_id)
        _set(self, "model", model)
        _set(self, "version", version)
        _set(self, "gate", gate)
        _set(self, "passed", passed)
        _set(self, "applied", applied)
        _set(self, "reasons", reasons)
        _set(self, "evidence", {} if evidence is _FACTORY else evidence)


_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunEvent,
        TaskEvent,
        MetricEvent,
        ParamEvent,
        TagEvent,
        DatasetEvent,
        ValidationEvent,
        SystemUsageEvent,
        CodeSnapshotEvent,
        ArtifactEvent,
        GateDecisionEvent,
    )
}


def event_to_dict(event: Event | MetricPoint) -> dict[str, Any]:
    """A JSON-ready dict of *event*, with its kind and the schema version."""
    if isinstance(event, tuple):
        event = _point_event(event)
    out: dict[str, Any] = {"kind": event.kind, "schema_version": SCHEMA_VERSION}
    cls = type(event)
    for name, value in zip(cls._fields, cls._astuple(event), strict=True):
        if isinstance(value, State):
            value = value.value
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = [dict(v) if isinstance(v, Mapping) else v for v in value]
        out[name] = value
    return out


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event written by :func:`event_to_dict`.

    :raises ValueError: the kind is unknown or the schema version is newer than ours.
    """
    kind = data.get("kind")
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    version = int(data.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(f"event schema version {version} is newer than {SCHEMA_VERSION}")
    kwargs: dict[str, Any] = {}
    for name in cls._fields:
        if name not in data:
            continue
        value = data[name]
        if name == "state":
            value = State(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def metric_point(event: MetricEvent) -> MetricPoint:
    """The compact tuple form of a metric event."""
    return (
        event.event_id,
        event.ts,
        event.run_id,
        event.task_id,
        event.key,
        event.value,
        event.step,
    )
