"""Promotion gates: each criterion passes and refuses, gates fail closed, decisions are recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandera.pandas as pa
import pytest
from lifecycle_support import BrokenRegistry, frame, train

from flowrecord import recorder
from flowrecord.backends.local import LocalStore
from flowrecord.lifecycle import (
    BootstrapTest,
    EvaluationSet,
    NothingToRollBack,
    PromotionGate,
    decisions,
    rollback,
)
from flowrecord.lifecycle import registry as reg

pytestmark = pytest.mark.unit

GOOD_SCHEMA = pa.DataFrameSchema({"x": pa.Column(float), "z": pa.Column(float, pa.Check.ge(0))})
BAD_SCHEMA = pa.DataFrameSchema({"z": pa.Column(float, pa.Check.gt(0.5))})


def champion_is(version: str | None) -> bool:
    return reg.get_alias("churn", "champion") == version


def failing(decision) -> list[str]:
    return [c.criterion for c in decision.checks if not c.passed]


# ---------------------------------------------------------------------------
# the first model
# ---------------------------------------------------------------------------


def test_first_model_passes_on_absolute_criteria_and_becomes_champion(flowrecord_home: Path):
    """With no champion, a candidate meeting the minimums is promoted; nothing becomes previous."""
    train("churn", {"auc": 0.82})
    gate = PromotionGate(model="churn", minimums={"auc": 0.8}, non_regression={"auc": 0.01})
    decision = gate.apply("1")
    assert decision.passed and decision.applied
    assert decision.champion_version is None
    assert "first model is judged on absolute criteria only" in decision.reasons[0]
    assert champion_is("1") and reg.get_alias("churn", "previous") is None


def test_first_model_without_absolute_criteria_is_refused(flowrecord_home: Path):
    """A gate with only relative criteria has nothing to judge a first model by: refused."""
    train("churn", {"auc": 0.99})
    decision = PromotionGate(model="churn", non_regression={"auc": 0.0}).apply("1")
    assert not decision.applied and failing(decision) == ["champion"]
    assert "nothing to judge the first model by" in decision.failures[0]
    assert champion_is(None)


def test_allow_first_false_refuses_until_a_champion_exists(flowrecord_home: Path):
    """allow_first=False refuses a first model even when it meets every minimum."""
    train("churn", {"auc": 0.99})
    gate = PromotionGate(model="churn", minimums={"auc": 0.5}, allow_first=False)
    assert not gate.apply("1").applied
    assert champion_is(None)


# ---------------------------------------------------------------------------
# absolute criteria
# ---------------------------------------------------------------------------


def test_minimums_and_maximums(flowrecord_home: Path):
    """A metric under its minimum or a loss over its maximum refuses; both within bounds pass."""
    train("churn", {"auc": 0.79, "logloss": 0.3})
    train("churn", {"auc": 0.81, "logloss": 0.5})
    train("churn", {"auc": 0.81, "logloss": 0.3})
    gate = PromotionGate(model="churn", minimums={"auc": 0.8}, maximums={"logloss": 0.4})
    low = gate.evaluate("1")
    assert failing(low) == ["minimum"] and low.failures == ("auc = 0.79 < minimum 0.8",)
    high = gate.evaluate("2")
    assert failing(high) == ["maximum"] and "logloss = 0.5 > maximum 0.4" in high.failures[0]
    ok = gate.evaluate("3")
    assert ok.passed and not ok.applied
    assert champion_is(None)  # evaluate never moves aliases


# ---------------------------------------------------------------------------
# non-regression
# ---------------------------------------------------------------------------


@pytest.fixture
def with_champion(flowrecord_home: Path) -> None:
    """Version 1 (auc 0.85, logloss 0.30, two slices) is champion."""
    train(
        "churn",
        {"auc": 0.85, "logloss": 0.30, "auc/slice=young": 0.80, "auc/slice=old": 0.88},
    )
    reg.set_alias("churn", "champion", "1")


def test_allowed_regression_passes_at_the_boundary_and_refuses_beyond(with_champion: None):
    """A drop exactly equal to the allowed delta passes; a larger drop refuses."""
    train("churn", {"auc": 0.84, "logloss": 0.30})
    train("churn", {"auc": 0.8399, "logloss": 0.30})
    gate = PromotionGate(model="churn", non_regression={"auc": 0.01})
    assert gate.evaluate("2").passed
    beyond = gate.evaluate("3")
    assert failing(beyond) == ["non_regression"]
    assert "regressed by 0.0101 (allowed 0.01)" in beyond.failures[0]


def test_losses_regress_upwards(with_champion: None):
    """A metric with a maximum (or in lower_is_better) regresses when it grows."""
    train("churn", {"auc": 0.85, "logloss": 0.36})
    by_maximum = PromotionGate(
        model="churn", maximums={"logloss": 1.0}, non_regression={"logloss": 0.05}
    )
    assert failing(by_maximum.evaluate("2")) == ["non_regression"]
    by_name = PromotionGate(
        model="churn", non_regression={"logloss": 0.05}, lower_is_better=["logloss"]
    )
    assert failing(by_name.evaluate("2")) == ["non_regression"]
    higher_is_better = PromotionGate(model="churn", non_regression={"logloss": 0.05})
    assert higher_is_better.evaluate("2").passed  # read as "up is better": an improvement


def test_a_regressed_slice_refuses_even_when_the_overall_metric_improves(with_champion: None):
    """auc/slice=* compares every slice the champion has; one regressed slice refuses."""
    train(
        "churn",
        {"auc": 0.90, "logloss": 0.2, "auc/slice=young": 0.74, "auc/slice=old": 0.90},
    )
    gate = PromotionGate(model="churn", non_regression={"auc": 0.0, "auc/slice=*": 0.02})
    decision = gate.apply("2")
    assert not decision.applied and champion_is("1")
    assert [c.subject for c in decision.checks if c.criterion == "non_regression"] == [
        "auc",
        "auc/slice=old",
        "auc/slice=young",
    ]
    assert decision.failures == (
        "auc/slice=young = 0.74 vs champion 0.8: regressed by 0.06 (allowed 0.02)",
    )
    assert decision.evidence["metrics"]["auc/slice=young"] == {
        "candidate": 0.74,
        "champion": 0.80,
    }


def test_a_slice_missing_on_the_candidate_refuses(with_champion: None):
    """A slice the champion was measured on but the candidate was not: no evidence, refused."""
    train("churn", {"auc": 0.9, "auc/slice=old": 0.9})
    decision = PromotionGate(model="churn", non_regression={"auc/slice=*": 0.05}).evaluate("2")
    assert decision.failures == ("the candidate (version 2) has no metric 'auc/slice=young'",)


# ---------------------------------------------------------------------------
# validations
# ---------------------------------------------------------------------------


def test_validations_must_exist_and_all_pass(flowrecord_home: Path):
    """require_validations passes with passing validations, refuses failing, missing or roleless."""
    data = frame(5)
    train("churn", {"auc": 0.9}, data, validate=GOOD_SCHEMA)  # 1: validated
    train("churn", {"auc": 0.9}, frame(6), validate=BAD_SCHEMA)  # 2: validation failed
    train("churn", {"auc": 0.9}, frame(7))  # 3: never validated
    gate = PromotionGate(model="churn", minimums={"auc": 0.5}, require_validations=["train"])
    ok = gate.evaluate("1")
    assert ok.passed, ok.failures
    [ids] = ok.evidence["validations"].values()
    assert len(ids) == 1
    bad = gate.evaluate("2")
    assert failing(bad) == ["validations"] and "1 of 1 validations" in bad.failures[0]
    assert "pandera" in bad.failures[0]
    missing = gate.evaluate("3")
    assert "no validation was recorded for train dataset 'train'" in missing.failures[0]
    eval_gate = PromotionGate(model="churn", minimums={"auc": 0.5}, require_validations="eval")
    assert "has no 'eval' dataset registered" in eval_gate.evaluate("1").failures[0]


def test_a_dataset_registered_without_fingerprint_refuses(flowrecord_home: Path):
    """Data that cannot be matched to validations (no fingerprint) fails the check."""
    reg.register_model_version(
        "churn", metrics={"auc": 0.9}, datasets=[{"name": "s3://bucket/x", "fingerprint": None}]
    )
    gate = PromotionGate(model="churn", minimums={"auc": 0.5}, require_validations=["train"])
    assert "has no fingerprint" in gate.evaluate("1").failures[0]


# ---------------------------------------------------------------------------
# failing closed
# ---------------------------------------------------------------------------


def test_unreachable_registry_refuses_and_records_the_decision(
    flowrecord_home: Path, broken_registry: None, read_store: Callable[[], LocalStore]
):
    """A registry that raises: refused with the cause, and the refusal is still recorded."""
    decision = PromotionGate(model="churn", minimums={"auc": 0.0}).apply("1")
    assert not decision.passed and not decision.applied
    assert failing(decision) == ["registry"]
    assert "registry unreachable" in decision.failures[0]
    assert "refused the connection" in decision.failures[0]
    rows = read_store().query("SELECT passed, applied, reasons FROM gate_decisions")
    assert [(r["passed"], r["applied"]) for r in rows] == [(0, 0)]
    assert "registry unreachable" in rows[0]["reasons"]


def test_registry_failing_after_the_candidate_was_read_refuses(flowrecord_home: Path):
    """The registry going down between registration and the gate: no promotion, reason given."""
    train("churn", {"auc": 0.9})
    recorder.shutdown()
    recorder.register_backend("broken-registry", BrokenRegistry())
    try:
        decision = PromotionGate(model="churn", minimums={"auc": 0.5}).apply("1")
    finally:
        recorder.shutdown()
        recorder.unregister_backend("broken-registry")
    assert not decision.applied and "registry unreachable" in decision.failures[0]
    assert champion_is(None)


def test_missing_candidate_metric_refuses(with_champion: None):
    """A metric named by the gate but absent from the candidate refuses."""
    train("churn", {"logloss": 0.1})
    decision = PromotionGate(
        model="churn", minimums={"auc": 0.5}, non_regression={"auc": 0.1}
    ).apply("2")
    assert not decision.applied
    assert decision.failures == (
        "the candidate (version 2) has no metric 'auc'",
        "the candidate (version 2) has no metric 'auc'",
    )


def test_nan_candidate_metric_refuses(flowrecord_home: Path):
    """A NaN metric (stored as null) is no evidence: refused."""
    train("churn", {"auc": float("nan")})
    decision = PromotionGate(model="churn", minimums={"auc": 0.5}).apply("1")
    assert decision.failures == ("the candidate (version 1) has a null (NaN) value for 'auc'",)


def test_champion_without_metrics_refuses(flowrecord_home: Path):
    """A champion registered with no metrics gives nothing to compare with: refused."""
    train("churn", {})
    reg.set_alias("churn", "champion", "1")
    train("churn", {"auc": 0.99})
    decision = PromotionGate(model="churn", non_regression={"auc": 0.0}).apply("2")
    assert not decision.applied and champion_is("1")
    assert decision.failures == (
        "the champion (version 1) has no metric 'auc': no evidence to compare against",
    )


def test_champion_without_slice_metrics_refuses_a_slice_criterion(flowrecord_home: Path):
    """A slice pattern that matches none of the champion's metrics refuses (no evidence)."""
    train("churn", {"auc": 0.8})
    reg.set_alias("churn", "champion", "1")
    train("churn", {"auc": 0.85, "auc/slice=young": 0.8})
    decision = PromotionGate(model="churn", non_regression={"auc/slice=*": 0.01}).evaluate("2")
    assert "has no metric matching 'auc/slice=*'" in decision.failures[0]


