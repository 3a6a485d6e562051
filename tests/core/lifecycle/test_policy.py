"""Retraining policies: each trigger fires when it should, stays quiet when not, and is recorded."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from lifecycle_support import frame

import flowrecord
from flowrecord.lifecycle import (
    DriftTrigger,
    MetricDecayTrigger,
    PromotionGate,
    RetrainPolicy,
    register_model_version,
    trigger_history,
)
from flowrecord.lifecycle import registry as reg

pytestmark = pytest.mark.unit


def build(df: pd.DataFrame) -> None:
    """An Airflow task writes the feature table."""
    with flowrecord.run("features", orchestrator="airflow"), flowrecord.task("build"):
        flowrecord.log_dataset(df, name="features", role="output")


def fit(df: pd.DataFrame, metrics: dict | None = None, *, champion: bool = True) -> str:
    """A Dagster asset trains on it and registers a version (made champion by default)."""
    with flowrecord.run("train", orchestrator="dagster"), flowrecord.task("fit"):
        flowrecord.log_dataset(df, name="features", role="input")
        version = register_model_version("churn", metrics=metrics or {"auc": 0.9}).version
    if champion:
        reg.set_alias("churn", "champion", version)
    return version


def only(decision, trigger: str):
    [result] = [t for t in decision.triggers if t.trigger == trigger]
    return result


# ---------------------------------------------------------------------------
# cron
# ---------------------------------------------------------------------------


def test_cron_fires_when_a_tick_passed_since_the_latest_version(flowrecord_home: Path):
    """A tick after the latest registration fires; none since stays quiet."""
    fit(frame())
    policy = RetrainPolicy(model="churn", cron="0 3 * * *")
    registered = reg.champion("churn").created_at
    # at the moment of registration no tick can lie after it
    quiet = policy.check(now=registered, record=False)
    assert not quiet.should_retrain and "no tick since version 1" in quiet.reasons[0]
    two_days_later = policy.check(now=registered + 2 * 86400, record=False)
    assert two_days_later.should_retrain
    assert "passed since version 1 was registered" in two_days_later.reasons[0]


def test_cron_uses_since_and_fires_for_a_model_with_no_version(flowrecord_home: Path):
    """With no version a first training is due; since= overrides the reference time."""
    policy = RetrainPolicy(model="churn", cron="@daily")
    first = policy.check(record=False)
    assert first.should_retrain and "has no version yet" in first.reasons[0]
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    assert policy.check(now=now, since=datetime(2026, 5, 9, 23, 0, tzinfo=UTC)).should_retrain
    assert not policy.check(now=now, since=datetime(2026, 5, 10, 1, 0, tzinfo=UTC)).should_retrain


# ---------------------------------------------------------------------------
# new data
# ---------------------------------------------------------------------------


def test_new_data_fires_on_a_new_fingerprint_and_not_on_the_same_one(flowrecord_home: Path):
    """Same data as the champion's training data: quiet; a new version of it: fires."""
    old = frame(1)
    build(old)
    fit(old)
    policy = RetrainPolicy(model="churn", new_data=["features"])
    quiet = policy.check()
    assert not quiet.should_retrain and "no new data" in quiet.reasons[0]
    build(frame(2))
    loud = policy.check()
    assert loud.should_retrain and "differs from the champion's training data" in loud.reasons[0]
    evidence = loud.evidence["new_data:features"]
    assert evidence["champion"] == "1" and evidence["current"]["source"] == "recorded"


def test_new_data_already_trained_on_by_a_refused_version_stays_quiet(flowrecord_home: Path):
    """A later version (not promoted) trained on the new data: no second retrain for it."""
    build(frame(1))
    fit(frame(1))
    build(frame(2))
    fit(frame(2), champion=False)  # retrained, the gate said no
    decision = RetrainPolicy(model="churn", new_data="features").check()
    assert not decision.should_retrain
    assert "version 2 was already trained on it" in decision.reasons[0]


