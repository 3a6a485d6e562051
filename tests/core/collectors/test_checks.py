"""Volume against history and drift against a reference profile (PSI and KS)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from flowrecord.collectors import checks
from flowrecord.collectors.checks import (
    check_drift,
    check_volume,
    ks_exact,
    ks_from_quantiles,
    psi,
)

pytestmark = pytest.mark.unit

N = 50_000


def _profile(columns: dict[str, object], bins: int = 20) -> dict:
    """A profile in flowrecord's format, built with numpy (independent of profile.py)."""
    out: dict = {"row_count": 0, "columns": {}}
    for name, raw in columns.items():
        values = np.asarray(raw)
        out["row_count"] = len(values)
        if values.dtype.kind not in "iuf":
            out["columns"][name] = {
                "type": "string",
                "count": len(values),
                "nulls": 0,
                "distinct_estimate": len(set(values.tolist())),
            }
            continue
        x = values.astype(np.float64)
        clean = x[~np.isnan(x)]
        counts, edges = np.histogram(clean, bins=bins, range=(clean.min(), clean.max()))
        out["columns"][name] = {
            "type": "double",
            "count": len(x),
            "nulls": int(np.isnan(x).sum()),
            "distinct_estimate": None,
            "min": float(clean.min()),
            "max": float(clean.max()),
            "mean": float(clean.mean()),
            "std": float(clean.std()),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "quantiles": np.quantile(clean, np.linspace(0, 1, 101)).tolist(),
        }
    return out


def _by(result, column: str, check: str) -> dict:
    found = [e for e in result.checks if e["column"] == column and e["check"] == check]
    assert len(found) == 1, (column, check, result.checks)
    return found[0]


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture(scope="module")
def reference_values(rng) -> np.ndarray:
    return rng.normal(10.0, 2.0, N)


@pytest.fixture(scope="module")
def reference(reference_values) -> dict:
    return _profile({"x": reference_values})


# --------------------------------------------------------------------------- volume


def test_volume_drop_of_99_percent_fails() -> None:
    """A 99% drop against the median of history fails and records current, median and ratio."""
    result = check_volume(10, [1000, 1100, 900, 1000])
    assert result.validator == "volume" and not result.passed
    (check,) = result.checks
    assert check["current"] == 10 and check["median"] == 1000.0
    assert check["ratio"] == pytest.approx(0.01)
    assert check["failures"] == 1 and "dropped" in check["reason"]
    assert result.failure_count == 1
    assert result.failure_sample[0]["failure_case"] == 10
    json.dumps(result.checks)


def test_volume_growth_beyond_max_growth_fails() -> None:
    """More than max_growth times the median fails; at the bounds it still passes."""
    history = [100, 100, 100]
    assert not check_volume(1001, history).passed
    assert check_volume(1000, history).passed
    assert check_volume(50, history).passed
    assert not check_volume(49, history).passed
    assert check_volume(250, history, max_growth=2.0).checks[0]["reason"].startswith("grew")


def test_volume_insufficient_history_passes_with_reason() -> None:
    """With fewer counts than min_history the check passes and says why."""
    result = check_volume(1, [1000, 1000])
    assert result.passed
    assert result.checks[0]["reason"] == "insufficient history: 2 of 3 earlier counts"
    assert result.checks[0]["median"] is None
    assert check_volume(1, [None, None, 1000, 1000]).passed  # None entries do not count
    assert not check_volume(1, [1000, 1000], min_history=2).passed


def test_volume_zero_median() -> None:
    """A history of empty runs: an empty run passes; rows appearing fail without a ratio."""
    assert check_volume(0, [0, 0, 0]).passed
    result = check_volume(5, [0, 0, 0])
    assert not result.passed
    assert result.checks[0]["ratio"] is None and "median of 0" in result.checks[0]["reason"]
    json.dumps(result.checks, allow_nan=False)


