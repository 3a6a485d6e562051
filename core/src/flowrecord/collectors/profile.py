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

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowrecord.collectors.fingerprint import is_repr_encoded, to_arrow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import numpy as np
    import pyarrow as pa

__all__ = ["profile", "schema_of"]

_BLOCK = 1 << 17  # values per numpy block: few enough calls per value, still in cache
_PIECE_ROWS = 1 << 19  # rows per unit of parallel work and per bounded copy of non-null values
_QUANTILE_SAMPLE = 1 << 16
_EXACT_DISTINCT = 1 << 16
# Above this magnitude, squares of deviations (and sums of many values) may overflow.
_MOMENT_LIMIT = 1e150
_STRING_SAMPLE = 1 << 16
_LOW_CARDINALITY = 0.5  # sample distinct/size below this: exact value counts are cheap
_TOP = 10
_TOP_CHARS = 256
_HLL_BITS = 14
_HLL_MAX_RANK = 33 - _HLL_BITS  # the hash's top 32 bits: 18 for the rank, 14 for the register
_SEED = 0x5EED
_PARALLEL_MIN_VALUES = 1 << 18
_EDGE_GRAIN = 4  # grid steps either side of an edge within which a value is checked exactly
_PAIR_MAX_BITS = 6  # bins up to 2**6: two bin indices are counted as one key (see _Binning)


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

    Numeric columns are read twice, in pieces of ``2**19`` rows spread over a
    thread per core left idle at the call on large tables: once for the
    extremes the histogram needs, once for everything else, a cache-sized
    block at a time. Accepts anything
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
    large = table.num_rows * len(fields) >= _PARALLEL_MIN_VALUES
    workers = _idle_cores() if large else 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowrecord-prof") as pool:
            results = _profile_columns(fields, columns, bins, quantiles, pool.map)
    else:
        results = _profile_columns(fields, columns, bins, quantiles, map)
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


def _idle_cores() -> int:
    """Threads worth starting: one per core that other work leaves idle now, at least one.

    Under an orchestrator a worker often runs several tasks at once; on a
    busy machine extra threads only trade places with other processes (and
    hand the GIL back and forth between many short numpy calls), which
    measured slower than one thread. The result never depends on the count.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - _busy_elsewhere())))


def _busy_elsewhere() -> float:
    """How many threads other than the caller want a core.

    On Linux, the threads runnable at this instant (``/proc/loadavg``'s
    fourth field, less the one reading it). The one-minute load average
    would still count the caller's own work of the last minute (a
    benchmark's previous step, the previous stage of a pipeline) as other
    work and leave a core idle. Elsewhere, the load average.
    """
    try:
        with open("/proc/loadavg", "rb") as f:
            runnable = int(f.read().split()[3].split(b"/")[0])
        return max(0, runnable - 1)
    except (OSError, ValueError, IndexError):  # not Linux, or not this format
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows, or no load figure
        return 0.0


def _profile_columns(
    fields: list[pa.Field],
    columns: list[pa.ChunkedArray],
    bins: int,
    quantiles: int,
    run: Callable[..., Iterable[Any]],
) -> list[tuple[dict[str, Any], list[str]]]:
    """Every column's (stats, warnings), the numeric ones in rounds of pieces.

    Round one profiles the other columns whole and sets the numeric ones up;
    round two finds each numeric piece's extremes; round three, once every
    column's extremes are known, summarises each piece; round four merges
    each column's pieces. Pieces, not columns, are the unit of work so that a
    one-column table keeps every core busy.
    """
    workspace = _Workspace()
    results = list(
        run(
            lambda fc: _profile_column(fc[0], fc[1], bins, quantiles, workspace),
            zip(fields, columns, strict=True),
        )
    )
    jobs = [job for _, _, job in results if job is not None]
    tasks = [(job, i) for job in jobs for i in range(len(job.pieces))]
    extremes = list(run(lambda task: task[0].scan(task[1]), tasks))
    start = 0
    for job in jobs:
        job.plan(extremes[start : start + len(job.pieces)])
        start += len(job.pieces)
    partials = list(run(lambda task: task[0].summarise(task[1]), tasks))
    finishing = []
    start = 0
    for job in jobs:
        finishing.append((job, partials[start : start + len(job.pieces)]))
        start += len(job.pieces)
    # Each column's finish merges its own pieces in order (and sorts its sample): columns apart.
    list(run(lambda item: item[0].finish(item[1]), finishing))
    return [(stats, warnings) for stats, warnings, _ in results]


# --------------------------------------------------------------------------
# Per column
# --------------------------------------------------------------------------


def _profile_column(
    field: pa.Field, column: pa.ChunkedArray, bins: int, quantiles: int, workspace: _Workspace
) -> tuple[dict[str, Any], list[str], _NumericColumn | None]:
    """A column's stats and warnings; for a numeric column, also the job that will fill them in."""
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
        return stats, warnings, None
    if stats["count"] == 0:
        if not pt.is_null(t):
            stats["distinct_estimate"], stats["distinct_method"] = 0, "exact"
        return stats, warnings, None
    if pt.is_boolean(t):
        _boolean(column, stats)
    elif pt.is_integer(t) or pt.is_floating(t):
        job = _NumericColumn(column, stats, bins, quantiles, pt.is_floating(t), workspace)
        return stats, warnings, job
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
    return stats, warnings, None


