"""Validation through the recorder: results, failure samples and policies read back from
the store; the automatic volume check; drift against a recorded dataset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.collectors.validation import ValidationFailed

pytestmark = pytest.mark.unit

SCHEMA = pa.DataFrameSchema(
    {
        "age": pa.Column(int, pa.Check.in_range(0, 120)),
        "plan": pa.Column(str, pa.Check.isin(["a", "b"])),
    },
    name="customers",
)
BAD = pd.DataFrame({"age": [30, -1, 200, 45], "plan": ["a", "b", "zzz", "a"]})


def _validations(home: Path) -> list[dict]:
    return [dict(r) for r in LocalStore(home).query("SELECT * FROM validations ORDER BY ts")]


def test_failure_counts_and_samples_read_back(flowrecord_home: Path):
    """Per-check failure counts and a failure sample are stored with the task."""
    with flowrecord.run("p"), flowrecord.task("check") as task:
        result = flowrecord.validate(BAD, SCHEMA, name="customers")
    assert not result.passed
    flowrecord.flush(5)
    (row,) = _validations(flowrecord_home)
    assert row["task_id"] == task.task_id
    assert (row["validator"], row["schema_name"], row["passed"]) == ("pandera", "customers", 0)
    assert row["failure_count"] == 3
    failing = {(c["column"], c["failures"]) for c in json.loads(row["checks"]) if not c["passed"]}
    assert ("age", 2) in failing and ("plan", 1) in failing
    cases = {str(s["failure_case"]) for s in json.loads(row["failure_sample"])}
    assert {"-1", "200", "zzz"} <= cases
    assert row["fingerprint"].startswith("xxh3:")


def test_fail_policy_fails_the_task_after_recording(flowrecord_home: Path):
    """policy='fail' raises ValidationFailed; the result and the failed task are recorded."""
    with (
        pytest.raises(ValidationFailed, match="customers"),
        flowrecord.run("p"),
        flowrecord.task("check"),
    ):
        flowrecord.validate(BAD, SCHEMA, name="customers", policy="fail")
    flowrecord.flush(5)
    assert _validations(flowrecord_home)[0]["policy"] == "fail"
    (task,) = LocalStore(flowrecord_home).query("SELECT state, error FROM tasks")
    assert task["state"] == "failed" and "ValidationFailed" in task["error"]


def test_warn_policy_warns_and_goes_on(flowrecord_home: Path):
    """policy='warn' emits a FlowrecordWarning and the task succeeds."""
    with (
        flowrecord.run("p"),
        flowrecord.task("check"),
        pytest.warns(flowrecord.FlowrecordWarning, match="customers"),
    ):
        flowrecord.validate(BAD, SCHEMA, name="customers", policy="warn")
    flowrecord.flush(5)
    assert LocalStore(flowrecord_home).query("SELECT state FROM tasks")[0][0] == "succeeded"


def test_unknown_policy_and_non_schema_are_clear_errors(flowrecord_home: Path):
    """A bad policy is a ValueError, a non-schema a TypeError, both at the call."""
    with flowrecord.run("p"), flowrecord.task("t"):
        with pytest.raises(ValueError, match="record"):
            flowrecord.validate(BAD, SCHEMA, policy="explode")
        with pytest.raises(TypeError):
            flowrecord.validate(BAD, {"age": int})


def test_volume_drop_against_history_is_recorded(flowrecord_home: Path):
    """After a few days of ~1000 rows, a day with 10 rows records a failed volume check."""
    for day, n in enumerate([1000, 1010, 990, 1005, 10]):
        with flowrecord.run("daily", f"day-{day}"), flowrecord.task("ingest"):
            flowrecord.log_dataset(pd.DataFrame({"x": np.arange(n)}), name="events", role="output")
        flowrecord.flush(5)
    volume = [v for v in _validations(flowrecord_home) if v["validator"] == "volume"]
    # days 0-2 have fewer than 3 earlier counts: nothing to compare with, nothing recorded
    assert [v["passed"] for v in volume] == [1, 0]
    (check,) = json.loads(volume[-1]["checks"])
    assert check["current"] == 10


def test_drift_against_a_recorded_dataset(flowrecord_home: Path):
    """check_drift with a recorded dataset's name compares against its stored profile."""
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"income": rng.normal(50, 10, 20_000)})
    with flowrecord.run("p", "1"), flowrecord.task("t"):
        flowrecord.log_dataset(ref, name="income", role="output")
    flowrecord.flush(5)
    with flowrecord.run("p", "2"), flowrecord.task("t"):
        same = flowrecord.check_drift(
            pd.DataFrame({"income": rng.normal(50, 10, 20_000)}), "income"
        )
        moved = flowrecord.check_drift(
            pd.DataFrame({"income": rng.normal(65, 10, 20_000)}), "income"
        )
    assert same.passed and not moved.passed
    flowrecord.flush(5)
    drift = [v for v in _validations(flowrecord_home) if v["validator"] == "drift"]
    assert [v["passed"] for v in drift] == [1, 0]


def test_schema_that_raises_is_recorded_not_crashing(flowrecord_home: Path):
    """A custom check that raises is recorded as a validation error; the task goes on."""
    broken = pa.DataFrameSchema({"age": pa.Column(int, pa.Check(lambda s: s / 0 > "x"))})
    with flowrecord.run("p"), flowrecord.task("t"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = flowrecord.validate(BAD, broken, name="ages")
    assert not result.passed
    flowrecord.flush(5)
    (row,) = _validations(flowrecord_home)
    assert row["passed"] == 0 and (row["error"] or "error" in row["checks"])


def test_record_validation_records_an_outside_result_and_applies_policy(flowrecord_home: Path):
    """record_validation stores a result computed elsewhere and honours fail."""
    from flowrecord.collectors.validation import ValidationResult

    ok = ValidationResult(
        validator="custom",
        schema_name="mine",
        passed=True,
        checks=({"check": "x", "passed": True, "failures": 0},),
        failure_count=0,
        failure_sample=(),
        error=None,
    )
    bad = ValidationResult(
        validator="custom",
        schema_name="mine",
        passed=False,
        checks=({"check": "x", "passed": False, "failures": 3},),
        failure_count=3,
        failure_sample=(),
        error=None,
    )
    with flowrecord.run("p", "r1"), flowrecord.task("t"):
        event = flowrecord.record_validation(ok, "table", fingerprint="fp1")
        with pytest.raises(ValidationFailed):
            flowrecord.record_validation(bad, "table", policy="fail")
        with pytest.raises(TypeError):
            flowrecord.record_validation({"passed": True}, "table")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            flowrecord.record_validation(ok, "table", policy="maybe")
    flowrecord.flush(5)
    assert event.validation_id
    rows = _validations(flowrecord_home)
    assert [(r["dataset_name"], r["passed"], r["failure_count"]) for r in rows] == [
        ("table", 1, 0),
        ("table", 0, 3),
    ]
