"""With the MLflow backend active, its registry answers first and the lifecycle works through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifecycle_support import frame

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.lifecycle import PromotionGate, explain, register_model_version, rollback
from flowrecord.lifecycle import registry as reg
from flowrecord.testing import isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_gate_and_rollback_move_mlflow_aliases(tmp_path: Path):
    """Versions and aliases live in MLflow (not the local store); gates, rollback and explain work."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with isolated(
        tmp_path / "home",
        backends="local,mlflow",
        MLFLOW_TRACKING_URI=uri,
        FLOWRECORD_CAPTURE_CODE="0",
        FLOWRECORD_SYSTEM_SAMPLING="0",
    ):
        for auc in (0.80, 0.85):
            with flowrecord.run("train", orchestrator="dagster"), flowrecord.task("fit"):
                flowrecord.log_dataset(frame(1), name="features", role="input")
                flowrecord.log_metric("auc", auc)
                register_model_version("churn")
        gate = PromotionGate(model="churn", minimums={"auc": 0.7}, non_regression={"auc": 0.0})
        assert gate.apply("1").applied
        decision = gate.apply("2")
        assert decision.applied, decision.failures
        client = MlflowClient(uri)
        assert str(client.get_model_version_by_alias("churn", "champion").version) == "2"
        assert str(client.get_model_version_by_alias("churn", "previous").version) == "1"
        assert reg.list_models()[0]["aliases"] == {"champion": "2", "previous": "1"}
        rollback("churn")
        assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
        x = explain("churn")
        assert x["version"] == "1" and x["training"]["task"]["name"] == "fit"
        assert x["promotion"]["gate"] == "rollback"
        local = LocalStore(tmp_path / "home")
        assert local.query("SELECT count(*) AS n FROM model_versions")[0]["n"] == 0
        assert local.query("SELECT count(*) AS n FROM gate_decisions")[0]["n"] == 3
