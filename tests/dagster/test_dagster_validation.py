"""pandera schemas on assets: validated in the step, reported as (blocking) asset checks.

No ``from __future__ import annotations`` here: Dagster reads return annotations.
"""

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pytest
from fr_dagster_helpers import materialize, rows

import flowrecord_dagster
from flowrecord.collectors.validation import ValidationFailed

# Most tests here give the schema object itself, which Dagster 1.13 accepts with a
# deprecation warning (the import-path form has none).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Support for arbitrary metadata values:DeprecationWarning"),
]


class Prices(pa.DataFrameModel):
    price: float = pa.Field(ge=0)


BAD = pd.DataFrame({"price": [1.0, -2.0, -3.0]})
GOOD = pd.DataFrame({"price": [1.0, 2.0]})


def _priced(frame: pd.DataFrame, **metadata):
    @dg.asset(metadata={flowrecord_dagster.SCHEMA_KEY: Prices, **metadata})
    def prices() -> pd.DataFrame:
        return frame

    @dg.asset
    def priced_report(prices: pd.DataFrame) -> int:
        return len(prices)

    return [prices, priced_report]


def _evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_record_policy_reports_failures_without_blocking(flowrecord_home, store):
    """Under "record", a failing schema is a WARN check with its failure count; downstream runs."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=_priced(BAD)))
    result = materialize(defs)
    assert result.success
    evaluation = _evaluation(result)
    assert evaluation.check_name == flowrecord_dagster.CHECK_NAME
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["failure_count"].value == 2
    assert evaluation.metadata["failed_checks"].value == [
        {"check": "greater_than_or_equal_to(0)", "column": "price", "failures": 2}
    ]
    assert result.output_for_node("priced_report") == 3
    (validation,) = rows(store, "SELECT passed, policy, failure_count, task_id FROM validations")
    (task,) = rows(store, "SELECT task_id FROM tasks WHERE name = 'prices'")
    assert validation == {"passed": 0, "policy": "record", "failure_count": 2, **task}


def test_passing_schema_passes_the_check(flowrecord_home):
    """Good data makes a passing check that names the schema."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=_priced(GOOD)))
    evaluation = _evaluation(materialize(defs))
    assert evaluation.passed and evaluation.metadata["failure_count"].value == 0
    assert evaluation.metadata["schema"].value == "Prices"


def test_fail_policy_makes_a_blocking_check_that_stops_downstream(flowrecord_home, store):
    """Under "fail" the check is blocking with severity ERROR: downstream does not materialise."""
    defs = flowrecord_dagster.instrument(
        dg.Definitions(assets=_priced(BAD, **{flowrecord_dagster.POLICY_KEY: "fail"}))
    )
    (check,) = defs.asset_checks
    (spec,) = check.check_specs
    assert spec.blocking
    result = materialize(defs, raise_on_error=False)
    assert not result.success
    evaluation = _evaluation(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {dg.AssetKey("prices")}
    tasks = {t["name"]: t["state"] for t in rows(store, "SELECT name, state FROM tasks")}
    assert tasks == {
        "prices": "succeeded",
        "prices:flowrecord_schema": "failed",
        "priced_report": "skipped",  # not executed: the blocking check failed
    }
    (validation,) = rows(store, "SELECT policy, passed FROM validations")
    assert validation == {"policy": "fail", "passed": 0}


def test_default_policy_comes_from_instrument(flowrecord_home):
    """instrument(validation_policy="fail") makes every schema check blocking."""
    defs = flowrecord_dagster.instrument(
        dg.Definitions(assets=_priced(GOOD)), validation_policy="fail"
    )
    (check,) = defs.asset_checks
    assert next(iter(check.check_specs)).blocking


Typed = flowrecord_dagster.schema_type(Prices)


@dg.asset
def annotated() -> Prices:
    return BAD


def test_dataframe_model_return_annotation_is_validated(flowrecord_home, store):
    """With schema_type(Model), `-> Model` is a valid annotation and the model is the schema."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[annotated]))
    evaluation = _evaluation(materialize(defs))
    assert not evaluation.passed and evaluation.metadata["failure_count"].value == 2
    (validation,) = rows(store, "SELECT schema_name, dataset_name FROM validations")
    assert validation == {"schema_name": "Prices", "dataset_name": "annotated"}


def test_schema_by_import_path(flowrecord_home):
    """A schema named by "module:Name" in metadata is imported and used."""

    @dg.asset(metadata={flowrecord_dagster.SCHEMA_KEY: "fr_dagster_defs:Orders"})
    def shipments() -> pd.DataFrame:
        return pd.DataFrame({"amount": [1.0], "region": ["mars"]})

    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[shipments]))
    evaluation = _evaluation(materialize(defs))
    assert not evaluation.passed
    assert evaluation.metadata["failed_checks"].value[0]["column"] == "region"


def test_validation_summary_is_materialization_metadata(flowrecord_home):
    """The materialization carries flowrecord/validation, the check's evidence."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=_priced(BAD)))
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(defs, instance=instance).success
    event = instance.get_latest_materialization_event(dg.AssetKey("prices"))
    summary = event.asset_materialization.metadata["flowrecord/validation"].value
    assert summary["passed"] is False and summary["failure_count"] == 2
    assert summary["policy"] == "record" and summary["schema"] == "Prices"
    assert {row["failure_case"] for row in summary["failure_sample"]} == {-2.0, -3.0}


def test_schema_on_a_value_less_asset_fails_closed_only_under_fail(flowrecord_home):
    """A MaterializeResult asset has nothing to validate: "fail" fails the check, "record" notes it."""
    for policy, passed in (("record", True), ("fail", False)):

        @dg.asset(
            name=f"external_{policy}",
            metadata={flowrecord_dagster.SCHEMA_KEY: Prices, flowrecord_dagster.POLICY_KEY: policy},
        )
        def external() -> dg.MaterializeResult:
            return dg.MaterializeResult()

        defs = flowrecord_dagster.instrument(dg.Definitions(assets=[external]))
        evaluation = _evaluation(materialize(defs, raise_on_error=False))
        assert evaluation.passed is passed
        assert evaluation.metadata["validated"].value is False


def test_a_broken_validation_is_recorded_not_raised(flowrecord_home, store):
    """A schema that cannot apply to the output (a list) fails the check, never the asset."""

    @dg.asset(metadata={flowrecord_dagster.SCHEMA_KEY: Prices})
    def not_a_frame() -> list:
        return [1, 2]

    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[not_a_frame]))
    result = materialize(defs)
    assert result.success and result.output_for_node("not_a_frame") == [1, 2]
    evaluation = _evaluation(result)
    assert not evaluation.passed and "TypeError" in evaluation.metadata["error"].value


@dg.op(
    out=dg.Out(
        metadata={
            flowrecord_dagster.SCHEMA_KEY: "test_dagster_validation:Prices",
            flowrecord_dagster.POLICY_KEY: "fail",
        }
    )
)
def priced_op() -> pd.DataFrame:
    return BAD


@dg.job
def priced_job():
    priced_op()


def test_op_output_under_fail_policy_fails_the_op(flowrecord_home, store):
    """An op has no asset check to block on: a "fail" schema on its output fails the op."""
    defs = flowrecord_dagster.instrument(dg.Definitions(jobs=[priced_job]))
    result = defs.get_job_def("priced_job").execute_in_process(raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert ValidationFailed.__name__ in failure.step_failure_data.error.to_string()
    (task,) = rows(store, "SELECT state, error FROM tasks")
    assert task["state"] == "failed" and task["error"].startswith("ValidationFailed")
