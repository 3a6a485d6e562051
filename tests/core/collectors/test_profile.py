"""Column profiles: right numbers, the documented shape, deterministic, JSON-ready."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from flowrecord.collectors.profile import profile, schema_of

pytestmark = pytest.mark.unit

BASE_KEYS = {"type", "count", "nulls", "distinct_estimate", "distinct_method"}
NUMERIC_KEYS = BASE_KEYS | {"min", "max", "mean", "std", "histogram", "quantiles"}


def _column(table: pa.Table, name: str = "x", **kwargs) -> dict:
    return profile(table, **kwargs)["columns"][name]


def test_numeric_stats_match_numpy():
    """min, max, mean, std, histogram and exact quantiles agree with numpy on small data."""
    rng = np.random.default_rng(1)
    x = rng.normal(10, 3, 5000)
    stats = _column(pa.table({"x": x}), bins=15, quantiles=11)
    assert set(stats) == NUMERIC_KEYS | {"nan", "inf"}
    assert stats["count"] == 5000 and stats["nulls"] == 0 and stats["nan"] == 0
    assert stats["min"] == x.min() and stats["max"] == x.max()
    assert stats["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(x.std(), rel=1e-12)
    counts, edges = np.histogram(x, bins=15)
    assert stats["histogram"]["counts"] == counts.tolist()
    assert stats["histogram"]["edges"] == pytest.approx(edges.tolist(), rel=1e-15)
    assert stats["quantiles"] == pytest.approx(np.quantile(x, np.linspace(0, 1, 11)).tolist())
    assert stats["distinct_estimate"] == 5000 and stats["distinct_method"] == "exact"


def test_integer_histogram_counts_values_on_edges_like_numpy():
    """Integers that fall exactly on bin edges land in the bin numpy puts them in."""
    x = np.random.default_rng(2).integers(0, 101, 20_000)
    stats = _column(pa.table({"x": x}), bins=20)
    counts, _ = np.histogram(x, bins=np.array(stats["histogram"]["edges"]))
    assert stats["histogram"]["counts"] == counts.tolist()
    assert isinstance(stats["min"], float) and stats["min"] == 0.0


def test_nulls_nan_and_infinity_are_counted_apart():
    """Nulls, NaN and +/-inf are counted; every other statistic covers the finite values only."""
    x = pa.array([1.0, None, float("nan"), float("inf"), -float("inf"), 3.0, None])
    stats = _column(pa.table({"x": x}), bins=2, quantiles=3)
    assert (stats["count"], stats["nulls"], stats["nan"], stats["inf"]) == (5, 2, 1, 2)
    assert (stats["min"], stats["max"], stats["mean"]) == (1.0, 3.0, 2.0)
    assert stats["histogram"] == {"edges": [1.0, 2.0, 3.0], "counts": [1, 1]}
    assert stats["quantiles"] == [1.0, 2.0, 3.0]
    json.dumps(stats, allow_nan=False)


def test_all_nan_and_constant_columns():
    """An all-NaN column has counts and no statistics; a constant one fills the last bin."""
    nan = _column(pa.table({"x": [float("nan")] * 3}))
    assert (nan["count"], nan["nan"], nan["distinct_estimate"]) == (3, 3, 0)
    assert "mean" not in nan
    const = _column(pa.table({"x": [4] * 10}), bins=4)
    assert const["histogram"] == {"edges": [4.0] * 5, "counts": [0, 0, 0, 10]}
    assert const["std"] == 0.0 and const["quantiles"][50] == 4.0


def test_empty_table_has_counts_only():
    """An empty table profiles every column with count 0 and no statistics."""
    table = pa.table({"x": pa.array([], pa.float64()), "s": pa.array([], pa.string())})
    result = profile(table)
    assert result["row_count"] == 0
    for stats in result["columns"].values():
        assert set(stats) == BASE_KEYS
        assert stats["count"] == 0 and stats["nulls"] == 0


def test_large_column_sketches_are_close_and_deterministic():
    """Above the exact limits quantiles come from a sample and distinct from HyperLogLog: close, repeatable."""
    rng = np.random.default_rng(3)
    n = 400_000
    x = rng.integers(0, 150_000, n).astype(np.float64)
    table = pa.table({"x": x})
    stats = _column(table)
    assert stats["distinct_method"] == "hll"
    assert stats["distinct_estimate"] == pytest.approx(len(np.unique(x)), rel=0.04)
    exact = np.quantile(x, np.linspace(0, 1, 101))
    assert np.max(np.abs(np.array(stats["quantiles"]) - exact)) < 0.01 * 150_000
    assert stats["quantiles"][0] == x.min() and stats["quantiles"][-1] == x.max()
    assert sum(stats["histogram"]["counts"]) == n
    assert stats["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert profile(table) == profile(table)
    chunked = _column(pa.table({"x": pa.chunked_array([x[:123_457], x[123_457:]])}))
    for key in ("mean", "std"):  # summed in another order: equal up to rounding
        assert chunked.pop(key) == pytest.approx(stats.pop(key), rel=1e-12)
    assert chunked == stats


def test_booleans():
    """Booleans get the share of true and both counts, no histogram."""
    stats = _column(pa.table({"x": [True, False, True, None]}))
    assert stats["mean"] == pytest.approx(2 / 3)
    assert stats["top"] == [[True, 2], [False, 1]]
    assert stats["distinct_estimate"] == 2 and "histogram" not in stats


def test_strings_small_and_low_cardinality():
    """Strings get character lengths and the most frequent values, exact when cheap."""
    stats = _column(pa.table({"x": ["é", "bb", None, "bb", "ccc"]}))
    assert (stats["min_length"], stats["max_length"], stats["mean_length"]) == (1, 3, 2.0)
    assert stats["top"] == [["bb", 2], ["é", 1], ["ccc", 1]]
    assert (stats["distinct_estimate"], stats["distinct_method"]) == (3, "exact")

    rng = np.random.default_rng(4)
    many = pa.array(rng.integers(0, 30, 200_000).astype(str))
    big = _column(pa.table({"x": many}))
    assert (big["distinct_estimate"], big["distinct_method"]) == (30, "exact")
    assert len(big["top"]) == 10 and big["top"][0][1] >= big["top"][-1][1]


def test_strings_large_and_high_cardinality_are_estimated():
    """Large high-cardinality strings get a sampled distinct estimate and no top list."""
    values = pa.array([f"id-{i}" for i in range(300_000)])
    stats = _column(pa.table({"x": values}))
    assert stats["distinct_method"] == "sample"
    assert stats["distinct_estimate"] == pytest.approx(300_000, rel=0.05)
    assert "top" not in stats


def test_string_families_and_dictionaries_profile_alike():
    """string_view, large_string and dictionary columns give the same statistics as string."""
    values = ["a", "bb", None, "a"]
    expected = _column(pa.table({"x": pa.array(values)}))
    for arr in (
        pa.array(values, pa.large_string()),
        pa.array(values, pa.string_view()),
        pa.array(values).dictionary_encode(),
    ):
        got = _column(pa.table({"x": arr}))
        assert {k: v for k, v in got.items() if k != "type"} == {
            k: v for k, v in expected.items() if k != "type"
        }


def test_temporal_and_decimal_min_max_are_strings():
    """Dates, timestamps, durations and decimals report min and max as strings."""
    table = pa.table(
        {
            "d": [datetime.date(2024, 1, 2), datetime.date(2023, 5, 6)],
            "ts": pa.array([datetime.datetime(2024, 1, 1, 12), None], pa.timestamp("us", tz="UTC")),
            "du": pa.array([5, 60], pa.duration("s")),
            "dec": [decimal.Decimal("1.25"), decimal.Decimal("-3.50")],
        }
    )
    cols = profile(table)["columns"]
    assert (cols["d"]["min"], cols["d"]["max"]) == ("2023-05-06", "2024-01-02")
    assert cols["ts"]["min"].startswith("2024-01-01 12:00:00")
    assert (cols["du"]["min"], cols["du"]["max"]) == ("0:00:05", "0:01:00")
    assert (cols["dec"]["min"], cols["dec"]["max"]) == ("-3.50", "1.25")
    assert cols["ts"]["nulls"] == 1 and cols["d"]["distinct_estimate"] == 2


def test_nested_and_mixed_object_columns_get_counts_and_a_warning():
    """Lists, structs and mixed pandas objects are profiled for counts only, with a warning each."""
    table = pa.table({"l": [[1], None, []], "st": [{"a": 1}, {"a": 2}, None]})
    result = profile(table)
    assert result["columns"]["l"] == {
        "type": "list<item: int64>",
        "count": 2,
        "nulls": 1,
        "distinct_estimate": None,
        "distinct_method": None,
    }
    assert result["columns"]["st"]["nulls"] == 1
    assert len(result["warnings"]) == 2
    mixed = profile(pd.DataFrame({"o": [1, "a", None]}))
    assert mixed["columns"]["o"]["type"] == "object"
    assert (mixed["columns"]["o"]["count"], mixed["columns"]["o"]["nulls"]) == (2, 1)
    assert "mixed Python objects" in mixed["warnings"][0]


def test_duplicate_names_are_kept_apart():
    """Duplicate column names are profiled under name#2 with a warning."""
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["a"])], names=["x", "x"])
    result = profile(table)
    assert list(result["columns"]) == ["x", "x#2"]
    assert result["columns"]["x#2"]["type"] == "string"
    assert result["warnings"]