def _boolean(column: pa.ChunkedArray, stats: dict[str, Any]) -> None:
    import pyarrow.compute as pc

    count = stats["count"]
    true = int(pc.sum(column).as_py() or 0)
    stats["mean"] = true / count
    top = sorted(((True, true), (False, count - true)), key=lambda vc: -vc[1])
    stats["top"] = [[v, c] for v, c in top if c]
    stats["distinct_estimate"], stats["distinct_method"] = len(stats["top"]), "exact"


# --------------------------------------------------------------------------
# Numeric columns
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Extremes:
    """A piece's smallest and largest finite values, and how many were finite, NaN or infinite."""

    lo: float
    hi: float
    finite: int
    nan: int = 0
    inf: int = 0


@dataclass(frozen=True)
class _Partial:
    """What one piece adds to its column: moments, histogram counts and sampled values."""

    n: int
    mean: float
    m2: float
    counts: np.ndarray
    sample: list[np.ndarray]


@dataclass(frozen=True)
class _Binning:
    """How a column's values are put into its histogram bins.

    A value's position in bin widths from the minimum, ``value * scale``
    plus ``offset``, is rounded to a grid of ``2**-grid`` by the addition
    itself: ``offset`` carries a large constant that leaves the sum in a
    binade whose spacing is that grid, so the sum's bit pattern reads as the
    position in fixed point. Its integer bits are the bin; its fraction bits
    say whether the value lies within a few grid steps of an edge, where
    rounding could put it one bin off: those few are placed again by
    comparing them with the edges themselves, so the counts agree with anyone
    counting against the published edges. The grid is chosen coarser than
    every rounding error involved; where none can be (a span that
    overflows, or tiny next to the values' magnitude) ``by_edges`` places
    every value against the edges.
    """

    edges: np.ndarray
    scale: float
    offset: float
    grid: int
    bin_mask: int
    constant: bool
    by_edges: bool
    # The same numbers as numpy scalars, made once: ready-made scalars save
    # each ufunc call a conversion.
    np_grid: Any = None
    np_mask: Any = None
    np_edge_mask: Any = None
    np_fraction_mask: Any = None

    @property
    def pair_bits(self) -> int:
        """Bits of a bin index when two indices share one count (0: one at a time).

        Counting is the dearest step; two indices packed into one key halve
        the values counted, at the price of a table of ``4**bits`` counts.
        """
        bits = self.bin_mask.bit_length()
        return bits if not (self.constant or self.by_edges) and bits <= _PAIR_MAX_BITS else 0


