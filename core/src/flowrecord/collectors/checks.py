"""Built-in data checks that need no schema: volume against history, drift against a reference.

Both answer "does today's data look like the data this pipeline usually sees?"
without the task's author writing anything. :func:`check_volume` compares a
row count with the median of the dataset's own recent history;
:func:`check_drift` compares numeric columns with a reference profile (the dict
produced by :func:`flowrecord.collectors.profile.profile`) using the
population stability index (PSI) on the reference's histogram bins and the
Kolmogorov-Smirnov distance (KS) at the reference's quantile points. The
current side may be another profile or the table itself; for a table the
values are counted against the reference's bin edges and quantile points in one
vectorised pass per column, so a 10-million-row column is never sorted whole
and never copied more than once. Both return a
:class:`~flowrecord.collectors.validation.ValidationResult`; neither raises
because data is odd (a column that is missing, empty or not numeric is skipped
with a reason), only for misuse (arguments of the wrong kind).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from flowrecord.collectors.validation import ValidationResult

__all__ = [
    "check_drift",
    "check_volume",
    "ks_exact",
    "ks_from_quantiles",
    "psi",
]

# Below this many values in all, a thread pool costs more than it saves.
_PARALLEL_MIN_VALUES = 1_000_000
# Values sorted at a time when counting a column: small enough to stay in cache.
_BLOCK = 1 << 16


# --------------------------------------------------------------------------- volume


def check_volume(
    current_rows: int,
    history: Sequence[int | None],
    *,
    max_drop: float = 0.5,
    max_growth: float = 10.0,
    min_history: int = 3,
    window: int = 10,
) -> ValidationResult:
    """Compare today's row count with the median of the dataset's recent history.

    ``history`` holds earlier row counts, oldest first; the last ``window`` of
    them are used, and ``None`` entries (runs that recorded no count) are
    ignored. With fewer than ``min_history`` counts the check passes and says
    "insufficient history". Otherwise it fails when ``current_rows`` is below
    ``median * (1 - max_drop)`` or above ``median * max_growth``. The check
    records ``current``, ``median``, ``ratio`` (``current / median``, None when
    the median is 0) and the bounds it applied.

    >>> check_volume(10, [1000, 1100, 900]).passed
    False
    >>> check_volume(1000, [1000, 1100]).checks[0]["reason"]
    'insufficient history: 2 of 3 earlier counts'
    """
    if isinstance(current_rows, bool) or not isinstance(current_rows, int) or current_rows < 0:
        raise ValueError(f"current_rows must be a non-negative int, got {current_rows!r}")
    if not 0.0 <= max_drop <= 1.0:
        raise ValueError(f"max_drop must be within [0, 1], got {max_drop!r}")
    if not max_growth >= 1.0:
        raise ValueError(f"max_growth must be at least 1, got {max_growth!r}")
    if min_history < 1 or window < 1:
        raise ValueError(f"min_history and window must be at least 1, got {min_history}, {window}")
    if isinstance(history, str | bytes) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a sequence of row counts, got {type(history).__name__}")
    counts = [int(count) for count in history if count is not None][-window:]

    entry: dict[str, Any] = {
        "check": "volume",
        "column": None,
        "current": current_rows,
        "history_size": len(counts),
    }
    if len(counts) < min_history:
        entry.update(
            failures=0,
            passed=True,
            median=None,
            ratio=None,
            reason=f"insufficient history: {len(counts)} of {min_history} earlier counts",
        )
        return _result("volume", [entry])

    median = float(statistics.median(counts))
    low, high = median * (1.0 - max_drop), median * max_growth
    passed = low <= current_rows <= high
    if passed:
        reason = "within expected range"
    elif current_rows < low:
        reason = f"dropped below {1.0 - max_drop:.0%} of the median of the last {len(counts)}"
    elif median == 0:
        reason = f"{current_rows} rows where the last {len(counts)} runs had a median of 0"
    else:
        reason = f"grew above {max_growth:g}x the median of the last {len(counts)}"
    entry.update(
        failures=0 if passed else 1,
        passed=passed,
        median=median,
        ratio=current_rows / median if median else None,
        min_expected=low,
        max_expected=high,
        reason=reason,
    )
    return _result("volume", [entry], failing_value="current")


# --------------------------------------------------------------------------- drift


def check_drift(
    current: Any,
    reference: Mapping[str, Any],
    *,
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.1,
    columns: Sequence[str] | None = None,
) -> ValidationResult:
    """PSI and KS per numeric column between today's data and a reference profile.

    ``reference`` is a profile dict (``{"row_count", "columns": {name:
    {"histogram": {"edges", "counts"}, "quantiles": [...], ...}}}``).
    ``current`` is another profile of the same shape, or the table itself: a
    pyarrow Table or RecordBatch, a pandas DataFrame, or a polars DataFrame or
    LazyFrame. A table is counted against the reference's bin edges and
    quantile points directly, which is exact for the current side and never
    sorts a whole column.

    Each compared column yields two checks: ``psi`` (bins of the reference
    histogram plus an underflow and an overflow bin for values outside the
    reference's range) failing above ``psi_threshold``, and ``ks`` (largest gap
    between the two CDFs at the reference's quantile points, so its resolution
    is ``1 / (len(quantiles) - 1)``, 0.01 for 101 points) failing above
    ``ks_threshold``. Nulls and NaNs are ignored. A column missing on either
    side, not numeric, or without values is skipped with a reason. ``columns``
    limits the comparison; by default every column of either side is reported.

    Raises TypeError when ``reference`` is not a profile or ``current`` is
    neither a profile nor a supported table.
    """
    if not (psi_threshold >= 0 and ks_threshold >= 0):
        raise ValueError(
            f"thresholds must be non-negative, got psi={psi_threshold!r}, ks={ks_threshold!r}"
        )
    ref_columns = _profile_columns(reference, "reference")
    if isinstance(columns, str):
        raise TypeError("columns must be a sequence of column names, not a single string")

    if isinstance(current, Mapping):
        cur_columns = _profile_columns(current, "current")
        names = _column_order(columns, ref_columns, cur_columns)
        entries: list[dict] = []
        for name in names:
            entries.extend(
                _drift_profile_vs_profile(
                    name, ref_columns.get(name), cur_columns.get(name), psi_threshold, ks_threshold
                )
            )
        return _result("drift", entries, failing_value="metric")

    table = _Table(current)
    names = _column_order(columns, ref_columns, dict.fromkeys(table.names))
    jobs: list[tuple[str, Any]] = []
    skipped: dict[str, list[dict]] = {}
    for name in names:
        plan = _plan_column(name, ref_columns.get(name), name in table.names)
        if isinstance(plan, str):
            skipped[name] = [_skip(name, plan)]
        else:
            jobs.append((name, plan))

    def run(job: tuple[str, Any]) -> list[dict]:
        name, plan = job
        chunks = table.values(name)
        if isinstance(chunks, str):
            return [_skip(name, chunks)]
        return _drift_values(name, plan, chunks, psi_threshold, ks_threshold)

    done: dict[str, list[dict]] = {}
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1 and table.num_rows * len(jobs) >= _PARALLEL_MIN_VALUES:
        # numpy's sort and search release the GIL, so columns count in parallel.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for (name, _), found in zip(jobs, pool.map(run, jobs), strict=True):
                done[name] = found
    else:
        for job in jobs:
            done[job[0]] = run(job)
    entries = [entry for name in names for entry in (skipped.get(name) or done[name])]
    return _result("drift", entries, failing_value="metric")


def psi(expected_counts: Any, actual_counts: Any, *, eps: float = 1e-6) -> float:
    """Population stability index between two histograms on the same bins.

    Both are turned into proportions; a proportion below ``eps`` is raised to
    ``eps`` so an empty bin on one side gives a large, finite contribution
    instead of infinity. PSI = sum((actual - expected) * ln(actual / expected)).
    Rules of thumb: below 0.1 stable, 0.1-0.2 moderate shift, above 0.2 drift.

    >>> round(psi([50, 50], [50, 50]), 6)
    0.0
    """
    import numpy as np

    expected = np.asarray(expected_counts, dtype=np.float64)
    actual = np.asarray(actual_counts, dtype=np.float64)
    if expected.ndim != 1 or expected.shape != actual.shape:
        raise ValueError(
            f"psi needs two 1-d histograms of the same length, got {expected.shape} and {actual.shape}"
        )
    if (expected < 0).any() or (actual < 0).any():
        raise ValueError("psi needs non-negative counts")
    if expected.sum() <= 0 or actual.sum() <= 0:
        raise ValueError("psi needs at least one count on each side")
    e = np.maximum(expected / expected.sum(), eps)
    a = np.maximum(actual / actual.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_from_quantiles(reference_quantiles: Any, current_values_or_profile: Any) -> float:
    """Kolmogorov-Smirnov distance estimated at the reference's quantile points.

    The reference CDF is known at its quantile points (``p_i = i / (k - 1)`` at
    ``q_i`` for ``k`` quantiles); the current CDF there is counted exactly from
    raw values (an array, list, pyarrow/pandas/polars series) or, when a
    column profile dict with ``"quantiles"`` is given, interpolated from its
    quantiles (and both CDFs are then compared at both sets of points). The
    distance's resolution is ``1 / (k - 1)``; for an exact statistic from two
    raw samples use :func:`ks_exact`. Repeated quantile values (discrete data)
    are compared on both sides of the jump. NaNs are ignored.

    >>> ks_from_quantiles([0, 1, 2], [0.5, 1.5])
    0.0
    """
    import numpy as np

    ref_q = _quantiles(reference_quantiles, "reference_quantiles")
    if isinstance(current_values_or_profile, Mapping):
        cur_q = _quantiles(current_values_or_profile.get("quantiles"), "current profile quantiles")
        return _ks_quantiles_vs_quantiles(ref_q, cur_q)
    chunks = _values_to_chunks(current_values_or_profile)
    plan = _Plan(edges=None, ref_counts=None, quantiles=ref_q)
    counts = _count(plan, chunks)
    if counts.total == 0:
        raise ValueError("ks_from_quantiles needs at least one non-NaN current value")
    return float(np.max(counts.ks_gaps()))


def ks_exact(a: Any, b: Any) -> float:
    """The exact two-sample KS statistic (``scipy.stats.ks_2samp``), NaNs dropped.

    Sorts both samples: use it when both raw samples are at hand and small
    enough, or to check :func:`ks_from_quantiles`.
    """
    import numpy as np
    from scipy import stats

    x = np.concatenate([chunk.astype(np.float64, copy=False) for chunk in _values_to_chunks(a)])
    y = np.concatenate([chunk.astype(np.float64, copy=False) for chunk in _values_to_chunks(b)])
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        raise ValueError("ks_exact needs at least one non-NaN value in each sample")
    # Only the statistic is wanted: the exact p-value scipy computes by default
    # for samples under 10,000 costs far more than the statistic itself.
    return float(stats.ks_2samp(x, y, method="asymp").statistic)


# --------------------------------------------------------------------------- drift internals


class _Plan:
    """What a column is compared against: the reference's bins and quantile points."""

    __slots__ = ("edges", "quantiles", "ref_counts")

    def __init__(self, edges: Any, ref_counts: Any, quantiles: Any) -> None:
        self.edges = edges
        self.ref_counts = ref_counts
        self.quantiles = quantiles


