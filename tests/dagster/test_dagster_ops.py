"""Ops in graph jobs, run config as params, failures and retries, recorded in process.

No ``from __future__ import annotations`` here: Dagster reads the op signatures'
annotations (config classes, resources) at definition time.
"""

import json

import dagster as dg
import pytest
from fr_dagster_helpers import materialize, rows

import flowrecord
import flowrecord_dagster

pytestmark = pytest.mark.integration


class ScaleConfig(dg.Config):
    factor: int = 2
    api_token: str = ""


class Warehouse(dg.ConfigurableResource):
    user: str
    password: str


@dg.op
def load() -> list[int]:
    return [1, 2, 3]


@dg.op
def scale(config: ScaleConfig, warehouse: Warehouse, numbers: list[int]) -> list[int]:
    flowrecord.log_metric("factor", config.factor)
    return [n * config.factor for n in numbers]


@dg.op
def total(numbers: list[int]) -> int:
    return sum(numbers)


@dg.job
def numbers_job():
    total(scale(load()))


RUN_CONFIG = {
    "ops": {"scale": {"config": {"factor": 3, "api_token": "tok-123456"}}},
    "resources": {"warehouse": {"config": {"user": "app", "password": "hunter2"}}},
}


def _numbers_defs() -> dg.Definitions:
    return flowrecord_dagster.instrument(
        dg.Definitions(jobs=[numbers_job], resources={"warehouse": Warehouse.configure_at_launch()})
    )


def test_ops_of_a_graph_job_are_tasks_linked_by_their_outputs(flowrecord_home, store):
    """Each op is a task; an op's output and the next op's input are one fingerprinted dataset."""
    job = _numbers_defs().get_job_def("numbers_job")
    result = job.execute_in_process(run_config=RUN_CONFIG)
    assert result.success and result.output_for_node("total") == 18
    tasks = {t["name"]: t for t in rows(store, "SELECT * FROM tasks")}
    assert set(tasks) == {"load", "scale", "total"}
    assert all(json.loads(t["attributes"])["kind"] == "op" for t in tasks.values())
    data = rows(
        store,
        "SELECT d.name, d.role, d.uri, t.name AS task FROM datasets d JOIN tasks t USING (task_id)",
    )
    assert {(d["task"], d["role"], d["name"]) for d in data} == {
        ("load", "output", "numbers_job.load.result"),
        ("scale", "input", "numbers_job.load.result"),
        ("scale", "output", "numbers_job.scale.result"),
        ("total", "input", "numbers_job.scale.result"),
        ("total", "output", "numbers_job.total.result"),
    }
    (run,) = rows(store, "SELECT pipeline, state, run_key FROM runs")
    assert run == {"pipeline": "numbers_job", "state": "succeeded", "run_key": result.run_id}


def test_run_config_becomes_task_params_with_secrets_redacted(flowrecord_home, store):
    """An op's config and the run's resource config are its params; secrets never reach the store."""
    job = _numbers_defs().get_job_def("numbers_job")
    assert job.execute_in_process(run_config=RUN_CONFIG).success
    params = rows(
        store,
        "SELECT p.key, p.value FROM params p JOIN tasks t USING (task_id) WHERE t.name = ?",
        "scale",
    )
    by_key = {p["key"]: p["value"] for p in params}
    assert by_key["factor"] == "3"
    assert by_key["api_token"] == "***"
    warehouse = json.loads(by_key["resources.warehouse"])
    assert warehouse == {"user": "app", "password": "***"}
    everything = json.dumps(rows(store, "SELECT * FROM params")) + json.dumps(
        rows(store, "SELECT * FROM tasks")
    )
    assert "hunter2" not in everything and "tok-123456" not in everything
    (metric,) = rows(store, "SELECT key, value FROM metric_points")
    assert metric == {"key": "factor", "value": 3.0}


@dg.asset
def fragile() -> int:
    raise ValueError("the source is down")


@dg.asset
def after_fragile(fragile: int) -> int:
    return fragile + 1


def test_failed_asset_is_a_failed_task_and_the_error_is_the_users(flowrecord_home, store):
    """A failing asset fails as it would without flowrecord; its task and the run are failed."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[fragile, after_fragile]))
    result = materialize(defs, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data is None
    assert "the source is down" in failure.step_failure_data.error.cause.message
    tasks = {t["name"]: t for t in rows(store, "SELECT name, state, error FROM tasks")}
    assert tasks["fragile"]["state"] == "failed"
    assert "the source is down" in tasks["fragile"]["error"]
    # The step Dagster does not start after the failure is a skipped task, saying why.
    assert tasks["after_fragile"]["state"] == "skipped"
    assert "fragile" in tasks["after_fragile"]["error"]
    (run,) = rows(store, "SELECT state, error FROM runs")
    assert run == {"state": "failed", "error": "RUN_FAILURE"}


def _flaky_defs(tmp_path) -> dg.Definitions:
    marker = tmp_path / "attempts"

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    def flaky() -> int:
        attempts = int(marker.read_text()) if marker.exists() else 0
        marker.write_text(str(attempts + 1))
        flowrecord.log_metric("attempt", attempts + 1)
        if attempts == 0:
            raise RuntimeError("transient")
        return attempts

    return flowrecord_dagster.instrument(dg.Definitions(assets=[flaky]))


def test_retried_asset_records_each_attempt(flowrecord_home, store, tmp_path):
    """A retried step is two tasks: try 1 retrying with its error, try 2 succeeded."""
    result = materialize(_flaky_defs(tmp_path))
    assert result.success
    tries = rows(store, "SELECT try_number, state, error FROM tasks ORDER BY try_number")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "retrying"), (2, "succeeded")]
    assert "RuntimeError: transient" in tries[0]["error"]
    metrics = rows(
        store,
        "SELECT t.try_number, m.value FROM metric_points m JOIN tasks t USING (task_id) "
        "ORDER BY t.try_number",
    )
    assert [(m["try_number"], m["value"]) for m in metrics] == [(1, 1.0), (2, 2.0)]


@dg.op(out={"maybe": dg.Out(is_required=False)})
def gate():
    if False:  # the optional output is never produced
        yield dg.Output(1, "maybe")


@dg.op
def downstream(value: int) -> int:
    return value


@dg.job
def gated_job():
    downstream(gate())


def test_skipped_step_is_a_skipped_task(flowrecord_home, store):
    """A step Dagster skips (its optional input never came) is recorded as skipped."""
    defs = flowrecord_dagster.instrument(dg.Definitions(jobs=[gated_job]))
    assert defs.get_job_def("gated_job").execute_in_process().success
    tasks = {t["name"]: t["state"] for t in rows(store, "SELECT name, state FROM tasks")}
    assert tasks == {"gate": "succeeded", "downstream": "skipped"}
