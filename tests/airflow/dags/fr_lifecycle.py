"""Promotion gates that block or cannot run, and a retraining policy on a metric, for lifecycle tests."""

from __future__ import annotations

from airflow.sdk import Param, dag, task

import flowrecord
from flowrecord.lifecycle import MetricDecayTrigger, PromotionGate, RetrainPolicy
from flowrecord_airflow import PromotionGateOperator, retrain_check_dag, retrain_schedule

GATE = PromotionGate(model="fr_model", minimums={"auc": 0.8}, non_regression={"auc": 0.01})
POLICY = RetrainPolicy(
    model="fr_model", cron="30 2 * * *", metric_decay=MetricDecayTrigger("live_auc", floor=0.8)
)


@task
def register(auc: float) -> dict:
    from flowrecord.lifecycle import register_model_version

    return {
        "version": register_model_version("fr_model", metrics={"auc": auc}, datasets=[]).version
    }


@task
def deploy() -> str:
    return "deployed"


@dag(
    schedule=None,
    catchup=False,
    params={"auc": Param(0.9, type="number")},
    render_template_as_native_obj=True,
    tags=["flowrecord-test"],
)
def fr_gate_block():
    candidate = register(auc="{{ params.auc }}")
    gate = PromotionGateOperator(task_id="gate", gate=GATE, version=candidate, block=True)
    gate >> deploy()


@dag(
    schedule=None,
    catchup=False,
    params={"version": Param(None, type=["null", "string"])},
    tags=["flowrecord-test"],
)
def fr_gate_broken():
    """Three gates that must fail before judging: nothing downstream runs, nothing moves."""
    unloadable = PromotionGateOperator(
        task_id="unloadable", gate="fr_no_such_module:GATE", version="1"
    )
    no_version = PromotionGateOperator(
        task_id="no_version", gate=GATE, version="{{ params.version }}"
    )
    misnamed = PromotionGateOperator(
        task_id="misnamed", gate=GATE, version="1", deploy_task_ids=["not_downstream"]
    )
    unloadable >> deploy.override(task_id="deploy_a")()
    no_version >> deploy.override(task_id="deploy_b")()
    misnamed >> deploy.override(task_id="deploy_c")()


@dag(schedule=retrain_schedule(POLICY), catchup=False, tags=["flowrecord-test"])
def fr_retrain_train():
    """What the policy schedules: at 02:30 UTC, or on each event of its Asset."""
    register(auc=0.9)


@dag(
    schedule=None,
    catchup=False,
    params={"live_auc": Param(0.9, type="number")},
    render_template_as_native_obj=True,
    tags=["flowrecord-test"],
)
def fr_monitor():
    """Log the live metric the policy watches."""

    @task
    def observe(live_auc: float) -> None:
        flowrecord.log_metric("live_auc", live_auc)

    observe(live_auc="{{ params.live_auc }}")


gate_block = fr_gate_block()
gate_broken = fr_gate_broken()
retrain_train = fr_retrain_train()
monitor = fr_monitor()
retrain_check = retrain_check_dag(POLICY, dag_id="fr_retrain_check", schedule=None)