def test_volume_uses_the_last_window_counts() -> None:
    """Only the most recent `window` counts form the median (history is oldest first)."""
    history = [10] * 20 + [1000] * 10
    assert check_volume(1000, history).passed
    assert not check_volume(1000, history, window=30).passed


def test_volume_rejects_bad_arguments() -> None:
    """Negative counts, bounds outside their range and non-sequence history are misuse."""
    with pytest.raises(ValueError, match="current_rows"):
        check_volume(-1, [1, 2, 3])
    with pytest.raises(ValueError, match="max_drop"):
        check_volume(1, [1, 2, 3], max_drop=1.5)
    with pytest.raises(ValueError, match="max_growth"):
        check_volume(1, [1, 2, 3], max_growth=0.5)
    with pytest.raises(TypeError, match="history"):
        check_volume(1, "123")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- psi / ks primitives


def test_psi_known_values() -> None:
    """PSI is 0 for equal histograms and matches the formula on a worked example."""
    assert psi([5, 5], [50, 50]) == pytest.approx(0.0)
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([1, 1], [1, 3]) == pytest.approx(expected)
    assert math.isfinite(psi([1, 0], [0, 1]))  # eps keeps empty bins finite
    assert psi([1, 0], [0, 1]) > 10


def test_psi_rejects_bad_histograms() -> None:
    """Different lengths, negative counts or empty sides are errors."""
    with pytest.raises(ValueError, match="same length"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        psi([1, -2], [1, 2])
    with pytest.raises(ValueError, match="at least one count"):
        psi([0, 0], [1, 2])


def test_ks_from_quantiles_tracks_the_exact_statistic(rng, reference_values, reference) -> None:
    """The quantile estimate is within its resolution (0.01) below scipy's exact KS."""
    quantiles = reference["columns"]["x"]["quantiles"]
    for shift in (0.0, 0.3, 2.0):
        current = rng.normal(10.0 + shift, 2.0, N)
        exact = ks_exact(reference_values, current)
        approx = ks_from_quantiles(quantiles, current)
        assert exact - 0.011 <= approx <= exact + 1e-3, (shift, approx, exact)


def test_ks_from_quantiles_accepts_series_and_profiles(rng, reference) -> None:
    """Raw values come as numpy, pyarrow, pandas or polars; a column profile is interpolated."""
    quantiles = reference["columns"]["x"]["quantiles"]
    current = rng.normal(11.0, 2.0, N)
    expected = ks_from_quantiles(quantiles, current)
    assert ks_from_quantiles(quantiles, pa.chunked_array([current[:10], current[10:]])) == expected
    assert ks_from_quantiles(quantiles, pd.Series(current)) == expected
    assert ks_from_quantiles(quantiles, pl.Series(current)) == expected
    from_profile = ks_from_quantiles(quantiles, _profile({"x": current})["columns"]["x"])
    assert from_profile == pytest.approx(expected, abs=0.015)
    assert ks_from_quantiles([0, 1, 2], [0.5, 1.5]) == 0.0


def test_ks_exact_drops_nans() -> None:
    """ks_exact ignores NaNs and needs values on both sides."""
    assert ks_exact([1.0, 2.0, np.nan], [1.0, 2.0]) == 0.0
    with pytest.raises(ValueError, match="non-NaN"):
        ks_exact([np.nan], [1.0])


# --------------------------------------------------------------------------- drift


def test_identical_distributions_pass(rng, reference) -> None:
    """Another sample of the same distribution: PSI near 0, KS small, both pass."""
    current = rng.normal(10.0, 2.0, N)
    for given in (pa.table({"x": current}), _profile({"x": current})):
        result = check_drift(given, reference)
        assert result.validator == "drift" and result.passed
        assert _by(result, "x", "psi")["psi"] < 0.02
        assert _by(result, "x", "ks")["ks"] < 0.02
        assert _by(result, "x", "ks")["resolution"] == pytest.approx(0.01)
        assert result.failure_count == 0 and result.failure_sample == ()


def test_mean_shift_of_one_std_fails_both(rng, reference) -> None:
    """A mean shifted by one standard deviation fails PSI and KS, as table and as profile."""
    current = rng.normal(12.0, 2.0, N)
    for given in (pa.table({"x": current}), _profile({"x": current})):
        result = check_drift(given, reference)
        assert not result.passed
        assert _by(result, "x", "psi")["psi"] > 0.5
        assert 0.33 < _by(result, "x", "ks")["ks"] < 0.43  # exact value is ~0.38
        assert result.failure_count == 2
        assert {s["check"] for s in result.failure_sample} == {"psi", "ks"}
        json.dumps(result.checks, allow_nan=False)


def test_table_and_profile_give_the_same_verdict(rng, reference) -> None:
    """For every kind of table, checking the table or its profile gives the same verdicts."""
    for shift in (0.0, 0.15, 1.0, 2.0):
        current = rng.normal(10.0 + shift, 2.0, N)
        from_profile = check_drift(_profile({"x": current}), reference)
        verdict = [(e["check"], e["passed"]) for e in from_profile.checks]
        tables = [
            pa.table({"x": current}),
            pa.table({"x": current}).to_batches()[0],
            pd.DataFrame({"x": current}),
            pl.DataFrame({"x": current}),
            pl.DataFrame({"x": current}).lazy(),
        ]
        for table in tables:
            result = check_drift(table, reference)
            assert [(e["check"], e["passed"]) for e in result.checks] == verdict, type(table)
            assert _by(result, "x", "psi")["psi"] == pytest.approx(
                _by(from_profile, "x", "psi")["psi"],
                abs=0.02 + 0.1 * _by(from_profile, "x", "psi")["psi"],
            )
            assert _by(result, "x", "ks")["ks"] == pytest.approx(
                _by(from_profile, "x", "ks")["ks"], abs=0.015
            )


def test_columns_on_one_side_or_not_numeric_are_skipped(rng) -> None:
    """Missing, non-numeric or empty columns are skipped with a reason, never raised."""
    reference = _profile(
        {"x": rng.normal(size=1000), "only_ref": rng.normal(size=1000), "s": ["a"] * 1000}
    )
    table = pa.table(
        {
            "x": rng.normal(size=1000),
            "only_cur": rng.normal(size=1000),
            "s": ["a"] * 1000,
        }
    )
    result = check_drift(table, reference)
    assert result.passed
    assert _by(result, "only_ref", "drift")["skipped"] == "not in current"
    assert _by(result, "only_cur", "drift")["skipped"] == "not in reference"
    assert _by(result, "s", "drift")["skipped"] == "not numeric in reference"
    assert _by(result, "x", "psi")["passed"]

    string_now = pa.table({"x": ["a", "b"]})
    assert _by(check_drift(string_now, reference), "x", "drift")["skipped"].startswith(
        "not numeric in current"
    )
    all_null = pa.table({"x": pa.array([None, None], pa.float64())})
    assert _by(check_drift(all_null, reference), "x", "drift")["skipped"] == "no values in current"
    profile_side = check_drift(_profile({"only_cur": [1.0, 2.0]}), reference)
    assert _by(profile_side, "x", "drift")["skipped"] == "not in current"


def test_columns_argument_limits_the_comparison(rng, reference) -> None:
    """Only the named columns are compared; a named column absent everywhere is skipped."""
    table = pa.table({"x": rng.normal(20.0, 2.0, 1000), "y": rng.normal(size=1000)})
    result = check_drift(table, reference, columns=["nope"])
    assert result.passed and [e["column"] for e in result.checks] == ["nope"]
    assert not check_drift(table, reference, columns=["x"]).passed


def test_nans_and_nulls_are_ignored(rng, reference) -> None:
    """NaNs (numpy) and nulls (arrow, pandas, polars) do not count as values."""
    current = rng.normal(10.0, 2.0, N)
    holes = current.copy()
    holes[::3] = np.nan
    clean = holes[~np.isnan(holes)]
    expected = check_drift(pa.table({"x": clean}), reference)
    masked = pa.array(holes, mask=np.isnan(holes))
    for table in (
        pa.table({"x": holes}),
        pa.table({"x": masked}),
        pd.DataFrame({"x": pd.array(holes)}).astype("Float64"),
        pl.DataFrame({"x": masked}),
    ):
        result = check_drift(table, reference)
        assert result.checks == expected.checks, type(table)
    assert result.passed


def test_integer_columns_with_ties(rng) -> None:
    """Discrete data (many tied quantiles) passes against itself and fails when shifted."""
    ref_values = rng.integers(0, 5, N)
    reference = _profile({"k": ref_values})
    same = pa.table({"k": pa.array(rng.integers(0, 5, N))})
    shifted = pa.table({"k": pa.array(rng.integers(1, 6, N))})
    with_nulls = pa.table({"k": pa.array([*rng.integers(0, 5, N).tolist(), None])})
    assert check_drift(same, reference).passed
    assert check_drift(with_nulls, reference).passed
    assert _by(check_drift(same, reference), "k", "ks")["ks"] <= 0.02
    result = check_drift(shifted, reference)
    assert not _by(result, "k", "psi")["passed"] and not _by(result, "k", "ks")["passed"]
    assert check_drift(_profile({"k": rng.integers(0, 5, N)}), reference).passed


def test_values_outside_the_reference_range_land_in_overflow(rng, reference) -> None:
    """Values beyond the reference max go to the overflow bin and drive PSI up."""
    result = check_drift(pa.table({"x": rng.normal(100.0, 1.0, 1000)}), reference)
    psi_check = _by(result, "x", "psi")
    assert psi_check["overflow"] == 1.0 and psi_check["underflow"] == 0.0
    assert psi_check["psi"] > 5
    assert _by(result, "x", "ks")["ks"] == pytest.approx(1.0)


def test_constant_reference_column() -> None:
    """A constant reference (min == max) accepts the same constant and flags a different one."""
    reference = _profile({"c": np.full(100, 3.0)})
    assert check_drift(pa.table({"c": np.full(50, 3.0)}), reference).passed
    assert check_drift(_profile({"c": np.full(50, 3.0)}), reference).passed
    assert not check_drift(pa.table({"c": np.full(50, 4.0)}), reference).passed
    assert not check_drift(_profile({"c": np.full(50, 4.0)}), reference).passed


def test_parallel_and_serial_counting_agree(rng, reference, monkeypatch) -> None:
    """Counting columns on a thread pool gives exactly the serial answer."""
    table = pa.table(
        {f"x{i}": rng.normal(10.0 + i / 10, 2.0, 20_000) for i in range(4)}
        | {"x": rng.normal(10.0, 2.0, 20_000)}
    )
    many = {
        "row_count": N,
        "columns": {f"x{i}": reference["columns"]["x"] for i in range(4)} | reference["columns"],
    }
    monkeypatch.setattr(checks, "_PARALLEL_MIN_VALUES", 10**12)
    serial = check_drift(table, many)
    monkeypatch.setattr(checks, "_PARALLEL_MIN_VALUES", 0)
    monkeypatch.setattr(checks, "_BLOCK", 4096)  # several blocks per column
    parallel = check_drift(table, many)
    assert parallel == serial
    assert [e["column"] for e in parallel.checks][::2] == ["x0", "x1", "x2", "x3", "x"]


def test_drift_rejects_misuse(reference) -> None:
    """A reference that is not a profile, or a current that is no table or profile, is a TypeError."""
    with pytest.raises(TypeError, match="reference must be a profile"):
        check_drift(pa.table({"x": [1.0]}), {"x": [1.0]})
    with pytest.raises(TypeError, match="current must be a profile dict or a table"):
        check_drift([1.0, 2.0], reference)
    with pytest.raises(TypeError, match="current must be a profile"):
        check_drift({"x": [1.0]}, reference)
    with pytest.raises(ValueError, match="thresholds"):
        check_drift(pa.table({"x": [1.0]}), reference, psi_threshold=-1)
