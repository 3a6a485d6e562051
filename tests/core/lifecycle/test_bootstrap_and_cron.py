"""The paired bootstrap's arithmetic and the cron evaluator, checked against direct computation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from flowrecord.lifecycle._cron import CronSchedule
from flowrecord.lifecycle.bootstrap import (
    BootstrapTest,
    accuracy,
    log_loss,
    mean_squared_error,
    roc_auc,
)

pytestmark = pytest.mark.unit


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_equals_the_pairwise_definition_with_ties():
    """Rank-based AUC matches counting pairs (ties half), row by row on a 2-D block."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (6, 40))
    s = rng.integers(0, 5, (6, 40)).astype(float)  # many ties
    block = roc_auc(y, s)
    for row in range(6):
        assert block[row] == pytest.approx(_pairwise_auc(y[row], s[row]), abs=1e-12)
    assert roc_auc(y[0], s[0]) == pytest.approx(_pairwise_auc(y[0], s[0]))
    assert np.isnan(roc_auc(np.ones(5), np.arange(5.0)))  # one class: undefined


def test_simple_metrics_along_the_last_axis():
    """accuracy, MSE and log loss score each row of a block."""
    y = np.array([[1, 0, 1, 1], [0, 0, 1, 1]])
    p = np.array([[1, 0, 0, 1], [0, 0, 1, 1]])
    assert accuracy(y, p).tolist() == [0.75, 1.0]
    assert mean_squared_error(y, p).tolist() == [0.25, 0.0]
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))


