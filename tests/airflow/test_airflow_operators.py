"""ValidateDataOperator and @validated: results recorded, policy 'fail' fails the task."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration]


def test_validation_results_are_recorded_and_fail_policy_fails(run_dag, record):
    """Passing data passes; failing data is recorded, and fails the task only under 'fail'."""
    dag_run = run_dag("fr_validate")
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {
        "load_orders": "success",
        "check_orders": "success",
        "check_bad_orders_record": "success",
        "check_bad_orders_fail": "failed",
        "load_bad_orders": "failed",
    }
    run = record.run("fr_validate", dag_run.run_id)
    tasks = {name: row for (name, _m, _t), row in record.tasks(run).items()}

    def validations(name):
        return record.of_task("validations", tasks[name])

    [decorated] = validations("load_orders")
    assert decorated["passed"] == 1 and decorated["dataset_name"] == "fr_validate.load_orders"
    assert decorated["schema_name"] == "orders" and decorated["policy"] == "fail"

    # The operator validates the upstream output under the upstream's dataset name.
    [checked] = validations("check_orders")
    assert checked["passed"] == 1 and checked["dataset_name"] == "fr_validate.load_orders"
    assert checked["fingerprint"] == decorated["fingerprint"]
    [read] = record.of_task("datasets", tasks["check_orders"])
    assert read["role"] == "input" and read["fingerprint"] == decorated["fingerprint"]

    [recorded] = validations("check_bad_orders_record")
    assert recorded["passed"] == 0 and recorded["failure_count"] == 2
    assert recorded["policy"] == "record"
    assert tasks["check_bad_orders_record"]["state"] == "succeeded"

    [failed] = validations("check_bad_orders_fail")
    assert failed["passed"] == 0 and failed["failure_count"] == 2
    failed_task = tasks["check_bad_orders_fail"]
    assert failed_task["state"] == "failed"
    assert failed_task["error"].startswith("AirflowFailException: data validation failed:")
    assert "fr_validate.check_bad_orders_fail" in failed_task["error"]
    checks = json.loads(failed["checks"])
    assert any(not c["passed"] for c in checks)

    [bad_decorated] = validations("load_bad_orders")
    assert bad_decorated["passed"] == 0
    assert tasks["load_bad_orders"]["state"] == "failed"
    assert "data validation failed" in tasks["load_bad_orders"]["error"]


@pytest.mark.unit
def test_validated_refuses_to_wrap_a_task_object(airflow_db):
    """@validated above @task is a usage error, reported at DAG definition time."""
    import pandera.pandas as pa
    from airflow.sdk import task

    from flowrecord_airflow import validated

    schema = pa.DataFrameSchema({"x": pa.Column(int)})

    @task
    def produce():
        return None

    with pytest.raises(TypeError, match="below @task"):
        validated(schema=schema)(produce)


@pytest.mark.unit
def test_bad_policy_is_refused_at_definition(airflow_db):
    """An unknown policy name fails when the DAG is defined, not when it runs."""
    import pandera.pandas as pa

    from flowrecord_airflow import ValidateDataOperator, validated

    schema = pa.DataFrameSchema({"x": pa.Column(int)})
    with pytest.raises(ValueError):
        validated(schema=schema, policy="sometimes")
    with pytest.raises(ValueError):
        ValidateDataOperator(task_id="v", data=lambda: None, schema=schema, policy="sometimes")
