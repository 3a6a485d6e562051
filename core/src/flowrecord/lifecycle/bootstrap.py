"""The paired bootstrap: is the candidate really better than the champion, or is it noise?

A metric computed once on one evaluation set moves by chance: another sample of
the same population would give another number. A promotion gate that compared
point estimates would promote every lucky retrain. The paired bootstrap resamples
the evaluation examples with replacement, computes the metric of *both* models on
the *same* resample, and takes the spread of the difference as its uncertainty;
the gate passes only when the whole confidence interval of the improvement lies
above a margin.

Resamples are drawn as index matrices, in blocks that keep memory bounded. The
built-in metrics (:data:`METRICS`) never materialise a resample: a resample is a
vector of how many times each example was drawn, a mean metric (accuracy, MSE,
log loss) is then one matrix-vector product with the per-example losses, and the
AUC a weighted Mann-Whitney count over the scores sorted once. A metric of your
own gets the resampled arrays, row by row, or a whole block at once when declared
``vectorized``.

>>> import numpy as np
>>> y = np.array([0, 1] * 200)
>>> test = BootstrapTest(metric="accuracy", n_resamples=200, seed=1)
>>> result = test.run(y, y, np.where(np.arange(400) % 4 == 0, 1 - y, y))
>>> result.passed, round(result.difference, 2)
(True, 0.25)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from flowrecord.lifecycle.registry import ModelVersion

__all__ = [
    "METRICS",
    "BootstrapResult",
    "BootstrapTest",
    "EvaluationSet",
    "accuracy",
    "log_loss",
    "mean_absolute_error",
    "mean_squared_error",
    "roc_auc",
]

#: Index cells drawn at a time (resamples x examples): about 32 MiB of int64.
_BLOCK_CELLS = 4_000_000


# ---------------------------------------------------------------------------
# vectorised metrics: rows are resamples, the last axis is examples
# ---------------------------------------------------------------------------


def accuracy(y_true: Any, predicted: Any) -> Any:
    """Share of predicted labels equal to the true labels (higher is better)."""
    import numpy as np

    return np.mean(np.asarray(y_true) == np.asarray(predicted), axis=-1)


def mean_squared_error(y_true: Any, predicted: Any) -> Any:
    """Mean squared error of predictions (lower is better)."""
    import numpy as np

    diff = np.asarray(predicted, dtype=float) - np.asarray(y_true, dtype=float)
    return np.mean(diff * diff, axis=-1)


def mean_absolute_error(y_true: Any, predicted: Any) -> Any:
    """Mean absolute error of predictions (lower is better)."""
    import numpy as np

    diff = np.asarray(predicted, dtype=float) - np.asarray(y_true, dtype=float)
    return np.mean(np.abs(diff), axis=-1)


def log_loss(y_true: Any, probability: Any, eps: float = 1e-15) -> Any:
    """Binary cross-entropy of predicted probabilities of class 1 (lower is better)."""
    import numpy as np

    p = np.clip(np.asarray(probability, dtype=float), eps, 1 - eps)
    y = np.asarray(y_true, dtype=float)
    return -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p), axis=-1)


def roc_auc(y_true: Any, score: Any) -> Any:
    """Area under the ROC curve of scores for binary labels (higher is better).

    Computed from ranks (Mann-Whitney U), ties sharing their average rank, row by
    row along the last axis. A row with a single class has no AUC: NaN.
    """
    import numpy as np

    y = np.atleast_2d(np.asarray(y_true) == 1)
    s = np.atleast_2d(np.asarray(score, dtype=float))
    rows, n = s.shape
    order = np.argsort(s, axis=-1, kind="stable")
    sorted_scores = np.take_along_axis(s, order, axis=-1)
    sorted_pos = np.take_along_axis(y, order, axis=-1)
    positions = np.broadcast_to(np.arange(n), (rows, n))
    new_group = np.ones((rows, n), dtype=bool)
    new_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    # first and last position of each run of equal scores, spread to the run
    first = np.maximum.accumulate(np.where(new_group, positions, 0), axis=-1)
    group_end = np.ones((rows, n), dtype=bool)
    group_end[:, :-1] = new_group[:, 1:]
    last = np.flip(
        np.minimum.accumulate(np.flip(np.where(group_end, positions, n), axis=-1), axis=-1),
        axis=-1,
    )
    ranks = (first + last) / 2.0 + 1.0
    n_pos = sorted_pos.sum(axis=-1)
    n_neg = n - n_pos
    rank_sum = np.where(sorted_pos, ranks, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc = np.where((n_pos == 0) | (n_neg == 0), np.nan, auc)
    return auc if np.ndim(score) > 1 else auc[0]


#: Built-in metrics by name: (function, higher is better).
METRICS: Mapping[str, tuple[Callable[[Any, Any], Any], bool]] = {
    "accuracy": (accuracy, True),
    "roc_auc": (roc_auc, True),
    "auc": (roc_auc, True),
    "mse": (mean_squared_error, False),
    "mean_squared_error": (mean_squared_error, False),
    "mae": (mean_absolute_error, False),
    "mean_absolute_error": (mean_absolute_error, False),
    "log_loss": (log_loss, False),
}


def _per_example(fn: Callable[[Any, Any], Any], y: np.ndarray, scores: np.ndarray) -> Any:
    """Per-example terms whose mean is the metric, for the mean metrics; else None."""
    import numpy as np

    if fn is accuracy:
        return (y == scores).astype(float)
    if fn is mean_squared_error:
        d = scores.astype(float) - y.astype(float)
        return d * d
    if fn is mean_absolute_error:
        return np.abs(scores.astype(float) - y.astype(float))
    if fn is log_loss:
        p = np.clip(scores.astype(float), 1e-15, 1 - 1e-15)
        t = y.astype(float)
        return -(t * np.log(p) + (1 - t) * np.log1p(-p))
    return None


class _WeightedAuc:
    """AUC of one model's scores under resampling weights, sorting the scores once.

    The Mann-Whitney count with weights: each positive example scores the weight
    of the negatives below it plus half of those tied with it. With the
    negatives sorted once, "the weight below" is a running sum looked up at a
    precomputed position, so each resample costs a few passes over its weights.
    """

    def __init__(self, y: np.ndarray, scores: np.ndarray) -> None:
        import numpy as np

        positive = y == 1
        self.pos_cols = np.flatnonzero(positive)
        neg_cols = np.flatnonzero(~positive)
        neg_order = np.argsort(scores[neg_cols], kind="stable")
        self.neg_cols = neg_cols[neg_order]
        neg_sorted = scores[self.neg_cols]
        pos_scores = scores[self.pos_cols]
        self.below = np.searchsorted(neg_sorted, pos_scores, side="left")
        upto = np.searchsorted(neg_sorted, pos_scores, side="right")
        self.ties = None if np.array_equal(upto, self.below) else upto

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        import numpy as np

        rows = counts.shape[0]
        running = np.zeros((rows, self.neg_cols.size + 1))
        np.cumsum(np.take(counts, self.neg_cols, axis=1), axis=1, out=running[:, 1:])
        wins = np.take(running, self.below, axis=1)
        if self.ties is not None:
            wins = 0.5 * (wins + np.take(running, self.ties, axis=1))
        pos_weights = np.take(counts, self.pos_cols, axis=1)
        u = np.einsum("ij,ij->i", pos_weights, wins)
        n_pos, n_neg = pos_weights.sum(axis=1), running[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = u / (n_pos * n_neg)
        return np.where((n_pos == 0) | (n_neg == 0), np.nan, auc)


# ---------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvaluationSet:
    """Per-example evidence on one evaluation set: truth and both models' outputs."""

    y_true: Any
    """True labels or targets, one per example."""
    candidate: Any
    """The candidate's scores, probabilities or predictions, aligned with ``y_true``."""
    champion: Any
    """The champion's, on the same examples in the same order."""


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """The outcome of a paired bootstrap, all of it evidence."""

    metric: str
    candidate: float
    """The metric of the candidate on the whole evaluation set."""
    champion: float
    difference: float
    """Improvement of the candidate over the champion (positive: better, whatever
    the metric's direction)."""
    ci_low: float
    ci_high: float
    confidence: float
    min_difference: float
    n_examples: int
    n_resamples: int
    undefined_resamples: int
    """Resamples on which the metric was undefined (NaN), left out of the interval."""
    seed: int
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "candidate": self.candidate,
            "champion": self.champion,
            "difference": self.difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "min_difference": self.min_difference,
            "n_examples": self.n_examples,
            "n_resamples": self.n_resamples,
            "undefined_resamples": self.undefined_resamples,
            "seed": self.seed,
            "passed": self.passed,
        }


