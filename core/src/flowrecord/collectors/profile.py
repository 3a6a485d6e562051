"""Column profiles and schemas: what a data set looked like, in a few numbers per column.

A profile is a plain, JSON-ready dict that later runs compare against (the
drift check reads it), so its shape is a contract::

    {"row_count": int,
     "warnings": [str, ...],
     "columns": {"<name>": {"type": "<arrow type>", "count": int, "nulls": int,
                            "distinct_estimate": int | None,
                            "distinct_method": "exact" | "hll" | "sample", ...}}}

``count`` is the number of non-null values and ``nulls`` the number of nulls.
What else a column gets depends on its type:

* integers and floats: ``min``, ``max``, ``mean``, ``std`` (population,
  ddof=0), ``histogram`` (``edges``: ``bins + 1`` floats spaced uniformly from
  min to max; ``counts``: ``bins`` ints, the last bin closed; a constant
  column puts every value in the last bin) and ``quantiles`` (``quantiles``
  floats at p = i / (quantiles - 1); exact up to 2**16 values, above that
  from a fixed-seed uniform sample of 2**16 values, with the ends pinned to
  min and max). Floats also get ``nan`` and ``inf`` (counts of NaN and of
  +/-infinity); every other float statistic is over the finite values only,
  so a profile never holds a non-finite number. All numbers are Python
  floats, whatever the column's width.
* booleans: ``mean`` (share of true) and ``top``; no histogram.
* strings: ``min_length``, ``max_length``, ``mean_length`` (in characters;
  bytes for binary columns) and, for strings, ``top``: up to 10 ``[value,
  count]`` pairs, most frequent first, values cut at 256 characters; ``top``
  is left out when the column is high-cardinality and large (its counts
  would all be about 1 anyway).
* dates, times, timestamps, durations and decimals: ``min`` and ``max`` as
  strings.
* lists, structs, maps, unions and pandas columns of mixed Python objects
  (see :func:`flowrecord.collectors.fingerprint.to_arrow`): only ``count``
  and ``nulls``, plus a warning; their content still counts in the
  fingerprint.
* an empty table: every column with ``count`` 0 and no statistics.

``distinct_estimate`` is exact (``distinct_method`` "exact") up to 2**16
values and for low-cardinality strings and booleans; above that numeric and
temporal columns use a HyperLogLog sketch (2**14 registers, about 1% error)
over the full column, and high-cardinality strings the Shlosser estimator on
a fixed-seed sample ("sample", rough). Profiles are deterministic: the same
table always gives the same dict.

Example::

    >>> import pyarrow as pa
    >>> from flowrecord.collectors.profile import profile
    >>> p = profile(pa.table({"x": [1.0, 2.0, float("nan"), None]}), bins=2, quantiles=3)
    >>> p["columns"]["x"]["count"], p["columns"]["x"]["nulls"], p["columns"]["x"]["nan"]
    (3, 1, 1)
    >>> p["columns"]["x"]["histogram"]
    {'edges': [1.0, 1.5, 2.0], 'counts': [1, 1]}
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from flowrecord.collectors.fingerprint import is_repr_encoded, to_arrow

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np
    import pyarrow as pa

__all__ = ["profile", "schema_of"]

_BLOCK = 1 << 16  # values per numpy block: the block and its temporaries stay in L2 cache
_PIECE_ROWS = 1 << 20  # rows per bounded copy when a chunk has nulls to drop
_QUANTILE_SAMPLE = 1 << 16
_EXACT_DISTINCT = 1 << 16
_STRING_SAMPLE = 1 << 16
_LOW_CARDINALITY = 0.5  # sample distinct/size below this: exact value counts are cheap
_TOP = 10
_TOP_CHARS = 256
_HLL_BITS = 14
_SEED = 0x5EED
_PARALLEL_MIN_ROWS = 1 << 18


def schema_of(table: pa.Table) -> tuple[dict[str, Any], ...]:
    """Return the table's columns as ``({"name", "type", "nullable"}, ...)``.

    ``type`` is the Arrow type string (``"int64"``, ``"large_string"``, ...),
    or ``"object"`` for a pandas column of mixed Python objects kept as
    ``repr`` strings. Accepts anything :func:`~flowrecord.collectors.fingerprint.to_arrow` does.

    >>> import pyarrow as pa
    >>> schema_of(pa.table({"x": [1]}))
    ({'name': 'x', 'type': 'int64', 'nullable': True},)
    """
    table = _as_table(table)
    return tuple(
        {"name": f.name, "type": _type_string(f), "nullable": bool(f.nullable)}
        for f in table.schema
    )


def profile(table: pa.Table, *, bins: int = 20, quantiles: int = 101) -> dict[str, Any]:
    """Profile every column of ``table`` (see the module docstring for the format).

    Reads every value once or twice with vectorised numpy / Arrow kernels,
    columns in parallel threads on large tables. Accepts anything
    :func:`~flowrecord.collectors.fingerprint.to_arrow` does. Duplicate column
    names are keyed ``name#2``, ``name#3``... with a warning.

    :param bins: number of histogram bins (>= 1).
    :param quantiles: number of quantiles, evenly spaced from 0 to 1 (>= 2).
    :raises ValueError: for ``bins < 1`` or ``quantiles < 2``.

    >>> import pyarrow as pa
    >>> profile(pa.table({"s": ["a", "b", "a"]}))["columns"]["s"]["top"]
    [['a', 2], ['b', 1]]
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if quantiles < 2:
        raise ValueError(f"quantiles must be >= 2, got {quantiles}")
    table = _as_table(table)
    fields = list(table.schema)
    columns = table.columns
    workers = min(len(fields), os.cpu_count() or 1)
    if workers > 1 and table.num_rows >= _PARALLEL_MIN_ROWS:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowrecord-prof") as pool:
            results = list(
                pool.map(
                    lambda fc: _profile_column(fc[0], fc[1], bins, quantiles),
                    zip(fields, columns, strict=True),
                )
            )
    else:
        results = [
            _profile_column(f, c, bins, quantiles) for f, c in zip(fields, columns, strict=True)
        ]
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for field, (stats, column_warnings) in zip(fields, results, strict=True):
        key = field.name
        k = 1
        while key in out:
            k += 1
            key = f"{field.name}#{k}"
        if k > 1:
            warnings.append(f"duplicate column name {field.name!r} profiled as {key!r}")
        out[key] = stats
        warnings.extend(column_warnings)
    return {"columns": out, "row_count": table.num_rows, "warnings": warnings}


