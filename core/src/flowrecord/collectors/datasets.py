"""Describe whatever a task read or wrote: the dataset part of the record.

:func:`describe` turns any object a task hands over (a pandas or polars
frame, an Arrow table, a path to a file or directory, or anything else) into
one :class:`DatasetDescription`: kind, content fingerprint, schema, row count,
size, profile and warnings. It is called on the user's objects behind their
back, so it never raises: what it cannot learn it leaves empty and says why
in ``warnings``.

Example::

    >>> import pyarrow as pa
    >>> from flowrecord.collectors.datasets import describe
    >>> d = describe(pa.table({"x": [1, 2, 3]}))
    >>> d.data_type, d.row_count, d.schema[0]["type"]
    ('arrow', 3, 'int64')
    >>> describe({"a": 1}).warnings
    ('not a data frame or table: dict',)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowrecord._frozen import FACTORY, frozen, set_field

# Hashing and profiling are imported where a dataset is actually read: most
# values a task hands over are not data sets, and asking costs no import.
from flowrecord.collectors.kinds import data_kind

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DatasetDescription", "describe"]

_SMALL_FILE = 32 << 20
"""Data files up to this size are read whole to profile them; larger ones only by their metadata."""

_DATA_SUFFIXES = (".parquet", ".pq", ".feather", ".arrow", ".ipc", ".csv")
_MAX_PATH_CHARS = 4096  # longer strings are text, not paths, and os.stat would refuse them


@frozen
class DatasetDescription:
    """What flowrecord knows about one data set a task read or wrote."""

    __slots__ = (
        "data_type",
        "fingerprint",
        "profile",
        "row_count",
        "schema",
        "size_bytes",
        "uri",
        "warnings",
    )

    data_type: str
    """``"pandas"``, ``"polars"``, ``"arrow"``, ``"file"``, ``"directory"``, or the Python type name of anything else."""
    fingerprint: str | None
    """Content hash (``"xxh3:..."``), or None when the content could not be read."""
    schema: tuple[dict[str, Any], ...]
    """``({"name", "type", "nullable"}, ...)`` per column; empty when unknown."""
    row_count: int | None
    """Number of rows, when known."""
    size_bytes: int | None
    """Bytes on disk for paths; bytes of the Arrow buffers for in-memory frames."""
    profile: dict[str, Any]
    """Column profile (see :mod:`flowrecord.collectors.profile`); empty when not computed."""
    warnings: tuple[str, ...]
    """Why something above is missing or approximate."""
    uri: str | None
    """``file://`` URI for paths, else None."""

    # Written out rather than made by @dataclass(frozen=True, slots=True), which cost
    # every task process that reads a value ~1.5 ms at import; @frozen gives it that
    # dataclass's behaviour (dataclasses.replace included).
    def __init__(
        self,
        data_type: str,
        fingerprint: str | None,
        schema: tuple[dict[str, Any], ...] = (),
        row_count: int | None = None,
        size_bytes: int | None = None,
        profile: dict[str, Any] = FACTORY,
        warnings: tuple[str, ...] = (),
        uri: str | None = None,
    ) -> None:
        set_field(self, "data_type", data_type)
        set_field(self, "fingerprint", fingerprint)
        set_field(self, "schema", schema)
        set_field(self, "row_count", row_count)
        set_field(self, "size_bytes", size_bytes)
        set_field(self, "profile", {} if profile is FACTORY else profile)
        set_field(self, "warnings", warnings)
        set_field(self, "uri", uri)


