"""Content fingerprints: equal content hashes equal whatever the layout; any change shows."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowrecord.collectors.fingerprint import (
    canonical_type,
    fingerprint,
    fingerprint_path,
    fingerprint_table,
    is_repr_encoded,
    to_arrow,
)

pytestmark = pytest.mark.unit

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rechunk(column: pa.ChunkedArray, cuts: list[int]) -> pa.ChunkedArray:
    """The same values split at ``cuts`` (zero-copy slices, so chunks keep their offsets)."""
    combined = column.combine_chunks()
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(combined)}), len(combined)]
    return pa.chunked_array(
        [combined.slice(a, b - a) for a, b in itertools.pairwise(bounds)],
        combined.type,
    )


def _fresh(arr: pa.Array) -> pa.Array:
    """The same logical values rebuilt from Python objects: offset 0, clean buffers."""
    return pa.array(arr.to_pylist(), type=arr.type)


def _single_changes(table: pa.Table) -> list[pa.Table]:
    """Tables that each differ from ``table`` in one respect."""
    names = table.column_names
    changed = [table.rename_columns([names[0] + "_", *names[1:]])]
    if table.num_columns > 1:
        changed.append(table.select([names[1], names[0], *names[2:]]))
    if table.num_rows > 1:
        order = list(range(table.num_rows))
        order[0], order[1] = order[1], order[0]
        changed.append(table.take(order))
    return changed


# --------------------------------------------------------------------------- layout invariance

values_with_nulls = st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=300)
text_with_nulls = st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=200)
cuts = st.lists(st.integers(0, 300), max_size=6)


@FAST
@given(values=values_with_nulls, cuts=cuts)
def test_int_chunking_does_not_matter(values, cuts):
    """An int64 column with nulls hashes the same however it is chunked."""
    table = pa.table({"x": pa.array(values, pa.int64())})
    rechunked = pa.table({"x": _rechunk(table.column("x"), cuts)})
    assert fingerprint(rechunked) == fingerprint(table)


@FAST
@given(values=text_with_nulls, cuts=cuts)
def test_string_chunking_and_width_do_not_matter(values, cuts):
    """string, large_string and string_view, chunked anyhow, hash the same."""
    base = pa.table({"s": pa.array(values, pa.string())})
    variants = [
        pa.table({"s": _rechunk(base.column("s"), cuts)}),
        pa.table({"s": _rechunk(base.column("s").cast(pa.large_string()), cuts)}),
        pa.table({"s": base.column("s").cast(pa.string_view())}),
    ]
    assert {fingerprint(v) for v in variants} == {fingerprint(base)}


@FAST
@given(values=st.lists(st.one_of(st.none(), st.booleans()), max_size=300), cuts=cuts)
def test_boolean_chunking_does_not_matter(values, cuts):
    """Bit-packed booleans hash the same whatever the bit offsets of their chunks."""
    base = pa.table({"b": pa.array(values, pa.bool_())})
    assert fingerprint(pa.table({"b": _rechunk(base.column("b"), cuts)})) == fingerprint(base)


@FAST
@given(
    values=st.lists(
        st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=4)),
        max_size=120,
    ),
    cuts=cuts,
)
def test_list_chunking_does_not_matter(values, cuts):
    """list and large_list columns with nulls at both levels hash the same however chunked."""
    base = pa.table({"l": pa.array(values, pa.list_(pa.int64()))})
    large = base.column("l").cast(pa.large_list(pa.int64()))
    assert fingerprint(pa.table({"l": _rechunk(base.column("l"), cuts)})) == fingerprint(base)
    assert fingerprint(pa.table({"l": _rechunk(large, cuts)})) == fingerprint(base)


@pytest.mark.parametrize("offset", [1, 3, 7, 8, 9, 13])
@pytest.mark.parametrize(
    "data",
    [
        pa.array(
            [1, None, 3, 4, None, 6, 7, 8, 9, None, 11, 12, 13, 14, 15, 16, 17, 18], pa.int64()
        ),
        pa.array([True, None, False, True] * 5),
        pa.array(["a", None, "ccc", "", "dd"] * 4),
        pa.array([[1], None, [2, None], []] * 5),
        pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}] * 6),
    ],
    ids=["int64", "bool", "string", "list", "struct"],
)
def test_slices_hash_like_fresh_arrays(data, offset):
    """A slice at any bit offset hashes like the same values built from scratch."""
    sliced = data.slice(offset, len(data) - offset - 2)
    assert sliced.offset == offset
    assert fingerprint(sliced) == fingerprint(_fresh(sliced))


def test_garbage_under_nulls_is_ignored():
    """Whatever bytes lie under null slots, fixed-width and string columns hash the same."""
    validity = pa.array([True, False, True, False]).buffers()[1]
    clean = pa.Array.from_buffers(
        pa.int64(), 4, [validity, pa.py_buffer(np.array([1, 0, 3, 0], np.int64))]
    )
    dirty = pa.Array.from_buffers(
        pa.int64(), 4, [validity, pa.py_buffer(np.array([1, 99, 3, -7], np.int64))]
    )
    assert clean.to_pylist() == dirty.to_pylist()
    assert fingerprint(clean) == fingerprint(dirty)

    # A null string slot may still span bytes in the data buffer.
    offsets = pa.py_buffer(np.array([0, 1, 6, 7, 9], np.int32))
    junk = pa.Array.from_buffers(pa.string(), 4, [validity, offsets, pa.py_buffer(b"aJUNK!bXX")])
    assert junk.to_pylist() == ["a", None, "b", None]
    assert fingerprint(junk) == fingerprint(pa.array(["a", None, "b", None]))


@pytest.mark.parametrize(
    "data_type",
    [
        pa.int8(),
        pa.uint16(),
        pa.int32(),
        pa.float32(),
        pa.float64(),
        pa.timestamp("ns"),
        pa.decimal128(20, 2),
        pa.binary(3),
        pa.bool_(),
    ],
    ids=str,
)
@pytest.mark.parametrize("offset", [0, 5])
def test_garbage_under_nulls_is_ignored_for_every_width(data_type, offset):
    """Fixed-width columns of any width, sliced or not, ignore the bytes under nulls."""
    n = 40 + offset
    rng = np.random.default_rng(9)
    valid = rng.random(n) < 0.7
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if pa.types.is_boolean(data_type):
        values = np.packbits(rng.random(n) < 0.5, bitorder="little")
        size = len(values)
    else:
        size = n * data_type.bit_width // 8
        values = rng.integers(0, 256, size, dtype=np.uint8)
    garbage = values.copy()
    if pa.types.is_boolean(data_type):
        bits = np.unpackbits(garbage, bitorder="little")[:n]
        bits[~valid] ^= 1
        garbage = np.packbits(bits, bitorder="little")
    else:
        width = data_type.bit_width // 8
        garbage.reshape(n, width)[~valid] = rng.integers(0, 256, (int((~valid).sum()), width))
    a = pa.Array.from_buffers(data_type, n, [bitmap, pa.py_buffer(values[:size])]).slice(offset)
    b = pa.Array.from_buffers(data_type, n, [bitmap, pa.py_buffer(garbage[:size])]).slice(offset)
    assert a.to_pylist() == b.to_pylist()
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) == fingerprint(_rechunk(pa.chunked_array([b]), [3, 17, 18]))


def test_garbage_under_null_lists_and_structs_is_ignored():
    """Children hidden under null list and struct slots do not count."""
    validity = pa.array([True, False, True]).buffers()[1]
    items = pa.array([1, 2, 666, 777, 3])
    lists = pa.ListArray.from_buffers(
        pa.list_(pa.int64()),
        3,
        [validity, pa.py_buffer(np.array([0, 2, 4, 5], np.int32))],
        children=[items],
    )
    assert lists.to_pylist() == [[1, 2], None, [3]]
    assert fingerprint(lists) == fingerprint(pa.array([[1, 2], None, [3]]))

    fields = pa.array([10, 999, 30])
    structs = pa.StructArray.from_buffers(
        pa.struct([("a", pa.int64())]), 3, [validity], children=[fields]
    )
    assert fingerprint(structs) == fingerprint(pa.array([{"a": 10}, None, {"a": 30}]))


def test_string_offset_base_is_ignored():
    """Strings whose offsets start far into the data buffer hash like a fresh array."""
    offsets = pa.py_buffer(np.array([5, 6, 8, 8], np.int64))
    shifted = pa.Array.from_buffers(
        pa.large_string(), 3, [None, offsets, pa.py_buffer(b"XXXXXabc")]
    )
    assert shifted.to_pylist() == ["a", "bc", ""]
    assert fingerprint(shifted) == fingerprint(pa.array(["a", "bc", ""]))


def test_dictionary_hashes_like_its_values():
    """Dictionary-encoded columns, including nulls inside the dictionary, hash like the decoded values."""
    plain = pa.array(["x", "y", None, "x"])
    assert fingerprint(plain.dictionary_encode()) == fingerprint(plain)
    tricky = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, None, 0], pa.int8()), pa.array(["x", None])
    )
    assert fingerprint(tricky) == fingerprint(pa.array(["x", None, None, "x"]))
    chunks = pa.chunked_array(
        [pa.array(["a", "b"]).dictionary_encode(), pa.array(["b"]).dictionary_encode()]
    )
    assert fingerprint(chunks) == fingerprint(pa.array(["a", "b", "b"]))


def test_run_end_encoded_and_maps_are_canonical():
    """Run-end encoded columns hash like their values; maps hash and see every entry."""
    ree = pc.run_end_encode(pa.array([1, 1, 2, None]))
    assert fingerprint(ree) == fingerprint(pa.array([1, 1, 2, None]))
    m = pa.array([[("k", 1)], None, [("a", 2), ("b", 3)]], pa.map_(pa.string(), pa.int64()))
    assert fingerprint(m.slice(1)) == fingerprint(_fresh(m.slice(1)))
    other = pa.array([[("k", 1)], None, [("a", 2), ("b", 4)]], pa.map_(pa.string(), pa.int64()))
    assert fingerprint(m) != fingerprint(other)


def test_union_falls_back_to_repr_and_still_discriminates():
    """Unions, with no canonical layout, hash through repr of each value, deterministically."""
    u = pa.UnionArray.from_sparse(
        pa.array([0, 1, 0], pa.int8()), [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])]
    )
    v = pa.UnionArray.from_sparse(
        pa.array([0, 0, 0], pa.int8()), [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])]
    )
    assert fingerprint(u) == fingerprint(u)
    assert fingerprint(u) != fingerprint(v)


# --------------------------------------------------------------------------- what must change it


def test_types_are_part_of_the_hash_but_physical_variants_are_not():
    """int32 vs int64 differ; list vs large_list and dictionary<string> vs string do not."""
    assert fingerprint(pa.array([1, 2], pa.int32())) != fingerprint(pa.array([1, 2], pa.int64()))
    assert fingerprint(pa.array([1.0], pa.float32())) != fingerprint(pa.array([1.0], pa.float64()))
    assert fingerprint(pa.array([b"a"], pa.binary())) != fingerprint(pa.array(["a"], pa.string()))
    assert (
        canonical_type(pa.large_list(pa.dictionary(pa.int8(), pa.string_view()))) == "list<string>"
    )


@pytest.mark.parametrize(
    ("column", "edited"),
    [
        (pa.array([1, 2, 3]), pa.array([1, 2, 4])),
        (pa.array([1, 2, 3]), pa.array([1, None, 3])),
        (pa.array([1, 0, 3]), pa.array([1, None, 3])),
        (pa.array([1.0, 0.0]), pa.array([1.0, -0.0])),
        (pa.array(["ab", "c"]), pa.array(["ab", "d"])),
        (pa.array(["ab", "c"]), pa.array(["a", "bc"])),
        (pa.array(["", None]), pa.array([None, ""])),
        (pa.array([True, False]), pa.array([True, True])),
        (pa.array([[1, 2], [3]]), pa.array([[1], [2, 3]])),
        (pa.array([[1, 2], []]), pa.array([[1, 2], None])),
        (pa.array([{"a": 1}, {"a": 2}]), pa.array([{"a": 1}, {"a": None}])),
    ],
)
def test_any_single_change_changes_it(column, edited):
    """A changed value, a flipped null or a moved string boundary changes the fingerprint."""
    assert fingerprint(pa.table({"c": column})) != fingerprint(pa.table({"c": edited}))


def test_renames_reorders_and_row_order_change_it():
    """Renaming a column, swapping columns or swapping rows changes the fingerprint."""
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert len({fingerprint(t) for t in [table, *_single_changes(table)]}) == 4


@FAST
@given(values=st.lists(st.integers(-1000, 1000), min_size=1, max_size=50), where=st.integers(0, 49))
def test_every_position_matters(values, where):
    """Changing the value at any one position changes the fingerprint."""
    where %= len(values)
    edited = list(values)
    edited[where] += 1
    assert fingerprint(pa.array(values)) != fingerprint(pa.array(edited))


def test_empty_tables():
    """Empty tables hash by their schema: chunking aside, equal schemas agree, different ones differ."""
    empty = pa.table({"a": pa.array([], pa.int64()), "s": pa.array([], pa.string())})
    no_chunks = pa.table(
        {"a": pa.chunked_array([], pa.int64()), "s": pa.chunked_array([], pa.large_string())}
    )
    assert fingerprint(empty) == fingerprint(no_chunks)
    assert fingerprint(empty) != fingerprint(empty.select(["s", "a"]))
    assert fingerprint(empty) != fingerprint(
        pa.table({"a": pa.array([None], pa.int64()), "s": pa.array([None], pa.string())})
    )
    assert fingerprint(pa.table({})) == fingerprint(pd.DataFrame())
    assert fingerprint(pd.DataFrame({"a": pd.Series([], dtype="int64")})) == fingerprint(
        pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)})
    )


def test_format_is_prefixed_hex():
    """Fingerprints read "xxh3:" followed by 32 lowercase hex digits."""
    fp = fingerprint(pa.table({"a": [1]}))
    assert fp.startswith("xxh3:")
    assert len(fp) == 5 + 32
    int(fp[5:], 16)


# --------------------------------------------------------------------------- pandas and polars


def test_pandas_polars_and_arrow_agree():
    """The same data through pandas, polars and pyarrow fingerprints the same."""
    data = {
        "i": [1, 2, None, 4],
        "f": [0.5, -1.0, 2.25, 3.0],
        "s": ["a", None, "ccc", ""],
        "b": [True, False, None, True],
    }
    arrow = pa.table(
        {
            "i": pa.array(data["i"], pa.int64()),
            "f": pa.array(data["f"], pa.float64()),
            "s": pa.array(data["s"], pa.string()),
            "b": pa.array(data["b"], pa.bool_()),
        }
    )
    pandas = pd.DataFrame(
        {
            "i": pd.array(data["i"], dtype="Int64"),
            "f": data["f"],
            "s": pd.array(data["s"], dtype="string"),
            "b": pd.array(data["b"], dtype="boolean"),
        }
    )
    polars = pl.DataFrame(
        data, schema={"i": pl.Int64, "f": pl.Float64, "s": pl.String, "b": pl.Boolean}
    )
    assert fingerprint(pandas) == fingerprint(arrow) == fingerprint(polars)
    assert fingerprint(polars.to_arrow(compat_level=pl.CompatLevel.newest())) == fingerprint(arrow)
    assert fingerprint(pandas["f"].rename("f").to_frame()) == fingerprint(polars.select("f"))


def test_pandas_nan_is_null_as_in_from_pandas():
    """A pandas float NaN counts as null, as pa.Table.from_pandas has it; no NaN, no nulls."""
    with_nan = pd.DataFrame({"f": [1.0, float("nan")], "i": [1, 2]})
    assert fingerprint(with_nan) == fingerprint(pa.table({"f": [1.0, None], "i": [1, 2]}))
    assert to_arrow(with_nan).equals(
        pa.Table.from_pandas(with_nan, preserve_index=False).replace_schema_metadata()
    )
    clean = pd.DataFrame({"f": np.arange(5, dtype=np.float32), "u": np.arange(5, dtype=np.uint8)})
    assert to_arrow(clean).equals(
        pa.Table.from_pandas(clean, preserve_index=False).replace_schema_metadata()
    )


def test_pandas_categorical_and_polars_categorical_hash_like_strings():
    """Categoricals from pandas and polars hash like plain string columns."""
    strings = pa.table({"c": pa.array(["u", "v", "u", None])})
    assert fingerprint(pd.DataFrame({"c": pd.Categorical(["u", "v", "u", None])})) == fingerprint(
        strings
    )
    assert fingerprint(
        pl.DataFrame({"c": pl.Series(["u", "v", "u", None], dtype=pl.Categorical)})
    ) == fingerprint(strings)


def test_pandas_index_rules():
    """A default RangeIndex adds nothing; a shifted, filtered or named index counts."""
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    assert fingerprint(df) == fingerprint(pa.table({"x": [1.0, 2.0, 3.0]}))
    assert fingerprint(df.set_index(pd.Index([5, 6, 7]))) != fingerprint(df)
    assert fingerprint(df.rename_axis("row")) != fingerprint(df)
    assert fingerprint(df[df.x > 1]) != fingerprint(df[df.x > 1].reset_index(drop=True))
    assert "__index_level_0__" in to_arrow(df.set_index(pd.Index([5, 6, 7]))).column_names


def test_pandas_mixed_objects_fall_back_to_repr():
    """Mixed-type object columns fingerprint via repr per value instead of failing."""
    mixed = pd.DataFrame({"o": [1, "1", None, 2.5, (1, 2)], "n": [1, 2, 3, 4, 5]})
    table = to_arrow(mixed)
    assert is_repr_encoded(table.schema.field("o"))
    assert not is_repr_encoded(table.schema.field("n"))
    assert table.column("o").to_pylist() == ["1", "'1'", None, "2.5", "(1, 2)"]
    assert fingerprint(mixed) == fingerprint(mixed.copy())
    edited = mixed.copy()
    edited.loc[1, "o"] = 1
    assert fingerprint(edited) != fingerprint(mixed)
    # The same text as a genuine string column is a different thing.
    as_text = pa.table({"o": table.column("o"), "n": table.column("n")})
    assert fingerprint(as_text) != fingerprint(mixed)
    with_index = mixed.set_index(pd.Index(list("abcde"), name="key"))
    assert to_arrow(with_index).column_names == ["o", "n", "key"]


def test_series_and_batches_are_accepted():
    """Series, record batches and arrays become one-column tables or tables."""
    assert fingerprint(pd.Series([1, 2], name="values")) == fingerprint(pa.array([1, 2]))
    assert fingerprint(pl.Series("values", [1, 2])) == fingerprint(pa.array([1, 2]))
    batch = pa.record_batch({"a": [1, 2]})
    assert fingerprint(batch) == fingerprint(pa.table({"a": [1, 2]}))


@pytest.mark.parametrize(
    "obj", [{"a": 1}, None, 3, np.arange(3), pl.LazyFrame({"a": [1]}), object()]
)
def test_unsupported_objects_raise_type_error(obj):
    """Anything but frames, Arrow data and paths is a TypeError naming the type."""
    with pytest.raises(TypeError, match=type(obj).__name__):
        fingerprint(obj)


# --------------------------------------------------------------------------- files and directories


def test_file_fingerprint_is_xxh128_of_bytes(tmp_path):
    """A file's fingerprint is the xxh3-128 of its bytes, as str or Path, empty or not."""
    f = tmp_path / "data.bin"
    payload = os.urandom(3 * (1 << 20) + 17)
    f.write_bytes(payload)
    assert fingerprint(f) == "xxh3:" + xxhash.xxh3_128_hexdigest(payload)
    assert fingerprint(str(f)) == fingerprint_path(f)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert fingerprint(empty) == "xxh3:" + xxhash.xxh3_128_hexdigest(b"")