def test_deleted_champion_version_refuses(flowrecord_home: Path):
    """A champion alias pointing at a version the registry no longer has: refused, not 'first'."""
    train("churn", {"auc": 0.8})
    train("churn", {"auc": 0.9})
    reg.set_alias("churn", "champion", "1")
    store = LocalStore(flowrecord_home)
    with store.transaction() as conn:
        conn.execute("DELETE FROM model_versions WHERE model = 'churn' AND version = '1'")
    decision = PromotionGate(model="churn", minimums={"auc": 0.5}).apply("2")
    assert not decision.applied and failing(decision) == ["champion"]
    assert "points at version 1, which the registry does not know" in decision.failures[0]
    assert champion_is("1")


def test_unknown_candidate_refuses(flowrecord_home: Path):
    """A candidate version that is not registered refuses with the reason."""
    train("churn", {"auc": 0.8})
    decision = PromotionGate(model="churn", minimums={"auc": 0.5}).apply("7")
    assert decision.failures == ("no candidate: model 'churn' has no version '7'",)
    assert decision.version == "7"


# ---------------------------------------------------------------------------
# applying, rolling back, reading decisions back
# ---------------------------------------------------------------------------


def test_apply_moves_champion_and_previous(with_champion: None):
    """Promotion makes the candidate champion and the old champion previous, with reasons."""
    train("churn", {"auc": 0.86})
    decision = PromotionGate(model="churn", non_regression={"auc": 0.0}).apply("2")
    assert decision.applied and decision.champion_version == "1"
    assert [(m.alias, m.version, m.previous_version) for m in decision.moves] == [
        ("previous", "1", None),
        ("champion", "2", "1"),
    ]
    assert champion_is("2") and reg.get_alias("churn", "previous") == "1"
    history = reg.alias_history("churn", "champion")
    assert decision.decision_id in (history[-1].reason or "")