def test_frames_are_accepted_and_agree():
    """pandas and polars frames profile like the Arrow table of the same data."""
    data = {"x": [1.5, 2.5, 3.5], "s": ["a", "b", "a"]}
    arrow = profile(pa.table(data))
    polars = profile(pl.DataFrame(data))
    pandas = profile(pd.DataFrame(data))
    for result in (polars, pandas):
        assert result["columns"]["x"] == arrow["columns"]["x"]
        assert result["columns"]["s"]["top"] == arrow["columns"]["s"]["top"]


def test_bad_arguments():
    """bins < 1 and quantiles < 2 are refused."""
    table = pa.table({"x": [1.0]})
    with pytest.raises(ValueError, match="bins"):
        profile(table, bins=0)
    with pytest.raises(ValueError, match="quantiles"):
        profile(table, quantiles=1)
    with pytest.raises(TypeError):
        profile({"x": [1]})


def test_profile_is_json_ready():
    """A profile of mixed types survives json round trips unchanged, without NaN."""
    table = pa.table(
        {
            "f": [1.0, float("nan"), None],
            "i": pa.array([1, 2, 3], pa.int8()),
            "s": ["x", None, "y"],
            "b": [True, None, False],
        }
    )
    result = profile(table)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_drift_check_reads_profiles():
    """The drift check accepts our profiles: the same data does not drift, shifted data does."""
    from flowrecord.collectors.checks import check_drift

    rng = np.random.default_rng(5)
    reference = profile(pa.table({"x": rng.normal(0, 1, 50_000)}))
    same = check_drift(reference, profile(pa.table({"x": rng.normal(0, 1, 50_000)})))
    shifted = check_drift(reference, profile(pa.table({"x": rng.normal(1.5, 1, 50_000)})))
    assert same.passed and not shifted.passed


