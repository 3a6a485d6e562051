"""Promotion gates and retraining policies as Dagster constructs, run for real.

The gate is a blocking asset check (and an op), the policy a schedule and a
sensor; each is exercised with real ``materialize``/``execute_in_process`` and
sensor ticks against a recorded store.

No ``from __future__ import annotations`` here: Dagster reads annotations.
"""

import json

import dagster as dg
import pandas as pd
import pytest
from fr_dagster_helpers import materialize, rows

import flowrecord_dagster
from flowrecord.lifecycle import PromotionGate, RetrainPolicy, register_model_version
from flowrecord.lifecycle.registry import get_alias
from flowrecord_dagster import (
    GATE_CHECK_NAME,
    MODEL_VERSION_KEY,
    RETRAIN_POLICY_TAG,
    RETRAIN_REASONS_TAG,
    RETRAIN_TRIGGERS_TAG,
    asset_datasets,
    model_version_metadata,
    promotion_gate_check,
    promotion_gate_op,
    retrain_run_request,
    retrain_schedule,
    retrain_sensor,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Support for arbitrary metadata values:DeprecationWarning"),
]

GATE = PromotionGate(model="churn", minimums={"auc": 0.8}, non_regression={"auc": 0.01})
GATE_WITH_VALIDATIONS = PromotionGate(
    model="churn", minimums={"auc": 0.8}, require_validations=["train"]
)
POLICY = RetrainPolicy(model="churn", cron="0 3 * * 1", new_data=["orders"])


class Orders:
    """What the pipeline's assets produce on the next run (set by each test)."""

    auc = 0.9
    rows = 3
    metadata: dict = {}


def _pipeline(gate=GATE, *, version_metadata=True, **check_kwargs):
    @dg.asset
    def orders() -> pd.DataFrame:
        return pd.DataFrame({"amount": [float(i) for i in range(Orders.rows)]})

    @dg.asset
    def model_version(context: dg.AssetExecutionContext, orders: pd.DataFrame):
        version = register_model_version(
            "churn",
            uri=f"file:///models/{context.run.run_id}",
            metrics={"auc": Orders.auc},
            datasets=asset_datasets(context, train="orders"),
        )
        metadata = model_version_metadata(version) if version_metadata else {}
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(deps=[model_version])
    def deploy() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"deployed": True})

    check = promotion_gate_check(gate, asset=model_version, **check_kwargs)
    return [orders, model_version, deploy], check


def _defs(gate=GATE, **kwargs) -> dg.Definitions:
    assets, check = _pipeline(gate, **kwargs)
    return flowrecord_dagster.instrument(dg.Definitions(assets=assets, asset_checks=[check]))


def _gate_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == GATE_CHECK_NAME
    ]
    return evaluation


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.fixture(autouse=True)
def _reset_orders():
    Orders.auc, Orders.rows = 0.9, 3
    yield


def test_gate_check_is_blocking_with_error_severity(flowrecord_home):
    """The check sits on the registering asset, blocking, named promotion_gate."""
    _, check = _pipeline()
    (spec,) = check.check_specs
    assert spec.blocking and spec.name == GATE_CHECK_NAME
    assert spec.asset_key == dg.AssetKey("model_version")


def test_passing_gate_promotes_records_under_the_check_task_and_deploys(flowrecord_home, store):
    """A good candidate: champion moves, the check passes with reasons, deploy materialises."""
    result = materialize(_defs())
    assert result.success
    evaluation = _gate_evaluation(result)
    assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["promoted"].value is True
    assert evaluation.metadata["version"].value == "1"
    assert any(r.startswith("pass: auc = 0.9") for r in evaluation.metadata["reasons"].value)
    assert "deploy" in _materialized(result)
    assert get_alias("churn", "champion") == "1"
    (decision,) = rows(
        store,
        "SELECT g.version, g.applied, g.decision_id, t.name, t.task_id FROM gate_decisions g "
        "JOIN tasks t USING (task_id)",
    )
    assert decision["name"] == f"model_version:{GATE_CHECK_NAME}" and decision["applied"] == 1
    assert evaluation.metadata["decision_id"].value == decision["decision_id"]
    assert evaluation.metadata["flowrecord/task_id"].value == decision["task_id"]