def test_the_champion_itself_is_refused(with_champion: None):
    """Promoting the champion again is refused: previous would point at itself."""
    decision = PromotionGate(model="churn", minimums={"auc": 0.1}).apply("1")
    assert decision.failures == ("version 1 is already the champion",)
    assert reg.get_alias("churn", "previous") is None


def test_a_champion_moved_during_evaluation_refuses(with_champion: None):
    """If someone moves the champion while the gate judges, the gate does not overwrite it."""
    train("churn", {"auc": 0.9})
    train("churn", {"auc": 0.95})

    def data(candidate, champion):
        reg.set_alias("churn", "champion", "3")  # a concurrent promotion
        y = np.array([0, 1] * 100)
        return y, y, 1 - y

    test = BootstrapTest(metric="accuracy", n_resamples=100, evaluation_data=data)
    decision = PromotionGate(model="churn", non_regression={"auc": 0.0}, bootstrap=test).apply("2")
    assert not decision.applied and failing(decision) == ["apply"]
    assert "moved during evaluation" in decision.failures[0]
    assert champion_is("3")


def test_rollback_swaps_champion_and_previous(with_champion: None):
    """rollback restores previous as champion; rolling back again undoes it."""
    train("churn", {"auc": 0.86})
    PromotionGate(model="churn", non_regression={"auc": 0.0}).apply("2")
    d = rollback("churn", reason="bad canary")
    assert (d.version, d.champion_version, d.gate) == ("1", "2", "rollback")
    assert champion_is("1") and reg.get_alias("churn", "previous") == "2"
    assert "bad canary" in (reg.alias_history("churn", "champion")[-1].reason or "")
    rollback("churn")
    assert champion_is("2")