class _Counts:
    """Current values counted below each breakpoint: enough for both PSI and KS."""

    __slots__ = ("below", "breaks", "plan", "total")

    def __init__(self, plan: _Plan, breaks: Any, below: Any, total: int) -> None:
        self.plan, self.breaks, self.below, self.total = plan, breaks, below, total

    def less(self, points: Any) -> Any:
        """How many current values are strictly below each of ``points`` (all breakpoints)."""
        import numpy as np

        return self.below[np.searchsorted(self.breaks, points)]

    def at_most(self, points: Any) -> Any:
        import numpy as np

        return self.less(np.nextafter(points, np.inf))

    def psi_counts(self) -> Any:
        """Current counts in: underflow, each reference bin (last one closed), overflow."""
        import numpy as np

        edges = self.plan.edges
        cut = np.concatenate([self.less(edges[:-1]), self.at_most(edges[-1:])])
        return np.diff(np.concatenate([[0], cut, [self.total]]))

    def ks_gaps(self) -> Any:
        import numpy as np

        points, p_low, p_high = _quantile_steps(self.plan.quantiles)
        finite = np.isfinite(points)
        points, p_low, p_high = points[finite], p_low[finite], p_high[finite]
        if points.size == 0:
            return np.zeros(1)
        left = self.less(points) / self.total
        right = self.at_most(points) / self.total
        return np.maximum(np.abs(p_high - right), np.abs(p_low - left))