def test_directory_fingerprint(tmp_path):
    """A directory hashes names and contents: renames, edits, additions and empty dirs show."""

    def build(root, names=("a.txt", "sub/b.txt"), order=1):
        for name in list(names)[::order]:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"content of {name.split('/')[-1]}")
        return fingerprint(root)

    first = build(tmp_path / "one")
    assert build(tmp_path / "two", order=-1) == first  # creation order does not matter
    (tmp_path / "two" / "sub" / "b.txt").rename(tmp_path / "two" / "sub" / "c.txt")
    assert fingerprint(tmp_path / "two") != first
    (tmp_path / "two" / "sub" / "c.txt").rename(tmp_path / "two" / "sub" / "b.txt")
    assert fingerprint(tmp_path / "two") == first
    (tmp_path / "two" / "a.txt").write_text("content of a.tx!")
    assert fingerprint(tmp_path / "two") != first
    build(tmp_path / "three")
    (tmp_path / "three" / "empty").mkdir()
    assert fingerprint(tmp_path / "three") != first


def test_directory_links_are_recorded_not_followed(tmp_path):
    """A symlink to a directory counts by its target; a cycle does not hang."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")
    first = fingerprint(tmp_path / "d")
    (tmp_path / "d" / "loop").unlink()
    (tmp_path / "d" / "loop").symlink_to(tmp_path)
    assert fingerprint(tmp_path / "d") != first


def test_missing_path_raises(tmp_path):
    """A path that does not exist is a FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        fingerprint(tmp_path / "nope")


