"""Content fingerprints of data sets: the answer to "was it exactly this data?".

A fingerprint is an xxh3-128 hash of the *whole* content of a table or of the
files under a path, written ``"xxh3:<32 hex digits>"``. It reads Arrow buffers
in place (pandas and polars frames are first viewed as Arrow tables, zero-copy
where those libraries allow) and defines the hash over a canonical encoding of
the logical values, so it does not depend on how the data happens to be laid
out in memory: chunking, slice offsets, the bytes under null slots, string
offset bases, ``string`` vs ``large_string`` vs ``string_view``, ``list`` vs
``large_list``, and dictionary encoding all leave it unchanged, while any
changed value, null, column name, column order, column type or row order
changes it. Copies are made only where the canonical form needs them (nulls in
a column, string views, dictionaries, unaligned bitmaps) and then in bounded
pieces, so the extra memory stays a small fraction of the table.

The canonical encoding, per column (version ``flowrecord-fingerprint-v1``):

* a header: column name, a normalised type string (string/binary families,
  list families and dictionaries folded together; widths, units, time zones
  and struct field names kept) and the row count;
* for every node of the type tree (the column, a list's items, a struct's
  fields, a map's entries) a handful of independent byte streams, each hashed
  on its own so that chunk boundaries never show: ``validity`` (one bit per
  row, packed little-endian); ``values``, for every row, the raw
  little-endian bytes of fixed-width values (bits for booleans) with null
  slots zeroed; and for the valid rows only ``lengths`` (int64 per
  string/binary/list value) and ``data`` (the string/binary bytes).
  The column digest hashes the header and the stream digests in a fixed order.

Values are compared bit for bit: ``-0.0`` and ``0.0`` differ, as do NaNs with
different payloads. Types with no layout handled here (unions, or anything
newer) are encoded as ``repr()`` of each Python value, which is slower but
stable. pandas object columns that Arrow cannot convert (mixed Python types)
are converted to strings holding ``repr()`` of each value, marked as such in
the field metadata, so they fingerprint (and differ from a genuine string
column) instead of failing; objects whose ``repr`` embeds a memory address
are, by nature, not stable across processes.

Example::

    >>> import pyarrow as pa
    >>> from flowrecord.collectors.fingerprint import fingerprint
    >>> a = pa.table({"x": [1, 2, 3]})
    >>> b = pa.concat_tables([a.slice(0, 1), a.slice(1)])  # same rows, two chunks
    >>> fingerprint(a) == fingerprint(b)
    True
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import xxhash

from flowrecord.collectors.kinds import data_kind

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np
    import pyarrow as pa

__all__ = [
    "REPR_ENCODING",
    "canonical_type",
    "data_kind",
    "fingerprint",
    "fingerprint_path",
    "fingerprint_table",
    "is_repr_encoded",
    "to_arrow",
]

PREFIX = "xxh3:"
"""Every fingerprint starts with the name of the hash, so another can follow one day."""

REPR_ENCODING = b"repr"
"""Value of the ``flowrecord.encoding`` field metadata on a column that holds ``repr()`` strings."""

ENCODING_KEY = b"flowrecord.encoding"

_VERSION = b"flowrecord-fingerprint-v1"
_PIECE_ROWS = 1 << 20  # rows per bounded copy: 8 MiB for an int64 column
_MIN_PIECE_ROWS = 1 << 16
_ZERO_PIECE_ROWS = 1 << 16  # rows zeroed per numpy pass: the temporaries stay in L2
_PIECE_BYTES = 16 << 20  # cap for variable-width pieces, whatever their row count
_REPR_PIECE_ROWS = 1 << 16  # the per-value fallback goes through Python objects
_PARALLEL_MIN_BYTES = 4 << 20  # below this a thread pool costs more than it saves
_FILE_BLOCK = 8 << 20
_ONES = b"\xff" * (1 << 16)


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def fingerprint(obj: object) -> str:
    """Return the content fingerprint of a data frame, Arrow object or path.

    Accepts a pandas DataFrame or Series, a polars DataFrame or Series, a
    pyarrow Table, RecordBatch, ChunkedArray or Array (see :func:`to_arrow`),
    or a path (``str`` or :class:`os.PathLike`) to a file or directory (see
    :func:`fingerprint_path`). Equal content gives an equal fingerprint
    whatever the library or memory layout, as long as the column types agree.

    :raises TypeError: for anything else, naming the type (a polars LazyFrame
        must be collected first).
    :raises OSError: for a path that cannot be read (``FileNotFoundError`` if
        it does not exist).

    >>> import pyarrow as pa
    >>> fingerprint(pa.table({"x": [1.0, 2.0]}))[:5]
    'xxh3:'
    """
    if isinstance(obj, (str, os.PathLike)):
        return fingerprint_path(obj)
    return fingerprint_table(to_arrow(obj))


def fingerprint_table(table: pa.Table) -> str:
    """Return the content fingerprint of a pyarrow Table.

    Columns are hashed in parallel threads when the table is large enough
    (xxhash and the Arrow kernels release the GIL); the result does not depend
    on the number of threads.

    >>> import pyarrow as pa
    >>> t = pa.table({"s": ["a", None, "c"]})
    >>> fingerprint_table(t) == fingerprint_table(t.cast(pa.schema([("s", pa.large_string())])))
    True
    """
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        raise TypeError(f"fingerprint_table expects a pyarrow.Table, got {_type_name(table)}")
    columns = list(zip(table.schema, table.columns, strict=True))
    workers = min(len(columns), os.cpu_count() or 1)
    if workers > 1 and table.get_total_buffer_size() >= _PARALLEL_MIN_BYTES:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowrecord-fp") as pool:
            digests = list(pool.map(lambda fc: _column_digest(*fc), columns))
    else:
        digests = [_column_digest(field, column) for field, column in columns]
    h = xxhash.xxh3_128()
    h.update(_VERSION)
    h.update(_u64(table.num_rows))
    h.update(_u64(table.num_columns))
    for digest in digests:
        h.update(digest)
    return PREFIX + h.hexdigest()


def fingerprint_path(path: str | os.PathLike[str]) -> str:
    """Return the content fingerprint of a file or a directory tree.

    A file's fingerprint is the plain xxh3-128 of its bytes, so it can be
    checked with the ``xxh128sum`` command line tool. A directory's hashes,
    in sorted order of their relative POSIX paths, every entry under it: each
    file's path and content digest, each sub-directory's path (so an empty
    directory counts), and each symbolic link to a directory as its target
    (links are not followed into directories, which keeps cycles out; links
    to files count as the file they point to). Renaming, adding, removing or
    editing any file changes it; timestamps and permissions do not.

    :raises OSError: if the path does not exist or cannot be read.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("hi")
    >>> fingerprint_path(d) == fingerprint_path(str(d))
    True
    """
    root = os.fspath(path)
    st = os.stat(root)
    if not stat.S_ISDIR(st.st_mode):
        return PREFIX + _file_digest(root).hex()
    entries = sorted(_walk(root))
    files = [full for _, kind, full in entries if kind == b"f"]
    if len(files) > 1:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="flowrecord-fp") as pool:
            digests = dict(zip(files, pool.map(_file_digest, files), strict=True))
    else:
        digests = {f: _file_digest(f) for f in files}
    h = xxhash.xxh3_128()
    h.update(_VERSION + b"/directory")
    for rel, kind, full in entries:
        h.update(kind)
        _update_sized(h, rel.encode("utf-8", "surrogateescape"))
        if kind == b"f":
            h.update(digests[full])
        elif kind == b"l":
            _update_sized(h, os.readlink(full).encode("utf-8", "surrogateescape"))
    return PREFIX + h.hexdigest()


def to_arrow(obj: object) -> pa.Table:
    """View a pandas, polars or pyarrow object as a pyarrow Table.

    * pyarrow Table: returned as is; RecordBatch: wrapped; Array/ChunkedArray:
      one column named ``values``.
    * pandas DataFrame: ``pa.Table.from_pandas``. The index is kept as columns
      (``__index_level_N__`` when unnamed) unless it is the default
      ``RangeIndex(0..n)`` without a name, which carries no information; so a
      filtered frame remembers which rows survived. Columns that Arrow cannot
      convert (objects of mixed Python types) become strings holding
      ``repr()`` of each value (None/NaN/NA stay null), marked with the field
      metadata ``{"flowrecord.encoding": "repr"}``.
    * pandas Series: as a one-column frame named after the series (``values``
      when unnamed).
    * polars DataFrame: ``DataFrame.to_arrow()`` (zero-copy for most types);
      polars Series likewise, named after the series (``values`` when unnamed).

    :raises TypeError: for anything else, naming the type.

    >>> import pyarrow as pa
    >>> to_arrow(pa.array([1, 2])).column_names
    ['values']
    """
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, (pa.Array, pa.ChunkedArray)):
        return pa.table({"values": obj})
    kind = data_kind(obj)
    if kind == "pandas":
        import pandas as pd

        if isinstance(obj, pd.Series):
            name = "values" if obj.name is None else obj.name
            obj = obj.to_frame(name=name)
        if isinstance(obj, pd.DataFrame):
            return _pandas_to_arrow(obj)
    elif kind == "polars":
        import polars as pl

        if isinstance(obj, pl.DataFrame):
            return obj.to_arrow()
        if isinstance(obj, pl.Series):
            return pa.table({obj.name or "values": obj.to_arrow()})
        if isinstance(obj, pl.LazyFrame):
            raise TypeError("cannot read a polars LazyFrame without running it: collect() it first")
    raise TypeError(f"cannot fingerprint an object of type {_type_name(obj)}")


def is_repr_encoded(field: pa.Field) -> bool:
    """Whether a column holds ``repr()`` strings of Python objects (see :func:`to_arrow`)."""
    metadata = field.metadata or {}
    return metadata.get(ENCODING_KEY) == REPR_ENCODING


def canonical_type(data_type: pa.DataType) -> str:
    """Type string used in the fingerprint: physical layout variants folded together.

    >>> import pyarrow as pa
    >>> canonical_type(pa.dictionary(pa.int8(), pa.large_string()))
    'string'
    """
    import pyarrow as pa
    import pyarrow.types as pt

    t = data_type
    if pt.is_dictionary(t):
        return canonical_type(t.value_type)
    if pt.is_run_end_encoded(t):
        return canonical_type(t.value_type)
    if isinstance(t, pa.ExtensionType):
        return f"extension<{t.extension_name}: {canonical_type(t.storage_type)}>"
    if pt.is_string(t) or pt.is_large_string(t) or pt.is_string_view(t):
        return "string"
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_binary_view(t):
        return "binary"
    if pt.is_map(t):
        return f"map<{canonical_type(t.key_type)}, {canonical_type(t.item_type)}>"
    if pt.is_fixed_size_list(t):
        return f"fixed_size_list<{canonical_type(t.value_type)}, {t.list_size}>"
    if _is_list_like(t):
        return f"list<{canonical_type(t.value_type)}>"
    if pt.is_struct(t):
        inner = ", ".join(f"{_quote(f.name)}: {canonical_type(f.type)}" for f in t)
        return f"struct<{inner}>"
    return str(t)


# --------------------------------------------------------------------------
# Tables: one digest per column, from independent streams per type node
# --------------------------------------------------------------------------


class _Bits:
    """A hashed stream of bits, packed little-endian whatever the input alignment.

    Byte-aligned bitmaps go straight to the hasher; others are re-packed in
    bounded pieces through numpy. The total bit count closes the stream, so
    zero padding in the last byte is never ambiguous.
    """

    __slots__ = ("hasher", "nbits", "npending", "pending")

    def __init__(self) -> None:
        self.hasher = xxhash.xxh3_128()
        self.nbits = 0
        self.pending = 0  # bits not yet making a whole byte, lowest first
        self.npending = 0

    def ones(self, n: int) -> None:
        """Append ``n`` set bits (a run of valid rows without a bitmap)."""
        self.nbits += n
        if self.npending:
            k = min(8 - self.npending, n)
            self.pending |= ((1 << k) - 1) << self.npending
            self.npending += k
            n -= k
            if self.npending < 8:
                return
            self.hasher.update(bytes((self.pending,)))
            self.pending = self.npending = 0
        full, rem = divmod(n, 8)
        while full:
            step = min(full, len(_ONES))
            self.hasher.update(_ONES[:step])
            full -= step
        if rem:
            self.pending, self.npending = (1 << rem) - 1, rem

    def bitmap(self, buf: pa.Buffer, bit_offset: int, n: int) -> None:
        """Append ``n`` bits of an Arrow bitmap starting at ``bit_offset``."""
        import numpy as np

        if n == 0:
            return
        start = bit_offset >> 3
        if bit_offset & 7 == 0 and self.npending == 0:
            full, rem = divmod(n, 8)
            self.hasher.update(memoryview(buf)[start : start + full])
            if rem:
                self.pending = memoryview(buf)[start + full] & ((1 << rem) - 1)
                self.npending = rem
            self.nbits += n
            return
        data = np.frombuffer(buf, dtype=np.uint8)
        step = _PIECE_ROWS
        for s in range(0, n, step):
            m = min(step, n - s)
            b0 = bit_offset + s
            chunk = data[b0 >> 3 : (b0 + m + 7) >> 3]
            self.bools(np.unpackbits(chunk, bitorder="little")[b0 & 7 : (b0 & 7) + m])

    def bools(self, bits: np.ndarray) -> None:
        """Append one bit per element of a boolean (or 0/1 uint8) numpy array."""
        import numpy as np

        self.nbits += len(bits)
        if self.npending:
            head = np.array([(self.pending >> i) & 1 for i in range(self.npending)], np.uint8)
            bits = np.concatenate([head, bits.astype(np.uint8, copy=False)])
        full = len(bits) // 8 * 8
        if full:
            self.hasher.update(np.packbits(bits[:full], bitorder="little"))
        rest = bits[full:]
        self.npending = len(rest)
        self.pending = int(np.packbits(rest, bitorder="little")[0]) if len(rest) else 0

    def digest(self) -> bytes:
        if self.npending:
            self.hasher.update(bytes((self.pending,)))
            self.pending = self.npending = 0
        self.hasher.update(_u64(self.nbits))
        return self.hasher.digest()


class _Streams:
    """The hashed streams of one column, keyed by (type-tree path, stream name).

    A stream exists once it has received data, and every stream receives data
    in row order whatever the chunking, so the set of streams and their
    contents depend on the values alone.
    """

    __slots__ = ("bit_streams", "byte_streams")

    def __init__(self) -> None:
        self.byte_streams: dict[tuple[tuple[int, ...], str], Any] = {}
        self.bit_streams: dict[tuple[tuple[int, ...], str], _Bits] = {}

    def update(self, path: tuple[int, ...], name: str, data: Any) -> None:
        if memoryview(data).nbytes == 0:
            return
        hasher = self.byte_streams.get((path, name))
        if hasher is None:
            hasher = self.byte_streams[(path, name)] = xxhash.xxh3_128()
        hasher.update(data)

    def bits(self, path: tuple[int, ...], name: str) -> _Bits:
        stream = self.bit_streams.get((path, name))
        if stream is None:
            stream = self.bit_streams[(path, name)] = _Bits()
        return stream

    def digests(self) -> list[tuple[str, bytes]]:
        out = [(_key(k), h.digest()) for k, h in self.byte_streams.items()]
        out += [(_key(k), b.digest()) for k, b in self.bit_streams.items()]
        return sorted(out)


def _key(key: tuple[tuple[int, ...], str]) -> str:
    path, name = key
    return ".".join(map(str, path)) + "/" + name


def _column_digest(field: pa.Field, column: pa.ChunkedArray) -> bytes:
    type_name = "pyobject-repr" if is_repr_encoded(field) else canonical_type(field.type)
    streams = _Streams()
    for chunk in column.chunks:
        _feed(chunk, (), streams)
    h = xxhash.xxh3_128()
    _update_sized(h, field.name.encode("utf-8", "surrogatepass"))
    _update_sized(h, type_name.encode())
    h.update(_u64(len(column)))
    for key, digest in streams.digests():
        _update_sized(h, key.encode())
        h.update(digest)
    return h.digest()


def _feed(arr: pa.Array, path: tuple[int, ...], streams: _Streams) -> None:
    """Add the rows of ``arr`` to the streams of the type node at ``path``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    n = len(arr)
    if n == 0:
        return
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        _feed(arr.storage, path, streams)
        return
    if (
        pt.is_dictionary(t)
        or pt.is_run_end_encoded(t)
        or pt.is_string_view(t)
        or pt.is_binary_view(t)
    ):
        # Decoded in pieces: the copy is the price of hashing equal values equally.
        for piece in _pieces(arr):
            _feed(_decoded(piece), path, streams)
        return
    if pt.is_null(t):
        return  # all rows null: the row count in the header says everything
    if pt.is_union(t) or not _is_handled(t):
        _feed_repr(arr, path, streams)
        return

    nulls = arr.null_count
    validity = streams.bits(path, "validity")
    if nulls == 0 or arr.buffers()[0] is None:
        validity.ones(n)
    else:
        validity.bitmap(arr.buffers()[0], arr.offset, n)

    if pt.is_boolean(t):
        values = streams.bits(path, "values")
        if nulls:
            stored = np.frombuffer(arr.buffers()[1], np.uint8)
            for start, bits in _unpacked(arr.buffers()[0], arr.offset, n):
                first = arr.offset + start
                unpacked = np.unpackbits(
                    stored[first >> 3 : (first + len(bits) + 7) >> 3], bitorder="little"
                )
                shift = first & 7
                values.bools(np.bitwise_and(unpacked[shift : shift + len(bits)], bits))
        else:
            values.bitmap(arr.buffers()[1], arr.offset, n)
    elif _is_fixed_width(t):
        width = t.bit_width // 8
        if nulls:
            for chunk in _zeroed_under_nulls(arr, width):
                streams.update(path, "values", chunk)
        else:
            start = arr.offset * width
            streams.update(path, "values", memoryview(arr.buffers()[1])[start : start + n * width])
    elif _is_var_binary(t):
        offset_type = np.int64 if pt.is_large_string(t) or pt.is_large_binary(t) else np.int32
        for piece in _pieces(arr):
            v = pc.drop_null(piece) if nulls else piece
            m = len(v)
            if m == 0:
                continue
            offsets = np.frombuffer(v.buffers()[1], dtype=offset_type)[v.offset : v.offset + m + 1]
            streams.update(path, "lengths", np.diff(offsets).astype(np.int64, copy=False))
            lo, hi = int(offsets[0]), int(offsets[-1])
            if hi > lo:
                streams.update(path, "data", memoryview(v.buffers()[2])[lo:hi])
    elif pt.is_map(t):
        entries = pa.struct([t.key_field, t.item_field])
        as_list = arr.view(pa.list_(pa.field("entries", entries, nullable=False)))
        _feed_list(as_list, path, streams, nulls)
    elif _is_list_like(t) or pt.is_fixed_size_list(t):
        _feed_list(arr, path, streams, nulls)
    elif pt.is_struct(t):
        for piece in _pieces(arr) if nulls else (arr,):
            v = pc.drop_null(piece) if nulls else piece
            for i in range(t.num_fields):
                _feed(v.field(i), (*path, i), streams)