def test_new_data_given_directly_and_without_champion(flowrecord_home: Path):
    """data= is fingerprinted in place of the record; with no champion new data always fires."""
    policy = RetrainPolicy(model="churn", new_data=["features"])
    no_champion = policy.check(data={"features": frame(1)})
    assert no_champion.should_retrain and "has no champion yet" in no_champion.reasons[0]
    fit(frame(1))
    assert not policy.check(data={"features": frame(1)}).should_retrain
    assert policy.check(data={"features": frame(9)}).should_retrain


def test_new_data_never_recorded_does_not_fire_but_says_why(flowrecord_home: Path):
    """An unknown dataset is an evaluation error, not a reason to retrain."""
    fit(frame(1))
    decision = RetrainPolicy(model="churn", new_data=["nope"]).check()
    assert not decision.should_retrain
    assert decision.errors == (
        "new_data nope: dataset 'nope' has never been recorded with a fingerprint",
    )


# ---------------------------------------------------------------------------
# drift
# ---------------------------------------------------------------------------


def test_drift_fires_on_shifted_data_and_stays_quiet_on_a_fresh_sample(flowrecord_home: Path):
    """A new sample of the same distribution stays under PSI/KS; a shifted one fires."""
    build(frame(1, n=3000))
    fit(frame(1, n=3000))
    policy = RetrainPolicy(model="churn", drift=DriftTrigger("features", psi=0.2, ks=0.1))
    build(frame(2, n=3000))
    same = policy.check()
    assert not same.should_retrain, same.reasons
    assert "column checks within thresholds" in same.reasons[0]
    build(frame(3, n=3000, shift=1.0))
    shifted = policy.check()
    assert shifted.should_retrain
    assert "x psi=" in shifted.reasons[0] and "x ks=" in shifted.reasons[0]
    columns = {(c["column"], c["check"]): c for c in shifted.evidence["drift:features"]["columns"]}
    assert not columns[("x", "psi")]["passed"] and columns[("z", "psi")]["passed"]


def test_drift_on_given_data_and_on_identical_data(flowrecord_home: Path):
    """A frame passed in is compared to the champion's profile; the training data itself is no drift."""
    data = frame(1, n=3000)
    build(data)
    fit(data)
    policy = RetrainPolicy(model="churn", drift=DriftTrigger("features", columns=("z",)))
    assert "is the champion's training data" in policy.check().reasons[0]
    shifted_x = policy.check(data={"features": frame(4, n=3000, shift=2.0)})
    assert not shifted_x.should_retrain  # only z is watched
    assert policy.check(
        data={"features": frame(4, n=3000).assign(z=lambda d: d.z * 3)}
    ).should_retrain


def test_drift_without_champion_stays_quiet(flowrecord_home: Path):
    """No champion, no training data to compare with: quiet, with the reason."""
    build(frame(1))
    decision = RetrainPolicy(model="churn", drift=DriftTrigger("features")).check()
    assert not decision.should_retrain and "no champion" in decision.reasons[0]


# ---------------------------------------------------------------------------
# metric decay
# ---------------------------------------------------------------------------


def _monitor(value: float, pipeline: str = "monitor") -> None:
    with flowrecord.run(pipeline, orchestrator="airflow"), flowrecord.task("score"):
        flowrecord.log_metric("live_auc", value)
    time.sleep(0.002)  # keep recorded times apart


def test_metric_decay_floor_and_ceiling(flowrecord_home: Path):
    """The latest value decides: below the floor fires, above the ceiling fires, else quiet."""
    policy = RetrainPolicy(model="churn", metric_decay=MetricDecayTrigger("live_auc", floor=0.8))
    _monitor(0.7)
    _monitor(0.85)
    assert not policy.check().should_retrain  # the latest is fine
    _monitor(0.75)
    decision = policy.check()
    assert decision.should_retrain
    assert decision.reasons[0] == "metric decay live_auc: latest 0.75 is below the floor 0.8"
    loss = RetrainPolicy(model="churn", metric_decay=MetricDecayTrigger("live_auc", ceiling=0.7))
    assert loss.check().should_retrain
    _monitor(float("nan"))
    assert "not a finite number" in policy.check().reasons[0]