@dataclass(frozen=True, slots=True)
class BootstrapTest:
    """A paired bootstrap of the candidate's improvement over the champion.

    The gate passes this test when the lower end of the confidence interval of the
    improvement is above ``min_difference``: with the default 0, the candidate
    must be better beyond noise; a negative margin (``-0.01``) asks only that it be
    no worse than that ("non-inferiority").

    :param metric: a name from :data:`METRICS` or a function ``(y_true, scores) ->
        float``; a function that accepts 2-D arrays (resamples x examples) and
        returns one value per row may say so with ``vectorized=True``.
    :param higher_is_better: direction of the metric; default: the built-in's, or
        True for a function.
    :param evaluation_data: where the per-example arrays come from when the gate
        is run without them (``flowrecord promote``): a function of the candidate
        and champion :class:`~flowrecord.lifecycle.registry.ModelVersion` returning
        an :class:`EvaluationSet` or a ``(y_true, candidate, champion)`` tuple.

    >>> BootstrapTest(metric="roc_auc", n_resamples=2000, confidence=0.95, seed=7)
    ... # doctest: +ELLIPSIS
    BootstrapTest(metric='roc_auc', ...)
    """

    metric: str | Callable[[Any, Any], Any] = "roc_auc"
    n_resamples: int = 1000
    confidence: float = 0.95
    min_difference: float = 0.0
    higher_is_better: bool | None = None
    seed: int = 0
    vectorized: bool | None = None
    evaluation_data: Callable[[ModelVersion, ModelVersion], Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.metric, str):
            if self.metric not in METRICS:
                known = ", ".join(sorted(METRICS))
                raise ValueError(f"unknown metric {self.metric!r}; built-in metrics: {known}")
        elif not callable(self.metric):
            raise TypeError("metric must be a metric name or a function (y_true, scores)")
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, int):
            raise TypeError("n_resamples must be an int")
        if self.n_resamples < 100:
            raise ValueError("n_resamples must be at least 100 for a meaningful interval")
        if not (0.5 <= float(self.confidence) < 1.0):
            raise ValueError("confidence must be in [0.5, 1)")
        if not math.isfinite(float(self.min_difference)):
            raise ValueError("min_difference must be a finite number")
        if self.evaluation_data is not None and not callable(self.evaluation_data):
            raise TypeError("evaluation_data must be a function (candidate, champion)")

    @property
    def metric_name(self) -> str:
        """The metric's name, for evidence."""
        if isinstance(self.metric, str):
            return self.metric
        return getattr(self.metric, "__name__", type(self.metric).__name__)

    def _resolved(self) -> tuple[Callable[[Any, Any], Any], bool, bool]:
        if isinstance(self.metric, str):
            fn, higher = METRICS[self.metric]
            vectorized = True if self.vectorized is None else self.vectorized
        else:
            fn, higher = self.metric, True
            vectorized = bool(self.vectorized)
        if self.higher_is_better is not None:
            higher = self.higher_is_better
        return fn, higher, vectorized

    def run(self, y_true: Any, candidate: Any, champion: Any) -> BootstrapResult:
        """Bootstrap the improvement of *candidate* over *champion* on these examples.

        :raises ValueError: the arrays are empty or of different lengths, or the
            metric is undefined on the whole set or on every resample.
        """
        import numpy as np

        y = np.asarray(y_true)
        cand = np.asarray(candidate)
        champ = np.asarray(champion)
        if y.ndim != 1 or y.shape[0] == 0:
            raise ValueError("y_true must be a non-empty 1-D array")
        if cand.shape[:1] != y.shape or champ.shape[:1] != y.shape:
            raise ValueError(
                f"candidate ({cand.shape[0] if cand.ndim else 0}) and champion "
                f"({champ.shape[0] if champ.ndim else 0}) scores must have one value per "
                f"example ({y.shape[0]})"
            )
        fn, higher, vectorized = self._resolved()
        sign = 1.0 if higher else -1.0
        point_cand = float(fn(y, cand))
        point_champ = float(fn(y, champ))
        if not (math.isfinite(point_cand) and math.isfinite(point_champ)):
            raise ValueError(
                f"{self.metric_name} is undefined on the evaluation set "
                f"(candidate {point_cand}, champion {point_champ})"
            )
        diffs = self._resampled_differences(fn, vectorized, y, cand, champ) * sign
        finite = diffs[np.isfinite(diffs)]
        undefined = int(diffs.size - finite.size)
        if finite.size == 0:
            raise ValueError(f"{self.metric_name} is undefined on every resample")
        alpha = 1.0 - float(self.confidence)
        low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
        difference = sign * (point_cand - point_champ)
        return BootstrapResult(
            metric=self.metric_name,
            candidate=point_cand,
            champion=point_champ,
            difference=float(difference),
            ci_low=float(low),
            ci_high=float(high),
            confidence=float(self.confidence),
            min_difference=float(self.min_difference),
            n_examples=int(y.shape[0]),
            n_resamples=int(self.n_resamples),
            undefined_resamples=undefined,
            seed=int(self.seed),
            passed=bool(low > self.min_difference),
        )

    def _resampled_differences(
        self,
        fn: Callable[[Any, Any], Any],
        vectorized: bool,
        y: np.ndarray,
        cand: np.ndarray,
        champ: np.ndarray,
    ) -> np.ndarray:
        import numpy as np

        n = y.shape[0]
        rng = np.random.default_rng(self.seed)
        out = np.empty(self.n_resamples, dtype=float)
        block = max(1, min(self.n_resamples, _BLOCK_CELLS // n))
        by_weight = self._by_weight(fn, y, cand, champ)
        done = 0
        while done < self.n_resamples:
            size = min(block, self.n_resamples - done)
            # the same rows for both models: the pairing is what removes the
            # variance the two share (the hard examples are hard for both)
            idx = rng.integers(0, n, size=(size, n))
            if by_weight is not None:
                offsets = (np.arange(size) * n)[:, None]
                counts = np.bincount((idx + offsets).ravel(), minlength=size * n)
                diff = by_weight(counts.reshape(size, n).astype(float))
            else:
                y_b, cand_b, champ_b = y[idx], cand[idx], champ[idx]
                if vectorized:
                    a = np.asarray(fn(y_b, cand_b), dtype=float).reshape(size)
                    b = np.asarray(fn(y_b, champ_b), dtype=float).reshape(size)
                else:
                    a = np.fromiter((fn(y_b[i], cand_b[i]) for i in range(size)), float, size)
                    b = np.fromiter((fn(y_b[i], champ_b[i]) for i in range(size)), float, size)
                diff = a - b
            out[done : done + size] = diff
            done += size
        return out

    @staticmethod
    def _by_weight(
        fn: Callable[[Any, Any], Any], y: np.ndarray, cand: np.ndarray, champ: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """For a built-in metric: the difference of the two models under resampling counts."""
        if fn is roc_auc and cand.ndim == champ.ndim == 1:
            auc_cand, auc_champ = _WeightedAuc(y, cand), _WeightedAuc(y, champ)
            return lambda counts: auc_cand(counts) - auc_champ(counts)
        terms_cand = _per_example(fn, y, cand) if cand.ndim == 1 else None
        terms_champ = _per_example(fn, y, champ) if champ.ndim == 1 else None
        if terms_cand is None or terms_champ is None:
            return None
        delta = terms_cand - terms_champ
        n = y.shape[0]
        return lambda counts: counts @ delta / n