def test_same_seed_same_interval_and_vectorised_equals_looped():
    """Seeded runs repeat exactly, and a per-row metric gives the same interval as the block form."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    a, b = y + rng.normal(size=300), y + rng.normal(size=300)
    first = BootstrapTest(metric="roc_auc", n_resamples=300, seed=5).run(y, a, b)
    again = BootstrapTest(metric="roc_auc", n_resamples=300, seed=5).run(y, a, b)
    assert first == again
    looped = BootstrapTest(metric=roc_auc, n_resamples=300, seed=5, vectorized=False).run(y, a, b)
    assert (looped.ci_low, looped.ci_high) == pytest.approx((first.ci_low, first.ci_high))
    other = BootstrapTest(metric="roc_auc", n_resamples=300, seed=6).run(y, a, b)
    assert other.ci_low != first.ci_low


@pytest.mark.parametrize("name", ["roc_auc", "accuracy", "mse", "mae", "log_loss"])
def test_weighted_builtins_equal_scoring_each_resample(name: str):
    """Built-ins scored from resample counts give exactly the interval of scoring each resample."""
    from flowrecord.lifecycle.bootstrap import METRICS

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    a = np.round(y + rng.normal(size=500), 1)  # rounded: ties in the scores
    b = np.round(y + rng.normal(size=500), 1)
    if name == "accuracy":
        a, b = (a > 0.5).astype(int), (b > 0.5).astype(int)
    elif name == "log_loss":
        a, b = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    fn, higher = METRICS[name]
    fast = BootstrapTest(metric=name, n_resamples=200, seed=9).run(y, a, b)
    slow = BootstrapTest(
        metric=fn, n_resamples=200, seed=9, vectorized=True, higher_is_better=higher
    ).run(y, a, b)
    assert (fast.ci_low, fast.ci_high) == pytest.approx((slow.ci_low, slow.ci_high), abs=1e-12)


def test_direction_makes_improvement_positive_for_losses():
    """For a lower-is-better metric, a smaller error is a positive improvement."""
    y = np.linspace(0, 1, 200)
    good, bad = y + 0.01, y + 0.3
    result = BootstrapTest(metric="mse", n_resamples=200).run(y, good, bad)
    assert result.difference > 0 and result.ci_low > 0 and result.passed


def test_non_inferiority_margin():
    """With a negative min_difference an equally good candidate passes; with 0 it does not."""
    y = np.array([0, 1] * 300)
    same = np.where(np.arange(600) % 5 == 0, 1 - y, y)
    strict = BootstrapTest(metric="accuracy", n_resamples=300).run(y, same, same)
    assert not strict.passed and strict.ci_low == 0 == strict.ci_high
    lenient = BootstrapTest(metric="accuracy", n_resamples=300, min_difference=-0.01)
    assert lenient.run(y, same, same).passed


def test_resamples_in_blocks_cover_large_sets(monkeypatch: pytest.MonkeyPatch):
    """Blocking the index draws (to bound memory) gives every resample a value."""
    import flowrecord.lifecycle.bootstrap as bootstrap

    monkeypatch.setattr(bootstrap, "_BLOCK_CELLS", 1000)  # 2 resamples of 500 per block
    y = np.array([0, 1] * 250)
    result = BootstrapTest(metric="accuracy", n_resamples=101).run(y, y, 1 - y)
    assert result.n_resamples == 101 and result.ci_low == 1.0


@pytest.mark.parametrize(
    "args, error",
    [
        (([], [], []), ValueError),
        (([0, 1], [0.1], [0.2, 0.3]), ValueError),
        (([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]), ValueError),  # AUC undefined
    ],
)
def test_bad_arrays_raise_value_error(args: tuple, error: type):
    """Empty, misaligned or metric-less arrays raise ValueError (the gate turns it into a refusal)."""
    with pytest.raises(error):
        BootstrapTest(n_resamples=100).run(*args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "f7"},
        {"metric": 3},
        {"n_resamples": 10},
        {"confidence": 1.0},
        {"min_difference": float("inf")},
    ],
)
def test_malformed_bootstrap_tests_fail_at_declaration(kwargs: dict):
    """Unknown metrics, too few resamples and impossible confidences are refused at once."""
    with pytest.raises((ValueError, TypeError)):
        BootstrapTest(**kwargs)


# ---------------------------------------------------------------------------
# cron
# ---------------------------------------------------------------------------


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression, now, expected",
    [
        ("0 3 * * *", _at(2026, 5, 10, 2, 59), _at(2026, 5, 9, 3, 0)),
        ("0 3 * * *", _at(2026, 5, 10, 3, 0), _at(2026, 5, 10, 3, 0)),
        ("*/15 * * * *", _at(2026, 5, 10, 12, 44), _at(2026, 5, 10, 12, 30)),
        ("30 2 * * mon-fri", _at(2026, 3, 9, 1, 0), _at(2026, 3, 6, 2, 30)),
        ("0 0 1 jan *", _at(2026, 6, 1), _at(2026, 1, 1)),
        ("@weekly", _at(2026, 5, 13, 12, 0), _at(2026, 5, 10, 0, 0)),
        ("@hourly", _at(2026, 5, 13, 12, 59, 59), _at(2026, 5, 13, 12, 0)),
        # day-of-month OR day-of-week when both are restricted (Vixie cron)
        ("0 0 13 * 5", _at(2026, 2, 14, 0, 0), _at(2026, 2, 13, 0, 0)),
        ("0 0 13 * 5", _at(2026, 2, 12, 0, 0), _at(2026, 2, 6, 0, 0)),
        ("0 0 29 2 *", _at(2026, 3, 1), _at(2024, 2, 29)),
        ("0 12 * * 7", _at(2026, 5, 13), _at(2026, 5, 10, 12, 0)),  # 7 is Sunday
    ],
)
def test_cron_previous_tick(expression: str, now: datetime, expected: datetime):
    """previous() is the latest tick at or before the time, in UTC."""
    assert CronSchedule(expression).previous(now) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "5-1 * * * *",
        "*/0 * * * *",
        "a b c d e",
        "@often",
    ],
)
def test_bad_cron_expressions_are_refused(expression: str):
    """Malformed or out-of-range expressions raise ValueError naming the problem."""
    with pytest.raises(ValueError):
        CronSchedule(expression)
