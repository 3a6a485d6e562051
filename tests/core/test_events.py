"""Events: immutable values that compare, hash, print, pickle and serialise as the
frozen, slotted, keyword-only dataclasses they were written as before."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
import subprocess
import sys
from typing import Any

import pytest

from flowrecord import events
from flowrecord.events import (
    ArtifactEvent,
    CodeSnapshotEvent,
    DatasetEvent,
    Event,
    GateDecisionEvent,
    MetricEvent,
    ParamEvent,
    RunEvent,
    State,
    SystemUsageEvent,
    TagEvent,
    TaskEvent,
    ValidationEvent,
    event_from_dict,
    event_to_dict,
)

pytestmark = pytest.mark.unit

BASE = {"event_id": "e1", "ts": 1.5, "run_id": "r1", "task_id": "t1"}

# Every field of every kind set to a value other than its default.
FULL: dict[type[Event], dict[str, Any]] = {
    RunEvent: {
        "state": State.FAILED,
        "orchestrator": "metaflow",
        "pipeline": "Flow",
        "run_key": "17",
        "tags": {"team": "ml"},
        "error": "boom",
    },
    TaskEvent: {
        "state": State.RETRYING,
        "name": "train",
        "try_number": 2,
        "map_index": 3,
        "started_at": 1.0,
        "duration_s": 0.5,
        "error": "ValueError: x",
        "host": "h",
        "pid": 42,
        "attributes": {"step": "train"},
    },
    MetricEvent: {"key": "auc", "value": 0.9, "step": 7},
    ParamEvent: {"key": "lr", "value": "0.01", "truncated": True},
    TagEvent: {"tags": {"a": "b"}},
    DatasetEvent: {
        "name": "d",
        "role": "input",
        "uri": "s3://b/k",
        "data_type": "pandas",
        "fingerprint": "f",
        "schema": ({"name": "x", "type": "int64", "nullable": False},),
        "row_count": 3,
        "size_bytes": 24,
        "profile": {"x": {"min": 1}},
        "warnings": ("w",),
    },
    ValidationEvent: {
        "dataset_name": "d",
        "fingerprint": "f",
        "validator": "pandera",
        "schema_name": "S",
        "passed": False,
        "policy": "warn",
        "checks": ({"check": "gt", "passed": False},),
        "failure_count": 2,
        "failure_sample": ({"row": 1},),
        "error": "E",
        "validation_id": "v",
    },
    SystemUsageEvent: {"summary": {"cpu_percent_peak": 90.0}, "samples": ({"t": 0.0},)},
    CodeSnapshotEvent: {
        "commit": "abc",
        "branch": "main",
        "dirty": True,
        "diff": "+x",
        "diff_truncated": True,
        "repo_root": "/repo",
        "python": "3.11",
        "platform": "linux",
        "packages": {"numpy": "2"},
        "environment": {"HOME": "/h"},
        "untracked": ("new.py",),
        "warnings": ("w",),
    },
    ArtifactEvent: {"name": "model", "path": "/m", "size_bytes": 1, "fingerprint": "f"},
    GateDecisionEvent: {
        "decision_id": "g1",
        "model": "m",
        "version": "2",
        "gate": "auc",
        "passed": True,
        "applied": True,
        "reasons": ("better",),
        "evidence": {"auc": 0.9},
    },
}
KINDS = list(FULL)

# A TaskEvent pickled (protocol 4) by the dataclass version of this module.
DATACLASS_PICKLE = (
    b"\x80\x04\x95\x8b\x00\x00\x00\x00\x00\x00\x00\x8c\x11flowrecord.events\x94\x8c\tTaskEvent"
    b"\x94\x93\x94)\x81\x94]\x94(\x8c\x02e1\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x02r1\x94"
    b"\x8c\x02t1\x94h\x00\x8c\x05State\x94\x93\x94\x8c\x06failed\x94\x85\x94R\x94\x8c\x05train"
    b"\x94K\x02NNN\x8c\rValueError: x\x94NN}\x94\x8c\x06dag_id\x94\x8c\x01d\x94seb."
)


def full(cls: type[Event], **changes: Any) -> Event:
    return cls(**{**BASE, **FULL[cls], **changes})


def test_full_covers_every_field_of_every_kind() -> None:
    """The samples above set every field of every kind, so the tests below see them all."""
    assert set(KINDS) == set(events._KINDS.values())
    for cls in KINDS:
        assert set(FULL[cls]) | set(BASE) == set(cls._fields), cls


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_dataclass_view_matches_the_constructor(cls: type[Event]) -> None:
    """dataclasses.fields lists the constructor's keyword-only arguments, in order, with its defaults."""
    assert dataclasses.is_dataclass(cls)
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert [f.name for f in fields] == [p.name for p in params] == list(cls._fields)
    for f, p in zip(fields, params, strict=True):
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and f.kw_only
        if f.default_factory is not dataclasses.MISSING:
            assert f.default_factory is dict and cls(**{**BASE, **FULL[cls], f.name: p.default})
        else:
            expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            assert p.default == expected, f.name
    assert list(cls.__dataclass_fields__)[:4] == ["event_id", "ts", "run_id", "task_id"]
    assert cls.__dataclass_params__.frozen


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_asdict_and_replace_work_on_events(cls: type[Event]) -> None:
    """dataclasses.asdict and dataclasses.replace treat an event as the dataclass it was."""
    event = full(cls)
    assert dataclasses.asdict(event) == {name: getattr(event, name) for name in cls._fields}
    changed = dataclasses.replace(event, run_id="r2")
    assert type(changed) is cls and changed.run_id == "r2" and changed != event
    assert dataclasses.replace(changed, run_id="r1") == event


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_events_are_immutable(cls: type[Event]) -> None:
    """No field can be set or deleted, and no other attribute added."""
    event = full(cls)
    for name in (*cls._fields, "not_a_field"):
        with pytest.raises(
            dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"
        ):
            setattr(event, name, 1)
    for name in cls._fields:
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
            delattr(event, name)
    assert event == full(cls) and not hasattr(event, "__dict__")


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_equality_compares_kind_and_every_field(cls: type[Event]) -> None:
    """Two events are equal when they are of one kind with equal fields; any field differing breaks it."""
    event = full(cls)
    assert event == full(cls) and (event != full(cls)) is False
    for name in cls._fields:
        assert event != full(cls, **{name: "something else"}), name
    assert event != object() and event != dataclasses.asdict(event)
    other_kind = next(k for k in KINDS if k is not cls)
    assert event != full(other_kind)