def test_rollback_without_previous_refuses(with_champion: None):
    """With no previous champion, rollback raises NothingToRollBack and moves nothing."""
    with pytest.raises(NothingToRollBack, match="no 'previous' version"):
        rollback("churn")
    assert champion_is("1")


def test_every_decision_is_queryable(with_champion: None):
    """Passed, refused and rollback decisions are all recorded with reasons and evidence."""
    train("churn", {"auc": 0.70})
    train("churn", {"auc": 0.86})
    gate = PromotionGate(model="churn", non_regression={"auc": 0.0})
    refused = gate.apply("2")
    promoted = gate.apply("3")
    rollback("churn")
    rows = decisions("churn")
    assert [(r["version"], r["gate"], r["passed"], r["applied"]) for r in rows] == [
        ("2", "promotion", False, False),
        ("3", "promotion", True, True),
        ("1", "rollback", True, True),
    ]
    assert rows[0]["decision_id"] == refused.decision_id
    assert rows[1]["decision_id"] == promoted.decision_id
    assert any(r.startswith("FAIL: auc = 0.7") for r in rows[0]["reasons"])
    assert rows[1]["evidence"]["champion"]["metrics"]["auc"] == 0.85
    assert rows[1]["evidence"]["gate"]["non_regression"] == {"auc": 0.0}
    assert [r["version"] for r in decisions("churn", "3")] == ["3"]


# ---------------------------------------------------------------------------
# the bootstrap criterion
# ---------------------------------------------------------------------------