def test_registered_datasets_are_the_recorded_fingerprints(flowrecord_home, store):
    """asset_datasets hands the registry the fingerprint flowrecord recorded for the asset."""
    assert materialize(_defs()).success
    (written,) = rows(
        store, "SELECT fingerprint FROM datasets WHERE name = 'orders' AND role = 'output'"
    )
    (version,) = rows(store, "SELECT datasets FROM model_versions")
    assert json.loads(version["datasets"]) == [
        {"name": "orders", "fingerprint": written["fingerprint"], "role": "train"}
    ]


def test_refused_gate_blocks_downstream_and_fails_the_run(flowrecord_home, store):
    """A regressed candidate: check fails (ERROR), deploy does not run, champion stays, run fails."""
    instance = dg.DagsterInstance.ephemeral()
    defs = _defs()
    assert materialize(defs, instance=instance).success
    Orders.auc = 0.7
    result = materialize(defs, instance=instance, raise_on_error=False)
    assert not result.success
    evaluation = _gate_evaluation(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["promoted"].value is False
    failures = evaluation.metadata["failures"].value
    assert any("auc = 0.7 < minimum 0.8" in f for f in failures)
    assert any("regressed by 0.2" in f for f in failures)
    assert "refused" in evaluation.description
    assert _materialized(result) == {"orders", "model_version"}
    assert get_alias("churn", "champion") == "1"
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "model_version_promotion_gate"
    decisions = rows(
        store,
        "SELECT g.version, g.applied, t.name, t.state FROM gate_decisions g "
        "JOIN tasks t USING (task_id) ORDER BY g.ts",
    )
    assert [(d["version"], d["applied"], d["state"]) for d in decisions] == [
        ("1", 1, "succeeded"),
        ("2", 0, "failed"),
    ]
    # deploy never ran: the record shows it skipped, by the failed gate check.
    deploys = rows(
        store,
        "SELECT t.state, t.attributes FROM tasks t JOIN runs r USING (run_id) "
        "WHERE t.name LIKE '%deploy%' AND r.run_key = ? ORDER BY t.started_at",
        result.run_id,
    )
    assert [d["state"] for d in deploys] == ["skipped"]
    assert "model_version_promotion_gate" in json.loads(deploys[0]["attributes"])["skipped_by"]


def test_missing_version_fails_closed_and_records_no_decision(flowrecord_home, store):
    """No model_version metadata on the asset: the check fails, blocks deploy, decides nothing."""
    result = materialize(_defs(version_metadata=False), raise_on_error=False)
    assert not result.success
    evaluation = _gate_evaluation(result)
    assert not evaluation.passed
    assert MODEL_VERSION_KEY in evaluation.metadata["error"].value
    assert "deploy" not in _materialized(result)
    assert rows(store, "SELECT * FROM gate_decisions") == []
    assert get_alias("churn", "champion") is None


def test_unloadable_gate_fails_closed(flowrecord_home):
    """A gate reference that does not import fails the check and blocks deploy."""
    result = materialize(_defs("no_such_module_xyz:GATE"), raise_on_error=False)
    evaluation = _gate_evaluation(result)
    assert not evaluation.passed
    assert "could not be loaded" in evaluation.metadata["error"].value
    assert "deploy" not in _materialized(result)


def test_gate_for_another_model_fails_closed(flowrecord_home):
    """The asset registered a churn version; a gate judging another model refuses to act."""
    other = PromotionGate(model="fraud", minimums={"auc": 0.1})
    evaluation = _gate_evaluation(materialize(_defs(other), raise_on_error=False))
    assert not evaluation.passed and "'fraud'" in evaluation.metadata["error"].value


def test_gate_factory_receives_additional_inputs(flowrecord_home):
    """A gate factory is called with the assets named in additional_ins, loaded."""
    seen = []

    def factory(orders):
        seen.append(orders)
        return GATE

    result = materialize(
        _defs(factory, additional_ins={"orders": dg.AssetIn("orders")}), raise_on_error=False
    )
    assert _gate_evaluation(result).passed
    (frame,) = seen
    assert list(frame["amount"]) == [0.0, 1.0, 2.0]


def test_gate_requiring_validations_refuses_unvalidated_data(flowrecord_home):
    """require_validations=["train"] on data without a schema: refused, with that reason."""
    evaluation = _gate_evaluation(materialize(_defs(GATE_WITH_VALIDATIONS), raise_on_error=False))
    assert not evaluation.passed
    assert any(
        "no validation was recorded for train dataset 'orders'" in f
        for f in evaluation.metadata["failures"].value
    )


def test_promotion_gate_op_branches_a_graph_job(flowrecord_home, store):
    """The op form: promoted runs deploy and skips the other branch; a refusal the reverse."""

    @dg.op
    def register() -> str:
        return register_model_version("churn", metrics={"auc": Orders.auc}).version

    @dg.op
    def deploy_op(decision: dict) -> str:
        return decision["version"]

    @dg.op
    def keep_champion(decision: dict) -> list:
        return decision["failures"]

    gate = promotion_gate_op(GATE)

    @dg.job
    def churn_job():
        decision = gate(register())
        deploy_op(decision.promoted)
        keep_champion(decision.refused)

    defs = flowrecord_dagster.instrument(dg.Definitions(jobs=[churn_job]))
    first = defs.get_job_def("churn_job").execute_in_process()
    assert first.success and first.output_for_node("deploy_op") == "1"
    assert [e.step_key for e in first.get_step_skipped_events()] == ["keep_champion"]
    Orders.auc = 0.5
    second = defs.get_job_def("churn_job").execute_in_process()
    assert second.success
    assert [e.step_key for e in second.get_step_skipped_events()] == ["deploy_op"]
    assert any("auc" in f for f in second.output_for_node("keep_champion"))
    assert get_alias("churn", "champion") == "1"
    decisions = rows(
        store, "SELECT g.applied, t.name FROM gate_decisions g JOIN tasks t USING (task_id)"
    )
    assert sorted((d["name"], d["applied"]) for d in decisions) == [
        (GATE_CHECK_NAME, 0),
        (GATE_CHECK_NAME, 1),
    ]


# ---------------------------------------------------------------------------
# retraining: schedule and sensor
# ---------------------------------------------------------------------------


@dg.op
def fit() -> None:
    return None


@dg.job
def train_job():
    fit()


def test_retrain_schedule_runs_the_policy_cron_in_utc():
    """The schedule's cron is the policy's, in UTC, targeting the job; macros are expanded."""
    schedule = retrain_schedule(POLICY, train_job)
    assert schedule.name == "churn_retrain_schedule"
    assert schedule.cron_schedule == "0 3 * * 1"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "train_job"
    weekly = retrain_schedule(RetrainPolicy(model="churn", cron="@weekly"), "train_job")
    assert weekly.cron_schedule == "0 0 * * 0" and weekly.job_name == "train_job"
    with pytest.raises(ValueError, match="no cron"):
        retrain_schedule(RetrainPolicy(model="churn", new_data=["orders"]), train_job)


def test_retrain_schedule_ticks_with_policy_tags():
    """Evaluated for a tick, the schedule requests a run of the job tagged with its policy."""
    schedule = retrain_schedule(POLICY, train_job)
    data = schedule.evaluate_tick(dg.build_schedule_context())
    (request,) = data.run_requests
    assert request.tags[RETRAIN_POLICY_TAG] == "retrain"
    assert request.tags[RETRAIN_TRIGGERS_TAG] == "cron:0 3 * * 1"
    defs = flowrecord_dagster.instrument(dg.Definitions(jobs=[train_job], schedules=[schedule]))
    (kept,) = defs.schedules
    assert kept.cron_schedule == "0 3 * * 1" and kept.execution_timezone == "UTC"


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance):
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance))


