"""run_pandera and friends against real pandera, on pandas and polars frames."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.polars as pap
import polars as pl
import pytest

from flowrecord.collectors.validation import (
    POLICIES,
    ValidationFailed,
    ValidationResult,
    check_policy,
    run_pandera,
    schema_name,
)

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- schemas


def pandas_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "age": pa.Column(int, pa.Check.in_range(0, 120)),
            "kind": pa.Column(str, pa.Check.isin(["a", "b"]), nullable=False),
        },
        name="people",
    )


def polars_schema() -> pap.DataFrameSchema:
    return pap.DataFrameSchema(
        {
            "age": pap.Column(pl.Int64, pap.Check.in_range(0, 120)),
            "kind": pap.Column(pl.String, pap.Check.isin(["a", "b"]), nullable=False),
        },
        name="people",
    )


class PandasPeople(pa.DataFrameModel):
    age: int = pa.Field(in_range={"min_value": 0, "max_value": 120})
    kind: str = pa.Field(isin=["a", "b"], nullable=False)


class PolarsPeople(pap.DataFrameModel):
    age: pl.Int64 = pap.Field(in_range={"min_value": 0, "max_value": 120})
    kind: pl.String = pap.Field(isin=["a", "b"], nullable=False)

    class Config:
        name = "polars_people"


BAD = {"age": [10, 130, -1, 40, 200], "kind": ["a", "z", "b", None, "a"]}
GOOD = {"age": [10, 20, 30], "kind": ["a", "b", "a"]}

FLAVOURS = [
    pytest.param(pd.DataFrame, pandas_schema, id="pandas-schema"),
    pytest.param(pl.DataFrame, polars_schema, id="polars-schema"),
    pytest.param(pd.DataFrame, lambda: PandasPeople, id="pandas-model"),
    pytest.param(pl.DataFrame, lambda: PolarsPeople, id="polars-model"),
]


def entry(result: ValidationResult, column: str | None, check_prefix: str) -> dict:
    found = [
        e for e in result.checks if e["column"] == column and e["check"].startswith(check_prefix)
    ]
    assert len(found) == 1, (column, check_prefix, result.checks)
    return found[0]


# --------------------------------------------------------------------------- passing / failing


@pytest.mark.parametrize(("frame", "schema"), FLAVOURS)
def test_passing_data_passes_and_lists_every_check(frame, schema) -> None:
    """Valid data passes, with each declared check listed as passed and nothing sampled."""
    result = run_pandera(frame(GOOD), schema())
    assert result.validator == "pandera"
    assert result.passed and result.error is None
    assert result.failure_count == 0 and result.failure_sample == ()
    assert entry(result, "age", "in_range")["passed"] is True
    assert entry(result, "kind", "isin")["failures"] == 0
    assert {e["column"] for e in result.checks} == {"age", "kind"}


@pytest.mark.parametrize(("frame", "schema"), FLAVOURS)
def test_failing_checks_are_counted_per_check(frame, schema) -> None:
    """Range, allowed-value and null failures are all collected (lazily) and counted per check."""
    result = run_pandera(frame(BAD), schema())
    assert not result.passed and result.error is None
    assert entry(result, "age", "in_range")["failures"] == 3
    assert entry(result, "kind", "isin")["failures"] == 1
    assert entry(result, "kind", "not_nullable")["failures"] == 1
    assert entry(result, "age", "dtype")["passed"] is True
    assert result.failure_count == 5
    json.dumps(result.checks)


@pytest.mark.parametrize(("frame", "schema"), FLAVOURS)
def test_failure_sample_is_json_safe_and_names_rows(frame, schema) -> None:
    """Sampled failures carry check, column, row index and the failing value, all JSON-safe."""
    result = run_pandera(frame(BAD), schema())
    sample = json.loads(json.dumps(result.failure_sample))
    ages = {(s["index"], str(s["failure_case"])) for s in sample if s["column"] == "age"}
    assert ages == {(1, "130"), (2, "-1"), (4, "200")}
    assert {"check", "column", "index", "failure_case"} == set(sample[0])
    nulls = [s for s in sample if s["check"] == "not_nullable"]
    assert nulls == [{"check": "not_nullable", "column": "kind", "index": 3, "failure_case": None}]


@pytest.mark.parametrize("flavour", ["pandas", "polars"])
def test_sample_is_bounded_and_spread_over_checks(flavour) -> None:
    """With many failures the sample stays within sample_size and still shows each failing check."""
    n = 5_000
    data = {"age": np.full(n, 500), "kind": ["zz"] * n}
    if flavour == "pandas":
        result = run_pandera(pd.DataFrame(data), pandas_schema(), sample_size=7)
    else:
        result = run_pandera(pl.DataFrame(data), polars_schema(), sample_size=7)
    assert result.failure_count == 2 * n
    assert len(result.failure_sample) == 7
    assert {s["column"] for s in result.failure_sample} == {"age", "kind"}
    assert run_pandera(pd.DataFrame(data), pandas_schema(), sample_size=0).failure_sample == ()


def test_pandas_dtype_mismatch_and_missing_column() -> None:
    """A wrong dtype fails the dtype check; a missing column fails presence and marks its checks unverified."""
    schema = pa.DataFrameSchema(
        {"age": pa.Column(int), "score": pa.Column(float, pa.Check.ge(0))}, name="s"
    )
    result = run_pandera(pd.DataFrame({"age": ["x", "y"]}), schema)
    assert not result.passed
    assert entry(result, "age", "dtype")["passed"] is False
    missing = entry(result, "score", "column_in_dataframe")
    assert missing["failures"] == 1 and missing["passed"] is False
    unverified = entry(result, "score", "greater_than_or_equal_to")
    assert unverified["passed"] is False and unverified["skipped"] == "column not in data"
    assert any(s["failure_case"] == "score" for s in result.failure_sample)


def test_polars_dtype_mismatch_and_missing_column() -> None:
    """The polars backend reports dtype and presence failures the same way."""
    schema = pap.DataFrameSchema({"age": pap.Column(pl.Int64), "score": pap.Column(pl.Float64)})
    result = run_pandera(pl.DataFrame({"age": ["x", "y"]}), schema)
    assert not result.passed
    assert entry(result, "age", "dtype")["failures"] == 1
    assert entry(result, "score", "column_in_dataframe")["failures"] == 1


def test_frame_wide_check_counts_failing_rows() -> None:
    """A frame-level check counts failing rows, not cells, on both backends."""
    pd_schema = pa.DataFrameSchema(
        {"a": pa.Column(int), "b": pa.Column(int)},
        checks=[pa.Check(lambda df: df["a"] < df["b"], name="a_below_b")],
    )
    pl_schema = pap.DataFrameSchema(
        {"a": pap.Column(pl.Int64), "b": pap.Column(pl.Int64)},
        checks=[
            pap.Check(lambda d: d.lazyframe.select(pl.col("a") < pl.col("b")), name="a_below_b")
        ],
    )
    data = {"a": [1, 5, 7, 0], "b": [2, 3, 1, 9]}
    for result in (
        run_pandera(pd.DataFrame(data), pd_schema),
        run_pandera(pl.DataFrame(data), pl_schema),
    ):
        frame_check = entry(result, None, "a_below_b")
        assert frame_check["failures"] == 2 and not result.passed


@pytest.mark.parametrize(("frame", "schema"), FLAVOURS)
def test_empty_frame_passes(frame, schema) -> None:
    """An empty frame with the right columns passes without failures."""
    if frame is pd.DataFrame:
        empty = pd.DataFrame(
            {"age": pd.Series([], dtype="int64"), "kind": pd.Series([], dtype=str)}
        )
    else:
        empty = pl.DataFrame(schema={"age": pl.Int64, "kind": pl.String})
    result = run_pandera(empty, schema())
    assert result.passed and result.failure_count == 0


def test_polars_lazyframe_is_accepted() -> None:
    """A polars LazyFrame is validated (pandera checks its schema) rather than rejected."""
    result = run_pandera(pl.DataFrame(GOOD).lazy(), polars_schema())
    assert result.passed
    wrong = run_pandera(pl.DataFrame({"age": ["x"], "kind": ["a"]}).lazy(), polars_schema())
    assert not wrong.passed


# --------------------------------------------------------------------------- broken schemas


@pytest.mark.parametrize("flavour", ["pandas", "polars"])
def test_check_that_raises_is_recorded_not_raised(flavour) -> None:
    """A custom check raising ZeroDivisionError yields error=..., passed=False, and no exception."""
    if flavour == "pandas":
        schema = pa.DataFrameSchema({"age": pa.Column(int, pa.Check(lambda s: s / 0 > 1 // 0))})
        frame = pd.DataFrame(GOOD)
    else:
        schema = pap.DataFrameSchema({"age": pap.Column(pl.Int64, pap.Check(lambda d: 1 // 0))})
        frame = pl.DataFrame(GOOD)
    result = run_pandera(frame, schema)
    assert result.passed is False
    assert result.error is not None and "ZeroDivisionError" in result.error
    assert entry(result, "age", "<lambda>")["passed"] is False
    assert result.failure_sample == ()
    assert "ZeroDivisionError" in str(ValidationFailed("people", result))


def test_parser_that_raises_is_recorded_not_raised() -> None:
    """An exception pandera does not catch itself (a failing parser) is recorded as error."""

    def explode(series: pd.Series) -> pd.Series:
        raise RuntimeError("parser blew up")

    schema = pa.DataFrameSchema({"age": pa.Column(int, parsers=pa.Parser(explode))})
    result = run_pandera(pd.DataFrame(GOOD), schema)
    assert result.passed is False
    assert result.error == "RuntimeError: parser blew up"


# --------------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    "schema",
    [None, {"age": int}, "people", pa.Column(int), pa.DataFrameModel, pd.DataFrame],
    ids=["none", "dict", "str", "column", "bare-model-base", "a-class"],
)
def test_not_a_schema_is_a_type_error(schema) -> None:
    """Anything but a pandera DataFrameSchema or DataFrameModel subclass is rejected by name."""
    with pytest.raises(TypeError, match="pandera DataFrameSchema"):
        run_pandera(pd.DataFrame(GOOD), schema)


def test_polars_schema_on_pandas_frame_is_a_type_error() -> None:
    """A polars schema given a pandas frame says which frame it wanted and how to convert."""
    with pytest.raises(TypeError, match=r"polars\.DataFrame or LazyFrame.*pandas"):
        run_pandera(pd.DataFrame(GOOD), polars_schema())


def test_pandas_schema_on_polars_frame_is_a_type_error() -> None:
    """A pandas schema given a polars frame (or a dict) is rejected with a clear message."""
    with pytest.raises(TypeError, match=r"pandas\.DataFrame.*to_pandas"):
        run_pandera(pl.DataFrame(GOOD), pandas_schema())
    with pytest.raises(TypeError, match=r"pandas\.DataFrame, got builtins\.dict"):
        run_pandera(GOOD, PandasPeople)


def test_negative_sample_size_is_rejected() -> None:
    """sample_size must be a non-negative int."""
    with pytest.raises(ValueError, match="sample_size"):
        run_pandera(pd.DataFrame(GOOD), pandas_schema(), sample_size=-1)


# --------------------------------------------------------------------------- names, policies, errors


def test_schema_name() -> None:
    """Schemas give their name, models their Config.name or class name, other objects None."""
    assert schema_name(pandas_schema()) == "people"
    assert schema_name(PandasPeople) == "PandasPeople"
    assert schema_name(PolarsPeople) == "polars_people"
    assert schema_name(pa.DataFrameSchema({})) is None
    assert schema_name("people") is None
    assert run_pandera(pl.DataFrame(GOOD), PolarsPeople).schema_name == "polars_people"


def test_check_policy() -> None:
    """Policies are normalised; anything else raises ValueError listing the valid ones."""
    assert POLICIES == ("record", "warn", "fail")
    assert check_policy(" FAIL ") == "fail"
    assert check_policy("record") == "record"
    for bad in ("strict", "", None):
        with pytest.raises(ValueError, match="record, warn, fail"):
            check_policy(bad)  # type: ignore[arg-type]


def test_validation_failed_summary_and_pickling() -> None:
    """ValidationFailed names the dataset, schema and failing checks, and survives pickling."""
    result = run_pandera(pd.DataFrame(BAD), pandas_schema())
    error = ValidationFailed("raw_people", result)
    text = str(error)
    assert "'raw_people'" in text and "'people'" in text
    assert "age: in_range(0, 120) (3 failing)" in text
    assert "\n" not in text
    again = pickle.loads(pickle.dumps(error))
    assert again.dataset_name == "raw_people" and again.result == result
    assert str(again) == text


def test_result_is_frozen() -> None:
    """ValidationResult is immutable."""
    result = run_pandera(pd.DataFrame(GOOD), pandas_schema())
    with pytest.raises(AttributeError):
        result.passed = False  # type: ignore[misc]


def test_json_safe_failure_values() -> None:
    """Timestamps become ISO strings and NaN becomes None in the sample."""
    schema = pa.DataFrameSchema(
        {
            "when": pa.Column("datetime64[ns]", pa.Check.lt(pd.Timestamp("2020-01-01"))),
            "x": pa.Column(float, pa.Check.gt(0), nullable=False),
        }
    )
    frame = pd.DataFrame(
        {"when": pd.to_datetime(["2019-01-01 00:00:00", "2024-05-06 07:08:09"]), "x": [np.nan, 1.0]}
    )
    result = run_pandera(frame, schema)
    sample = json.loads(json.dumps(result.failure_sample, allow_nan=False))
    assert {
        "check": "less_than(2020-01-01 00:00:00)",
        "column": "when",
        "index": 1,
        "failure_case": "2024-05-06T07:08:09",
    } in sample
    assert any(s["column"] == "x" and s["failure_case"] is None for s in sample)
