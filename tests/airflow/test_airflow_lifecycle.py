"""PromotionGateOperator, retrain_schedule and RetrainCheckOperator, run with dag.test().

The DAGs are ``tests/airflow/dags/fr_lifecycle.py`` and the snippets of the
"Promotion gates" and "Retraining schedules" sections of docs/airflow.md, which
this module writes into the session's DAGs folder at import (``dag.test()`` runs
only DAGs of a DAG bundle, and pytest imports every test module before the first
test runs). ``examples/churn_common.py`` goes beside that folder, where the copy
of ``examples/airflow/churn_dag.py`` looks for it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "airflow.md"
DAGS_FOLDER = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])  # set by conftest.py

pytestmark = [pytest.mark.integration]


def doc_snippet(section: str) -> str:
    """The ``py`` block of one section of docs/airflow.md."""
    text = DOC.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    (block,) = re.findall(r"```py\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)
    return block


DOC_DAGS = {"fr_doc_gate": "Promotion gates", "fr_doc_retrain": "Retraining schedules"}
for _name, _section in DOC_DAGS.items():
    (DAGS_FOLDER / f"{_name}.py").write_text(doc_snippet(_section))
shutil.copy(REPO / "examples" / "churn_common.py", DAGS_FOLDER.parent / "churn_common.py")


@pytest.fixture
def test_dag(airflow_db: Path, flowrecord_home: Path, load_dag: Any) -> Callable[..., Any]:
    """Run ``<file>.<attr>.test(...)`` in this process, in the test's flowrecord home."""
    import flowrecord

    def _run(name: str, attr: str = "dag", **kwargs: Any) -> Any:
        dag_run = getattr(load_dag(name), attr).test(**kwargs)
        assert flowrecord.flush(10), "flowrecord did not deliver the events in time"
        return dag_run

    return _run


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom(dag_run: Any, task_id: str) -> Any:
    """What *task_id* pushed as its return value in *dag_run*."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, key="return_value", task_ids=task_id, dag_ids=dag_run.dag_id
        )
        rows = session.scalars(query).all()
        return XComModel.deserialize_value(rows[0]) if rows else None


def asset_events(uri: str) -> list[dict[str, Any]]:
    """Every event of the Asset *uri* in the metadata DB, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
        return [
            {"extra": dict(e.extra or {}), "dag_id": e.source_dag_id, "run_id": e.source_run_id}
            for e in rows
        ]


def unpause(dag_id: str) -> None:
    """Unpause *dag_id* (a DAG starts paused; Airflow queues no asset-triggered run of it then)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))


def queued_runs(dag_id: str) -> int:
    """Asset-triggered runs of *dag_id* the scheduler would start."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).where(AssetDagRunQueue.target_dag_id == dag_id))


def gate_rows(record: Any, dag_id: str, run_id: str) -> tuple[dict, list[dict]]:
    """(gate task row, its recorded decisions)."""
    run = record.run(dag_id, run_id)
    tasks = {name: row for (name, _m, _t), row in record.tasks(run).items()}
    return tasks, record.of_task("gate_decisions", tasks["gate"])


# ---------------------------------------------------------------------------
# promotion gate
# ---------------------------------------------------------------------------


def test_gate_promotes_then_refuses_and_the_refusal_skips_deploy(test_dag, record):
    """Promoted: deploy runs, notify skipped; refused: deploy skipped, notify runs, run succeeds."""
    from flowrecord.lifecycle import ModelRegistry

    first = test_dag("fr_doc_gate", run_conf={"auc": 0.9})
    assert first.state == "success"
    assert states(first) == {
        "register": "success",
        "gate": "success",
        "deploy": "success",
        "notify": "skipped",
    }
    decision = xcom(first, "gate")
    assert (decision["version"], decision["passed"], decision["applied"]) == ("1", True, True)
    assert ModelRegistry().get_alias("fraud", "champion") == "1"

    second = test_dag("fr_doc_gate", run_conf={"auc": 0.85})
    assert second.state == "success"
    assert states(second) == {
        "register": "success",
        "gate": "success",
        "deploy": "skipped",
        "notify": "success",
    }
    decision = xcom(second, "gate")
    assert (decision["version"], decision["applied"]) == ("2", False)
    assert any("regressed by 0.05" in f for f in decision["failures"])
    assert ModelRegistry().get_alias("fraud", "champion") == "1"

    # the decision is on record under the gate task; the deploy is recorded as skipped
    tasks, [row] = gate_rows(record, "promote_fraud", second.run_id)
    assert row["decision_id"] == decision["decision_id"] and row["applied"] == 0
    assert (tasks["deploy"]["state"], tasks["deploy"]["try_number"]) == ("skipped", 0)
    assert tasks["gate"]["state"] == "succeeded"
    _, [row] = gate_rows(record, "promote_fraud", first.run_id)
    assert (row["version"], row["applied"]) == ("1", 1)