def test_hash_follows_equality() -> None:
    """Events with hashable fields hash by value; a dict-valued field makes them unhashable."""
    a = full(MetricEvent)
    assert hash(a) == hash(full(MetricEvent)) and len({a, full(MetricEvent)}) == 1
    assert hash(a) == hash(tuple(getattr(a, n) for n in MetricEvent._fields))
    with pytest.raises(TypeError, match="unhashable"):
        hash(full(TaskEvent))


def test_repr_reads_like_a_dataclass() -> None:
    """repr names the class and every field with its value, in order."""
    event = MetricEvent(event_id="e1", ts=1.5, run_id="r1", key="auc", value=0.5)
    assert repr(event) == (
        "MetricEvent(event_id='e1', ts=1.5, run_id='r1', task_id=None, key='auc', value=0.5,"
        " step=None)"
    )


def test_mapping_defaults_are_fresh_dicts() -> None:
    """An event built without a mapping field gets its own empty dict, shared with no other."""
    a = RunEvent(event_id="a", ts=0.0, run_id="r", state=State.STARTED, orchestrator="o",
                 pipeline="p", run_key="k")  # fmt: skip
    b = RunEvent(event_id="b", ts=0.0, run_id="r", state=State.STARTED, orchestrator="o",
                 pipeline="p", run_key="k")  # fmt: skip
    assert a.tags == {} and a.tags is not b.tags


def test_missing_or_unknown_arguments_are_refused() -> None:
    """Required fields must be given, by keyword, and unknown ones are an error."""
    with pytest.raises(TypeError, match="missing 2 required keyword-only arguments"):
        MetricEvent(**BASE)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        full(MetricEvent, colour="red")
    with pytest.raises(TypeError):
        MetricEvent("e1", 1.5, "r1", key="k", value=1.0)  # type: ignore[misc]


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_pickle_round_trip(cls: type[Event]) -> None:
    """Every kind survives pickling (events cross process boundaries in multiprocessing)."""
    event = full(cls)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(event, protocol=protocol))
        assert again == event and type(again) is cls


def test_pickled_form_is_the_dataclass_one() -> None:
    """An event pickles to the same bytes as the dataclass version did, and those bytes load."""
    event = TaskEvent(event_id="e1", ts=1.5, run_id="r1", task_id="t1", state=State.FAILED,
                      name="train", try_number=2, error="ValueError: x",
                      attributes={"dag_id": "d"})  # fmt: skip
    assert pickle.dumps(event, protocol=4) == DATACLASS_PICKLE
    assert pickle.loads(DATACLASS_PICKLE) == event


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_json_round_trip(cls: type[Event]) -> None:
    """event_to_dict gives JSON-ready data that event_from_dict turns back into an equal event."""
    event = full(cls)
    data = json.loads(json.dumps(event_to_dict(event)))
    assert data["kind"] == cls.kind and data["schema_version"] == events.SCHEMA_VERSION
    assert set(data) == {"kind", "schema_version", *cls._fields}
    assert event_from_dict(data) == event


def test_metric_point_tuple_serialises_like_its_event() -> None:
    """A queued metric tuple and the MetricEvent it stands for give the same dict."""
    event = full(MetricEvent)
    assert event_to_dict(events.metric_point(event)) == event_to_dict(event)  # type: ignore[arg-type]


def test_import_builds_no_dataclass() -> None:
    """Importing flowrecord makes no dataclass of an event: that cost ~1 ms a class per task."""
    probe = (
        "import flowrecord, flowrecord.events as e, flowrecord._frozen as f, dataclasses;"
        "made = f._TWINS.copy(); dataclasses.fields(e.TaskEvent);"
        "print(len(made), len(f._TWINS))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", "1"]