# --------------------------------------------------------------------------
# Per column
# --------------------------------------------------------------------------


def _profile_column(
    field: pa.Field, column: pa.ChunkedArray, bins: int, quantiles: int
) -> tuple[dict[str, Any], list[str]]:
    import pyarrow as pa
    import pyarrow.types as pt

    nulls = column.null_count
    stats: dict[str, Any] = {
        "type": _type_string(field),
        "count": len(column) - nulls,
        "nulls": nulls,
        "distinct_estimate": None,
        "distinct_method": None,
    }
    warnings: list[str] = []
    t = column.type
    if isinstance(t, pa.ExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], t.storage_type)
        t = t.storage_type
    if pt.is_dictionary(t) or pt.is_run_end_encoded(t):
        column = column.cast(t.value_type)  # nulls may hide in the dictionary itself
        t = t.value_type
        nulls = column.null_count
        stats["count"], stats["nulls"] = len(column) - nulls, nulls
    if is_repr_encoded(field):
        warnings.append(
            f"column {field.name!r} holds mixed Python objects: profiled for counts only"
        )
        return stats, warnings
    if stats["count"] == 0:
        if not pt.is_null(t):
            stats["distinct_estimate"], stats["distinct_method"] = 0, "exact"
        return stats, warnings
    if pt.is_boolean(t):
        _boolean(column, stats)
    elif pt.is_integer(t) or pt.is_floating(t):
        _numeric(column, stats, bins, quantiles, is_float=pt.is_floating(t))
    elif pt.is_temporal(t) or pt.is_decimal(t):
        _ordered(column, stats)
    elif pt.is_string(t) or pt.is_large_string(t) or pt.is_string_view(t):
        _strings(column, stats, text=True)
    elif (
        pt.is_binary(t)
        or pt.is_large_binary(t)
        or pt.is_binary_view(t)
        or pt.is_fixed_size_binary(t)
    ):
        _strings(column, stats, text=False)
    else:
        warnings.append(f"column {field.name!r} has nested type {t}: profiled for counts only")
    return stats, warnings


