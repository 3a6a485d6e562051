"""Secrets planted everywhere a pipeline can carry them never reach a backend.

One process records a plain flowrecord run and a real Airflow ``dag.test()`` run into
the local store, OpenLineage (file transport) and MLflow (a SQLite tracking store with
a file artifact root) at once. Secrets are planted in params (secret key names, nested
dicts), tags, run tags, connection URIs under harmless keys, a dataset URI, captured
environment variables, Airflow TaskFlow arguments, a PythonOperator's ``op_kwargs``,
the DAG run's conf, and the code diff: the run's working directory is a git repository
with a committed ``.env`` holding ``AWS_SECRET_ACCESS_KEY`` and uncommitted changes that
add more secrets. Then every byte the backends wrote (each file, and each SQLite
database dumped as SQL) is searched for each planted value.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

#: Every value that must never be written, by where it was planted.
SECRETS = {
    "param_password": "frsec-param-pw-4c1e9a",
    "param_nested": "frsec-param-nested-77b2d0",
    "param_uri_password": "frsec-param-uripw-3e8f51",
    "tag_token": "frsec-tag-token-a90c13",
    "tag_uri_password": "frsec-tag-uripw-5d2b66",
    "run_tag_key": "frsec-runtag-key-0f4e2a",
    "env_hf_token": "frsec-env-hftoken-2b7d90",
    "env_uri_password": "frsec-env-uripw-6c3f18",
    "env_mlflow_password": "frsec-env-mlflowpw-9e1d47",
    "env_airflow_conn": "frsec-env-afconn-d41f02",
    "af_arg_token": "frsec-af-argtoken-15c8e3",
    "af_arg_uri_password": "frsec-af-arguripw-c27a94",
    "af_arg_nested": "frsec-af-argnested-e6b310",
    "af_param_password": "frsec-af-parampw-4a0b7c",
    "af_tag_token": "frsec-af-tagtoken-93e2d5",
    "af_op_kwargs": "frsec-af-opkwargs-7d5c21",
    "af_op_kwargs_uri": "frsec-af-opkwuri-b8e604",
    "af_conf": "frsec-af-conf-0c9d38",
    "dotenv_committed": "frsec-dotenv-committed-5f71aa",
    "dotenv_added": "frsec-dotenv-added-2e4c9b",
    "diff_python": "frsec-diff-python-a1d8f3",
    "diff_yaml": "frsec-diff-yaml-6b90e7",
    "untracked_file": "frsec-untracked-c3f5d2",
}
#: A password inside a dataset's URI (``log_dataset(..., uri=...)``): kept apart, see
#: test_dataset_uri_credentials_are_not_written.
DATASET_URI_SECRET = "frsec-dataset-uripw-81aa3c"
#: Harmless values planted beside the secrets: each must be found in the output, which
#: shows the search would have seen a secret written the same way.
CONTROLS = {
    "param": "frctl-param-visible",
    "env": "frctl-env-visible",
    "diff": "frctl-diff-visible",
    "af_arg": "frctl-afarg-visible",
}

_DAG = """
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, task

import flowrecord

S = {secrets!r}
C = {controls!r}


def _classic(db_password, conn_uri, **context):
    return "classic done"


@dag(schedule=None, catchup=False)
def fr_secrets():
    @task
    def fit(limit: int = 10, api_token: str = "", warehouse: str = "", options=None, note=""):
        flowrecord.log_params(
            {{"db_password": S["af_param_password"], "epochs": 3}}
        )
        flowrecord.set_tags({{"deploy_token": S["af_tag_token"], "team": "ml"}})
        flowrecord.log_metric("auc", 0.9)
        return {{"auc": 0.9}}

    classic = PythonOperator(
        task_id="classic",
        python_callable=_classic,
        op_kwargs={{
            "db_password": S["af_op_kwargs"],
            "conn_uri": "postgresql://etl:" + S["af_op_kwargs_uri"] + "@db.internal/shop",
        }},
    )
    fit(
        limit=5,
        api_token=S["af_arg_token"],
        warehouse="snowflake://svc:" + S["af_arg_uri_password"] + "@acct.example/db",
        options={{"aws_secret_access_key": S["af_arg_nested"], "region": "eu-west-1"}},
        note=C["af_arg"],
    ) >> classic


dag = fr_secrets()
"""

_PIPELINE = """
import json, os, sys
import pandas as pd
import flowrecord

S = json.loads(os.environ["FR_TEST_SECRETS"])
C = json.loads(os.environ["FR_TEST_CONTROLS"])