def test_retrain_sensor_requests_once_per_new_data_and_records_why(flowrecord_home, store):
    """New data fires a run request keyed by the data; the same data keeps the key; evaluations recorded."""
    instance = dg.DagsterInstance.ephemeral()
    sensor = retrain_sensor(POLICY, train_job, minimum_interval_seconds=60)
    assert sensor.minimum_interval_seconds == 60
    defs = _defs()
    Orders.auc = 0.5  # recorded, registered, refused: no champion yet
    materialize(defs, instance=instance, raise_on_error=False)
    first, again = _tick(sensor, instance), _tick(sensor, instance)
    (request,) = first.run_requests
    assert sensor.job_name == "train_job"  # the request runs the sensor's one job
    assert "has no champion yet" in request.tags[RETRAIN_REASONS_TAG]
    assert request.tags[RETRAIN_TRIGGERS_TAG] == "new_data:orders"
    (repeat,) = again.run_requests
    assert repeat.run_key == request.run_key  # Dagster launches one run per key

    Orders.auc = 0.9  # a champion trained on this very data: nothing new
    assert materialize(defs, instance=instance).success
    quiet = _tick(sensor, instance)
    assert not quiet.run_requests and "no new data" in quiet.skip_message

    Orders.rows = 5  # new data lands
    (orders,) = [a for a in defs.assets if a.key == dg.AssetKey("orders")]
    assert dg.materialize([orders], resources=defs.resources, instance=instance).success
    fresh = _tick(sensor, instance)
    (new_request,) = fresh.run_requests
    assert new_request.run_key != request.run_key
    assert "differs from the champion's training data" in new_request.tags[RETRAIN_REASONS_TAG]

    evaluations = rows(
        store,
        "SELECT v.validator, v.dataset_name, v.passed, t.name AS task, r.pipeline "
        "FROM validations v JOIN tasks t USING (task_id) JOIN runs r ON r.run_id = v.run_id "
        "WHERE v.validator LIKE 'retrain:%' ORDER BY v.ts",
    )
    assert len(evaluations) == 8  # four ticks, two triggers each
    assert {(e["task"], e["pipeline"]) for e in evaluations} == {
        ("check_retrain", "churn_retrain_sensor")
    }
    new_data = [e["passed"] for e in evaluations if e["validator"] == "retrain:new_data"]
    assert new_data == [0, 0, 1, 0]  # fired, fired, quiet, fired