def _boolean(column: pa.ChunkedArray, stats: dict[str, Any]) -> None:
    import pyarrow.compute as pc

    count = stats["count"]
    true = int(pc.sum(column).as_py() or 0)
    stats["mean"] = true / count
    top = sorted(((True, true), (False, count - true)), key=lambda vc: -vc[1])
    stats["top"] = [[v, c] for v, c in top if c]
    stats["distinct_estimate"], stats["distinct_method"] = len(stats["top"]), "exact"


def _numeric(
    column: pa.ChunkedArray, stats: dict[str, Any], bins: int, quantiles: int, *, is_float: bool
) -> None:
    """Two passes over in-cache blocks: moments, extremes and sketch; then histogram and sample."""
    import numpy as np

    count = stats["count"]
    hll = None if count <= _EXACT_DISTINCT else _HyperLogLog()
    scratch = np.empty(_BLOCK, np.float64)

    # Pass 1: finite count, min, max, mean and M2 (Chan's parallel update, stable), sketch.
    n = 0
    mean = m2 = 0.0
    lo, hi = math.inf, -math.inf
    nan = inf = 0
    for raw in _blocks(column):
        block, low, high, bad_nan, bad_inf = (
            _finite(raw) if is_float else (raw, raw.min(), raw.max(), 0, 0)
        )
        nan += bad_nan
        inf += bad_inf
        m = len(block)
        if m == 0:
            continue
        lo, hi = min(lo, float(low)), max(hi, float(high))
        block_mean = float(block.sum(dtype=np.float64)) / m
        centred = scratch[:m]
        np.subtract(block, block_mean, out=centred, casting="unsafe")
        np.multiply(centred, centred, out=centred)
        block_m2 = float(centred.sum())
        delta = block_mean - mean
        total = n + m
        mean += delta * m / total
        m2 += block_m2 + delta * delta * n * m / total
        n = total
        if hll is not None:
            hll.add(block)
    if is_float:
        stats["nan"], stats["inf"] = nan, inf
    if n == 0:
        stats["distinct_estimate"], stats["distinct_method"] = 0, "exact"
        return

    # Pass 2: histogram over [lo, hi] and the quantile sample at fixed random positions.
    counts = np.zeros(bins, np.int64)
    scale = bins / (hi - lo) if hi > lo else 0.0
    edges = np.linspace(lo, hi, bins + 1)
    keep_all = n <= _QUANTILE_SAMPLE
    positions = None
    if not keep_all:
        positions = np.sort(np.random.default_rng(_SEED).integers(0, n, _QUANTILE_SAMPLE))
    sample: list[np.ndarray] = []
    seen = 0
    index = np.empty(_BLOCK, np.intp)
    for raw in _blocks(column):
        block = _finite(raw)[0] if is_float else raw
        m = len(block)
        if m == 0:
            continue
        if positions is None:
            sample.append(block.astype(np.float64))
        else:
            a, b = np.searchsorted(positions, (seen, seen + m))
            if b > a:
                sample.append(block[positions[a:b] - seen].astype(np.float64))
        if scale == 0.0:
            counts[-1] += m  # a constant column: everything in the last (closed) bin
        else:
            _histogram_block(block, lo, scale, edges, scratch[:m], index[:m], counts)
        seen += m

    everything = np.sort(np.concatenate(sample))
    # One sort then interpolation: np.quantile would partition once per point.
    points = _quantiles_of_sorted(everything, quantiles)
    points[0], points[-1] = lo, hi
    stats.update(
        min=lo,
        max=hi,
        mean=mean,
        std=math.sqrt(max(m2, 0.0) / n),
        histogram={"edges": edges.tolist(), "counts": counts.tolist()},
        quantiles=points.tolist(),
    )
    if hll is None:
        distinct = 1 + int(np.count_nonzero(everything[1:] != everything[:-1]))
        stats["distinct_estimate"], stats["distinct_method"] = distinct, "exact"
    else:
        stats["distinct_estimate"], stats["distinct_method"] = hll.estimate(), "hll"