class _NumericColumn:
    """One integer or float column, profiled piece by piece: extremes, then everything else."""

    def __init__(
        self,
        column: pa.ChunkedArray,
        stats: dict[str, Any],
        bins: int,
        quantiles: int,
        is_float: bool,
        workspace: _Workspace,
    ) -> None:
        self.stats = stats
        self.bins = bins
        self.quantiles = quantiles
        self.is_float = is_float
        self.workspace = workspace
        self.pieces = _pieces(column)
        self.extremes: list[_Extremes] = []
        self.offsets: list[int] = []
        self.n = 0
        self.lo = self.hi = 0.0
        # Moments are taken of the values times this power of two: 1, unless the
        # values are so large that their squares (or their sum) would overflow.
        self.scale = 1.0
        self.binning: _Binning | None = None
        self.positions: np.ndarray | None = None
        self.sketches: dict[int, _HyperLogLog] = {}
        self.lock = threading.Lock()

    def scan(self, i: int) -> _Extremes:
        """Piece ``i``'s finite extremes, with its NaN and infinity counts."""
        import numpy as np

        values = _values(self.pieces[i])
        if len(values) == 0:
            return _Extremes(math.inf, -math.inf, 0)
        lo, hi = values.min(), values.max()
        # min/max propagate NaN and expose infinities: one cheap test for the common case.
        if not self.is_float or (np.isfinite(lo) and np.isfinite(hi)):
            return _Extremes(float(lo), float(hi), len(values))
        finite = np.isfinite(values)
        kept = int(np.count_nonzero(finite))
        nan = int(np.count_nonzero(np.isnan(values)))
        if kept == 0:
            return _Extremes(math.inf, -math.inf, 0, nan, len(values) - nan)
        lo = values.min(where=finite, initial=np.inf)
        hi = values.max(where=finite, initial=-np.inf)
        return _Extremes(float(lo), float(hi), kept, nan, len(values) - kept - nan)

    def plan(self, extremes: list[_Extremes]) -> None:
        """Combine the pieces' extremes: bins, where each piece starts, which values to sample."""
        self.extremes = extremes
        if self.is_float:
            self.stats["nan"] = sum(e.nan for e in extremes)
            self.stats["inf"] = sum(e.inf for e in extremes)
        for e in extremes:
            self.offsets.append(self.n)
            self.n += e.finite
        if self.n == 0:
            self.stats["distinct_estimate"], self.stats["distinct_method"] = 0, "exact"
            return
        self.lo = min(e.lo for e in extremes if e.finite)
        self.hi = max(e.hi for e in extremes if e.finite)
        largest = max(abs(self.lo), abs(self.hi))
        if largest > _MOMENT_LIMIT:
            self.scale = math.ldexp(1.0, 400 - math.frexp(largest)[1])  # largest -> ~2**400
        self.binning = _binning(self.lo, self.hi, self.bins)
        if self.n > _QUANTILE_SAMPLE:
            self.positions = self.workspace.sample_positions(self.n)

    def summarise(self, i: int) -> _Partial | None:
        """Moments, histogram counts, sketch and quantile sample of piece ``i``'s finite values."""
        import numpy as np

        binning = self.binning
        if binning is None or self.extremes[i].finite == 0:
            return None
        scratch = self.workspace.scratch()
        sketch = self._sketch() if self.n > _EXACT_DISTINCT else None
        values = _values(self.pieces[i])
        dirty = self.extremes[i].finite < len(values)
        positions = self.positions
        counts = np.zeros(self.bins, np.int64)
        pair_bits = binning.pair_bits
        pairs = np.zeros(1 << (2 * pair_bits), np.int64) if pair_bits else None
        sample: list[np.ndarray] = []
        seen = self.offsets[i]
        n = 0
        mean = m2 = 0.0
        add_reduce = np.add.reduce  # called directly: a few hundred calls per million values
        for start in range(0, len(values), _BLOCK):
            raw = values[start : start + _BLOCK]
            if dirty:
                raw = raw[np.isfinite(raw)]
            m = len(raw)
            if m == 0:
                continue
            if positions is None:
                sample.append(raw.astype(np.float64))
            else:
                a, b = positions.searchsorted((seen, seen + m))
                if b > a:
                    sample.append(raw[positions[a:b] - seen].astype(np.float64, copy=False))
            seen += m
            if sketch is not None:
                sketch.add(raw, scratch)  # hashes the values' own bits
            if binning.constant:  # every value is lo: no deviations, all in the last bin
                n, mean, m2 = _merge_moments(n, mean, m2, m, self.lo * self.scale, 0.0)
                counts[-1] += m
                continue
            if raw.dtype == np.float64:
                block = raw
            else:  # converted once here: every ufunc below would otherwise convert again
                block = scratch.values[:m]
                np.copyto(block, raw, casting="unsafe")
            centred = scratch.spare[:m]
            if self.scale == 1.0:
                block_mean = float(add_reduce(block)) / m
                np.subtract(block, block_mean, out=centred)
            else:  # values near the float limit: moments of scaled copies
                np.multiply(block, self.scale, out=centred)
                block_mean = float(add_reduce(centred)) / m
                np.subtract(centred, block_mean, out=centred)
            np.multiply(centred, centred, out=centred)
            n, mean, m2 = _merge_moments(n, mean, m2, m, block_mean, float(add_reduce(centred)))
            if binning.by_edges:
                _edges_block(block, binning, counts)
            else:
                _fast_block(block, binning, scratch, counts, pairs)
        if pairs is not None:
            _fold_pairs(pairs, pair_bits, counts)
        return _Partial(n, mean, m2, counts, sample)

    def finish(self, partials: list[_Partial | None]) -> None:
        """Merge the pieces (in order, so the result never depends on the threads) into the stats."""
        import numpy as np

        binning = self.binning
        if binning is None:
            return
        n = 0
        mean = m2 = 0.0
        counts = np.zeros(self.bins, np.int64)
        sample: list[np.ndarray] = []
        for part in partials:
            if part is None:
                continue
            n, mean, m2 = _merge_moments(n, mean, m2, part.n, part.mean, part.m2)
            counts += part.counts
            sample.extend(part.sample)
        everything = np.sort(np.concatenate(sample))
        # One sort then interpolation: np.quantile would partition once per point.
        points = _quantiles_of_sorted(everything, self.quantiles)
        points[0], points[-1] = self.lo, self.hi
        self.stats.update(
            min=self.lo,
            max=self.hi,
            mean=mean / self.scale,
            std=math.sqrt(max(m2, 0.0) / n) / self.scale,
            histogram={"edges": binning.edges.tolist(), "counts": counts.tolist()},
            quantiles=points.tolist(),
        )
        if self.n <= _EXACT_DISTINCT:
            distinct = 1 + int(np.count_nonzero(everything[1:] != everything[:-1]))
            self.stats["distinct_estimate"], self.stats["distinct_method"] = distinct, "exact"
        else:
            merged = _HyperLogLog.merge(list(self.sketches.values()))
            self.stats["distinct_estimate"] = merged.estimate()
            self.stats["distinct_method"] = "hll"

    def _sketch(self) -> _HyperLogLog:
        """This thread's sketch of the column: registers merge by maximum, in any order."""
        key = threading.get_ident()
        sketch = self.sketches.get(key)
        if sketch is None:
            with self.lock:
                sketch = self.sketches.setdefault(key, _HyperLogLog())
        return sketch


