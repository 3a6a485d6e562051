"""The UI side: the operator extra link and the record pages mounted in Airflow's API app."""

from __future__ import annotations

import re

import pytest


@pytest.mark.unit
def test_extra_link_points_to_the_task_page(airflow_db, monkeypatch):
    """The link names DAG, run, task, map index and try; it is absolute when base_url is set."""
    from airflow.models.taskinstancekey import TaskInstanceKey

    from flowrecord_airflow.links import FlowrecordLink

    key = TaskInstanceKey("fr dag", "grp.train", "manual__2026-01-01T00:00:00+00:00", 2, 3)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "")
    link = FlowrecordLink().get_link(None, ti_key=key)
    assert link == (
        "/flowrecord/dags/fr%20dag/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
        "/tasks/grp.train?map_index=3&try_number=2"
    )
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/base/")
    unmapped = TaskInstanceKey("d", "t", "r", 1, -1)
    assert FlowrecordLink().get_link(None, ti_key=unmapped) == (
        "https://airflow.example.com/base/flowrecord/dags/d/runs/r/tasks/t?try_number=1"
    )


@pytest.mark.unit
def test_plugin_exposes_link_app_and_views(airflow_db):
    """Airflow collects the global extra link, the FastAPI app and the external views."""
    from airflow import plugins_manager

    from flowrecord_airflow.links import FlowrecordLink

    links = plugins_manager.get_global_operator_extra_links()
    assert [type(link) for link in links if link.name == "flowrecord"] == [FlowrecordLink]
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [a["url_prefix"] for a in apps if a["name"] == "flowrecord"] == ["/flowrecord"]
    [info] = [
        p
        for p in plugins_manager.get_plugin_info(attrs_to_dump=["external_views"])
        if p["name"] == "flowrecord"
    ]
    ours = {v["destination"]: v for v in info["external_views"]}
    assert set(ours) == {"task_instance", "dag_run", "nav"}
    assert ours["task_instance"]["href"].startswith("flowrecord/dags/{DAG_ID}/runs/{RUN_ID}")


def _api_app(monkeypatch, all_admins: bool):
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", str(all_admins))
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app(apps="core"))


@pytest.mark.integration
@pytest.mark.e2e
def test_record_pages_in_the_api_server(run_dag, record, monkeypatch):
    """Airflow's own app factory mounts the pages; they show what the DAG run recorded."""
    from urllib.parse import quote

    import flowrecord

    dag_run = run_dag("fr_basic")
    client = _api_app(monkeypatch, all_admins=True)
    run_path = f"/flowrecord/dags/fr_basic/runs/{quote(dag_run.run_id, safe='')}"

    page = client.get(f"{run_path}/tasks/train")
    assert page.status_code == 200, page.text
    html = page.text
    for expected in ("auc", "0.91", "epochs", "learning_rate", "orders_report", "fr_basic.load"):
        assert expected in html, expected
    assert re.search(r"xxh3:[0-9a-f]{32}", html)
    assert "System usage" in html and "succeeded" in html

    as_json = client.get(f"{run_path}/tasks/train", params={"format": "json"}).json()
    assert as_json["attempt"]["state"] == "succeeded"
    assert {m["key"]: m["value"] for m in as_json["metrics"]} == {
        "auc": 0.91,
        "epochs": 3.0,
        "rows": 2.0,
    }
    assert as_json["system_usage"]

    run_page = client.get(run_path)
    assert run_page.status_code == 200
    for task_id in ("write_raw", "load", "train", "classic_python"):
        assert f">{task_id}<" in run_page.text
    assert "fr_basic" in client.get("/flowrecord/").text

    assert client.get("/flowrecord/dags/fr_basic/runs/no-such-run").status_code == 404
    # The UI substitutes {MAP_INDEX} only for mapped tasks: the literal means unmapped.
    unmapped = client.get(f"{run_path}/tasks/train", params={"map_index": "{MAP_INDEX}"})
    assert unmapped.status_code == 200 and "auc" in unmapped.text

    plugins = client.get("/api/v2/plugins").json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "flowrecord")
    assert "flowrecord_airflow.listener.FlowrecordListener" in ours["listeners"]

    # A state set by hand in the API is the attempt's outcome, recorded by the API server.
    patched = client.patch(
        f"/api/v2/dags/fr_basic/dagRuns/{quote(dag_run.run_id, safe='')}"
        "/taskInstances/classic_python",
        json={"new_state": "failed"},
    )
    assert patched.status_code == 200, patched.text
    assert flowrecord.flush(10)
    run = record.run("fr_basic", dag_run.run_id)
    classic = record.tasks(run)[("classic_python", None, 1)]
    assert classic["state"] == "failed"
    assert "manually set" in classic["error"]
    assert classic["duration_s"] >= 0


@pytest.mark.integration
def test_record_pages_require_airflow_auth(airflow_db, monkeypatch):
    """Without Airflow credentials the pages answer 401, like Airflow's own API."""
    client = _api_app(monkeypatch, all_admins=False)
    assert client.get("/flowrecord/").status_code == 401
    assert client.get("/flowrecord/dags/d/runs/r/tasks/t").status_code == 401


@pytest.mark.unit
def test_task_page_escapes_values_and_names_the_mlflow_run(monkeypatch):
    """Recorded values are HTML-escaped; with MLflow active the page gives its search filter."""
    from flowrecord.config import reset_config
    from flowrecord_airflow.views import render_task

    monkeypatch.setenv("FLOWRECORD_BACKENDS", "local,mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    reset_config()
    attempt = {
        "task_id": "3f1c0000-0000-5000-8000-000000000001",
        "try_number": 1,
        "state": "failed",
        "started_at": 0.0,
        "duration_s": 1.5,
        "error": "<script>alert(1)</script>",
        "host": "h",
        "pid": 1,
    }
    record = {
        "attempt": attempt,
        "attempts": [attempt],
        "params": [{"key": "q", "value": "<b>x</b>"}],
        "metrics": [],
        "datasets": [],
        "validations": [],
        "system_usage": {"cpu_percent_peak": 12.5},
        "tags": [],
    }
    try:
        page = render_task(record, "d<1>", "r", "t")
    finally:
        reset_config()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>x</b>" not in page
    assert "d&lt;1&gt;" in page
    assert "tags.\"flowrecord.task_id\" = '3f1c0000-0000-5000-8000-000000000001'" in page
    assert 'href="http://mlflow.example:5000"' in page
    assert "cpu_percent_peak" in page