def _quantiles_of_sorted(values: np.ndarray, quantiles: int) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default method) of sorted values."""
    import numpy as np

    position = np.linspace(0.0, 1.0, quantiles) * (len(values) - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, len(values) - 1)
    fraction = position - below
    return values[below] + (values[above] - values[below]) * fraction


def _histogram_block(
    block: np.ndarray,
    lo: float,
    scale: float,
    edges: np.ndarray,
    scaled: np.ndarray,
    idx: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Add a block to the counts: value v goes to bin k when edges[k] <= v < edges[k + 1].

    The bin is floor((v - lo) * scale), which rounding can put one bin off for
    values within an ulp of an edge (common with integers); those few are
    placed again by comparing with the edges themselves, so the counts agree
    with anyone counting against the published edges.
    """
    import numpy as np

    np.subtract(block, lo, out=scaled, casting="unsafe")
    np.multiply(scaled, scale, out=scaled)
    np.copyto(idx, scaled, casting="unsafe")
    np.subtract(scaled, idx, out=scaled)  # fractional part, in [0, 1)
    np.subtract(scaled, 0.5, out=scaled)
    np.abs(scaled, out=scaled)
    near = np.flatnonzero(scaled > 0.5 - 1e-9)
    if len(near):
        idx[near] = np.searchsorted(edges, block[near], side="right") - 1
    np.minimum(idx, len(counts) - 1, out=idx)  # v >= lo, so never below bin 0
    counts += np.bincount(idx, minlength=len(counts))