def describe(obj: object, *, with_profile: bool = True) -> DatasetDescription:
    """Describe ``obj`` as a data set; never raises.

    * pandas / polars frames and series, Arrow tables, batches and arrays:
      fingerprint, schema, row count, Arrow buffer size and, with
      ``with_profile``, a profile.
    * ``os.PathLike``, or a ``str`` naming an existing file or directory:
      ``"file"`` or ``"directory"`` with size on disk, content fingerprint and
      URI. Parquet, Feather/Arrow IPC and CSV files also get their schema and,
      except CSV, their row count from metadata; files up to 32 MiB are read
      to profile them (only a Parquet footer is read for larger ones, giving
      null counts and min/max per column). A directory of Parquet files gets
      the schema of the first and the summed row count.
    * anything else (a dict, a model, None, a ``str`` that is not an
      existing path, a polars LazyFrame, ...): its type name as
      ``data_type``, no fingerprint, and the warning
      ``"not a data frame or table: <type>"``.

    >>> describe(None).data_type
    'NoneType'
    """
    try:
        return _describe(obj, with_profile)
    except Exception as error:  # the user's task must never fail because of the record
        return DatasetDescription(
            data_type=_kind_name(obj),
            fingerprint=None,
            warnings=(f"could not describe {_kind_name(obj)}: {type(error).__name__}: {error}",),
        )


def _describe(obj: object, with_profile: bool) -> DatasetDescription:
    from flowrecord.collectors.fingerprint import to_arrow

    path = _as_path(obj)
    if path is not None:
        return _describe_path(obj, path, with_profile)
    kind = data_kind(obj)
    if kind is None or _is_lazy(obj):
        hint = " (collect() it to record its content)" if _is_lazy(obj) else ""
        return DatasetDescription(
            data_type=_kind_name(obj),
            fingerprint=None,
            warnings=(f"not a data frame or table: {_kind_name(obj)}{hint}",),
        )
    try:
        table = to_arrow(obj)
    except Exception as error:
        return DatasetDescription(
            data_type=kind,
            fingerprint=None,
            warnings=(f"could not read the {kind} data: {type(error).__name__}: {error}",),
        )
    return _describe_table(kind, table, with_profile)