def _merge_moments(
    n: int, mean: float, m2: float, m: int, other_mean: float, other_m2: float
) -> tuple[int, float, float]:
    """Chan's parallel update of (count, mean, sum of squared deviations): stable."""
    total = n + m
    delta = other_mean - mean
    return total, mean + delta * m / total, m2 + other_m2 + delta * delta * n * m / total


def _binning(lo: float, hi: float, bins: int) -> _Binning:
    """Edges ``bins + 1`` floats from lo to hi, and how to find a value's bin among them."""
    import numpy as np

    span = hi - lo
    if span == 0:
        return _Binning(np.linspace(lo, hi, bins + 1), 0.0, 0.0, 0, 0, True, False)
    if math.isfinite(span):
        edges = np.linspace(lo, hi, bins + 1)
    else:  # the span overflows: space the halves (exact), then double back
        edges = np.linspace(lo / 2, hi / 2, bins + 1) * 2
    scale = bins / span
    index_bits = max(1, (bins - 1).bit_length())
    # A bound, with a wide margin, on how far a value's computed position and
    # an edge's can be from the exact ones: a few roundings, each within
    # 2**-52 of the largest term.
    slack = 64 * 2.0**-52 * (bins * (max(abs(lo), abs(hi)) / span + 2) + 1)
    grid = min(50 - index_bits, math.floor(-math.log2(slack)) if slack > 0 else 50)
    if not (math.isfinite(scale) and scale > 0 and grid >= 3):
        return _Binning(edges, scale, 0.0, 0, 0, False, True)
    # 1.5 * 2**(52 - grid) puts the sum where floats are 2**-grid apart, and its
    # bit pattern's low 51 bits are zero, so the position's fixed-point bits
    # land there unchanged; _EDGE_GRAIN steps more make "near an edge" one
    # comparison of the fraction bits, wrapped or not.
    offset = 1.5 * 2.0 ** (52 - grid) + _EDGE_GRAIN * 2.0**-grid - lo * scale
    mask = (1 << index_bits) - 1
    return _Binning(
        edges,
        scale,
        offset,
        grid,
        mask,
        False,
        False,
        np.int64(grid),
        np.int64(mask),
        np.int64((mask << 1) | 1),
        np.int64((1 << grid) - 1),
    )