# 1. A plain run: params, nested params, a URI under a harmless key, tags, a dataset URI.
with flowrecord.run("plain-secrets", "plain-1", tags={"registry_api_key": S["run_tag_key"]}):
    with flowrecord.task("train"):
        flowrecord.log_param("db_password", S["param_password"])
        flowrecord.log_params({
            "source": "postgresql://etl_user:" + S["param_uri_password"] + "@db.internal:5432/dw",
            "training": {"lr": 0.1, "storage": {"client_secret": S["param_nested"]}},
            "marker": C["param"],
        })
        flowrecord.set_tags({
            "deploy_token": S["tag_token"],
            "endpoint": "https://svc:" + S["tag_uri_password"] + "@api.example.com/v1",
        })
        flowrecord.log_dataset(
            pd.DataFrame({"a": [1, 2, 3]}),
            name="orders",
            uri="postgresql://reader:" + os.environ["FR_TEST_DATASET_SECRET"] + "@db.internal/shop",
            role="input",
        )
        flowrecord.log_metric("loss", 0.5, step=1)
assert flowrecord.flush(120), "the plain run was not delivered"

# 2. A real Airflow run of a DAG whose arguments and conf carry secrets.
from airflow.utils import db
db.upgradedb()
sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
import fr_secrets_dag
fr_secrets_dag.dag.test(run_conf={"api_key": S["af_conf"], "batch": 7})
assert flowrecord.flush(120), "the Airflow run was not delivered"
print("pipeline done", flush=True)
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _make_repo(repo: Path, out: Path) -> None:
    """A project whose committed .env holds a key, with uncommitted secret-bearing edits."""
    repo.mkdir()
    (repo / ".env").write_text(
        f"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
        f"AWS_SECRET_ACCESS_KEY={SECRETS['dotenv_committed']}\n"
        "REGION=eu-west-1\n"
    )
    (repo / "train.py").write_text("LEARNING_RATE = 0.1\n")
    (repo / "config.yaml").write_text("db:\n  host: db.internal\n")
    # The backends' settings, so the run needs no environment beyond FLOWRECORD_BACKENDS.
    (repo / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [tool.flowrecord.mlflow]
            tracking_uri = "sqlite:///{out / "mlflow.db"}"
            artifact_location = "{(out / "mlartifacts").as_uri()}"

            [tool.flowrecord.openlineage.transport]
            type = "file"
            log_file_path = "{out / "lineage.jsonl"}"
            append = true
            """
        )
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "initial")
    # Uncommitted: one more line in .env (its committed lines become diff context),
    # a token constant in code, a password in YAML, and an untracked file.
    with (repo / ".env").open("a") as fh:
        fh.write(f"GITHUB_TOKEN={SECRETS['dotenv_added']}\n")
    (repo / "train.py").write_text(
        f'LEARNING_RATE = 0.2\nAPI_TOKEN = "{SECRETS["diff_python"]}"\n'
        f'NOTE = "{CONTROLS["diff"]}"\n'
    )
    (repo / "config.yaml").write_text(
        f"db:\n  host: db.internal\n  password: {SECRETS['diff_yaml']}\n"
    )
    (repo / "local.env").write_text(f"SECRET_KEY={SECRETS['untracked_file']}\n")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run the pipelines once; the paths the backends wrote to."""
    base = tmp_path_factory.mktemp("secrets")
    out = base / "out"
    out.mkdir()
    repo = base / "project"
    _make_repo(repo, out)
    home = out / "home"
    airflow_home = base / "airflow"
    dags = base / "dags"
    dags.mkdir()
    (dags / "fr_secrets_dag.py").write_text(_DAG.format(secrets=SECRETS, controls=CONTROLS))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "FLOWRECORD_", "MLFLOW_", "OPENLINEAGE_"))
    }
    env.update(
        {
            "FLOWRECORD_HOME": str(home),
            "FLOWRECORD_BACKENDS": "local,openlineage,mlflow",
            "FLOWRECORD_SYSTEM_SAMPLING": "0",
            "FLOWRECORD_FLUSH_TIMEOUT": "30",
            "FR_TEST_SECRETS": json.dumps(SECRETS),
            "FR_TEST_CONTROLS": json.dumps(CONTROLS),
            "FR_TEST_DATASET_SECRET": DATASET_URI_SECRET,
            # Captured environment (HF_*, CONDA_*, MLFLOW_* are recorded, redacted).
            "HF_TOKEN": SECRETS["env_hf_token"],
            "CONDA_CACHE_DB": f"postgresql://cache:{SECRETS['env_uri_password']}@h/cache",
            "MLFLOW_TRACKING_PASSWORD": SECRETS["env_mlflow_password"],
            "CONDA_FR_MARKER": CONTROLS["env"],
            # Never captured: Airflow's connections.
            "AIRFLOW_CONN_WAREHOUSE": f"postgresql://u:{SECRETS['env_airflow_conn']}@h/dw",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(base / "plugins"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__API_AUTH__JWT_SECRET": "reliability-" + "0123456789abcdef" * 4,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PIPELINE],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "pipeline done" in proc.stdout
    from flowrecord.dispatcher import spool_dirs

    yield {
        "home": home,
        "out": out,
        # Where a failed delivery would have gone: the home's spool and the temp fallback.
        "spools": [
            d for name in ("local", "openlineage", "mlflow") for d in spool_dirs(home, name)
        ],
    }


def _written_files(recorded: dict[str, Any]) -> list[Path]:
    roots = [recorded["out"], *recorded["spools"]]
    return sorted({p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()})


def _sql_dump(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def _everything_written(recorded: dict[str, Any]) -> dict[str, bytes]:
    """Each written file's bytes, and each SQLite database's SQL dump, by name."""
    out: dict[str, bytes] = {}
    for path in _written_files(recorded):
        data = path.read_bytes()
        out[str(path)] = data
        if data.startswith(b"SQLite format 3\x00"):
            out[f"{path} (dump)"] = _sql_dump(path).encode()
    return out


def test_no_planted_secret_reaches_any_backend(recorded: dict[str, Any]):
    """No planted secret appears in any byte written by the local store, OpenLineage,
    MLflow (tracking DB, artifacts) or a spool, while the harmless markers do."""
    written = _everything_written(recorded)
    names = "\n".join(written)
    assert "flowrecord.db (dump)" in names and "mlflow.db (dump)" in names
    assert any(name.endswith("lineage.jsonl") for name in written)
    assert any("mlartifacts" in name for name in written)
    leaks = [
        f"{what} in {name}"
        for what, secret in SECRETS.items()
        for name, data in written.items()
        if secret.encode() in data
    ]
    assert not leaks, "secrets written:\n" + "\n".join(leaks)
    blob = b"\n".join(written.values())
    missing = [what for what, marker in CONTROLS.items() if marker.encode() not in blob]
    assert missing == []


def test_each_planted_place_was_recorded_redacted(recorded: dict[str, Any]):
    """The secrets were not dropped by accident: each place they were planted in reached
    the store, with the secret replaced by the redaction mark."""
    from flowrecord.backends.local import LocalStore

    store = LocalStore(recorded["home"])
    params = {r["key"]: r["value"] for r in store.query("SELECT key, value FROM params")}
    assert params["db_password"] == "***"
    assert "etl_user:***@db.internal" in params["source"]
    assert json.loads(params["training"])["storage"]["client_secret"] == "***"
    assert json.loads(params["options"]) == {"aws_secret_access_key": "***", "region": "eu-west-1"}
    assert params["marker"] == CONTROLS["param"]
    # The Airflow task's own arguments are params of its task.
    assert params["api_token"] == "***"
    assert params["note"] == CONTROLS["af_arg"]
    assert "svc:***@acct.example" in params["warehouse"]
    tags = {r["key"]: r["value"] for r in store.query("SELECT key, value FROM tags")}
    assert tags["deploy_token"] == "***" and tags["team"] == "ml"
    assert "svc:***@api.example.com" in tags["endpoint"]
    (dataset,) = store.query("SELECT uri FROM datasets WHERE name = 'orders'")
    assert dataset["uri"].startswith("postgresql://reader:")
    runs = {r["pipeline"] for r in store.query("SELECT pipeline FROM runs")}
    assert runs == {"plain-secrets", "fr_secrets"}
    states = {r["name"]: r["state"] for r in store.query("SELECT name, state FROM tasks")}
    assert states == {"train": "succeeded", "fit": "succeeded", "classic": "succeeded"}
    snapshots = store.query("SELECT diff, environment, dirty FROM code_snapshots")
    assert len(snapshots) == 2
    for snap in snapshots:
        assert snap["dirty"] == 1
        diff = snap["diff"]
        assert "AWS_SECRET_ACCESS_KEY" in diff and "GITHUB_TOKEN" in diff
        assert "API_TOKEN" in diff and "password" in diff
        assert CONTROLS["diff"] in diff
        environment = json.loads(snap["environment"])
        assert environment["HF_TOKEN"] == "***"
        assert environment["MLFLOW_TRACKING_PASSWORD"] == "***"
        assert environment["CONDA_FR_MARKER"] == CONTROLS["env"]
        assert "cache:***@h" in environment["CONDA_CACHE_DB"]
        assert not any(name.startswith("AIRFLOW_CONN") for name in environment)


def test_dataset_uri_credentials_are_not_written(recorded: dict[str, Any]):
    """The password inside a dataset URI is written by no backend."""
    written = _everything_written(recorded)
    leaks = [name for name, data in written.items() if DATASET_URI_SECRET.encode() in data]
    assert not leaks, "dataset URI password written to:\n" + "\n".join(leaks)