def _describe_table(
    kind: str, table: pa.Table, with_profile: bool, *, fingerprint: str | None = None
) -> DatasetDescription:
    from flowrecord.collectors.fingerprint import fingerprint_table
    from flowrecord.collectors.profile import profile as profile_table
    from flowrecord.collectors.profile import schema_of

    warnings: list[str] = []
    digest = fingerprint
    if digest is None:
        try:
            digest = fingerprint_table(table)
        except Exception as error:
            warnings.append(f"fingerprint failed: {type(error).__name__}: {error}")
    stats: dict[str, Any] = {}
    if with_profile:
        try:
            stats = profile_table(table)
            warnings.extend(stats.get("warnings", ()))
        except Exception as error:
            warnings.append(f"profile failed: {type(error).__name__}: {error}")
    return DatasetDescription(
        data_type=kind,
        fingerprint=digest,
        schema=schema_of(table),
        row_count=table.num_rows,
        size_bytes=table.get_total_buffer_size(),
        profile=stats,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def _as_path(obj: object) -> Path | None:
    """The path ``obj`` names, or None if it is not one.

    Any ``os.PathLike`` is a path (existing or not); a ``str`` only when it
    names something that exists, since most strings a task returns are text.
    """
    if isinstance(obj, os.PathLike):
        raw = os.fspath(obj)
        return Path(raw if isinstance(raw, str) else os.fsdecode(raw))
    if isinstance(obj, str) and 0 < len(obj) <= _MAX_PATH_CHARS and "\0" not in obj:
        try:
            return Path(obj) if os.path.exists(obj) else None
        except (OSError, ValueError):
            return None
    return None


def _describe_path(obj: object, path: Path, with_profile: bool) -> DatasetDescription:
    from flowrecord.collectors.fingerprint import fingerprint_path

    uri = path.absolute().as_uri()
    if not path.exists():
        return DatasetDescription(
            data_type=_kind_name(obj),
            fingerprint=None,
            uri=uri,
            warnings=(f"path does not exist: {path}",),
        )
    is_dir = path.is_dir()
    kind = "directory" if is_dir else "file"
    warnings: list[str] = []
    digest = None
    try:
        digest = fingerprint_path(path)
    except OSError as error:
        warnings.append(f"fingerprint failed: {type(error).__name__}: {error}")
    size = _directory_size(path) if is_dir else path.stat().st_size
    schema: tuple[dict[str, Any], ...] = ()
    rows: int | None = None
    stats: dict[str, Any] = {}
    try:
        if is_dir:
            schema, rows = _parquet_directory(path)
        elif path.suffix.lower() in _DATA_SUFFIXES:
            if with_profile and size <= _SMALL_FILE:
                table = _read_small(path)
                described = _describe_table(kind, table, True, fingerprint=digest)
                schema, rows, stats = described.schema, described.row_count, described.profile
                warnings.extend(described.warnings)
            else:
                schema, rows, stats = _file_metadata(path, with_profile)
    except Exception as error:
        warnings.append(
            f"could not read {path.suffix or 'file'} metadata: {type(error).__name__}: {error}"
        )
    return DatasetDescription(
        data_type=kind,
        fingerprint=digest,
        schema=schema,
        row_count=rows,
        size_bytes=size,
        profile=stats,
        warnings=tuple(warnings),
        uri=uri,
    )


def _read_small(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    import pyarrow.feather as feather

    return feather.read_table(path)


def _file_metadata(
    path: Path, with_profile: bool
) -> tuple[tuple[dict[str, Any], ...], int | None, dict[str, Any]]:
    """Schema, row count and (Parquet only) a statistics profile, without reading the data."""
    import pyarrow as pa

    from flowrecord.collectors.profile import schema_of

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        metadata = pq.read_metadata(path)
        schema = metadata.schema.to_arrow_schema()
        stats = _parquet_statistics(metadata, schema) if with_profile else {}
        return schema_of(schema.empty_table()), metadata.num_rows, stats
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        # Types as inferred from the first block; counting rows would mean parsing it all.
        with pcsv.open_csv(path) as reader:
            return schema_of(reader.schema.empty_table()), None, {}
    with pa.memory_map(str(path)) as source:
        # The IPC footer lists the batches; with a memory map their data is never read.
        reader = pa.ipc.open_file(source)
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return schema_of(reader.schema.empty_table()), rows, {}


def _parquet_statistics(metadata: Any, schema: pa.Schema) -> dict[str, Any]:
    """A partial profile from Parquet column-chunk statistics: counts, nulls, min and max."""
    columns: dict[str, Any] = {}
    top_level = {f.name: f for f in schema}
    for c in range(metadata.num_columns):
        name = metadata.schema.column(c).path
        if name not in top_level:
            continue  # nested leaves: no per-column meaning at the top level
        nulls = 0
        low = high = None
        complete = True
        for g in range(metadata.num_row_groups):
            st = metadata.row_group(g).column(c).statistics
            if st is None or not st.has_null_count:
                complete = False
                break
            nulls += st.null_count
            if st.has_min_max:
                low = st.min if low is None else min(low, st.min)
                high = st.max if high is None else max(high, st.max)
        if not complete:
            continue
        entry: dict[str, Any] = {
            "type": str(top_level[name].type),
            "count": metadata.num_rows - nulls,
            "nulls": nulls,
            "distinct_estimate": None,
            "distinct_method": None,
        }
        if low is not None:
            numeric = isinstance(low, (int, float)) and not isinstance(low, bool)
            entry["min"], entry["max"] = (
                (float(low), float(high)) if numeric else (str(low), str(high))
            )
        columns[name] = entry
    return {
        "columns": columns,
        "row_count": metadata.num_rows,
        "warnings": ["profile from Parquet statistics only: counts, nulls, min and max"],
    }


def _parquet_directory(path: Path) -> tuple[tuple[dict[str, Any], ...], int | None]:
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".pq")
    )
    if not files:
        return (), None
    import pyarrow.parquet as pq

    from flowrecord.collectors.profile import schema_of

    first = pq.read_metadata(files[0])
    rows = first.num_rows + sum(pq.read_metadata(f).num_rows for f in files[1:])
    return schema_of(first.schema.to_arrow_schema().empty_table()), rows


def _directory_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # dangling link: no bytes of its own
    return total


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _is_lazy(obj: object) -> bool:
    return type(obj).__name__ == "LazyFrame" and type(obj).__module__.startswith("polars")


def _kind_name(obj: object) -> str:
    return type(obj).__name__
