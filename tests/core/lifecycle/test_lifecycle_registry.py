"""The registry facade: registration with lineage, aliases, history, and an unreachable registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lifecycle_support import frame, train

import flowrecord
from flowrecord import recorder
from flowrecord.config import reset_config
from flowrecord.lifecycle import registry
from flowrecord.lifecycle.registry import (
    ModelNotFound,
    ModelRegistry,
    RegistryUnavailable,
    normalize_datasets,
    register_model_version,
)

pytestmark = pytest.mark.unit


def test_registration_defaults_to_the_tasks_inputs_and_metrics(flowrecord_home: Path):
    """Without datasets= and metrics=, a version gets the task's inputs (role train) and metrics."""
    data, other = frame(1), frame(2)
    with flowrecord.run("train", orchestrator="dagster"), flowrecord.task("fit") as task:
        a = flowrecord.log_dataset(data, name="features", role="input")
        flowrecord.log_dataset(data, name="features", role="input")  # read twice: once
        b = flowrecord.log_dataset(other, name="labels", role="input")
        flowrecord.log_dataset(frame(3), name="predictions", role="output")
        flowrecord.log_metric("auc", 0.5)
        flowrecord.log_metric("auc", 0.91)  # the latest value counts
        flowrecord.log_metric("loss", 0.2)
        v = register_model_version("churn", uri="s3://m/1")
    assert v.version == "1"
    assert (v.run_id, v.task_id) == (task.run_id, task.task_id)
    assert v.metrics == {"auc": 0.91, "loss": 0.2}
    assert [(d["name"], d["fingerprint"], d["role"]) for d in v.datasets] == [
        ("features", a.fingerprint, "train"),
        ("labels", b.fingerprint, "train"),
    ]
    again = registry.get_version("churn", "1")
    assert again == v


def test_explicit_datasets_take_roles_from_a_mapping(flowrecord_home: Path):
    """datasets={"train": ev, "eval": [ev, mapping]} keeps each role and fingerprint."""
    with flowrecord.run("train"), flowrecord.task("fit"):
        t = flowrecord.log_dataset(frame(1), name="train", role="input")
        e = flowrecord.log_dataset(frame(2), name="eval", role="input")
        v = register_model_version(
            "churn",
            metrics={"auc": 0.9},
            datasets={"train": t, "eval": [e, {"name": "holdout", "fingerprint": "xxh3:ab"}]},
        )
    assert [(d["name"], d["role"]) for d in v.datasets] == [
        ("train", "train"),
        ("eval", "eval"),
        ("holdout", "eval"),
    ]
    assert v.datasets_with_role("eval")[0]["fingerprint"] == e.fingerprint


@pytest.mark.parametrize(
    "bad", ["train.csv", 42, [object()], [{"fingerprint": "x"}], {"train": 3.5}]
)
def test_malformed_datasets_are_refused_with_a_type_error(bad: object):
    """Datasets that are neither events nor name/fingerprint mappings raise TypeError."""
    with pytest.raises(TypeError):
        normalize_datasets(bad)


def test_metrics_must_be_numbers(flowrecord_home: Path):
    """A metric that is not a number is refused before anything is registered."""
    with pytest.raises(TypeError, match="auc"):
        register_model_version("churn", metrics={"auc": "high"}, datasets=[])
    assert registry.list_models() == []


def test_aliases_champion_history_and_resolution(flowrecord_home: Path):
    """set_alias moves aliases with history; resolve reads versions, @aliases and latest."""
    v1 = train("churn", {"auc": 0.8})
    v2 = train("churn", {"auc": 0.85})
    assert registry.champion("churn") is None
    move = registry.set_alias("churn", "champion", v1.version, "first")
    assert (move.version, move.previous_version) == ("1", None)
    registry.set_alias("churn", "champion", v2.version, "better")
    assert registry.champion("churn").version == "2"
    assert registry.get_alias("churn", "champion") == "2"
    assert registry.resolve_version("churn", "@champion").version == "2"
    assert registry.resolve_version("churn", "latest").version == "2"
    assert registry.resolve_version("churn", "1").metrics == {"auc": 0.8}
    history = registry.alias_history("churn", "champion")
    assert [(m.version, m.previous_version, m.reason) for m in history] == [
        ("1", None, "first"),
        ("2", "1", "better"),
    ]
    # The hook behind it, as a registry backend answers it: None for a model it lacks.
    hook = recorder.get_runtime().pm.hook.flowrecord_registry_alias_history
    assert [m["version"] for m in hook(model="churn", alias=None)] == ["1", "2"]
    assert hook(model="nope", alias=None) is None
    assert registry.alias_history("nope") == []
    models = registry.list_models()
    assert models[0]["name"] == "churn" and models[0]["aliases"] == {"champion": "2"}
    with pytest.raises(ModelNotFound):
        registry.resolve_version("churn", "9")
    with pytest.raises(ModelNotFound):
        registry.resolve_version("churn", "@challenger")
    with pytest.raises(ModelNotFound):
        registry.set_alias("churn", "champion", "9")


def test_a_raising_registry_backend_is_unavailable_not_none(broken_registry: None):
    """Every facade call on a registry that raises becomes RegistryUnavailable with the cause."""
    reg = ModelRegistry()
    for call in (
        lambda: reg.get_version("churn", "1"),
        lambda: reg.get_alias("churn", "champion"),
        lambda: reg.champion("churn"),
        lambda: reg.list_models(),
        lambda: reg.set_alias("churn", "champion", "1"),
        lambda: register_model_version("churn", metrics={}, datasets=[]),
    ):
        with pytest.raises(RegistryUnavailable, match="refused the connection"):
            call()


def test_disabled_recording_makes_the_registry_unavailable(flowrecord_home: Path):
    """With FLOWRECORD_DISABLED=1 the facade says so instead of returning None."""
    recorder.shutdown()
    os.environ["FLOWRECORD_DISABLED"] = "1"
    reset_config()
    try:
        with pytest.raises(RegistryUnavailable, match="disabled"):
            registry.champion("churn")
    finally:
        del os.environ["FLOWRECORD_DISABLED"]
        reset_config()


def test_no_registry_backend_at_all_is_unavailable(tmp_path: Path):
    """When no active backend implements the registry, listing and resolving say so."""
    from flowrecord.testing import isolated

    with isolated(tmp_path / "h", backends="no-such-backend", FLOWRECORD_CAPTURE_CODE="0"):
        with pytest.raises(RegistryUnavailable, match="no registry backend"):
            registry.list_models()
        with pytest.raises(RegistryUnavailable):
            registry.resolve_version("churn", "3")


def test_a_store_backed_registry_reads_without_a_recorder(flowrecord_home: Path):
    """ModelRegistry(store) answers from a read-only store, as the CLI uses it."""
    from flowrecord.query import open_store

    train("churn", {"auc": 0.8})
    registry.set_alias("churn", "champion", "1")
    recorder.flush()
    reg = ModelRegistry(open_store(flowrecord_home))
    assert reg.champion("churn").metrics == {"auc": 0.8}
    assert [m.version for m in reg.alias_history("churn")] == ["1"]