def test_schema_of():
    """schema_of lists name, Arrow type string and nullability per column."""
    schema = pa.schema(
        [pa.field("a", pa.int32(), nullable=False), pa.field("b", pa.large_string())]
    )
    assert schema_of(schema.empty_table()) == (
        {"name": "a", "type": "int32", "nullable": False},
        {"name": "b", "type": "large_string", "nullable": True},
    )
    assert schema_of(pd.DataFrame({"o": [1, "a"]}))[0]["type"] == "object"


# --------------------------------------------------------------------------
# The fast numeric path: pieces, threads, fixed-point bins, the skipping sketch
# --------------------------------------------------------------------------


def _hard_columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    return {
        "ints on edges": rng.integers(-50, 51, 3000),
        "far from zero": 1e9 + rng.integers(0, 100, 3000) * 0.25,
        "tenths": rng.integers(0, 7, 3000) * 0.1,
        "thirds": rng.integers(-3, 4, 3000) / 3.0,
        "epoch seconds": 1.7e9 + rng.integers(0, 3600, 3000).astype(float),
        "tiny": rng.random(3000) * 1e-300,
        "wide ints": rng.integers(-(2**62), 2**62, 3000),
        "float32": rng.normal(0, 1, 3000).astype(np.float32),
    }


@pytest.mark.parametrize("bins", [1, 3, 20, 33, 1000])
def test_histogram_agrees_with_numpy_on_values_near_edges(bins):
    """Counts equal np.histogram's against the published edges, which are np.linspace's."""
    for name, x in _hard_columns().items():
        stats = _column(pa.table({"x": x}), bins=bins)
        edges = np.array(stats["histogram"]["edges"])
        xf = x.astype(np.float64)
        assert edges.tolist() == np.linspace(xf.min(), xf.max(), bins + 1).tolist(), name
        counts, _ = np.histogram(xf, bins=edges)
        assert stats["histogram"]["counts"] == counts.tolist(), name


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # std, not the histogram
def test_histogram_of_a_span_that_overflows_stays_finite():
    """Values from -1e308 to 1e308 get finite, uniform edges and every value counted."""
    x = np.array([-1e308, -1.0, 0.0, 1.0, 1e308] * 20)
    stats = _column(pa.table({"x": x}), bins=4)
    assert stats["histogram"]["edges"] == [-1e308, -5e307, 0.0, 5e307, 1e308]
    assert stats["histogram"]["counts"] == [20, 20, 40, 20]
    json.dumps(stats["histogram"], allow_nan=False)