def _count(plan: _Plan, chunks: list[Any]) -> _Counts:
    """Count values below every breakpoint the plan needs, in one pass over the column.

    The column is never sorted whole: each block of ``_BLOCK`` values is sorted
    (cache-sized, so cheap) and the ~230 breakpoints are binary-searched into
    it, which is what np.histogram does for uneven edges, minus its bookkeeping.
    A final NaN breakpoint counts every non-NaN value (numpy sorts NaN last),
    so NaNs are ignored without a masked copy of the column.
    """
    import numpy as np

    points = []
    if plan.edges is not None:
        points += [plan.edges, np.nextafter(plan.edges[-1:], np.inf)]
    if plan.quantiles is not None:
        q = plan.quantiles[np.isfinite(plan.quantiles)]
        points += [q, np.nextafter(q, np.inf)]
    inner = np.unique(np.concatenate(points)) if points else np.empty(0)
    breaks = np.concatenate([inner[np.isfinite(inner)], [np.nan]])
    below = np.zeros(breaks.size, dtype=np.int64)
    for chunk in chunks:
        for start in range(0, chunk.size, _BLOCK):
            below += np.sort(chunk[start : start + _BLOCK]).searchsorted(breaks)
    return _Counts(plan, breaks, below, int(below[-1]))


def _quantile_steps(quantiles: Any) -> tuple[Any, Any, Any]:
    """Distinct quantile values with the lowest and highest probability each stands for.

    For continuous data both are the same ``i / (k - 1)``; where a value repeats
    (discrete data) the CDF jumps there, from the lowest to the highest.
    """
    import numpy as np

    probs = np.linspace(0.0, 1.0, quantiles.size)
    values, first, repeats = np.unique(quantiles, return_index=True, return_counts=True)
    return values, probs[first], probs[first + repeats - 1]