def test_block_fails_the_gate_task_on_refusal(test_dag, record):
    """block=True: a refused candidate fails the gate task (recorded), nothing downstream runs."""
    from flowrecord.lifecycle import ModelRegistry

    assert test_dag("fr_lifecycle", "gate_block", run_conf={"auc": 0.9}).state == "success"
    refused = test_dag("fr_lifecycle", "gate_block", run_conf={"auc": 0.5})
    assert refused.state == "failed"
    assert states(refused) == {"register": "success", "gate": "failed", "deploy": "upstream_failed"}
    assert ModelRegistry().get_alias("fr_model", "champion") == "1"
    tasks, [row] = gate_rows(record, "fr_gate_block", refused.run_id)
    assert (row["version"], row["passed"], row["applied"]) == ("2", 0, 0)
    assert tasks["gate"]["state"] == "failed"
    assert "refused fr_model version 2" in tasks["gate"]["error"]
    assert "auc = 0.5 < minimum 0.8" in tasks["gate"]["error"]


def test_gates_that_cannot_judge_fail_closed(test_dag, record):
    """An unloadable gate, a missing version, a misnamed branch: each gate task fails, nothing moves."""
    from flowrecord.lifecycle import ModelRegistry, register_model_version

    register_model_version("fr_model", metrics={"auc": 0.95}, datasets=[])  # a candidate
    dag_run = test_dag("fr_lifecycle", "gate_broken")
    assert dag_run.state == "failed"
    assert states(dag_run) == {
        "unloadable": "failed",
        "no_version": "failed",
        "misnamed": "failed",
        "deploy_a": "upstream_failed",
        "deploy_b": "upstream_failed",
        "deploy_c": "upstream_failed",
    }
    assert ModelRegistry().get_alias("fr_model", "champion") is None
    run = record.run("fr_gate_broken", dag_run.run_id)
    tasks = {name: row for (name, _m, _t), row in record.tasks(run).items()}
    assert record.rows("SELECT * FROM gate_decisions") == []  # none was even judged
    assert "could not be loaded" in tasks["unloadable"]["error"]
    assert "fr_no_such_module" in tasks["unloadable"]["error"]
    assert "no candidate version" in tasks["no_version"]["error"]
    assert "not_downstream" in tasks["misnamed"]["error"]


@pytest.mark.unit
def test_gate_operator_rejects_bad_declarations():
    """A gate that is no gate, a malformed reference, or a task in both branches fail at parse time."""
    from flowrecord.lifecycle import PromotionGate
    from flowrecord_airflow import PromotionGateOperator

    gate = PromotionGate(model="m", minimums={"auc": 0.5})
    with pytest.raises(TypeError, match="gate must be a PromotionGate"):
        PromotionGateOperator(task_id="g1", gate=42, version="1")
    with pytest.raises(ValueError, match="module:NAME"):
        PromotionGateOperator(task_id="g2", gate="gates.CHURN", version="1")
    with pytest.raises(ValueError, match="both in deploy_task_ids and refused_task_ids"):
        PromotionGateOperator(
            task_id="g3", gate=gate, version="1", deploy_task_ids="a", refused_task_ids=["a"]
        )


# ---------------------------------------------------------------------------
# retraining schedules
# ---------------------------------------------------------------------------


@pytest.mark.unit
def test_retrain_schedule_compiles_cron_triggers_and_both():
    """cron -> CronTriggerTimetable (UTC); data triggers -> the retrain Asset; both -> either."""
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

    from flowrecord.lifecycle import DriftTrigger, RetrainPolicy
    from flowrecord_airflow import retrain_asset, retrain_schedule

    cron_only = retrain_schedule(RetrainPolicy(model="m", cron="0 3 * * 1"))
    assert isinstance(cron_only, CronTriggerTimetable)
    assert (cron_only.expression, str(cron_only.timezone)) == ("0 3 * * 1", "UTC")
    assert retrain_schedule(RetrainPolicy(model="m", cron="@annually")).expression == "0 0 1 1 *"

    drift = RetrainPolicy(model="churn model", drift=DriftTrigger("features"))
    asset = retrain_schedule(drift)
    assert isinstance(asset, Asset) and asset == retrain_asset(drift)
    assert (asset.name, asset.uri) == (
        "flowrecord.retrain.churn model",
        "flowrecord://retrain/churn%20model",
    )

    both = retrain_schedule(RetrainPolicy(model="m", cron="*/15 * * * *", new_data=["raw"]))
    assert isinstance(both, AssetOrTimeSchedule)
    assert both.timetable.expression == "*/15 * * * *"
    assert both.asset_condition.uri == "flowrecord://retrain/m"
    mine = Asset(name="mine", uri="s3://bucket/retrain")
    assert retrain_schedule(drift, asset=mine) is mine