def _fast_block(
    block: np.ndarray,
    binning: _Binning,
    scratch: _Scratch,
    counts: np.ndarray,
    pairs: np.ndarray | None,
) -> None:
    """Add a float64 block to the counts by its fixed-point positions (see ``_Binning``).

    A value v goes to bin k when edges[k] <= v < edges[k + 1] (the last bin
    closed). With ``pairs``, indices are counted two to a key there and
    folded into ``counts`` by :func:`_fold_pairs` at the end of the piece.
    Ufuncs get ready-made numpy scalars: at a few hundred calls per million
    values, the calls' own cost shows.
    """
    import numpy as np

    m = len(block)
    position = scratch.work[:m]
    np.multiply(block, binning.scale, out=position)
    np.add(position, binning.offset, out=position)
    bits = position.view(np.int64)
    index = scratch.index[:m]
    np.right_shift(bits, binning.np_grid, out=index)
    np.bitwise_and(index, binning.np_mask, out=index)
    fraction = scratch.fraction[:m]
    np.bitwise_and(bits, binning.np_fraction_mask, out=fraction)
    # Values near an edge are rare outside data on a lattice: one reduction says whether any is.
    if np.minimum.reduce(fraction) < 2 * _EDGE_GRAIN:
        at_edge = scratch.flags[:m]
        np.less(fraction, 2 * _EDGE_GRAIN, out=at_edge)
        near = at_edge.nonzero()[0]
        # Such a value is within _EDGE_GRAIN steps of grid integer k, so of
        # edge k and of no other: its bin is k at or above that edge, else
        # k - 1. (k is read with one more bit than a bin index: it may be bins.)
        edge = (bits.take(near) >> binning.np_grid) & binning.np_edge_mask
        found = edge - (block.take(near) < binning.edges.take(edge))
        np.minimum(found, len(counts) - 1, out=found)  # the maximum closes the last bin
        index[near] = found
    if pairs is None:
        counts += np.bincount(index, minlength=len(counts))
        return
    half = m >> 1
    key = scratch.key[:half]
    np.left_shift(index[:half], binning.bin_mask.bit_length(), out=key)
    np.bitwise_or(key, index[half : 2 * half], out=key)
    pairs += np.bincount(key, minlength=len(pairs))
    if m & 1:
        counts[index[m - 1]] += 1


def _fold_pairs(pairs: np.ndarray, bits: int, counts: np.ndarray) -> None:
    """Add the counts of packed index pairs (first << bits | second) to ``counts``."""
    table = pairs.reshape(1 << bits, 1 << bits)
    per_index = table.sum(axis=1) + table.sum(axis=0)
    bins = len(counts)
    if per_index[bins:].any():  # every index was checked against the edges: cannot happen
        raise RuntimeError("profile: a histogram index fell outside the bins")
    counts += per_index[:bins]


def _edges_block(block: np.ndarray, binning: _Binning, counts: np.ndarray) -> None:
    """Add a float64 block to the counts by searching the edges: spans the grid cannot hold."""
    import numpy as np

    found = binning.edges.searchsorted(block, side="right") - 1
    np.minimum(found, len(counts) - 1, out=found)  # the maximum closes the last bin
    counts += np.bincount(found, minlength=len(counts))


