"""The MLflow model registry behind flowrecord's registry hooks: versions with lineage, aliases."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

import flowrecord
from flowrecord import recorder
from flowrecord.dispatcher import subset_callers
from flowrecord.events import GateDecisionEvent
from flowrecord.testing import isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_versions_carry_lineage_and_aliases_move(mlflow_server, tmp_path):
    """Versions record source run, task, datasets and metrics; aliases (not stages) move."""
    import pandas as pd
    from mlflow import MlflowClient

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"v1")
    with isolated(
        tmp_path / "home",
        backends="local,mlflow",
        MLFLOW_TRACKING_URI=mlflow_server.url,
        FLOWRECORD_SYSTEM_SAMPLING="0",
    ):
        with flowrecord.run("registry-demo", "k1") as run, flowrecord.task("train") as task:
            train_set = flowrecord.log_dataset(
                pd.DataFrame({"x": [1, 2, 3]}), name="train_set", role="input"
            )
        assert flowrecord.flush(timeout=120)
        hook = subset_callers(recorder.get_runtime().pm, "mlflow")  # type: ignore[union-attr]
        datasets = [{"name": "train_set", "fingerprint": train_set.fingerprint, "role": "input"}]
        v1 = hook("flowrecord_registry_register_version")(
            model="churn",
            source_run_id=run.run_id,
            source_task_id=task.task_id,
            uri=str(model_dir),
            metrics={"auc": 0.9},
            datasets=datasets,
            tags={"owner": "ana"},
        )
        v2 = hook("flowrecord_registry_register_version")(
            model="churn",
            source_run_id=None,
            source_task_id=None,
            uri="s3://models/churn/2",
            metrics={"auc": 0.93},
            datasets=[],
            tags={},
        )
        elsewhere = hook("flowrecord_registry_register_version")(
            model="churn-elsewhere",
            source_run_id=run.run_id,
            source_task_id=task.task_id,
            uri="/on/another/worker/model.pkl",
            metrics={},
            datasets=[],
            tags={},
        )
        no_files = hook("flowrecord_registry_register_version")(
            model="churn-elsewhere",
            source_run_id=None,
            source_task_id=None,
            uri=None,
            metrics={},
            datasets=[],
            tags={},
        )
        moves = [
            hook("flowrecord_registry_set_alias")(
                model="churn", alias="champion", version="1", reason="first model"
            ),
            hook("flowrecord_registry_set_alias")(
                model="churn", alias="challenger", version="2", reason="new candidate"
            ),
            hook("flowrecord_registry_set_alias")(
                model="churn", alias="champion", version="2", reason="beats champion"
            ),
            hook("flowrecord_registry_set_alias")(
                model="churn", alias="previous", version="1", reason="rollback target"
            ),
        ]
        with pytest.raises(KeyError):
            hook("flowrecord_registry_set_alias")(
                model="churn", alias="champion", version="7", reason=None
            )
        champion = hook("flowrecord_registry_get_alias")(model="churn", alias="champion")
        missing_alias = hook("flowrecord_registry_get_alias")(model="churn", alias="shadow")
        missing_model = hook("flowrecord_registry_get_alias")(model="nope", alias="champion")
        missing_version = hook("flowrecord_registry_get_version")(model="churn", version="9")
        again = hook("flowrecord_registry_get_version")(model="churn", version="1")
        models = hook("flowrecord_registry_list_models")()
        from flowrecord.lifecycle import ModelRegistry

        champion_moves = ModelRegistry().alias_history("churn", "champion")
        no_history = ModelRegistry().alias_history("nope")

    client = MlflowClient(mlflow_server.url)
    (child,) = client.search_runs(
        [client.get_experiment_by_name("registry-demo").experiment_id],
        f"tags.`flowrecord.task_id` = '{task.task_id}'",
    )
    assert v1["version"] == "1" and v2["version"] == "2"
    assert (v1["run_id"], v1["task_id"]) == (run.run_id, task.task_id)
    assert v1["mlflow_run_id"] == child.info.run_id
    assert v1["metrics"] == {"auc": 0.9}
    assert v1["datasets"] == datasets
    assert v1["tags"] == {"owner": "ana"}
    assert v1["uri"] == str(model_dir)
    # The local model files were uploaded into the task's run: the version is self-contained.
    assert v1["source"] == f"runs:/{child.info.run_id}/flowrecord/models/churn"
    files = client.download_artifacts(child.info.run_id, "flowrecord/models/churn")
    assert (Path(files) / "weights.bin").read_bytes() == b"v1"
    assert v2["source"] == "s3://models/churn/2" and v2["mlflow_run_id"] is None
    # Files not on this machine: the server refuses a bare local path, so name the host.
    assert elsewhere["source"] == f"flowrecord://{socket.gethostname()}/on/another/worker/model.pkl"
    assert elsewhere["uri"] == "/on/another/worker/model.pkl"
    assert no_files["source"] == "flowrecord:///churn-elsewhere"

    assert [m["previous_version"] for m in moves] == [None, None, "1", None]
    assert champion == "2" and missing_alias is None and missing_model is None
    # MLflow keeps no alias history; the registry reads back the one flowrecord keeps.
    assert [(m.version, m.previous_version, m.reason) for m in champion_moves] == [
        ("1", None, "first model"),
        ("2", "1", "beats champion"),
    ]
    assert no_history == []
    assert missing_version is None
    assert again["aliases"] == ["previous"]
    (churn,) = [m for m in models if m["name"] == "churn"]
    assert churn["versions"] == ["1", "2"]
    assert churn["aliases"] == {"champion": "2", "challenger": "2", "previous": "1"}

    registered = client.get_registered_model("churn")
    assert registered.aliases == {"champion": "2", "challenger": "2", "previous": "1"}
    history = json.loads(registered.tags["flowrecord.alias_history"])
    assert [(h["alias"], h["version"], h["reason"]) for h in history] == [
        ("champion", "1", "first model"),
        ("challenger", "2", "new candidate"),
        ("champion", "2", "beats champion"),
        ("previous", "1", "rollback target"),
    ]
    version_one = client.get_model_version("churn", "1")
    assert version_one.current_stage == "None"  # aliases only, never the deprecated stages
    assert version_one.tags["flowrecord.dataset.input.train_set"] == train_set.fingerprint
    assert train_set.fingerprint in version_one.description
    rest = requests.get(
        f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias",
        params={"name": "churn", "alias": "champion"},
        timeout=30,
    ).json()
    assert rest["model_version"]["version"] == "2"


def test_gate_decision_tags_the_model_version(mlflow_server, tmp_path):
    """A gate decision lands on its run (tag, JSON artifact) and on the model version."""
    from mlflow import MlflowClient

    from flowrecord.backends.mlflow import MlflowBackend, resolve_settings
    from flowrecord.events import RunEvent, State

    backend = MlflowBackend(
        resolve_settings({"home": str(tmp_path), "mlflow": {"tracking_uri": mlflow_server.url}})
    )
    backend.flowrecord_backend_configure({})
    run_id = "bbbbbbbb-0000-5000-8000-000000000001"
    backend.flowrecord_run_started(
        [
            RunEvent(
                event_id="s",
                ts=time.time(),
                run_id=run_id,
                state=State.STARTED,
                orchestrator="python",
                pipeline="gates",
                run_key="k",
            )
        ]
    )
    version = backend.flowrecord_registry_register_version(
        model="gated",
        source_run_id=run_id,
        source_task_id=None,
        uri="s3://m/1",
        metrics={},
        datasets=[],
        tags={},
    )
    decision = GateDecisionEvent(
        event_id="g1",
        ts=time.time(),
        run_id=run_id,
        decision_id="decision-1",
        model="gated",
        version=version["version"],
        gate="auc_beats_champion",
        passed=True,
        reasons=("auc 0.93 > 0.91",),
        evidence={"auc": 0.93},
    )
    backend.flowrecord_gate_decided([decision])
    client = MlflowClient(mlflow_server.url)
    mv = client.get_model_version("gated", version["version"])
    assert mv.tags["flowrecord.gate.auc_beats_champion"] == "passed"
    parent = backend._parent(run_id)
    assert (
        client.get_run(parent).data.tags["flowrecord.gate.auc_beats_champion.gated.1"] == "passed"
    )
    body = client.download_artifacts(parent, "flowrecord/gates/decision-1.json")
    assert json.loads(Path(body).read_text())["reasons"] == ["auc 0.93 > 0.91"]
