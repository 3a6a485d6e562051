"""How events read in MLflow's and OpenLineage's vocabularies, and how the backends are configured."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowrecord.backends import _mlflow_mapping as mapping
from flowrecord.backends import mlflow as mlflow_backend
from flowrecord.backends import openlineage as ol_backend
from flowrecord.events import State, SystemUsageEvent

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("loss", "loss"),
        ("val/loss", "val/loss"),
        ("weird key!", "weird key_"),
        ("a//b/", "a/b"),
        ("/abs/../x", "abs/_/x"),
        ("./x", "_/x"),
        ("", "_"),
        ("ünïcode", "ünïcode"),
        ("a" * 300, "a" * 250),
    ],
)
def test_mlflow_key_is_always_a_valid_mlflow_name(name, key):
    """Any metric/param/tag name becomes one MLflow accepts (no bad characters or path tricks)."""
    from mlflow.utils.validation import _validate_metric_name

    assert mapping.mlflow_key(name) == key
    _validate_metric_name(mapping.mlflow_key(name))


def test_experiment_template():
    """The experiment name comes from {pipeline}/{orchestrator}; other fields are refused."""
    name = mapping.experiment_name(
        "ml-{orchestrator}-{pipeline}", orchestrator="airflow", pipeline="churn"
    )
    assert name == "ml-airflow-churn"
    with pytest.raises(ValueError, match="dag"):
        mapping.check_template("{dag}")
    with pytest.raises(ValueError, match="empty"):
        mapping.check_template("  ")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (State.SUCCEEDED, "FINISHED"),
        (State.FAILED, "FAILED"),
        (State.RETRYING, "FAILED"),
        (State.SKIPPED, "KILLED"),
        (State.INCOMPLETE, "KILLED"),
    ],
)
def test_final_states_map_to_mlflow_statuses(state, status):
    """Every final state has an MLflow terminal status."""
    assert mapping.run_status(state) == status


def test_dataset_digest_fits_mlflow():
    """The fingerprint's hash is the digest (MLflow allows 36 characters)."""
    assert mapping.dataset_digest("xxh3:" + "a" * 32) == "a" * 32
    assert mapping.dataset_digest(None) == "unknown"
    assert len(mapping.dataset_digest("sha:" + "b" * 64)) == 36


def test_system_usage_becomes_system_metrics():
    """Samples become step-indexed system/ series with their own times; summaries one point each."""
    event = SystemUsageEvent(
        event_id="e",
        ts=200.0,
        run_id="r",
        task_id="t",
        summary={
            "cpu_percent_peak": 90.0,
            "gpu_available": True,
            "warnings": ["x"],
            "gpus": [{"index": 0, "name": "H100", "utilization_percent_peak": 99.0}],
        },
        samples=(
            {
                "t": 100.0,
                "cpu_percent": 50.0,
                "rss_bytes": 10,
                "gpus": [
                    {"index": 0, "name": "H100", "utilization_percent": 80.0, "power_watts": None}
                ],
            },
            {"t": 101.5, "cpu_percent": 70.0, "rss_bytes": 12, "gpus": []},
        ),
    )
    rows = mapping.system_metric_rows(event)
    assert ("system/cpu_percent", 50.0, 100_000, 0) in rows
    assert ("system/cpu_percent", 70.0, 101_500, 1) in rows
    assert ("system/gpu_0_utilization_percent", 80.0, 100_000, 0) in rows
    assert ("system/cpu_percent_peak", 90.0, 200_000, 0) in rows
    assert ("system/gpu_0_utilization_percent_peak", 99.0, 200_000, 0) in rows
    keys = {r[0] for r in rows}
    assert not any("gpu_available" in k or "warnings" in k or "power" in k for k in keys)


def test_mlflow_settings_environment_wins_over_pyproject():
    """MLFLOW_TRACKING_URI and FLOWRECORD_MLFLOW_EXPERIMENT override the [tool.flowrecord.mlflow] table."""
    config = {
        "home": "/h",
        "mlflow": {
            "tracking_uri": "sqlite:///a.db",
            "experiment": "t-{pipeline}",
            "http_timeout_s": 3,
        },
    }
    settings = mlflow_backend.resolve_settings(config, {})
    assert (settings.tracking_uri, settings.experiment, settings.http_timeout_s) == (
        "sqlite:///a.db",
        "t-{pipeline}",
        3,
    )
    settings = mlflow_backend.resolve_settings(
        config, {"MLFLOW_TRACKING_URI": "http://x:5000", "FLOWRECORD_MLFLOW_EXPERIMENT": "e"}
    )
    assert (settings.tracking_uri, settings.experiment) == ("http://x:5000", "e")
    with pytest.raises(ValueError, match="http_timeout_s"):
        mlflow_backend.resolve_settings({"mlflow": {"http_timeout_s": "soon"}}, {})
    with pytest.raises(ValueError, match="run_key"):
        mlflow_backend.resolve_settings({"mlflow": {"experiment": "{run_key}"}}, {})


def test_configure_keeps_the_users_http_settings(monkeypatch):
    """Configuring sets MLflow's retry/timeout variables only where the user has not."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    backend = mlflow_backend.MlflowBackend()
    backend.flowrecord_backend_configure({"home": "/tmp/x", "mlflow": {"http_max_retries": 0}})
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"


def test_backends_import_their_libraries_lazily():
    """Importing and configuring the backends imports neither mlflow nor openlineage."""
    code = (
        "import sys\n"
        "from flowrecord.backends.mlflow import MlflowBackend\n"
        "from flowrecord.backends.openlineage import OpenLineageBackend\n"
        "MlflowBackend().flowrecord_backend_configure({'home': '/tmp/x'})\n"
        "OpenLineageBackend().flowrecord_backend_configure({'home': '/tmp/x'})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'openlineage')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "uri", "identity"),
    [
        ("customers", None, ("flowrecord", "customers")),
        ("features", "/data/features.csv", ("file", "/data/features.csv")),
        ("features", "file:///data/features.csv", ("file", "/data/features.csv")),
        ("events", "s3://bucket/events/2026", ("s3://bucket", "events/2026")),
        ("tbl", "postgres://db:5432/public.orders", ("postgres://db:5432", "public.orders")),
    ],
)
def test_openlineage_dataset_names_follow_the_naming_spec(name, uri, identity):
    """Datasets with a URI get OpenLineage's namespace/name; others keep flowrecord's name."""
    assert ol_backend.dataset_identity(name, uri, "flowrecord") == identity


def test_openlineage_settings():
    """OPENLINEAGE_NAMESPACE wins; a transport table becomes the client's config."""
    config = {"home": "/h", "openlineage": {"namespace": "ml", "transport": {"type": "console"}}}
    settings = ol_backend.resolve_settings(config, {})
    assert settings.namespace == "ml"
    assert settings.client_config == {"transport": {"type": "console"}}
    assert (
        ol_backend.resolve_settings(config, {"OPENLINEAGE_NAMESPACE": "prod"}).namespace == "prod"
    )
    with pytest.raises(ValueError, match="transport"):
        ol_backend.resolve_settings({"openlineage": {"transport": "http"}}, {})
