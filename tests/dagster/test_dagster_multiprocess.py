"""The multiprocess executor on a persistent instance, read back from the store, the
instance, and the webserver's GraphQL API (what the Dagster UI reads)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


def test_each_step_process_records_its_own_task(shop_run):
    """Every step ran in a process of its own and recorded itself; the run closed succeeded."""
    assert shop_run.success
    store = shop_run.store()
    tasks = {t["name"]: dict(t) for t in store.query("SELECT * FROM tasks")}
    assert set(tasks) == {"orders", "orders:flowrecord_schema", "clean_orders", "order_report"}
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    pids = {t["pid"] for t in tasks.values()}
    assert shop_run.test_pid not in pids and len(pids) == len(tasks)
    (run,) = store.query("SELECT * FROM runs")
    assert (run["pipeline"], run["run_key"], run["state"]) == (
        "shop_job",
        shop_run.dagster_run_id,
        "succeeded",
    )
    metrics = {
        m["key"]: (m["value"], m["task_id"])
        for m in store.query("SELECT key, value, task_id FROM metric_points")
    }
    assert metrics == {
        "orders_seen": (4.0, tasks["orders"]["task_id"]),
        "kept": (3.0, tasks["clean_orders"]["task_id"]),
    }


def test_data_crosses_processes_with_one_fingerprint(shop_run):
    """What the orders process stored is what the clean_orders process loaded."""
    store = shop_run.store()
    data = [
        dict(r)
        for r in store.query(
            "SELECT t.name AS task, d.name, d.role, d.fingerprint FROM datasets d "
            "JOIN tasks t USING (task_id)"
        )
    ]
    out = next(d for d in data if (d["task"], d["role"]) == ("orders", "output"))
    loaded = next(d for d in data if (d["task"], d["role"]) == ("clean_orders", "input"))
    assert out["fingerprint"] and out["fingerprint"] == loaded["fingerprint"]
    (validation,) = store.query("SELECT passed, failure_count, task_id FROM validations")
    assert (validation["passed"], validation["failure_count"]) == (0, 1)
    usage = store.query("SELECT DISTINCT task_id FROM system_usage")
    assert len(usage) == 4


def test_instance_holds_the_ui_metadata(shop_run):
    """The persistent instance's latest materializations carry the record's facts."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(shop_run.dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey("clean_orders"))
            checks = instance.fetch_materializations(dg.AssetKey("orders"), limit=1)
    finally:
        os.environ.pop("DAGSTER_HOME", None)
    metadata = event.asset_materialization.metadata
    assert [c.name for c in metadata["dagster/column_schema"].value.columns] == ["amount", "region"]
    assert metadata["dagster/row_count"].value == 3
    (record,) = checks.records
    validation = record.asset_materialization.metadata["flowrecord/validation"].value
    assert validation["failure_count"] == 1 and validation["schema"] == "Orders"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

ASSET = """
query ($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on JsonMetadataEntry { jsonString }
          ... on TableSchemaMetadataEntry { schema { columns { name type } } }
        }
      }
      definition {
        assetChecksOrError {
          ... on AssetChecks {
            checks {
              name
              blocking
              executionForLatestMaterialization {
                status
                evaluation {
                  success
                  severity
                  metadataEntries { label ... on IntMetadataEntry { intValue } }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def webserver(shop_run):
    """dagster-webserver on the run's instance, with the test code location loaded."""
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(shop_run.dagster_home),
        "FLOWRECORD_HOME": str(shop_run.flowrecord_home),
        "FLOWRECORD_CAPTURE_CODE": "0",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    executable = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [
            str(executable),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "fr_dagster_defs",
            "-d",
            str(HERE),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {proc.stderr.read()[-3000:]}")
            try:
                entries = _graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    location = entries[0]["locationOrLoadError"]
                    assert location["__typename"] == "RepositoryLocation", location
                    break
            except (OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("dagster-webserver did not load the code location in time")
            time.sleep(1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _entries(materialization: dict) -> dict:
    return {e["label"]: e for e in materialization["metadataEntries"]}


def test_webserver_graphql_serves_the_record_metadata(webserver, shop_run):
    """The UI's GraphQL API shows the column schema, row count, fingerprint and record link."""
    asset = _graphql(webserver, ASSET, {"key": {"path": ["clean_orders"]}})["assetOrError"]
    (materialization,) = asset["assetMaterializations"]
    assert materialization["runId"] == shop_run.dagster_run_id
    entries = _entries(materialization)
    columns = entries["dagster/column_schema"]["schema"]["columns"]
    assert [(c["name"], c["type"]) for c in columns] == [
        ("amount", "double"),
        ("region", "large_string"),
    ]
    assert entries["dagster/row_count"]["intValue"] == 3
    store = shop_run.store()
    (out,) = store.query(
        "SELECT fingerprint, run_id FROM datasets WHERE name = 'clean_orders' AND role = 'output'"
    )
    assert entries["flowrecord/fingerprint"]["text"] == out["fingerprint"]
    assert entries["flowrecord/record"]["text"] == f"flowrecord show {out['run_id']}"
    profile = json.loads(entries["flowrecord/profile"]["jsonString"])
    assert profile["amount"]["min"] == 7.5


def test_webserver_graphql_serves_the_schema_check(webserver):
    """The UI's GraphQL API shows the flowrecord_schema check's result and failure count."""
    asset = _graphql(webserver, ASSET, {"key": {"path": ["orders"]}})["assetOrError"]
    (check,) = asset["definition"]["assetChecksOrError"]["checks"]
    assert (check["name"], check["blocking"]) == ("flowrecord_schema", False)
    execution = check["executionForLatestMaterialization"]
    # A failed, non-blocking check: the negative amount is one failing case.
    assert execution["status"] == "FAILED"
    evaluation = execution["evaluation"]
    assert (evaluation["success"], evaluation["severity"]) == (False, "WARN")
    counts = {e["label"]: e.get("intValue") for e in evaluation["metadataEntries"]}
    assert counts["failure_count"] == 1
    validation = _entries(asset["assetMaterializations"][0])["flowrecord/validation"]
    assert json.loads(validation["jsonString"])["failure_count"] == 1
