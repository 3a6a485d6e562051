"""Every hook, called through pluggy on the local backend, lands where it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrecord.backends.local import LocalBackend, LocalStore
from flowrecord.events import (
    ArtifactEvent,
    CodeSnapshotEvent,
    DatasetEvent,
    GateDecisionEvent,
    MetricBatch,
    ParamEvent,
    RunEvent,
    State,
    SystemUsageEvent,
    TagEvent,
    TaskEvent,
    ValidationEvent,
)
from flowrecord.plugins import make_plugin_manager

pytestmark = pytest.mark.unit

COMMON = {"ts": 100.0, "run_id": "run-1", "task_id": "task-1"}


@pytest.fixture
def hook(tmp_path: Path):
    backend = LocalBackend()
    pm = make_plugin_manager([("local", backend)])
    pm.hook.flowrecord_backend_configure(config={"home": str(tmp_path)})
    yield pm.hook
    pm.hook.flowrecord_backend_close()
    assert backend.store is not None and backend.store.path.parent == tmp_path


def _store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def test_flowrecord_run_started_and_finished(hook, tmp_path):
    """Run hooks create and close the run row."""
    base = {"orchestrator": "airflow", "pipeline": "dag", "run_key": "k"}
    hook.flowrecord_run_started(
        runs=[
            RunEvent(
                event_id="a", ts=1.0, run_id="r", state=State.STARTED, tags={"team": "x"}, **base
            )
        ]
    )
    hook.flowrecord_run_finished(
        runs=[RunEvent(event_id="b", ts=2.0, run_id="r", state=State.SUCCEEDED, **base)]
    )
    (row,) = _store(tmp_path).query("SELECT * FROM runs")
    assert (row["state"], row["started_at"], row["ended_at"]) == ("succeeded", 1.0, 2.0)
    assert _store(tmp_path).query("SELECT value FROM tags WHERE key='team'")[0][0] == "x"


def test_flowrecord_task_started_and_finished(hook, tmp_path):
    """Task hooks create and close the attempt with duration and error."""
    hook.flowrecord_task_started(
        tasks=[TaskEvent(event_id="a", state=State.STARTED, name="t", **COMMON)]
    )
    hook.flowrecord_task_finished(
        tasks=[
            TaskEvent(
                event_id="b",
                state=State.FAILED,
                name="t",
                duration_s=2.5,
                error="ValueError: x",
                **COMMON,
            )
        ]
    )
    (row,) = _store(tmp_path).query("SELECT * FROM tasks")
    assert (row["state"], row["duration_s"], row["error"]) == ("failed", 2.5, "ValueError: x")


def test_flowrecord_metrics_logged(hook, tmp_path):
    """Metric batches, as compact points or events, are stored per series."""
    hook.flowrecord_metrics_logged(
        metrics=MetricBatch(
            [("e1", 1.0, "r", "t", "loss", 0.5, 1), ("e2", 2.0, "r", None, "auc", 0.9, None)]
        )
    )
    rows = _store(tmp_path).query(
        "SELECT key, value, step, task_id FROM metric_points ORDER BY key"
    )
    assert [tuple(r) for r in rows] == [("auc", 0.9, None, None), ("loss", 0.5, 1, "t")]


def test_flowrecord_params_logged(hook, tmp_path):
    """Params are stored as text with their truncation flag."""
    hook.flowrecord_params_logged(
        params=[ParamEvent(event_id="p", key="lr", value="0.1", **COMMON)]
    )
    assert _store(tmp_path).query("SELECT value, truncated FROM params")[0][:] == ("0.1", 0)


def test_flowrecord_tags_set(hook, tmp_path):
    """Tags are stored one row per key."""
    hook.flowrecord_tags_set(tags=[TagEvent(event_id="t", tags={"a": "1", "b": "2"}, **COMMON)])
    assert len(_store(tmp_path).query("SELECT * FROM tags")) == 2


def test_flowrecord_dataset_logged(hook, tmp_path):
    """Datasets keep fingerprint, schema, rows and profile: the lineage edge."""
    hook.flowrecord_dataset_logged(
        datasets=[
            DatasetEvent(
                event_id="d",
                name="train",
                role="output",
                fingerprint="xxh3:ab",
                row_count=3,
                schema=({"name": "x", "type": "int64", "nullable": False},),
                profile={"row_count": 3},
                **COMMON,
            )
        ]
    )
    (row,) = _store(tmp_path).query("SELECT * FROM datasets")
    assert (row["name"], row["role"], row["fingerprint"], row["row_count"]) == (
        "train",
        "output",
        "xxh3:ab",
        3,
    )


def test_flowrecord_artifact_logged(hook, tmp_path):
    """Artifacts keep path, size and fingerprint."""
    hook.flowrecord_artifact_logged(
        artifacts=[
            ArtifactEvent(
                event_id="a", name="model.pkl", path="/tmp/model.pkl", size_bytes=10, **COMMON
            )
        ]
    )
    assert _store(tmp_path).query("SELECT name FROM artifacts")[0][0] == "model.pkl"


def test_flowrecord_validation_recorded(hook, tmp_path):
    """Validations keep per-check failure counts and the failure sample."""
    hook.flowrecord_validation_recorded(
        validations=[
            ValidationEvent(
                event_id="v",
                dataset_name="train",
                fingerprint="xxh3:ab",
                validator="pandera",
                schema_name="S",
                passed=False,
                policy="record",
                failure_count=2,
                checks=({"check": "ge(0)", "column": "x", "failures": 2, "passed": False},),
                failure_sample=({"column": "x", "failure_case": -1},),
                **COMMON,
            )
        ]
    )
    (row,) = _store(tmp_path).query("SELECT passed, failure_count, validation_id FROM validations")
    assert tuple(row) == (0, 2, "v")


def test_flowrecord_system_usage_recorded(hook, tmp_path):
    """System usage keeps the summary and the time series."""
    hook.flowrecord_system_usage_recorded(
        usages=[
            SystemUsageEvent(
                event_id="s",
                summary={"cpu_percent_peak": 50.0},
                samples=(
                    {"t": 1.0, "cpu_percent": 50.0, "rss_bytes": 10, "gpus": []},
                    {"t": 2.0, "cpu_percent": 10.0, "rss_bytes": 12, "gpus": []},
                ),
                **COMMON,
            )
        ]
    )
    assert len(_store(tmp_path).query("SELECT * FROM system_samples")) == 2


def test_flowrecord_code_captured(hook, tmp_path):
    """One code snapshot per run; a second copy is ignored."""
    for eid in ("c1", "c2"):
        hook.flowrecord_code_captured(
            snapshots=[
                CodeSnapshotEvent(event_id=eid, commit="abc", dirty=True, diff="+x", **COMMON)
            ]
        )
    assert [
        tuple(r) for r in _store(tmp_path).query("SELECT event_id, commit_sha FROM code_snapshots")
    ] == [("c1", "abc")]


def test_flowrecord_gate_decided(hook, tmp_path):
    """Gate decisions keep reasons and evidence."""
    hook.flowrecord_gate_decided(
        decisions=[
            GateDecisionEvent(
                event_id="g",
                decision_id="d1",
                model="m",
                version="2",
                gate="g",
                passed=False,
                reasons=("auc below 0.8",),
                evidence={"auc": 0.7},
                **COMMON,
            )
        ]
    )
    assert _store(tmp_path).query("SELECT reasons FROM gate_decisions")[0][0] == '["auc below 0.8"]'


def test_registry_hooks_answer_first_result(hook):
    """flowrecord_registry_register_version, _set_alias, _get_alias, _get_version and
    _list_models answer through the local registry."""
    v = hook.flowrecord_registry_register_version(
        model="m",
        source_run_id="r",
        source_task_id="t",
        uri=None,
        metrics={"auc": 0.9},
        datasets=[],
        tags={},
    )
    assert v["version"] == "1"
    moved = hook.flowrecord_registry_set_alias(
        model="m", alias="champion", version="1", reason=None
    )
    assert moved["previous_version"] is None
    assert hook.flowrecord_registry_get_alias(model="m", alias="champion") == "1"
    assert hook.flowrecord_registry_get_version(model="m", version="1")["metrics"] == {"auc": 0.9}
    assert hook.flowrecord_registry_list_models()[0]["name"] == "m"