def _unpacked(bitmap: pa.Buffer, bit_offset: int, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(row, 0/1 uint8 per row) for ``n`` bits of a bitmap, in cache-sized pieces."""
    import numpy as np

    data = np.frombuffer(bitmap, np.uint8)
    for start in range(0, n, _ZERO_PIECE_ROWS):
        m = min(_ZERO_PIECE_ROWS, n - start)
        first = bit_offset + start
        bits = np.unpackbits(data[first >> 3 : (first + m + 7) >> 3], bitorder="little")
        yield start, bits[first & 7 : (first & 7) + m]


def _zeroed_under_nulls(arr: pa.Array, width: int) -> Iterator[np.ndarray]:
    """The values of a fixed-width array with every null slot's bytes set to zero.

    Multiplying by the validity bit (as an unsigned integer of the value's
    width) is one vectorised pass and keeps row positions, which is far
    cheaper than compacting the valid values; pieces of 64Ki rows keep the
    temporaries in cache.
    """
    import numpy as np

    kind = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(width)
    first, n = arr.offset * width, len(arr)
    raw = np.frombuffer(arr.buffers()[1], np.uint8)[first : first + n * width]
    scratch = np.empty(_ZERO_PIECE_ROWS, kind) if kind is not None else None
    for start, bits in _unpacked(arr.buffers()[0], arr.offset, n):
        m = len(bits)
        piece = raw[start * width : (start + m) * width]
        if scratch is not None:
            out = scratch[:m]
            np.copyto(out, bits)
            np.multiply(piece.view(kind), out, out=out)
            yield out
        else:  # decimals, fixed-size binary: rows of bytes
            yield piece.reshape(m, width) * bits[:, None]


def _feed_list(arr: pa.Array, path: tuple[int, ...], streams: _Streams, nulls: int) -> None:
    import numpy as np
    import pyarrow.compute as pc

    for piece in _pieces(arr):
        lengths = pc.list_value_length(piece)
        if nulls:
            lengths = pc.drop_null(lengths)
        streams.update(path, "lengths", np.asarray(lengths).astype(np.int64, copy=False))
        # flatten() honours the slice offset and skips the items under null lists.
        _feed(piece.flatten(), (*path, 0), streams)


def _feed_repr(arr: pa.Array, path: tuple[int, ...], streams: _Streams) -> None:
    """Fallback for layouts without a canonical byte form: ``repr`` of each Python value."""
    import numpy as np

    for piece in _pieces(arr, _REPR_PIECE_ROWS):
        values = piece.to_pylist()
        streams.bits(path, "validity").bools(np.array([v is not None for v in values], bool))
        encoded = [repr(v).encode("utf-8", "surrogatepass") for v in values if v is not None]
        streams.update(path, "lengths", np.array([len(e) for e in encoded], np.int64))
        streams.update(path, "data", b"".join(encoded))


def _decoded(piece: pa.Array) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = piece.type
    if pt.is_dictionary(t):
        return piece.dictionary_decode()
    if pt.is_run_end_encoded(t):
        return pc.run_end_decode(piece)
    if pt.is_string_view(t):
        return pc.cast(piece, pa.large_string())
    return pc.cast(piece, pa.large_binary())


def _pieces(arr: pa.Array, rows: int | None = None) -> Iterator[pa.Array]:
    """Zero-copy slices of ``arr`` small enough that copying one stays cheap."""
    n = len(arr)
    if rows is None:
        # A sixteenth of the array, within bounds: copies stay a small share of
        # small tables too, and large ones do not pay per-piece overhead often.
        rows = max(_MIN_PIECE_ROWS, min(_PIECE_ROWS, n // 16))
        if not _is_fixed_width(arr.type):
            # Variable-width rows: size pieces by bytes so a copy stays bounded.
            per_row = max(1, arr.nbytes // max(n, 1))
            rows = max(1024, min(rows, _PIECE_BYTES // per_row))
    if n <= rows:
        yield arr
        return
    for start in range(0, n, rows):
        yield arr.slice(start, rows)


def _is_fixed_width(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    if pt.is_boolean(t) or pt.is_dictionary(t) or pt.is_union(t) or pt.is_run_end_encoded(t):
        return False
    if pt.is_fixed_size_list(t) or pt.is_struct(t):
        return False  # bit_width would describe children, not a values buffer of our own
    try:
        width = t.bit_width
    except ValueError:
        return False
    return width > 0 and width % 8 == 0


def _is_var_binary(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    return pt.is_string(t) or pt.is_large_string(t) or pt.is_binary(t) or pt.is_large_binary(t)


def _is_list_like(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    return pt.is_list(t) or pt.is_large_list(t) or pt.is_list_view(t) or pt.is_large_list_view(t)


def _is_handled(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    return (
        pt.is_boolean(t)
        or _is_fixed_width(t)
        or _is_var_binary(t)
        or _is_list_like(t)
        or pt.is_fixed_size_list(t)
        or pt.is_map(t)
        or pt.is_struct(t)
    )


# --------------------------------------------------------------------------
# pandas
# --------------------------------------------------------------------------


def _pandas_to_arrow(df: Any) -> pa.Table:
    """A pandas frame as an Arrow table, zero-copy for NaN-free numpy numeric columns.

    ``pa.Table.from_pandas`` scans (and copies) every float column to turn NaN
    into null; a float column whose minimum is not NaN has no NaN, so it is
    wrapped as it is, which gives the same table several times faster. Other
    columns go through ``from_pandas`` together, and only if that fails,
    one by one, so that just the columns Arrow cannot type fall back to repr.
    """
    import pandas as pd

    index = df.index
    default_index = (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )
    frames = [df]
    if not default_index:
        index_frame = index.to_frame(index=False)
        index_frame.columns = [
            f"__index_level_{i}__" if name is None else name for i, name in enumerate(index.names)
        ]
        frames.append(index_frame)
    columns: list[tuple[pa.Field, pa.ChunkedArray]] = []
    for frame in frames:
        columns.extend(_pandas_columns(frame))
    import pyarrow as pa

    return pa.Table.from_arrays([c for _, c in columns], schema=pa.schema([f for f, _ in columns]))


def _pandas_columns(frame: Any) -> list[tuple[pa.Field, pa.ChunkedArray]]:
    import numpy as np
    import pyarrow as pa

    names = [str(name) for name in frame.columns]
    out: dict[int, tuple[pa.Field, pa.ChunkedArray]] = {}
    rest: list[int] = []
    for i, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
            values = frame.iloc[:, i].to_numpy()
            has_nan = dtype.kind == "f" and len(values) and np.isnan(values.min())
            array = pa.array(values, from_pandas=bool(has_nan))
            out[i] = (pa.field(names[i], array.type), pa.chunked_array([array]))
        else:
            rest.append(i)
    if rest:
        try:
            sub = frame.iloc[:, rest]
            sub.columns = [names[i] for i in rest]
            table = pa.Table.from_pandas(sub, preserve_index=False)
            for k, i in enumerate(rest):
                out[i] = (table.schema.field(k).remove_metadata(), table.column(k))
        except (pa.ArrowException, ValueError, TypeError):
            for i in rest:
                out[i] = _pandas_column(frame.iloc[:, [i]], names[i])
    return [out[i] for i in range(len(names))]


def _pandas_column(single: Any, name: str) -> tuple[pa.Field, pa.ChunkedArray]:
    import pyarrow as pa

    single = single.set_axis([name], axis=1)
    try:
        table = pa.Table.from_pandas(single, preserve_index=False)
        return table.schema.field(0).remove_metadata(), table.column(0)
    except (pa.ArrowException, ValueError, TypeError):
        field = pa.field(name, pa.string(), metadata={ENCODING_KEY: REPR_ENCODING})
        return field, pa.chunked_array([_repr_strings(single.iloc[:, 0])], pa.string())


def _repr_strings(series: Any) -> pa.Array:
    import pandas as pd
    import pyarrow as pa

    def encode(value: object) -> str | None:
        missing = pd.isna(value) if not isinstance(value, (list, tuple, dict, set)) else False
        if isinstance(missing, bool) and missing:
            return None
        return repr(value)

    return pa.array([encode(v) for v in series.tolist()], pa.string())


# --------------------------------------------------------------------------
# Files and directories
# --------------------------------------------------------------------------


def _file_digest(path: str) -> bytes:
    h = xxhash.xxh3_128()
    buf = bytearray(_FILE_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.digest()


def _walk(root: str) -> Iterator[tuple[str, bytes, str]]:
    """Yield (relative POSIX path, kind, full path) for everything under ``root``.

    Kinds: ``f`` file (or link to one), ``d`` directory, ``l`` link to a
    directory or a dangling link, recorded by its target and not followed.
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if os.path.islink(full) and not os.path.isfile(full):
                yield rel, b"l", full
            elif name in dirnames:
                yield rel, b"d", full
            else:
                yield rel, b"f", full


def _raise(error: OSError) -> None:
    raise error


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _update_sized(h: Any, data: bytes) -> None:
    h.update(_u64(len(data)))
    h.update(data)


def _quote(name: str) -> str:
    import json

    return json.dumps(name, ensure_ascii=False)


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