def test_retrain_run_request_ignores_the_cron_trigger(flowrecord_home):
    """A cron that is due is the schedule's business: a cron-only firing is a SkipReason."""
    policy = RetrainPolicy(model="churn", cron="* * * * *", metric_decay=[])
    with_data = RetrainPolicy(model="churn", cron="* * * * *", new_data=["never_recorded"])
    assert isinstance(retrain_run_request(policy), dg.SkipReason)
    skipped = retrain_run_request(with_data)
    assert isinstance(skipped, dg.SkipReason)
    assert "could not be evaluated" in skipped.skip_message


def test_retrain_sensor_needs_a_data_or_metric_trigger():
    """A cron-only policy has nothing to sense."""
    with pytest.raises(ValueError, match="retrain_schedule"):
        retrain_sensor(RetrainPolicy(model="churn", cron="@daily"), train_job)


def test_instrumented_definitions_keep_schedule_and_sensor(flowrecord_home):
    """instrument() passes the retrain schedule and sensor through, retargeted to its hooked job."""
    defs = flowrecord_dagster.instrument(
        dg.Definitions(
            jobs=[train_job],
            schedules=[retrain_schedule(POLICY, train_job)],
            sensors=[retrain_sensor(POLICY, train_job)],
        )
    )
    (sensor,) = defs.sensors
    (schedule,) = defs.schedules
    (hooked,) = defs.jobs
    assert sensor.job is hooked and schedule.job is hooked
    assert flowrecord_dagster.HOOK_NAME in {h.name for h in hooked.hook_defs}