# --------------------------------------------------------------------------- big tables


def test_large_table_with_nulls_parallel_matches_serial(monkeypatch):
    """A table big enough for threads hashes as the serial path does, rechunked or not."""
    from flowrecord.collectors import fingerprint as module

    rng = np.random.default_rng(7)
    n = 600_000
    valid = pa.py_buffer(np.packbits(rng.random(n) >= 0.1, bitorder="little"))
    ints = pa.Array.from_buffers(pa.int64(), n, [valid, pa.py_buffer(rng.integers(0, 100, n))])
    table = pa.table(
        {"i": ints, "f": rng.random(n), "s": pa.array(rng.integers(0, 50, n).astype(str))}
    )
    assert table.get_total_buffer_size() > module._PARALLEL_MIN_BYTES
    parallel = fingerprint_table(table)
    rechunked = pa.table(
        {c: _rechunk(table.column(c), [1, 99_999, 300_001]) for c in table.column_names}
    )
    assert fingerprint_table(rechunked) == parallel
    monkeypatch.setattr(module, "_PARALLEL_MIN_BYTES", 1 << 62)
    assert fingerprint_table(table) == parallel


def test_copies_stay_small_for_columns_with_nulls():
    """Hashing a 32 MiB int64 column with nulls and an unaligned slice allocates < 10% extra Arrow memory."""
    script = textwrap.dedent(
        """
        # Arrays built from buffers: pa.array() would import pandas, slowly.
        import numpy as np, pyarrow as pa
        from flowrecord.collectors.fingerprint import fingerprint_table
        n = 4_000_000
        rng = np.random.default_rng(0)
        valid = pa.py_buffer(np.packbits(rng.random(n) >= 0.3, bitorder="little"))
        values = pa.py_buffer(rng.integers(0, 1 << 40, n))
        col = pa.Array.from_buffers(pa.int64(), n, [valid, values])
        floats = pa.Array.from_buffers(pa.float64(), n + 2, [None, pa.py_buffer(rng.random(n + 2))])
        table = pa.Table.from_arrays([col.slice(3), floats.slice(5)], names=["x", "f"])
        pool = pa.default_memory_pool()
        before = pool.bytes_allocated()
        assert pool.max_memory() <= before + (1 << 20), (pool.max_memory(), before)
        fingerprint_table(table)
        print((pool.max_memory() - before) / table.nbytes)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) < 0.10