def _scores(seed: int, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y + rng.normal(scale=1.0, size=n)


def test_bootstrap_refuses_noise_that_a_point_estimate_would_promote(with_champion: None):
    """A tiny jitter of the champion's scores gains AUC by luck: the interval refuses it."""
    y, champion = _scores(0)
    jitter = champion + np.random.default_rng(3).normal(scale=0.05, size=y.size)
    test = BootstrapTest(metric="roc_auc", n_resamples=500, seed=0)
    train("churn", {"auc": 0.851})
    gate = PromotionGate(model="churn", non_regression={"auc": 0.0}, bootstrap=test)
    decision = gate.apply("2", evaluation=EvaluationSet(y, jitter, champion))
    interval = decision.evidence["intervals"]["roc_auc"]
    assert interval["difference"] > 0  # better on paper
    assert interval["ci_low"] <= 0 < interval["ci_high"]
    assert failing(decision) == ["bootstrap"] and "within noise" in decision.failures[0]
    assert champion_is("1")


def test_bootstrap_accepts_a_clear_improvement(with_champion: None):
    """Much better scores give an interval above zero: promoted, with the interval recorded."""
    y, champion = _scores(0)
    better = y + np.random.default_rng(4).normal(scale=0.4, size=y.size)
    test = BootstrapTest(metric="roc_auc", n_resamples=500, seed=0)
    train("churn", {"auc": 0.95})
    gate = PromotionGate(model="churn", non_regression={"auc": 0.0}, bootstrap=test)
    decision = gate.apply("2", evaluation=(y, better, champion))
    assert decision.applied, decision.failures
    recorded = decisions("churn", "2")[0]["evidence"]["intervals"]["roc_auc"]
    assert recorded["ci_low"] > 0.05 and recorded["n_examples"] == 1000
    assert recorded["seed"] == 0


def test_bootstrap_without_data_refuses(with_champion: None):
    """A declared bootstrap test with no per-example arrays fails closed."""
    train("churn", {"auc": 0.9})
    gate = PromotionGate(
        model="churn", non_regression={"auc": 0.0}, bootstrap=BootstrapTest(n_resamples=100)
    )
    decision = gate.apply("2")
    assert failing(decision) == ["bootstrap"] and "needs per-example arrays" in decision.failures[0]


def test_bootstrap_with_misshapen_data_refuses(with_champion: None):
    """Arrays of different lengths are a refusal with the reason, not a crash."""
    train("churn", {"auc": 0.9})
    gate = PromotionGate(
        model="churn", non_regression={"auc": 0.0}, bootstrap=BootstrapTest(n_resamples=100)
    )
    decision = gate.apply(
        "2", evaluation={"y_true": [0, 1, 1], "candidate": [0.1], "champion": [0.2]}
    )
    assert "could not be run" in decision.failures[0]


def test_bootstrap_does_not_apply_to_a_first_model(flowrecord_home: Path):
    """With no champion the bootstrap is skipped (and says so); absolute criteria decide."""
    train("churn", {"auc": 0.9})
    gate = PromotionGate(
        model="churn", minimums={"auc": 0.8}, bootstrap=BootstrapTest(n_resamples=100)
    )
    decision = gate.apply("1")
    assert decision.applied
    assert any("does not apply to a first model" in r for r in decision.reasons)


# ---------------------------------------------------------------------------
# declaration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"model": ""}, TypeError),
        ({"model": "m", "minimums": {"auc": "high"}}, ValueError),
        ({"model": "m", "minimums": {"auc": float("nan")}}, ValueError),
        ({"model": "m", "non_regression": {"auc": -0.1}}, ValueError),
        ({"model": "m", "minimums": [("auc", 0.5)]}, TypeError),
        ({"model": "m", "require_validations": [1]}, TypeError),
        ({"model": "m", "bootstrap": "roc_auc"}, TypeError),
        ({"model": "m", "champion_alias": "x", "previous_alias": "x"}, ValueError),
    ],
)
def test_malformed_gates_fail_at_declaration(kwargs: dict, error: type):
    """A gate that could never judge properly is refused when declared, not when used."""
    with pytest.raises(error):
        PromotionGate(**kwargs)


def test_a_gate_describes_itself_as_data():
    """describe() is the declared criteria as JSON-ready data (kept with every decision)."""
    gate = PromotionGate(
        model="churn",
        minimums={"auc": 0.8},
        require_validations="train",
        bootstrap=BootstrapTest(metric="accuracy", n_resamples=200, seed=3),
    )
    assert gate.describe()["require_validations"] == ["train"]
    assert gate.describe()["bootstrap"]["metric"] == "accuracy"
    assert gate.is_lower_better("logloss") is False
    assert PromotionGate(model="m", maximums={"loss": 1}).is_lower_better("loss/slice=a")