def _ordered(column: pa.ChunkedArray, stats: dict[str, Any]) -> None:
    """Dates, times, timestamps, durations and decimals: min and max as strings."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = column.type
    if pt.is_decimal(t):
        extremes = pc.min_max(column)
        stats["min"], stats["max"] = (
            str(extremes[k].cast(pa.string()).as_py()) for k in ("min", "max")
        )
        if stats["count"] <= _EXACT_DISTINCT:
            stats["distinct_estimate"] = int(pc.count_distinct(column).as_py())
            stats["distinct_method"] = "exact"
        return
    as_int = pa.int64() if t.bit_width == 64 else pa.int32()
    ints = pa.chunked_array([c.view(as_int) for c in column.chunks], as_int)
    if pt.is_duration(t):  # no min_max kernel for durations: compare the integers
        extremes = pc.min_max(ints)
        stats["min"], stats["max"] = (
            str(pa.scalar(extremes[k].as_py(), type=t).as_py()) for k in ("min", "max")
        )
    else:
        extremes = pc.min_max(column)
        stats["min"], stats["max"] = (
            str(extremes[k].cast(pa.string()).as_py()) for k in ("min", "max")
        )
    if stats["count"] <= _EXACT_DISTINCT:
        stats["distinct_estimate"] = int(pc.count_distinct(ints).as_py())
        stats["distinct_method"] = "exact"
    else:
        hll = _HyperLogLog()
        for block in _blocks(ints):
            hll.add(block)
        stats["distinct_estimate"], stats["distinct_method"] = hll.estimate(), "hll"


def _strings(column: pa.ChunkedArray, stats: dict[str, Any], *, text: bool) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = column.type
    if pt.is_string_view(t) or pt.is_binary_view(t):
        column = column.cast(pa.large_string() if text else pa.large_binary())
    lengths = pc.utf8_length(column) if text else pc.binary_length(column)
    extremes = pc.min_max(lengths)
    stats["min_length"] = int(extremes["min"].as_py())
    stats["max_length"] = int(extremes["max"].as_py())
    stats["mean_length"] = float(pc.mean(lengths).as_py())

    count = stats["count"]
    if count > _EXACT_DISTINCT:
        rng = np.random.default_rng(_SEED)
        # Without replacement: repeats in the sample would read as low cardinality.
        rows = np.sort(rng.choice(len(column), _STRING_SAMPLE, replace=False))
        sample = pc.drop_null(column.take(pa.array(rows)))
        frequencies = np.asarray(pc.value_counts(sample).field("counts"))
        if len(sample) and len(frequencies) / len(sample) > _LOW_CARDINALITY:
            stats["distinct_estimate"] = _shlosser(frequencies, len(sample), count)
            stats["distinct_method"] = "sample"
            return
    counted = pc.value_counts(column)
    values, frequencies = counted.field("values"), np.asarray(counted.field("counts"))
    valid = np.asarray(values.is_valid())
    values, frequencies = values.filter(pa.array(valid)), frequencies[valid]
    stats["distinct_estimate"], stats["distinct_method"] = len(frequencies), "exact"
    if text:
        # Ties broken by first appearance, which value_counts keeps: deterministic.
        order = np.argsort(-frequencies, kind="stable")[:_TOP]
        stats["top"] = [[_cut(values[int(i)].as_py()), int(frequencies[i])] for i in order]


def _shlosser(frequencies: np.ndarray, sample_size: int, population: int) -> int:
    """Shlosser's distinct-value estimator from a uniform sample's value frequencies.

    Exact when every sampled value repeats (low cardinality) and equal to the
    population when every sampled value is unique; rough in between.
    """
    import numpy as np

    q = min(1.0, sample_size / population)
    f = np.bincount(frequencies)  # f[i] = number of values seen exactly i times
    i = np.arange(len(f), dtype=np.float64)
    numerator = float(np.sum((1 - q) ** i * f))
    denominator = float(np.sum(i * q * (1 - q) ** (i - 1) * f))
    seen = len(frequencies)
    if denominator <= 0:
        return seen
    estimate = seen + (f[1] if len(f) > 1 else 0) * numerator / denominator
    return int(min(population, max(seen, round(estimate))))


# --------------------------------------------------------------------------
# Blocks, sketches and helpers
# --------------------------------------------------------------------------


def _blocks(column: pa.ChunkedArray) -> Iterator[np.ndarray]:
    """The non-null values of a primitive column as numpy blocks of at most _BLOCK values.

    Zero-copy where a piece has no nulls; a piece with nulls is compacted
    (a bounded copy of at most _PIECE_ROWS values).
    """
    import pyarrow.compute as pc

    for chunk in column.chunks:
        for start in range(0, len(chunk), _PIECE_ROWS):
            piece = chunk.slice(start, _PIECE_ROWS)
            if piece.null_count:
                piece = pc.drop_null(piece)
            values = piece.to_numpy(zero_copy_only=True)
            for s in range(0, len(values), _BLOCK):
                yield values[s : s + _BLOCK]


def _finite(block: np.ndarray) -> tuple[np.ndarray, Any, Any, int, int]:
    """Drop NaN and +/-inf from a float block: (finite values, min, max, NaNs, infinities)."""
    import numpy as np

    if len(block) == 0:
        return block, math.inf, -math.inf, 0, 0
    # min/max propagate NaN and expose infinities: one cheap test for the common case.
    low, high = block.min(), block.max()
    if np.isfinite(low) and np.isfinite(high):
        return block, low, high, 0, 0
    nan = int(np.count_nonzero(np.isnan(block)))
    kept = block[np.isfinite(block)]
    if len(kept) == 0:
        return kept, math.inf, -math.inf, nan, len(block) - nan
    return kept, kept.min(), kept.max(), nan, len(block) - len(kept) - nan


class _HyperLogLog:
    """HyperLogLog over the bit patterns of fixed-width values, fed numpy blocks.

    Values are mixed to 64 bits (splitmix64's finaliser, which reaches every
    input bit), of which the top 32 are kept: 14 pick the register, the other
    18 give the rank, enough for a few billion distinct values. Every step
    writes into preallocated block-sized buffers, since temporaries of a few
    hundred KiB would otherwise be mapped and unmapped on each block.
    """

    __slots__ = ("floats", "hashed", "high", "index", "rank", "registers", "spare")

    def __init__(self) -> None:
        import numpy as np

        self.registers = np.zeros(1 << _HLL_BITS, np.uint8)
        self.hashed = np.empty(_BLOCK, np.uint64)
        self.spare = np.empty(_BLOCK, np.uint64)
        self.high = np.empty(_BLOCK, np.uint32)
        self.index = np.empty(_BLOCK, np.uint32)
        self.floats = np.empty(_BLOCK, np.float32)
        self.rank = np.empty(_BLOCK, np.uint8)

    def add(self, block: np.ndarray) -> None:
        import numpy as np

        u, u32 = np.uint64, np.uint32
        m = len(block)
        h, t = self.hashed[:m], self.spare[:m]
        if block.dtype.itemsize == 8:
            v = block.view(u)
        else:
            v = h
            np.copyto(h, block.view(f"u{block.dtype.itemsize}"), casting="unsafe")
        np.right_shift(v, u(32), out=t)
        np.bitwise_xor(v, t, out=h)
        np.multiply(h, u(0xBF58476D1CE4E5B9), out=h)
        np.right_shift(h, u(29), out=t)
        np.bitwise_xor(h, t, out=h)
        np.multiply(h, u(0x94D049BB133111EB), out=h)
        np.right_shift(h, u(32), out=t)
        a, index = self.high[:m], self.index[:m]
        np.copyto(a, t, casting="unsafe")
        np.right_shift(a, u32(32 - _HLL_BITS), out=index)
        # Rank = 1 + leading zeros of the bits below the index, read off the
        # exponent of their value as a float32; shifting right by one first
        # keeps the conversion in the fast signed range.
        np.left_shift(a, u32(_HLL_BITS), out=a)
        np.right_shift(a, u32(1), out=a)
        f = self.floats[:m]
        np.copyto(f, a.view(np.int32), casting="unsafe")
        np.right_shift(f.view(np.uint32), u32(23), out=a)
        # bit length L = exponent - 125 (one bit shifted out); rank = 33 - L.
        # Zero bits give exponent 0: clamp to the largest rank, 33 - index bits.
        e = a.view(np.int32)
        np.subtract(np.int32(158), e, out=e)
        np.minimum(e, 33 - _HLL_BITS, out=e)
        rank = self.rank[:m]
        np.copyto(rank, e, casting="unsafe")
        np.maximum.at(self.registers, index, rank)

    def estimate(self) -> int:
        import numpy as np

        m = len(self.registers)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.exp2(-self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))  # linear counting: better for small sets
        return round(raw)


def _as_table(table: Any) -> pa.Table:
    import pyarrow as pa

    return table if isinstance(table, pa.Table) else to_arrow(table)


def _type_string(field: pa.Field) -> str:
    return "object" if is_repr_encoded(field) else str(field.type)


def _cut(value: str) -> str:
    return value if len(value) <= _TOP_CHARS else value[: _TOP_CHARS - 1] + "…"