@pytest.mark.unit
def test_retrain_check_operator_declares_its_asset_and_refuses_a_cron_only_policy():
    """The operator's outlet is the retrain Asset, once; a policy with only a cron has nothing to watch."""
    from flowrecord.lifecycle import MetricDecayTrigger, RetrainPolicy
    from flowrecord_airflow import RetrainCheckOperator, retrain_asset

    policy = RetrainPolicy(model="m", metric_decay=MetricDecayTrigger("live_auc", floor=0.8))
    op = RetrainCheckOperator(task_id="c1", policy=policy, outlets=[retrain_asset(policy)])
    assert op.outlets == [retrain_asset(policy)]
    with pytest.raises(ValueError, match="nothing to watch"):
        RetrainCheckOperator(task_id="c2", policy=RetrainPolicy(model="m", cron="@daily"))


def test_schedule_survives_serialization(load_dag, airflow_db):
    """The DAG scheduled by a policy keeps its cron and Asset through Airflow's serialization."""
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag = load_dag("fr_lifecycle").retrain_train
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert type(restored.timetable).__name__ == "AssetOrTimeSchedule"
    assert restored.timetable.timetable.summary == "30 2 * * *"
    # the scheduler's next run: 02:30 UTC, whatever the machine's zone
    earliest = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    info = restored.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=earliest, latest=None, catchup=True),
    )
    assert info.run_after == datetime(2025, 1, 2, 2, 30, tzinfo=UTC)
    assets = [key.uri for key, _ in restored.timetable.asset_condition.iter_assets()]
    assert assets == ["flowrecord://retrain/fr_model"]


def test_check_emits_the_asset_event_only_when_a_trigger_fired(test_dag, record):
    """Metric below its floor: an event with the reasons (queues the training DAG); above: skipped, none."""
    uri = "flowrecord://retrain/fr_model"
    before = len(asset_events(uri))
    queued = queued_runs("fr_retrain_train")

    assert test_dag("fr_lifecycle", "monitor", run_conf={"live_auc": 0.9}).state == "success"
    unpause("fr_retrain_train")  # as a deployment would have it (the DAG is in the DB by now)
    calm = test_dag("fr_lifecycle", "retrain_check")
    assert calm.state == "success" and states(calm) == {"check_retrain": "skipped"}
    assert len(asset_events(uri)) == before
    assert xcom(calm, "check_retrain")["should_retrain"] is True  # cron: no version yet

    assert test_dag("fr_lifecycle", "monitor", run_conf={"live_auc": 0.7}).state == "success"
    decayed = test_dag("fr_lifecycle", "retrain_check")
    assert decayed.state == "success" and states(decayed) == {"check_retrain": "success"}
    events = asset_events(uri)
    assert len(events) == before + 1
    event = events[-1]
    assert (event["dag_id"], event["run_id"]) == ("fr_retrain_check", decayed.run_id)
    assert event["extra"]["model"] == "fr_model" and event["extra"]["policy"] == "retrain"
    assert event["extra"]["triggers"] == ["metric_decay:live_auc"]
    assert "below the floor 0.8" in event["extra"]["reasons"][0]
    assert queued_runs("fr_retrain_train") == queued + 1  # the scheduler would run it

    # every evaluation is on record under the check task, with its verdict
    for dag_run, fired in ((calm, 0), (decayed, 1)):
        run = record.run("fr_retrain_check", dag_run.run_id)
        [task] = record.tasks(run).values()
        rows = record.of_task("validations", task)
        verdicts = {(v["validator"], v["dataset_name"]): 1 - v["passed"] for v in rows}
        assert verdicts == {
            ("retrain:cron", "30 2 * * *"): 1,
            ("retrain:metric_decay", "live_auc"): fired,
        }


def test_doc_retrain_snippet_schedules_training_on_the_watchers_asset(test_dag, load_dag):
    """The doc's training DAG runs on cron or on the Asset its watcher DAG emits."""
    from airflow.sdk import AssetOrTimeSchedule

    from flowrecord_airflow import retrain_asset

    module = load_dag("fr_doc_retrain")
    schedule = module.training.timetable
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert schedule.timetable.expression == "0 3 * * 1"
    assert schedule.asset_condition == retrain_asset(module.POLICY)
    assert module.watcher.dag_id == "fraud_retrain_check"
    assert module.watcher.get_task("check_retrain").outlets == [retrain_asset(module.POLICY)]
    # nothing recorded yet: new data and drift cannot be judged, so no event
    dag_run = test_dag("fr_doc_retrain", "watcher")
    assert dag_run.state == "success" and states(dag_run) == {"check_retrain": "skipped"}
