"""describe(): any object a task hands over becomes a DatasetDescription, never an error."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from flowrecord.collectors import datasets
from flowrecord.collectors.datasets import DatasetDescription, describe
from flowrecord.collectors.fingerprint import fingerprint

pytestmark = pytest.mark.unit


@pytest.fixture
def table() -> pa.Table:
    return pa.table({"x": [1.0, 2.0, None], "s": ["a", "b", "a"]})


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda t: t, "arrow"),
        (lambda t: t.to_batches()[0], "arrow"),
        (lambda t: t.to_pandas(), "pandas"),
        (lambda t: pl.from_arrow(t), "polars"),
    ],
    ids=["table", "batch", "pandas", "polars"],
)
def test_frames_and_tables(table, make, kind):
    """Frames and tables get kind, fingerprint, schema, rows, size and profile."""
    d = describe(make(table))
    assert d.data_type == kind
    assert d.fingerprint == fingerprint(make(table))
    assert [c["name"] for c in d.schema] == ["x", "s"]
    assert d.row_count == 3
    assert d.size_bytes and d.size_bytes > 0
    assert d.profile["columns"]["s"]["top"] == [["a", 2], ["b", 1]]
    assert d.uri is None and d.warnings == ()


def test_without_profile(table):
    """with_profile=False leaves the profile empty and keeps the rest."""
    d = describe(table, with_profile=False)
    assert d.profile == {} and d.fingerprint == fingerprint(table) and d.row_count == 3


@pytest.mark.parametrize(
    "obj",
    [
        {"a": 1},
        None,
        42,
        "just some text",
        b"bytes",
        np.arange(3),
        object(),
        pl.LazyFrame({"a": [1]}),
    ],
    ids=["dict", "none", "int", "text", "bytes", "ndarray", "object", "lazyframe"],
)
def test_non_data_objects(obj):
    """Anything that is not data is described by its type name with a warning, no fingerprint."""
    d = describe(obj)
    name = type(obj).__name__
    assert d.data_type == name
    assert d.fingerprint is None and d.row_count is None and d.schema == () and d.profile == {}
    assert d.warnings[0].startswith(f"not a data frame or table: {name}")


def test_never_raises_on_hostile_objects():
    """An object whose path protocol explodes still yields a description with a warning."""

    class Hostile:
        def __fspath__(self):
            raise RuntimeError("boom")

    d = describe(Hostile())
    assert d.data_type == "Hostile"
    assert d.fingerprint is None
    assert "boom" in d.warnings[0]


def test_description_is_frozen(table):
    """DatasetDescription is immutable."""
    d = describe(table)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.row_count = 5  # type: ignore[misc]
    assert isinstance(d, DatasetDescription)


def test_parquet_file_small_is_profiled(tmp_path, table):
    """A small Parquet file: file kind, byte fingerprint, URI, schema, rows and a full profile."""
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    d = describe(path)
    assert d.data_type == "file"
    assert d.fingerprint == fingerprint(path)
    assert d.uri == path.absolute().as_uri()
    assert d.size_bytes == path.stat().st_size
    assert d.row_count == 3 and [c["name"] for c in d.schema] == ["x", "s"]
    assert d.profile["columns"]["x"]["mean"] == 1.5
    assert describe(str(path)).fingerprint == d.fingerprint


def test_parquet_file_large_reads_metadata_only(tmp_path, table, monkeypatch):
    """Above the size limit only the Parquet footer is read: counts, nulls, min and max."""
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    monkeypatch.setattr(datasets, "_SMALL_FILE", 0)
    d = describe(path)
    assert d.row_count == 3
    x = d.profile["columns"]["x"]
    assert (x["count"], x["nulls"], x["min"], x["max"]) == (2, 1, 1.0, 2.0)
    assert d.profile["columns"]["s"]["min"] == "a"
    assert "histogram" not in x and d.profile["warnings"]


def test_csv_and_feather_files(tmp_path, table, monkeypatch):
    """CSV gives its inferred schema; Feather its schema and row count from the footer."""
    csv_path = tmp_path / "data.csv"
    pcsv.write_csv(table, csv_path)
    arrow_path = tmp_path / "data.arrow"
    feather.write_feather(table, arrow_path, chunksize=2)
    assert describe(csv_path).row_count == 3  # small: read whole
    assert describe(arrow_path).row_count == 3
    monkeypatch.setattr(datasets, "_SMALL_FILE", 0)
    big_csv = describe(csv_path)
    assert big_csv.row_count is None and [c["name"] for c in big_csv.schema] == ["x", "s"]
    big_arrow = describe(arrow_path)
    assert big_arrow.row_count == 3 and big_arrow.profile == {}


def test_directory_of_parquet(tmp_path, table):
    """A directory: size of all files, tree fingerprint, first file's schema and summed rows."""
    (tmp_path / "part=1").mkdir()
    pq.write_table(table, tmp_path / "part=1" / "a.parquet")
    pq.write_table(table, tmp_path / "b.parquet")
    (tmp_path / "README").write_text("notes")
    d = describe(tmp_path)
    assert d.data_type == "directory"
    assert d.fingerprint == fingerprint(tmp_path)
    assert d.row_count == 6 and d.schema[0]["name"] == "x"
    assert d.size_bytes == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert d.uri == tmp_path.absolute().as_uri()


def test_unreadable_data_file_keeps_fingerprint(tmp_path):
    """A corrupt .parquet file is still a file with a fingerprint, plus a warning."""
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    d = describe(path)
    assert d.data_type == "file" and d.fingerprint == fingerprint(path)
    assert d.row_count is None and "could not read" in d.warnings[0]


def test_missing_paths(tmp_path):
    """A Path that does not exist is described with its URI and a warning; a str is just text."""
    missing = tmp_path / "gone.csv"
    d = describe(missing)
    assert d.data_type == type(missing).__name__ and d.fingerprint is None
    assert d.uri == missing.absolute().as_uri()
    assert "does not exist" in d.warnings[0]
    assert describe(str(missing)).data_type == "str"


def test_plain_text_file_is_a_file(tmp_path):
    """A file with no data suffix gets size and fingerprint but no schema."""
    path = pathlib.Path(tmp_path / "model.pkl")
    path.write_bytes(b"\x80\x04weights")
    d = describe(path)
    assert (d.data_type, d.size_bytes, d.schema, d.row_count) == ("file", 9, (), None)
    assert d.fingerprint == fingerprint(path)


def test_mixed_pandas_objects_warn(table):
    """A pandas frame with mixed-type objects is described, with the profile's warning."""
    d = describe(pd.DataFrame({"o": [1, "x", None]}))
    assert d.data_type == "pandas" and d.fingerprint is not None
    assert d.schema[0]["type"] == "object"
    assert any("mixed Python objects" in w for w in d.warnings)