def test_threads_and_pieces_do_not_change_the_profile():
    """The same table profiled on a thread pool, in many chunks, gives the serial profile."""
    from concurrent.futures import ThreadPoolExecutor

    from flowrecord.collectors.profile import _profile_columns

    rng = np.random.default_rng(7)
    n = 1_300_000  # three pieces of 2**19 rows
    x = rng.normal(0, 1, n)
    x[rng.integers(0, n, 500)] = np.nan
    table = pa.table(
        {
            "f": pa.array(x, mask=rng.random(n) < 0.05),
            "i": rng.integers(0, 1000, n).astype(np.int32),
        }
    )
    fields, columns = list(table.schema), table.columns
    serial = _profile_columns(fields, columns, 20, 101, map)
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = _profile_columns(fields, columns, 20, 101, pool.map)
    assert threaded == serial
    assert serial[0][0]["nan"] > 0 and serial[0][0]["nulls"] > 0
    assert serial[1][0]["distinct_estimate"] == pytest.approx(1000, rel=0.03)


def test_sketch_skips_only_values_that_cannot_change_it():
    """The sketch's registers equal those of ranking every value, the plain way."""
    from flowrecord.collectors.profile import _BLOCK, _HyperLogLog, _Scratch

    def plain_registers(x: np.ndarray) -> np.ndarray:
        u = np.uint64
        v = x.view(u) if x.dtype.itemsize == 8 else x.view(f"u{x.dtype.itemsize}").astype(u)
        h = (v ^ (v >> u(32))) * u(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> u(29))) * u(0x94D049BB133111EB)
        top = h >> u(32)
        rank_bits = (top >> u(14)).astype(np.int64)
        bit_length = np.zeros(len(rank_bits), np.int64)
        for b in range(18):
            bit_length[rank_bits >= (1 << b)] = b + 1
        registers = np.zeros(1 << 14, np.uint8)
        np.maximum.at(
            registers, (top & u(16383)).astype(np.intp), (19 - bit_length).astype(np.uint8)
        )
        return registers

    rng = np.random.default_rng(8)
    for x in (
        rng.random(400_000),
        rng.integers(0, 1000, 200_000),
        np.arange(300_000, dtype=np.int32),
    ):
        sketch, scratch = _HyperLogLog(), _Scratch()
        for start in range(0, len(x), _BLOCK):
            sketch.add(x[start : start + _BLOCK], scratch)
        assert np.array_equal(sketch.registers, plain_registers(x))


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: np.arange(300_000).astype(np.float64),  # floats with zero low bits
        lambda rng: np.arange(300_000) * 1000,
        lambda rng: np.round(rng.random(300_000) * 1000, 2),
        lambda rng: rng.integers(0, 1000, 300_000),  # few distinct values, many rows
        lambda rng: rng.random(300_000).astype(np.float32),
    ],
)
def test_distinct_estimate_is_close_on_structured_data(make):
    """HyperLogLog estimates stay within 3% on sequences, rounded and low-cardinality data."""
    x = make(np.random.default_rng(9))
    stats = _column(pa.table({"x": x}))
    assert stats["distinct_method"] == "hll"
    assert stats["distinct_estimate"] == pytest.approx(len(np.unique(x)), rel=0.03)


