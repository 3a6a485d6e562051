"""End to end: a training job's whole record, read back from the local store.

No ``from __future__ import annotations`` here: Dagster reads the annotations.
"""

import json

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pytest

import flowrecord
import flowrecord_dagster
from flowrecord.query import lineage, open_store, resolve_run, run_details

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class Features(pa.DataFrameModel):
    amount: float = pa.Field(ge=0)
    label: int = pa.Field(isin=[0, 1])


class TrainConfig(dg.Config):
    learning_rate: float = 0.1
    api_key: str = ""


class FeatureStore(dg.ConfigurableResource):
    url: str


@dg.asset
def transactions() -> pd.DataFrame:
    return pd.DataFrame({"amount": [5.0, 12.0, 3.5, 40.0, 7.0], "label": [0, 1, 0, 1, 0]})


@dg.asset(metadata={flowrecord_dagster.SCHEMA_KEY: "test_dagster_e2e:Features"})
def features(transactions: pd.DataFrame, feature_store: FeatureStore) -> pd.DataFrame:
    return transactions.assign(amount=transactions.amount / transactions.amount.max())


@dg.asset
def model(config: TrainConfig, features: pd.DataFrame) -> dict:
    weights = {"amount": float(features.amount.mean())}
    for epoch in range(3):
        flowrecord.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    flowrecord.log_metric("auc", 0.91)
    return {"weights": weights, "lr": config.learning_rate}


@dg.asset(deps=[model])
def model_card() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"published": True})


train_job = dg.define_asset_job("train_job", selection=dg.AssetSelection.all())

RUN_CONFIG = {
    "ops": {"model": {"config": {"learning_rate": 0.05, "api_key": "sk-live-abcdef0123456789"}}},
    "resources": {
        "feature_store": {"config": {"url": "postgresql://ml:s3cretpw@db.internal:5432/features"}}
    },
}


def test_a_training_job_reads_back_whole(flowrecord_home, store):
    """Run, tasks per asset, datasets and edges, metrics, redacted params, usage, validation."""
    defs = flowrecord_dagster.instrument(
        dg.Definitions(
            assets=[transactions, features, model, model_card],
            jobs=[train_job],
            resources={"feature_store": FeatureStore.configure_at_launch()},
        )
    )
    result = defs.resolve_job_def("train_job").execute_in_process(run_config=RUN_CONFIG)
    assert result.success
    flowrecord.flush()
    reader = open_store(flowrecord_home)
    details = run_details(reader, resolve_run(reader, result.run_id))

    run = details["run"]
    assert (run["orchestrator"], run["pipeline"], run["run_key"], run["state"]) == (
        "dagster",
        "train_job",
        result.run_id,
        "succeeded",
    )
    states = {t["name"]: t["state"] for t in details["tasks"]}
    assert states == {
        "transactions": "succeeded",
        "features": "succeeded",
        "features:flowrecord_schema": "succeeded",
        "model": "succeeded",
        "model_card": "succeeded",
    }

    datasets = {(d["task"], d["name"], d["role"]): d for d in details["datasets"]}
    written = datasets[("transactions", "transactions", "output")]
    read = datasets[("features", "transactions", "input")]
    assert written["fingerprint"] and written["fingerprint"] == read["fingerprint"]
    assert written["row_count"] == 5
    assert (
        datasets[("model", "features", "input")]["fingerprint"]
        == (datasets[("features", "features", "output")]["fingerprint"])
    )
    assert ("model_card", "model", "input") in datasets
    assert ("model_card", "model_card", "output") in datasets

    graph = lineage(reader, datasets[("model", "model", "output")]["fingerprint"] or "model")
    upstream_tasks = {n["name"] for n in graph["nodes"] if n["kind"] == "task"}
    assert upstream_tasks == {"model", "features", "transactions"}

    metrics = {(m["task"], m["key"]): m for m in details["metrics"]}
    assert metrics[("model", "auc")]["value"] == pytest.approx(0.91)
    assert metrics[("model", "loss")]["step"] == 2

    params = {(p["task"], p["key"]): p["value"] for p in details["params"]}
    assert params[("model", "learning_rate")] == "0.05"
    assert params[("model", "api_key")] == "***"
    store_url = json.loads(params[("features", "resources.feature_store")])["url"]
    assert store_url == "postgresql://ml:***@db.internal:5432/features"
    everything = json.dumps(details, default=str)
    assert "sk-live-abcdef0123456789" not in everything and "s3cretpw" not in everything

    usage = {u["task"] for u in details["system_usage"]}
    assert usage == set(states)

    (validation,) = details["validations"]
    assert (validation["task"], validation["schema_name"], validation["passed"]) == (
        "features",
        "Features",
        True,
    )
    assert validation["fingerprint"] == datasets[("features", "features", "output")]["fingerprint"]