def _cdf_from_quantiles(quantiles: Any, x: Any) -> tuple[Any, Any]:
    """CDF just below and at each ``x``, interpolated linearly between quantile points."""
    import numpy as np

    values, p_low, p_high = _quantile_steps(quantiles)
    j = np.searchsorted(values, x, side="left")
    inside = np.clip(j, 1, values.size - 1)
    span = values[inside] - values[inside - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(span > 0, (x - values[inside - 1]) / span, 1.0)
    between = p_high[inside - 1] + np.clip(t, 0.0, 1.0) * (p_low[inside] - p_high[inside - 1])
    on_point = (j < values.size) & (values[np.minimum(j, values.size - 1)] == x)
    at = np.minimum(j, values.size - 1)
    left = np.where(on_point, p_low[at], between)
    right = np.where(on_point, p_high[at], between)
    below, above = x < values[0], x > values[-1]
    left = np.where(below, 0.0, np.where(above, 1.0, left))
    right = np.where(below, 0.0, np.where(above, 1.0, right))
    return left, right


def _ks_quantiles_vs_quantiles(ref_q: Any, cur_q: Any) -> float:
    import numpy as np

    points = np.unique(np.concatenate([ref_q, cur_q]))
    points = points[np.isfinite(points)]
    if points.size == 0:
        return 0.0
    ref_left, ref_right = _cdf_from_quantiles(ref_q, points)
    cur_left, cur_right = _cdf_from_quantiles(cur_q, points)
    gaps = np.maximum(np.abs(ref_left - cur_left), np.abs(ref_right - cur_right))
    return float(gaps.max())


def _rebin(edges: Any, counts: Any, onto: Any) -> Any:
    """Move a histogram onto other bins (plus underflow/overflow), spreading each bin evenly."""
    import numpy as np

    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    cuts = np.concatenate([onto[:-1], np.nextafter(onto[-1:], np.inf)])
    width = edges[1:] - edges[:-1]
    # Share of each source bin lying below each cut; a zero-width bin is a point mass.
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(
            width[None, :] > 0,
            np.clip((cuts[:, None] - edges[None, :-1]) / width[None, :], 0.0, 1.0),
            (cuts[:, None] > edges[None, :-1]).astype(np.float64),
        )
    below = share @ counts
    return np.diff(np.concatenate([[0.0], below, [counts.sum()]]))


def _plan_column(name: str, ref: Mapping[str, Any] | None, in_current: bool) -> _Plan | str:
    """The reference side of a column, or why the column cannot be compared."""
    if ref is None:
        return "not in reference"
    if not in_current:
        return "not in current"
    return _plan_from_profile(ref, "reference")


def _plan_from_profile(col: Mapping[str, Any], side: str) -> _Plan | str:
    import numpy as np

    edges = ref_counts = quantiles = None
    histogram = col.get("histogram")
    if isinstance(histogram, Mapping) and histogram.get("edges") is not None:
        edges = np.asarray(histogram["edges"], dtype=np.float64)
        ref_counts = np.asarray(histogram.get("counts") or [], dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or ref_counts.shape != (edges.size - 1,):
            return f"{side} histogram is malformed"
        if not np.isfinite(edges).all() or ref_counts.sum() <= 0:
            edges = ref_counts = None
    if col.get("quantiles") is not None:
        quantiles = np.asarray(col["quantiles"], dtype=np.float64)
        if quantiles.ndim != 1 or quantiles.size < 2 or not np.isfinite(quantiles).any():
            quantiles = None
        else:
            quantiles = np.sort(quantiles)
    if edges is None and quantiles is None:
        if histogram is None and col.get("quantiles") is None:
            return f"not numeric in {side}"
        return f"no values in {side}"
    return _Plan(edges, ref_counts, quantiles)


def _drift_values(
    name: str, plan: _Plan, chunks: list[Any], psi_threshold: float, ks_threshold: float
) -> list[dict]:
    counts = _count(plan, chunks)
    if counts.total == 0:
        return [_skip(name, "no values in current")]
    entries = []
    if plan.edges is not None:
        entries.append(
            _psi_entry(name, _with_outer_bins(plan.ref_counts), counts.psi_counts(), psi_threshold)
        )
    else:
        entries.append(_skip(name, "no histogram in reference", check="psi"))
    if plan.quantiles is not None:
        gap = float(counts.ks_gaps().max())
        entries.append(_ks_entry(name, gap, plan.quantiles.size, ks_threshold))
    else:
        entries.append(_skip(name, "no quantiles in reference", check="ks"))
    return entries


def _drift_profile_vs_profile(
    name: str,
    ref: Mapping[str, Any] | None,
    cur: Mapping[str, Any] | None,
    psi_threshold: float,
    ks_threshold: float,
) -> list[dict]:
    plan = _plan_column(name, ref, cur is not None)
    if isinstance(plan, str):
        return [_skip(name, plan)]
    other = _plan_from_profile(cur, "current")  # type: ignore[arg-type]
    if isinstance(other, str):
        return [_skip(name, other)]
    entries = []
    if plan.edges is not None and other.edges is not None:
        actual = _rebin(other.edges, other.ref_counts, plan.edges)
        entries.append(_psi_entry(name, _with_outer_bins(plan.ref_counts), actual, psi_threshold))
    else:
        side = "reference" if plan.edges is None else "current"
        entries.append(_skip(name, f"no histogram in {side}", check="psi"))
    if plan.quantiles is not None and other.quantiles is not None:
        gap = _ks_quantiles_vs_quantiles(plan.quantiles, other.quantiles)
        entries.append(_ks_entry(name, gap, plan.quantiles.size, ks_threshold))
    else:
        side = "reference" if plan.quantiles is None else "current"
        entries.append(_skip(name, f"no quantiles in {side}", check="ks"))
    return entries


def _with_outer_bins(counts: Any) -> Any:
    import numpy as np

    return np.concatenate([[0.0], counts, [0.0]])


def _psi_entry(name: str, expected: Any, actual: Any, threshold: float) -> dict:
    value = psi(expected, actual)
    passed = value <= threshold
    return {
        "check": "psi",
        "column": name,
        "failures": 0 if passed else 1,
        "passed": passed,
        "psi": value,
        "threshold": threshold,
        "underflow": float(actual[0] / actual.sum()),
        "overflow": float(actual[-1] / actual.sum()),
    }


def _ks_entry(name: str, gap: float, points: int, threshold: float) -> dict:
    passed = gap <= threshold
    return {
        "check": "ks",
        "column": name,
        "failures": 0 if passed else 1,
        "passed": passed,
        "ks": gap,
        "threshold": threshold,
        "resolution": 1.0 / (points - 1),
    }


def _skip(name: str, reason: str, *, check: str = "drift") -> dict:
    return {"check": check, "column": name, "failures": 0, "passed": True, "skipped": reason}


def _column_order(
    columns: Sequence[str] | None, ref: Mapping[str, Any], cur: Mapping[str, Any]
) -> list[str]:
    if columns is not None:
        return list(dict.fromkeys(columns))
    return list(dict.fromkeys([*ref, *cur]))


def _profile_columns(profile: Any, side: str) -> Mapping[str, Any]:
    columns = profile.get("columns") if isinstance(profile, Mapping) else None
    if not isinstance(columns, Mapping):
        raise TypeError(
            f"{side} must be a profile dict with a 'columns' mapping "
            f"(as made by flowrecord.collectors.profile.profile), got {type(profile).__name__}"
        )
    return columns


def _quantiles(values: Any, what: str) -> Any:
    import numpy as np

    if values is None:
        raise ValueError(f"{what} are missing")
    q = np.asarray(values, dtype=np.float64)
    if q.ndim != 1 or q.size < 2:
        raise ValueError(f"{what} must be a 1-d sequence of at least 2 quantiles")
    return np.sort(q)


# --------------------------------------------------------------------------- tables


class _Table:
    """Uniform access to the numeric columns of a pyarrow, pandas or polars table."""

    def __init__(self, obj: Any) -> None:
        module = type(obj).__module__.split(".")[0]
        kind = type(obj).__name__
        if module == "pyarrow" and kind in ("Table", "RecordBatch"):
            self.flavour = "arrow"
        elif module == "pandas" and kind == "DataFrame":
            self.flavour = "pandas"
        elif module == "polars" and kind in ("DataFrame", "LazyFrame"):
            self.flavour = "polars"
        else:
            raise TypeError(
                "current must be a profile dict or a table (pyarrow Table/RecordBatch, "
                f"pandas DataFrame, polars DataFrame/LazyFrame), got {module}.{kind}"
            )
        self.obj = obj
        if kind == "LazyFrame":
            self.names = list(obj.collect_schema().names())
        elif self.flavour == "arrow":
            self.names = list(obj.column_names)
        else:
            self.names = [str(name) for name in obj.columns]
        self.num_rows = _row_count(obj, self.flavour)
        self._lazy = kind == "LazyFrame"

    def values(self, name: str) -> list[Any] | str:
        """The column's values as numpy chunks (nulls as NaN), or why it has none."""
        if self.flavour == "arrow":
            return _arrow_chunks(self.obj.column(name))
        if self.flavour == "pandas":
            return _pandas_chunks(self.obj, name)
        series = (
            self.obj.select(name).collect().to_series() if self._lazy else self.obj.get_column(name)
        )
        return _polars_chunks(series)


def _row_count(obj: Any, flavour: str) -> int:
    if flavour == "polars" and type(obj).__name__ == "LazyFrame":
        return 0  # unknown without running the query; not worth it for a heuristic
    return int(obj.num_rows if flavour == "arrow" else obj.shape[0])


def _arrow_chunks(column: Any) -> list[Any] | str:
    import pyarrow as pa

    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        return f"not numeric in current ({kind})"
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    out = []
    for chunk in chunks:
        if chunk.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            out.append(chunk.to_numpy(zero_copy_only=False))  # no copy for these
        else:
            # casting to float64 turns nulls into NaN, which the counting ignores
            out.append(chunk.cast(pa.float64()).to_numpy(zero_copy_only=False))
    return out


def _pandas_chunks(frame: Any, name: str) -> list[Any] | str:
    import numpy as np
    import pandas as pd

    matches = [label for label in frame.columns if str(label) == name]
    if len(matches) != 1:
        return "column name is ambiguous in current"
    series = frame[matches[0]]
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return f"not numeric in current ({dtype})"
    if isinstance(dtype, np.dtype):
        return [series.to_numpy()]  # a view: plain numpy columns need no copy
    return [series.to_numpy(dtype=np.float64, na_value=np.nan)]


def _polars_chunks(series: Any) -> list[Any] | str:
    import polars as pl

    dtype = series.dtype
    if not dtype.is_numeric():
        return f"not numeric in current ({dtype})"
    if dtype.is_integer() or dtype.is_float():
        return [series.to_numpy()]  # nulls come back as NaN
    return [series.cast(pl.Float64).to_numpy()]


def _values_to_chunks(values: Any) -> list[Any]:
    """Raw values of any common kind as numeric numpy chunks."""
    import numpy as np

    module = type(values).__module__.split(".")[0]
    if module == "pyarrow" and hasattr(values, "type"):
        chunks = _arrow_chunks(values)
    elif module == "pandas" and type(values).__name__ == "Series":
        chunks = _pandas_chunks(values.to_frame(name="v"), "v")
    elif module == "polars" and type(values).__name__ == "Series":
        chunks = _polars_chunks(values)
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "iuf":
            try:
                array = array.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"values must be numeric, got {array.dtype}") from exc
        chunks = [array.ravel()]
    if isinstance(chunks, str):
        raise TypeError(f"values must be numeric: {chunks}")
    return chunks


# --------------------------------------------------------------------------- results


def _result(
    validator: str, entries: list[dict], failing_value: str | None = None
) -> ValidationResult:
    failing = [entry for entry in entries if not entry["passed"]]
    sample = []
    for entry in failing:
        # volume shows the row count that failed; drift shows the metric that did
        key = "current" if failing_value == "current" else entry["check"]
        value = entry.get(key)
        sample.append(
            {
                "check": entry["check"],
                "column": entry["column"],
                "index": None,
                "failure_case": _finite(value),
            }
        )
    return ValidationResult(
        validator=validator,
        schema_name=None,
        passed=not failing,
        checks=tuple(entries),
        failure_count=sum(entry["failures"] for entry in entries),
        failure_sample=tuple(sample),
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