def test_metric_decay_filters_by_pipeline_and_reports_unrecorded_metrics(flowrecord_home: Path):
    """pipeline= reads only that pipeline's values; a metric never logged is an error, not a fire."""
    _monitor(0.5, pipeline="canary")
    _monitor(0.9, pipeline="monitor")
    by_pipeline = MetricDecayTrigger("live_auc", floor=0.8, pipeline="canary")
    assert RetrainPolicy(model="churn", metric_decay=by_pipeline).check().should_retrain
    none = RetrainPolicy(model="churn", metric_decay=MetricDecayTrigger("gone", floor=1)).check()
    assert not none.should_retrain and none.errors == (
        "metric_decay gone: 'gone' was never recorded",
    )


# ---------------------------------------------------------------------------
# recording, and the whole policy
# ---------------------------------------------------------------------------


def test_each_trigger_evaluation_is_recorded_and_queryable(flowrecord_home: Path):
    """Every trigger becomes a retrain:* validation, readable with trigger_history."""
    build(frame(1))
    fit(frame(1))
    build(frame(2))
    _monitor(0.9)
    policy = RetrainPolicy(
        model="churn",
        name="nightly",
        cron="@daily",
        new_data=["features"],
        drift=DriftTrigger("features", psi=5.0, ks=1.0),
        metric_decay=MetricDecayTrigger("live_auc", floor=0.5),
    )
    decision = policy.check()
    assert decision.should_retrain and decision.reasons[0].startswith("new data features")
    history = trigger_history("churn", policy="nightly")
    assert [(h["trigger"], h["fired"]) for h in history] == [
        ("cron", False),
        ("new_data", True),
        ("drift", False),
        ("metric_decay", False),
    ]
    current = history[1]["evidence"]["current"]["fingerprint"]
    assert history[1]["fingerprint"] == current != reg.champion("churn").datasets[0]["fingerprint"]
    assert history[1]["evidence"]["champion"] == "1"
    assert trigger_history("another-model") == []
    assert decision.as_dict()["triggers"][1]["fired"] is True


def test_gates_ignore_retrain_trigger_records(flowrecord_home: Path):
    """A fired drift trigger on new data is not a failed validation of that data."""
    build(frame(1, n=2000))
    fit(frame(1, n=2000))
    shifted = frame(2, n=2000, shift=2.0)
    policy = RetrainPolicy(model="churn", drift=DriftTrigger("features"))
    assert policy.check(data={"features": shifted}).should_retrain
    fit(shifted, {"auc": 0.95}, champion=False)
    gate = PromotionGate(model="churn", non_regression={"auc": 0.0}, require_validations=["train"])
    decision = gate.evaluate("2")
    assert "no validation was recorded for train dataset 'features'" in decision.failures[0]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"model": "m"}, ValueError),
        ({"model": "m", "cron": "every day"}, ValueError),
        ({"model": "m", "drift": "features"}, TypeError),
        ({"model": "m", "new_data": [""]}, TypeError),
        ({"model": "", "cron": "@daily"}, TypeError),
    ],
)
def test_malformed_policies_fail_at_declaration(kwargs: dict, error: type):
    """A policy without triggers, with a bad schedule or bad triggers is refused when declared."""
    with pytest.raises(error):
        RetrainPolicy(**kwargs)


def test_triggers_are_declarative_and_normalised():
    """Single triggers become tuples; thresholds are checked; nothing is evaluated on declaration."""
    policy = RetrainPolicy(
        model="m",
        new_data="features",
        drift=DriftTrigger("features", psi=0.3, ks=0.2, columns=["x"]),
        metric_decay=MetricDecayTrigger("auc", floor=0.7),
    )
    assert policy.new_data == ("features",)
    assert policy.drift == (DriftTrigger("features", 0.3, 0.2, ("x",)),)
    assert policy.metric_decay[0].floor == 0.7
    with pytest.raises(ValueError):
        MetricDecayTrigger("auc", floor=0.5, ceiling=0.9)
    with pytest.raises(ValueError):
        DriftTrigger("features", psi=-1)