def test_many_nans_leave_few_enough_finite_values_for_an_exact_count():
    """Distinct is exact when at most 2**16 values are finite, however many are NaN."""
    x = np.full(100_000, np.nan)
    x[:1000] = np.arange(1000) % 7
    stats = _column(pa.table({"x": x}))
    assert (stats["nan"], stats["distinct_estimate"], stats["distinct_method"]) == (
        99_000,
        7,
        "exact",
    )


@pytest.mark.parametrize("bins", [2, 20, 64, 65])
def test_histogram_counts_odd_blocks_and_packed_pairs_like_numpy(bins):
    """Odd-length blocks and indices counted two to a key (up to 64 bins) give numpy's counts."""
    from flowrecord.collectors.profile import _BLOCK

    rng = np.random.default_rng(10)
    for n in (1, 3001, _BLOCK + 1001):
        for x in (rng.normal(0, 1, n), rng.integers(-50, 51, n)):
            stats = _column(pa.table({"x": x}), bins=bins)
            counts, _ = np.histogram(
                x.astype(np.float64), bins=np.array(stats["histogram"]["edges"])
            )
            assert stats["histogram"]["counts"] == counts.tolist(), (n, x.dtype)


def test_columns_of_other_lengths_get_their_own_quantile_sample():
    """Columns profiled together, with different non-null counts, match each profiled alone."""
    rng = np.random.default_rng(11)
    n = 200_000
    table = pa.table(
        {
            "a": rng.normal(0, 1, n),
            "b": pa.array(rng.normal(5, 2, n), mask=rng.random(n) < 0.3),
            "c": rng.integers(0, 10**6, n),
        }
    )
    together = profile(table)["columns"]
    for name in table.column_names:
        assert together[name] == profile(table.select([name]))["columns"][name], name


def test_float32_and_small_integers_are_binned_in_float64():
    """float32 and int8 columns get the bins, moments and quantiles of their float64 values."""
    rng = np.random.default_rng(12)
    for x in (
        rng.normal(0, 1, 100_000).astype(np.float32),
        rng.integers(-100, 100, 100_000, np.int8),
    ):
        got = _column(pa.table({"x": x}))
        wide = _column(pa.table({"x": x.astype(np.float64)}))
        for key in ("min", "max", "mean", "std", "histogram", "quantiles"):
            assert got[key] == wide[key], (x.dtype, key)


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="Linux run queue only")
def test_a_busy_process_elsewhere_counts_against_idle_cores():
    """A process spinning now counts as busy, and idle cores stay between 1 and the usable cores."""
    import subprocess
    import sys
    import time

    from flowrecord.collectors.profile import _busy_elsewhere, _idle_cores

    cores = len(os.sched_getaffinity(0))
    assert 1 <= _idle_cores() <= cores
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert _busy_elsewhere() >= 1
        assert 1 <= _idle_cores() <= max(1, cores - 1)
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.unit
def test_values_near_the_float_limit_keep_mean_and_std_finite():
    """Squares of deviations of 1e200 would overflow: the profile still holds finite, right moments."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way either
        wide = profile(pa.table({"x": [1e200, -1e200, 0.0]}))["columns"]["x"]
        huge = profile(pa.table({"x": [1.5e308, 1.6e308, None]}))["columns"]["x"]
    assert wide["mean"] == 0.0
    assert math.isclose(wide["std"], math.sqrt(2 / 3) * 1e200, rel_tol=1e-12)
    assert math.isclose(huge["mean"], 1.55e308, rel_tol=1e-12)
    assert math.isclose(huge["std"], 0.05e308, rel_tol=1e-9)
    assert all(math.isfinite(v) for v in (huge["min"], huge["max"], *huge["quantiles"]))