def _quantiles_of_sorted(values: np.ndarray, quantiles: int) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default method) of sorted values."""
    import numpy as np

    position = np.linspace(0.0, 1.0, quantiles) * (len(values) - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, len(values) - 1)
    fraction = position - below
    return values[below] + (values[above] - values[below]) * fraction


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
        hll, scratch = _HyperLogLog(), _Scratch()
        for block in _blocks(ints):
            hll.add(block, scratch)
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
# Pieces, blocks, sketches and helpers
# --------------------------------------------------------------------------


def _pieces(column: pa.ChunkedArray) -> list[list[pa.Array]]:
    """The column cut into pieces of at most _PIECE_ROWS rows; small chunks share a piece."""
    pieces: list[list[pa.Array]] = []
    current: list[pa.Array] = []
    rows = 0
    for chunk in column.chunks:
        for start in range(0, len(chunk), _PIECE_ROWS):
            part = chunk.slice(start, _PIECE_ROWS)
            if current and rows + len(part) > _PIECE_ROWS:
                pieces.append(current)
                current, rows = [], 0
            current.append(part)
            rows += len(part)
    if current:
        pieces.append(current)
    return pieces


def _values(piece: list[pa.Array]) -> np.ndarray:
    """A piece's non-null values as one numpy array: zero-copy for one chunk without nulls."""
    import numpy as np
    import pyarrow.compute as pc

    arrays = [
        (pc.drop_null(part) if part.null_count else part).to_numpy(zero_copy_only=True)
        for part in piece
    ]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _blocks(column: pa.ChunkedArray) -> Iterator[np.ndarray]:
    """The non-null values of a primitive column as numpy blocks of at most _BLOCK values."""
    for piece in _pieces(column):
        values = _values(piece)
        for start in range(0, len(values), _BLOCK):
            yield values[start : start + _BLOCK]


class _Scratch:
    """Block-sized buffers that one thread reuses for every block.

    Fresh temporaries of a few hundred KiB per block would be mapped and
    unmapped each time, which costs more than the arithmetic on them.
    """

    __slots__ = (
        "flags",
        "fraction",
        "hashed",
        "index",
        "key",
        "shifted",
        "spare",
        "values",
        "work",
    )

    def __init__(self) -> None:
        import numpy as np

        self.values = np.empty(_BLOCK, np.float64)
        self.work = np.empty(_BLOCK, np.float64)
        self.spare = np.empty(_BLOCK, np.float64)
        self.index = np.empty(_BLOCK, np.int64)
        self.hashed = np.empty(_BLOCK, np.uint64)
        self.shifted = np.empty(_BLOCK, np.uint64)
        self.flags = np.empty(_BLOCK, np.bool_)
        # Views of the same memory under other names: never used at once.
        self.fraction = self.shifted.view(np.int64)  # the histogram's fraction bits
        self.key = self.hashed.view(np.int64)  # packed pairs of bin indices


class _Workspace:
    """One profile call's scratch buffers, one set per thread, freed with the call."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._positions: dict[int, np.ndarray] = {}

    def sample_positions(self, n: int) -> np.ndarray:
        """The sorted, fixed-seed positions of the quantile sample among ``n`` values.

        Drawn once per count: columns of the same length share them.
        """
        import numpy as np

        positions = self._positions.get(n)
        if positions is None:
            rng = np.random.default_rng(_SEED)
            positions = self._positions[n] = np.sort(rng.integers(0, n, _QUANTILE_SAMPLE))
        return positions

    def scratch(self) -> _Scratch:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _Scratch()
        return scratch


@functools.cache
def _hll_constants() -> tuple[Any, ...]:
    """The sketch's shift counts, mixing multipliers and register mask as numpy uint64 scalars."""
    import numpy as np

    u = np.uint64
    return u(32), u(29), u(0xBF58476D1CE4E5B9), u(0x94D049BB133111EB), u((1 << _HLL_BITS) - 1)


