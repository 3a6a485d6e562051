"""The events flowrecord records: the contract between integrations and backends.

Every observation (a run or task changing state, a metric, a dataset, a validation
result...) becomes one immutable event with a unique, time-sortable id (UUIDv7).
Backends receive events through the hooks in :mod:`flowrecord.hookspecs`; the
dispatcher serialises them to JSON when a backend cannot take them yet, so every
field is a JSON-compatible value. Changing the shape of an event is a change of
:data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries."""

    event_id: str
    """UUIDv7, unique and sortable by creation time; the key of idempotent replay."""
    ts: float
    """Wall-clock time of the observation, seconds since the epoch."""
    run_id: str
    """Deterministic id of the pipeline run this event belongs to."""
    task_id: str | None = None
    """Deterministic id of the task, or None for a run-level event."""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent(Event):
    """A pipeline run started or reached a final state."""

    state: State
    orchestrator: str
    """``airflow``, ``dagster``, ``metaflow`` or ``python`` for plain scripts."""
    pipeline: str
    """DAG id, job name or flow name."""
    run_key: str
    """The orchestrator's own id of the run (Airflow run_id, Dagster run id...)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None

    kind: ClassVar[str] = "run"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(Event):
    """A task attempt started or reached a final state."""

    state: State
    name: str
    """Task id, asset key, op or step name."""
    try_number: int = 1
    map_index: int | None = None
    """Index of a mapped / foreach task, None when the task is not mapped."""
    started_at: float | None = None
    duration_s: float | None = None
    """Wall time of the attempt, set on the final event."""
    error: str | None = None
    """Error type and message of a failed attempt."""
    host: str | None = None
    pid: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Orchestrator-specific identity (dag_id, asset key, partition...)."""

    kind: ClassVar[str] = "task"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricEvent(Event):
    """One metric point."""

    key: str
    value: float
    step: int | None = None

    kind: ClassVar[str] = "metric"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamEvent(Event):
    """One parameter, already redacted and rendered as text."""

    key: str
    value: str
    truncated: bool = False
    """True when the value was cut to the size limit."""

    kind: ClassVar[str] = "param"


@dataclass(frozen=True, slots=True, kw_only=True)
class TagEvent(Event):
    """Tags set on the run (task_id None) or on a task; values already redacted."""

    tags: Mapping[str, str]

    kind: ClassVar[str] = "tag"


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetEvent(Event):
    """A dataset read or written by a task, with what was learnt of its content."""

    name: str
    role: str
    """``input`` or ``output``."""
    uri: str | None = None
    data_type: str = "unknown"
    """``pandas``, ``polars``, ``arrow``, ``file``, ``directory`` or the Python type name."""
    fingerprint: str | None = None
    """Content hash of the full data; None when the object could not be fingerprinted."""
    schema: tuple[Mapping[str, Any], ...] = ()
    """Columns as ``{"name", "type", "nullable"}``."""
    row_count: int | None = None
    size_bytes: int | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    """Per-column statistics, see :mod:`flowrecord.collectors.profile`."""
    warnings: tuple[str, ...] = ()
    """Why parts of the description are missing (unsupported types...)."""

    kind: ClassVar[str] = "dataset"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationEvent(Event):
    """The outcome of validating one dataset."""

    dataset_name: str
    fingerprint: str | None
    validator: str
    """``pandera``, ``volume``, ``drift`` or another check family."""
    schema_name: str | None
    passed: bool
    policy: str
    """``record``, ``warn`` or ``fail``."""
    checks: tuple[Mapping[str, Any], ...] = ()
    """One entry per check: ``{"check", "column", "failures", "passed", ...}``."""
    failure_count: int = 0
    failure_sample: tuple[Mapping[str, Any], ...] = ()
    """A bounded sample of failing cases."""
    error: str | None = None
    """Set when the validator itself raised instead of reporting failures."""
    validation_id: str | None = None
    """Stable id of this validation result (defaults to the event id)."""

    kind: ClassVar[str] = "validation"


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemUsageEvent(Event):
    """System usage of a task's process, as a summary and a time series."""

    summary: Mapping[str, Any]
    """``cpu_percent_peak/mean``, ``rss_bytes_peak/mean``, ``gpus`` (per GPU peaks/means)."""
    samples: tuple[Mapping[str, Any], ...] = ()
    """Time series: ``{"t", "cpu_percent", "rss_bytes", "gpus": [...]}``."""

    kind: ClassVar[str] = "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeSnapshotEvent(Event):
    """Code and environment of a run, captured once per run."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff: str | None = None
    diff_truncated: bool = False
    repo_root: str | None = None
    python: str = ""
    platform: str = ""
    packages: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    """Selected environment variables, redacted."""
    untracked: tuple[str, ...] = ()
    """Names of untracked files in the checkout (their content is not captured)."""
    warnings: tuple[str, ...] = ()

    kind: ClassVar[str] = "code"


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactEvent(Event):
    """A file or directory the task produced and asked to keep."""

    name: str
    path: str
    size_bytes: int | None = None
    fingerprint: str | None = None

    kind: ClassVar[str] = "artifact"


@dataclass(frozen=True, slots=True, kw_only=True)
class GateDecisionEvent(Event):
    """A promotion gate's decision, with its reasons and evidence."""

    decision_id: str
    model: str
    version: str
    gate: str
    passed: bool
    applied: bool = False
    reasons: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "gate"


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
    if type(event) is tuple:
        event = _point_event(event)  # type: ignore[arg-type]
    out: dict[str, Any] = {"kind": event.kind, "schema_version": SCHEMA_VERSION}
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        value = getattr(event, f.name)
        if isinstance(value, State):
            value = value.value
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = [dict(v) if isinstance(v, Mapping) else v for v in value]
        out[f.name] = value
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
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "state":
            value = State(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
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
