"""The churn retraining pipeline on Dagster, recorded by flowrecord end to end.

``churn_raw`` -> ``churn_features`` -> ``churn_train_set``/``churn_eval_set`` ->
``churn_model`` -> ``churn_model_version`` (evaluate, register) -> the
``promotion_gate`` check -> ``churn_deploy``, on the data, schemas, model, gate
and policy of ``examples/churn_common.py`` (shared with the Airflow and Metaflow
examples). Run one week of it::

    python examples/dagster/churn_defs.py --week 1
    python examples/dagster/churn_defs.py --week 2 --shift 1.5   # drifted data

then ``flowrecord explain churn@champion``, and ask the retrain sensor, once, what
it would do now (``--sense``: one tick, as the Dagster daemon would evaluate it)::

    python examples/dagster/churn_defs.py --sense

Or load the file as a code location
(``dagster dev -f examples/dagster/churn_defs.py``). What flowrecord adds, in
Dagster's terms:

- ``instrument(Definitions(...))`` records every asset and check; the raw data
  and the features are validated against their pandera schemas (blocking
  ``flowrecord_schema`` checks under the ``fail`` policy) and recorded as the
  datasets ``churn_raw`` and ``churn_features``, with fingerprints and profiles;
- the promotion gate is a blocking asset check on ``churn_model_version``: a
  refused candidate fails it, so ``churn_deploy`` does not materialise and the
  run ends failed, as any blocking check failure does in Dagster;
- the retraining policy is a schedule (its cron, UTC) and a sensor (new data,
  drift) that start ``churn_retrain``.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import dagster as dg
import pandas as pd

# churn_common.py sits one directory up, shared by the three examples.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from churn_common import (
    MODEL,
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

import flowrecord_dagster
from flowrecord import log_metrics
from flowrecord.lifecycle import ModelRegistry, register_model_version
from flowrecord_dagster import (
    GATE_CHECK_NAME,
    POLICY_KEY,
    RETRAIN_REASONS_TAG,
    SCHEMA_KEY,
    asset_datasets,
    model_version_metadata,
    promotion_gate_check,
    retrain_schedule,
    retrain_sensor,
)

# No `from __future__ import annotations` here: Dagster reads the annotations.


class Week(dg.Config):
    """Which week of customers to ingest, and how far their incomes drift."""

    week: int = 1
    shift: float = 0.0


@dg.asset(metadata={SCHEMA_KEY: "churn_common:RAW_SCHEMA", POLICY_KEY: "fail"})
def churn_raw(config: Week) -> pd.DataFrame:
    """One week of customers; data that breaks RAW_SCHEMA blocks everything downstream."""
    return generate(config.week, config.shift)


@dg.asset(metadata={SCHEMA_KEY: "churn_common:FEATURES_SCHEMA", POLICY_KEY: "fail"})
def churn_features(churn_raw: pd.DataFrame) -> pd.DataFrame:
    """Model-ready features."""
    return build_features(churn_raw)


@dg.multi_asset(outs={"churn_train_set": dg.AssetOut(), "churn_eval_set": dg.AssetOut()})
def churn_split(churn_features: pd.DataFrame):
    """75% of the features to train on, the rest to evaluate on."""
    train_df, eval_df = split(churn_features)
    return train_df, eval_df


@dg.asset
def churn_model(churn_train_set: pd.DataFrame):
    """The candidate: a scaled logistic regression."""
    return train(churn_train_set)


@dg.asset
def churn_model_version(
    context: dg.AssetExecutionContext, churn_model, churn_eval_set: pd.DataFrame
) -> dg.MaterializeResult:
    """Score the candidate and register it, with the exact data it came from."""
    metrics = evaluate(churn_model, churn_eval_set)
    log_metrics(metrics)
    uri = save_model(churn_model, f"{MODEL}-dagster-{context.run.run_id}")
    version = register_model_version(
        MODEL,
        uri=uri,
        metrics=metrics,
        datasets=asset_datasets(
            context, train=["churn_raw", "churn_features"], eval=["churn_eval_set"]
        ),
    )
    context.log.info(f"registered {MODEL} version {version.version}: {metrics}")
    return dg.MaterializeResult(metadata={**model_version_metadata(version), **metrics})


# The gate's bootstrap compares candidate and champion on this week's evaluation
# data, which the check loads: the factory gets it by its input name.
churn_gate = promotion_gate_check(
    lambda churn_eval_set: promotion_gate(churn_eval_set),
    asset=churn_model_version,
    additional_ins={"churn_eval_set": dg.AssetIn("churn_eval_set")},
)


@dg.asset(deps=[churn_model_version])
def churn_deploy() -> dg.MaterializeResult:
    """Put the champion where serving reads it (only after the gate promoted it)."""
    champion = ModelRegistry().champion(MODEL)
    if champion is None or champion.uri is None:
        raise RuntimeError(f"{MODEL} has no champion to deploy")
    serving = model_dir() / f"{MODEL}-serving.pkl"
    shutil.copyfile(Path(champion.uri.removeprefix("file://")), serving)
    load_model(serving.as_uri())  # what serving would do: it must load
    print(f"deployed {MODEL} version {champion.version} to {serving.as_uri()}")
    return dg.MaterializeResult(
        metadata={"version": champion.version, "serving_uri": serving.as_uri()}
    )


ASSETS = [churn_raw, churn_features, churn_split, churn_model, churn_model_version, churn_deploy]

churn_retrain = dg.define_asset_job("churn_retrain", selection=dg.AssetSelection.all())

defs = flowrecord_dagster.instrument(
    dg.Definitions(
        assets=ASSETS,
        asset_checks=[churn_gate],
        jobs=[churn_retrain],
        schedules=[retrain_schedule(RETRAIN_POLICY, churn_retrain)],
        sensors=[retrain_sensor(RETRAIN_POLICY, churn_retrain)],
    )
)


def run_week(week: int, shift: float, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Materialise ``churn_retrain`` in process for one week of data."""
    job = defs.resolve_job_def("churn_retrain")
    return job.execute_in_process(
        run_config={
            "ops": {"churn_raw": {"config": {"week": week, "shift": shift}}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        instance=instance,
        raise_on_error=False,
    )


def outcome(result: dg.ExecuteInProcessResult) -> tuple[str, list[str]]:
    """``promoted``, ``refused`` or ``failed``, and the gate's failed reasons."""
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == GATE_CHECK_NAME]
    deployed = dg.AssetKey("churn_deploy") in {
        m.asset_key for m in result.get_asset_materialization_events()
    }
    if result.success and deployed:
        return "promoted", []
    failures = [e.step_key for e in result.get_step_failure_events()]
    if gate and not gate[0].passed and failures == [churn_gate.node_def.name]:
        return "refused", list(gate[0].metadata["failures"].value or [])
    return "failed", failures


def sense(instance: dg.DagsterInstance) -> int:
    """One tick of the retrain sensor against the record: print what it asks for."""
    (sensor,) = [s for s in defs.sensors or () if s.name == f"{MODEL}_retrain_sensor"]
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    for request in data.run_requests or ():
        print(f"retrain requested: run key {request.run_key}")
        for reason in request.tags[RETRAIN_REASONS_TAG].split(" | "):
            print(f"  {reason}")
    if data.skip_message:
        print(f"no retrain: {data.skip_message}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one week (or one sensor tick); exit 1 when something other than the gate failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--week", type=int, default=1, help="which week of customers to ingest")
    parser.add_argument("--shift", type=float, default=0.0, help="income drift, in std devs")
    parser.add_argument(
        "--sense", action="store_true", help="evaluate the retrain sensor once instead"
    )
    args = parser.parse_args(argv)
    # A persistent instance when DAGSTER_HOME is set (the UI then shows the runs).
    has_home = bool(os.environ.get("DAGSTER_HOME"))
    instance = dg.DagsterInstance.get() if has_home else dg.DagsterInstance.ephemeral()
    with instance:
        if args.sense:
            return sense(instance)
        result = run_week(args.week, args.shift, instance)
        verdict, details = outcome(result)
    print(f"week {args.week}: dagster run {result.run_id}: {MODEL} {verdict}")
    for line in details:
        print(f"  {line}")
    if verdict == "refused":
        print("  the blocking promotion_gate check failed, so the run failed (as Dagster")
        print("  reports any failed blocking check); churn_deploy was not materialised,")
        print("  and the champion keeps serving")
    # A refusal is an outcome of the pipeline, not an error of this script.
    return 0 if verdict in ("promoted", "refused") else 1


if __name__ == "__main__":
    sys.exit(main())