class _HyperLogLog:
    """HyperLogLog over the bit patterns of fixed-width values, fed numpy blocks.

    Values are mixed to 64 bits (splitmix64's finaliser, which reaches every
    input bit), of which the top 32 are kept: the upper 18 give the rank (one
    plus their leading zeros), the lower 14 pick the register, enough for a
    few billion distinct values.

    Most values cannot raise their register, and are dropped before ranking:
    a value changes register j only if its top 32 bits are below
    ``2**(32 - registers[j])`` (kept per register in ``limits``), and, once
    every register holds at least r, only if its hash is below
    ``2**(64 - r)``: one comparison over the whole block, which leaves a
    share of 2**-r. The registers come out as if every value had been ranked.
    """

    __slots__ = ("floor", "limits", "registers", "started", "threshold")

    def __init__(self) -> None:
        import numpy as np

        self.registers = np.zeros(1 << _HLL_BITS, np.uint8)
        self.limits = np.full(1 << _HLL_BITS, 1 << 32, np.uint64)  # see add
        self.floor = 0  # the smallest register
        self.threshold: Any = None  # 2**(64 - floor) as a uint64, once floor > 0
        self.started = False  # whether any value was added

    @classmethod
    def merge(cls, sketches: list[_HyperLogLog]) -> _HyperLogLog:
        """One sketch of everything the given sketches saw."""
        import numpy as np

        merged = cls()
        for sketch in sketches:
            np.maximum(merged.registers, sketch.registers, out=merged.registers)
        return merged

    def add(self, block: np.ndarray, scratch: _Scratch) -> None:
        import numpy as np

        if self.floor >= _HLL_MAX_RANK:
            return
        u = np.uint64
        k32, k29, mix1, mix2, register_mask = _hll_constants()
        m = len(block)
        hashed, shifted = scratch.hashed[:m], scratch.shifted[:m]
        if block.dtype.itemsize == 8:
            v = block.view(u)
        else:
            v = hashed
            np.copyto(hashed, block.view(f"u{block.dtype.itemsize}"), casting="unsafe")
        np.right_shift(v, k32, out=shifted)
        np.bitwise_xor(v, shifted, out=hashed)
        np.multiply(hashed, mix1, out=hashed)
        np.right_shift(hashed, k29, out=shifted)
        np.bitwise_xor(hashed, shifted, out=hashed)
        np.multiply(hashed, mix2, out=hashed)
        flags = scratch.flags[:m]
        if self.floor:
            np.less(hashed, self.threshold, out=flags)
            # Few are kept: gathering their positions beats a boolean mask.
            top = hashed.take(flags.nonzero()[0]) >> k32
            index = (top & register_mask).view(np.int64)
            limits = self.limits.take(index)
        else:  # early on, or few distinct values: the per-register test on every value
            top = shifted
            np.right_shift(hashed, k32, out=top)
            index = scratch.index[:m]
            np.bitwise_and(top, register_mask, out=index.view(u))
            if not self.started:  # every register is 0: every value raises its own
                self.started = True
                self._raise(top, index)
                return
            limits = hashed
            self.limits.take(index, out=limits)
        flags = flags[: len(top)]
        np.less(top, limits, out=flags)
        keep = flags.nonzero()[0]
        if len(keep):
            self._raise(top.take(keep), index.take(keep))

    def _raise(self, top: np.ndarray, index: np.ndarray) -> None:
        """Raise registers ``index`` to the ranks of ``top`` (hashes' top 32 bits) where higher."""
        import numpy as np

        u = np.uint64
        # Bit length of the rank bits from the exponent of their value as a
        # float32 (exact below 2**24): e - 126 for a biased exponent e; 0 reads
        # as e = 0 and is clamped to the largest rank.
        bits = (top >> u(_HLL_BITS)).astype(np.int32).astype(np.float32).view(np.int32)
        rank = np.minimum(_HLL_MAX_RANK + 126 - (bits >> 23), _HLL_MAX_RANK).astype(np.uint8)
        registers = self.registers
        np.maximum.at(registers, index, rank)
        # 2**(32 - r): values of rank r + 1 and up have top bits below it.
        if len(index) > len(registers) // 4:
            np.right_shift(u(1 << 32), registers, out=self.limits)
        else:  # only the registers just raised change (a repeated index writes the same)
            self.limits[index] = u(1 << 32) >> registers.take(index).astype(u)
        floor = int(np.minimum.reduce(registers))
        if floor != self.floor:
            self.floor = floor
            self.threshold = u(1 << (64 - floor)) if floor else None

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
