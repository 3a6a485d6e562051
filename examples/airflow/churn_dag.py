"""The churn retraining pipeline on Airflow, recorded by flowrecord with no change to it.

ingest -> validate -> features -> validate_features -> train -> evaluate ->
gate -> deploy (only when promoted), on the data, schemas, model, gate and policy
of ``examples/churn_common.py`` (shared with the Dagster and Metaflow examples).
Frames travel between tasks through XCom. Run one week of it::

    python examples/airflow/churn_dag.py --week 1
    python examples/airflow/churn_dag.py --week 2 --shift 1.5   # drifted data
    python examples/airflow/churn_dag.py --check                 # the retrain watcher

then ``flowrecord explain churn@champion``. What flowrecord adds, in Airflow's terms:

- the plugin's listener records every task (no code here asks for it); the
  ``ValidateDataOperator`` tasks validate the raw data and the features and
  record them as the datasets ``churn_raw`` and ``churn_features``, the names the
  retraining policy watches;
- ``evaluate`` registers the candidate with the fingerprints of the exact data
  it was trained and evaluated on;
- ``PromotionGateOperator`` applies the promotion gate and branches: a refused
  candidate skips ``deploy``, and the run still succeeds;
- ``retrain_schedule(RETRAIN_POLICY)`` is this DAG's schedule: Mondays 03:00 UTC,
  or whenever the watcher DAG ``churn_retrain_check`` finds new data or drift
  and emits the Asset ``flowrecord://retrain/churn``.

Run as a script, it runs one DAG run with ``dag.test()``, after setting (where
unset) the DAGs folder to this folder, since ``dag.test()`` runs only DAGs of a
DAG bundle, and ``AIRFLOW_HOME`` to ``$FLOWRECORD_HOME/airflow``; it migrates
that metadata database first, as ``airflow db migrate`` does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # A standalone run: Airflow reads its configuration when first imported.
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parent))
    os.environ.setdefault(
        "AIRFLOW_HOME",
        str(Path(os.environ.get("FLOWRECORD_HOME", ".flowrecord")).resolve() / "airflow"),
    )
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

# churn_common.py sits one directory up, shared by the three examples.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
from airflow.sdk import Param, dag, get_current_context, task
from churn_common import (
    FEATURES_SCHEMA,
    MODEL,
    RAW_SCHEMA,
    RETRAIN_POLICY,
    build_features,
    evaluate,
    generate,
    load_model,
    model_dir,
    promotion_gate,
    save_model,
    split,
    train,
)

import flowrecord
from flowrecord.lifecycle import register_model_version
from flowrecord_airflow import (
    PromotionGateOperator,
    ValidateDataOperator,
    retrain_check_dag,
    retrain_schedule,
)


def churn_gate(context: Any) -> Any:
    """The promotion gate, with the evaluation split train pushed for its bootstrap."""
    return promotion_gate(context["ti"].xcom_pull(task_ids="train", key="eval_df"))


@dag(
    dag_id="churn_retrain",
    schedule=retrain_schedule(RETRAIN_POLICY),  # cron "0 3 * * 1" or the retrain Asset
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    params={
        "week": Param(1, type="integer", minimum=1, description="which week of customers"),
        "shift": Param(0.0, type="number", description="income drift, in std devs"),
    },
    render_template_as_native_obj=True,  # "{{ params.week }}" arrives as an int
    tags=["example", "flowrecord"],
)
def churn_retrain():
    """Retrain the churn model on one week of customers; promote it only on evidence."""

    @task
    def ingest(week: int, shift: float) -> pd.DataFrame:
        """One week of customers (week and shift are recorded as params)."""
        return generate(week, shift)

    @task
    def features(raw: pd.DataFrame) -> pd.DataFrame:
        """Model-ready features; and whether the policy calls for this retrain, recorded."""
        feats = build_features(raw)
        # The policy's triggers, judged against the champion's training data: the
        # record keeps why this run was due (drift in week 2).
        RETRAIN_POLICY.check(data={"churn_raw": raw, "churn_features": feats})
        return feats

    @task(multiple_outputs=True)
    def train_model(feats: pd.DataFrame) -> dict[str, Any]:
        """Fit the candidate on 75% of the features; keep the rest to evaluate on."""
        train_df, eval_df = split(feats)
        run_id = get_current_context()["run_id"]
        uri = save_model(train(train_df), f"{MODEL}-{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}")
        return {"model_uri": uri, "eval_df": eval_df}

    @task
    def evaluate_model(
        raw: pd.DataFrame, feats: pd.DataFrame, eval_df: pd.DataFrame, model_uri: str
    ) -> dict[str, Any]:
        """Score the candidate and register it, with the exact data it came from."""
        metrics = evaluate(load_model(model_uri), eval_df)
        flowrecord.log_metrics(metrics)
        version = register_model_version(
            MODEL,
            uri=model_uri,
            metrics=metrics,
            datasets={  # each call records this task's read and returns its fingerprint
                "train": [
                    flowrecord.log_dataset(raw, name="churn_raw"),
                    flowrecord.log_dataset(feats, name="churn_features"),
                ],
                "eval": [flowrecord.log_dataset(eval_df, name="churn_eval")],
            },
        )
        return {"version": version.version, "model_uri": model_uri}

    @task
    def deploy(candidate: dict[str, Any]) -> str:
        """Put the new champion where serving reads it."""
        serving = model_dir() / f"{MODEL}-serving.pkl"
        shutil.copyfile(Path(candidate["model_uri"].removeprefix("file://")), serving)
        print(f"deployed {MODEL} version {candidate['version']} to {serving.as_uri()}")
        return serving.as_uri()

    raw = ingest(week="{{ params.week }}", shift="{{ params.shift }}")
    check_raw = ValidateDataOperator(
        task_id="validate", data=raw, schema=RAW_SCHEMA, dataset="churn_raw"
    )
    feats = features(raw)
    check_feats = ValidateDataOperator(
        task_id="validate_features", data=feats, schema=FEATURES_SCHEMA, dataset="churn_features"
    )
    trained = train_model.override(task_id="train")(feats)
    candidate = evaluate_model.override(task_id="evaluate")(
        raw, feats, trained["eval_df"], trained["model_uri"]
    )
    gate = PromotionGateOperator(
        task_id="gate", gate=churn_gate, version=candidate["version"], deploy_task_ids=["deploy"]
    )
    check_raw >> feats
    check_feats >> trained
    gate >> deploy(candidate)


dag = churn_retrain()

# The watcher: evaluates RETRAIN_POLICY hourly and emits flowrecord://retrain/churn,
# which schedules churn_retrain, when new raw data or drifted features call for it.
churn_retrain_check = retrain_check_dag(RETRAIN_POLICY, schedule="@hourly", tags=["example"])


def main(argv: list[str] | None = None) -> int:
    """Run one week of the pipeline (or the watcher) with ``dag.test()``; 0 when the run succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", type=int, default=1, help="which week of customers to ingest")
    parser.add_argument("--shift", type=float, default=0.0, help="income drift, in std devs")
    parser.add_argument("--check", action="store_true", help="run the retrain watcher instead")
    args = parser.parse_args(argv)

    from airflow.configuration import conf
    from airflow.utils import db

    dags_folder = Path(conf.get("core", "dags_folder")).resolve()
    if not Path(__file__).resolve().is_relative_to(dags_folder):
        print(f"{__file__} is not in the DAGs folder {dags_folder}: dag.test() cannot run it")
        return 2
    db.upgradedb()  # as `airflow db migrate`; quick when the database is current

    from flowrecord.lifecycle import decisions

    if args.check:
        run = churn_retrain_check.test()
        ti = run.get_task_instance("check_retrain")
        due = "retrain due: event emitted" if ti.state == "success" else "no retrain due"
        print(f"{churn_retrain_check.dag_id}: {run.state} ({due})")
        return 0 if run.state == "success" else 1
    run = dag.test(run_conf={"week": args.week, "shift": args.shift})
    print(f"{dag.dag_id} week {args.week} (shift {args.shift}): {run.state}")
    flowrecord.flush()
    latest = decisions(MODEL)[-1:] if run.state == "success" else []
    for decision in latest:
        verdict = "promoted" if decision["applied"] else "refused"
        print(f"{MODEL} version {decision['version']} {verdict}")
        for reason in decision["reasons"]:
            print(f"  {reason}")
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
