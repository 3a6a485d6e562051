"""Every task of every DAG recorded under ``dag.test()``, through the plugin's listener."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration]


def _by_name(tasks: dict) -> dict:
    """Attempts keyed by task name only, for DAGs whose tasks run once each."""
    out = {}
    for (name, _map_index, _try), row in tasks.items():
        assert name not in out, f"{name} has more than one attempt"
        out[name] = row
    return out


def test_plugin_is_registered_through_the_entry_point(airflow_db):
    """Airflow loads FlowrecordPlugin from the airflow.plugins entry point, with its listener."""
    from airflow import plugins_manager

    assert plugins_manager.get_import_errors() == {}
    info = plugins_manager.get_plugin_info(attrs_to_dump=["listeners", "source"])
    ours = [p for p in info if p["name"] == "flowrecord"]
    assert len(ours) == 1
    assert ours[0]["listeners"] == ["flowrecord_airflow.listener.FlowrecordListener"]
    assert "flowrecord-airflow==" in str(ours[0]["source"])
    assert "flowrecord_airflow.plugin:FlowrecordPlugin" in str(ours[0]["source"])


def test_basic_dag_records_run_tasks_datasets_params_metrics(run_dag, record, data_dir):
    """Classic and TaskFlow tasks: states, assets, frames, params, metrics, usage; run closed."""
    dag_run = run_dag("fr_basic")
    assert dag_run.state == "success"

    run = record.run("fr_basic", dag_run.run_id)
    assert run["state"] == "succeeded" and run["ended_at"] is not None
    tasks = _by_name(record.tasks(run))
    assert set(tasks) == {"write_raw", "load", "train", "classic_python"}
    for row in tasks.values():
        assert row["state"] == "succeeded"
        assert row["try_number"] == 1 and row["map_index"] is None
        assert row["duration_s"] is not None and row["duration_s"] >= 0
        attrs = row["attributes"]
        assert attrs["dag_id"] == "fr_basic" and attrs["run_id"] == dag_run.run_id
        assert attrs["task_id"] == row["name"] and attrs["map_index"] == "-1"
    assert tasks["write_raw"]["attributes"]["operator"] == "BashOperator"

    # The Asset written by the bash task is a local file: fingerprinted output,
    # and the same fingerprint is the input of the task that lists it in inlets.
    raw_out = record.of_task("datasets", tasks["write_raw"])
    raw_in = [d for d in record.of_task("datasets", tasks["load"]) if d["role"] == "input"]
    assert [d["name"] for d in raw_out] == ["raw_orders"] and raw_out[0]["role"] == "output"
    assert raw_out[0]["fingerprint"] and raw_out[0]["uri"].endswith("/orders.csv")
    assert [(d["name"], d["fingerprint"]) for d in raw_in] == [
        ("raw_orders", raw_out[0]["fingerprint"])
    ]

    # The returned frame is load's output and train's input, one name, one fingerprint.
    frame_out = [d for d in record.of_task("datasets", tasks["load"]) if d["role"] == "output"]
    frame_in = [d for d in record.of_task("datasets", tasks["train"]) if d["role"] == "input"]
    assert [d["name"] for d in frame_out] == ["fr_basic.load"]
    assert frame_out[0]["data_type"] == "pandas" and frame_out[0]["row_count"] == 2
    assert frame_out[0]["fingerprint"].startswith("xxh3:")
    assert [(d["name"], d["fingerprint"]) for d in frame_in] == [
        ("fr_basic.load", frame_out[0]["fingerprint"])
    ]

    # A non-file Asset is linked by name and uri; its event's extra is kept.
    report = [d for d in record.of_task("datasets", tasks["train"]) if d["role"] == "output"]
    assert [(d["name"], d["uri"]) for d in report] == [("orders_report", "s3://reports/orders")]
    tags = {t["key"]: t["value"] for t in record.of_task("tags", tasks["train"])}
    assert json.loads(tags["asset_extra:orders_report"]) == {"format": "parquet", "rows": 2}

    # Scalar arguments are params (secrets redacted); injected context is not.
    load_params = {p["key"]: p["value"] for p in record.of_task("params", tasks["load"])}
    assert load_params == {"limit": "2", "api_token": "***"}
    train_params = {p["key"]: p["value"] for p in record.of_task("params", tasks["train"])}
    assert train_params == {"learning_rate": "0.5", "tags": '["a", "b"]'}

    # The returned dict of numbers is metrics, beside what the task body logged.
    metrics = {m["key"]: m["value"] for m in record.of_task("metric_points", tasks["train"])}
    assert metrics == {"auc": 0.91, "rows": 2.0, "epochs": 3.0}
    assert record.of_task("metric_points", tasks["classic_python"]) == []

    # System usage was sampled in the task's own process.
    for row in tasks.values():
        usage = record.of_task("system_usage", row)
        assert len(usage) == 1, row["name"]
        assert "rss_bytes_peak" in json.loads(usage[0]["summary"]) or json.loads(
            usage[0]["summary"]
        )


def test_mapped_tasks_and_task_groups(run_dag, record):
    """Each map index is its own attempt with its own metrics; group tasks keep their prefix."""
    dag_run = run_dag("fr_mapped")
    assert dag_run.state == "success"
    run = record.run("fr_mapped", dag_run.run_id)
    assert run["state"] == "succeeded"
    tasks = record.tasks(run)

    squares = {k[1]: v for k, v in tasks.items() if k[0] == "square"}
    assert sorted(squares) == [0, 1, 2]
    for index, row in squares.items():
        assert row["state"] == "succeeded" and row["attributes"]["map_index"] == str(index)
        metrics = {m["key"]: m["value"] for m in record.of_task("metric_points", row)}
        assert metrics == {"squared": float((index + 1) ** 2)}
        params = {p["key"]: p["value"] for p in record.of_task("params", row)}
        assert params == {"x": str(index + 1)}
    assert len({row["task_id"] for row in squares.values()}) == 3

    # The reduce step is a generator: its return value comes back through XCom,
    # the mapped outputs it received are not params, the Metadata it yielded is kept.
    reduce = tasks[("count_squares", None, 1)]
    assert {m["key"]: m["value"] for m in record.of_task("metric_points", reduce)} == {"count": 3.0}
    assert record.of_task("params", reduce) == []
    reduce_tags = {t["key"]: t["value"] for t in record.of_task("tags", reduce)}
    assert json.loads(reduce_tags["asset_extra:square_counts"]) == {"count": 3}
    [counts] = [d for d in record.of_task("datasets", reduce) if d["role"] == "output"]
    assert counts["name"] == "square_counts" and counts["uri"] == "s3://reports/square_counts"

    make = tasks[("prep.make_frame", None, 1)]
    clean = tasks[("prep.clean", None, 1)]
    assert make["attributes"]["task_group"] == "prep"
    made = record.of_task("datasets", make)
    cleaned_in = [d for d in record.of_task("datasets", clean) if d["role"] == "input"]
    cleaned_out = [d for d in record.of_task("datasets", clean) if d["role"] == "output"]
    assert [d["name"] for d in made] == ["fr_mapped.prep.make_frame"]
    assert cleaned_in[0]["name"] == "fr_mapped.prep.make_frame"
    assert cleaned_in[0]["fingerprint"] == made[0]["fingerprint"]
    assert made[0]["row_count"] == 3 and cleaned_out[0]["row_count"] == 2
    assert cleaned_out[0]["fingerprint"] != made[0]["fingerprint"]


def test_retry_records_both_attempts(run_dag, record):
    """A retried task has a 'retrying' first attempt with its error and a succeeded second."""
    dag_run = run_dag("fr_retry")
    assert dag_run.state == "success"
    run = record.run("fr_retry", dag_run.run_id)
    tasks = record.tasks(run)
    first, second = tasks[("flaky", None, 1)], tasks[("flaky", None, 2)]
    assert first["state"] == "retrying"
    assert first["error"] == "ConnectionError: first try always fails"
    assert second["state"] == "succeeded" and second["error"] is None
    assert first["task_id"] != second["task_id"]
    assert run["state"] == "succeeded"


def test_failing_task_setup_teardown_and_upstream_failed(run_dag, record):
    """The failure and its error are recorded, teardown still runs, the run is failed."""
    dag_run = run_dag("fr_failing")
    assert dag_run.state == "failed"
    run = record.run("fr_failing", dag_run.run_id)
    assert run["state"] == "failed"
    assert "crunch" in run["error"]
    tasks = record.tasks(run)
    crunch = tasks[("crunch", None, 1)]
    assert crunch["state"] == "failed"
    assert crunch["error"] == "ValueError: bad input: column 'amount' is negative"
    assert tasks[("create_cluster", None, 1)]["attributes"]["role"] == "setup"
    teardown = tasks[("delete_cluster", None, 1)]
    assert teardown["attributes"]["role"] == "teardown" and teardown["state"] == "succeeded"
    # publish never ran: the DAG-run hook records it, try 0, with the reason.
    publish = tasks[("publish", None, 0)]
    assert publish["state"] == "skipped"
    assert publish["error"] == "upstream failed"
    assert publish["attributes"]["airflow_state"] == "upstream_failed"
    assert len(system_usage := record.of_task("system_usage", crunch)) == 1, system_usage


def test_branching_and_self_skipping_tasks(run_dag, record):
    """The branch not taken and a task that skips itself are both recorded as skipped."""
    dag_run = run_dag("fr_branch")
    assert dag_run.state == "success"
    run = record.run("fr_branch", dag_run.run_id)
    tasks = record.tasks(run)
    assert tasks[("choose", None, 1)]["state"] == "succeeded"
    assert tasks[("left", None, 1)]["state"] == "succeeded"
    assert tasks[("join", None, 1)]["state"] == "succeeded"
    right = tasks[("right", None, 0)]
    assert right["state"] == "skipped" and right["attributes"]["recorded_by"] == "orchestrator"
    maybe = tasks[("maybe", None, 1)]
    assert maybe["state"] == "skipped"
    assert ("right", None, 1) not in tasks and ("maybe", None, 0) not in tasks


def test_disabled_records_nothing(run_dag, record, monkeypatch):
    """FLOWRECORD_DISABLED=1 turns the listener off: the DAG runs, nothing is recorded."""
    monkeypatch.setenv("FLOWRECORD_DISABLED", "1")
    dag_run = run_dag("fr_retry")
    assert dag_run.state == "success"
    assert record.rows("SELECT * FROM runs") == []
    assert record.rows("SELECT * FROM tasks") == []
