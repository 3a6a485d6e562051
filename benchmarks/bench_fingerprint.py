"""How fast flowrecord fingerprints and profiles data, against the peers and the memory bus.

Builds one Arrow table of ``--size-mb`` MiB (8 columns, float64 and int64
alternating; default 1 GiB) and measures, in one run:

* ``fingerprint_table`` on it, and on the same table with 10% nulls (the
  path that compacts values in bounded pieces), and ``fingerprint`` of the
  same data as a pandas DataFrame (conversion included);
* ``pandas.util.hash_pandas_object`` (a row hash, pandas' nearest peer);
* MLflow's dataset digest, ``mlflow.data.digest_utils.compute_pandas_digest``,
  on the first ``--mlflow-rows`` rows only: it maps ``type`` over every cell
  in Python, so a full gigabyte would take many minutes (and it hashes only
  its first 10,000 rows, so it is not a content hash);
* the floor: a numpy sum over the same buffers (one thread), and xxh3-128 over
  the raw buffers with one thread per core, which is what a fingerprint
  could at best cost;
* ``profile`` in rows/s and values/s, on the table and on one float64
  column of ``--profile-rows`` rows, each beside ``pyarrow.compute.min_max``
  over the same columns in the same run (a C++ pass that reads every value
  once: what a profile costs next to the cheapest statistic there is);
* the extra memory each fingerprint needs: peak Arrow allocations
  (``pool.max_memory()`` above what was allocated before) and peak RSS
  (sampled every 2 ms) above the starting RSS.

Each figure is the best of ``--repeat`` runs: on a shared machine the
minimum is the least noisy estimate. ``--quick`` uses 64 MiB, one repeat,
20,000 rows for MLflow and a 1,000,000-row column; options given explicitly
win. ``--json PATH`` writes the headline figures for ``run_all.py``.

    uv run --no-sync python benchmarks/bench_fingerprint.py
    uv run --no-sync python benchmarks/bench_fingerprint.py --size-mb 256 --repeat 3
    uv run --no-sync python benchmarks/bench_fingerprint.py --quick --json /tmp/fingerprint.json
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import psutil
import pyarrow as pa
import xxhash
from _common import Figure, add_arguments, at_least, report

from flowrecord.collectors.fingerprint import fingerprint, fingerprint_table
from flowrecord.collectors.profile import profile

COLUMNS = 8


def build_table(size_mb: int, null_fraction: float = 0.0, seed: int = 0) -> pa.Table:
    """8 columns of random float64 / int64, optionally with a validity bitmap (zero-copy buffers)."""
    rng = np.random.default_rng(seed)
    rows = size_mb * (1 << 20) // (8 * COLUMNS)
    arrays = []
    for i in range(COLUMNS):
        values = rng.random(rows) if i % 2 else rng.integers(0, 1 << 40, rows)
        validity = None
        if null_fraction:
            validity = pa.py_buffer(
                np.packbits(rng.random(rows) >= null_fraction, bitorder="little")
            )
        t = pa.float64() if i % 2 else pa.int64()
        arrays.append(pa.Array.from_buffers(t, rows, [validity, pa.py_buffer(values)]))
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(COLUMNS)])


class PeakMemory:
    """Peak Arrow allocations and peak RSS above the starting point, while in the block."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.pool = pa.default_memory_pool()

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.arrow_start = self.pool.bytes_allocated()
        self.arrow_peak_before = self.pool.max_memory()
        self.rss_start = self.rss_peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.rss_peak = max(self.rss_peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()
        # max_memory() is a high-water mark since start: it only tells when it moved.
        peak = self.pool.max_memory()
        self.arrow_extra = max(0, peak - self.arrow_start) if peak > self.arrow_peak_before else 0
        self.rss_extra = max(0, self.rss_peak - self.rss_start)


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def raw_xxh3(table: pa.Table) -> None:
    """xxh3-128 of each column's values buffer, one thread per core: the floor for a fingerprint."""

    def one(column: pa.ChunkedArray) -> bytes:
        h = xxhash.xxh3_128()
        for chunk in column.chunks:
            h.update(chunk.buffers()[1])
        return h.digest()

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, table.columns))


def numpy_sum(table: pa.Table) -> float:
    return sum(
        float(np.frombuffer(c.chunks[0].buffers()[1], np.uint64).sum()) for c in table.columns
    )


def min_max_all(table: pa.Table) -> None:
    """pyarrow.compute.min_max over every column: the baseline a profile is set against."""
    import pyarrow.compute as pc

    for column in table.columns:
        pc.min_max(column)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--size-mb", type=int, help="table size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, help="runs per measurement; the best counts (3)")
    parser.add_argument(
        "--mlflow-rows", type=int, help="rows given to MLflow's digest (default 200,000)"
    )
    parser.add_argument(
        "--profile-rows",
        type=int,
        help="rows of the one-column table profiled (default 10,000,000)",
    )
    args = parser.parse_args()
    for name, full, quick in (
        ("size_mb", 1024, 64),
        ("repeat", 3, 1),
        ("mlflow_rows", 200_000, 20_000),
        ("profile_rows", 10_000_000, 1_000_000),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)

    table = build_table(args.size_mb)
    with_nulls = build_table(args.size_mb, null_fraction=0.1, seed=1)
    nbytes = table.nbytes
    rows = table.num_rows
    print(
        f"table: {rows:,} rows x {COLUMNS} columns (float64/int64), {nbytes / 2**20:,.0f} MiB; "
        f"{os.cpu_count()} cores"
    )

    results: list[tuple[str, float, str, str]] = []  # name, seconds, throughput text, memory text

    def record(name: str, seconds: float, size: int, memory: PeakMemory | None = None) -> float:
        rate = size / seconds / 1e9
        mem = ""
        if memory is not None:
            mem = (
                f"arrow +{memory.arrow_extra / 2**20:,.1f} MiB ({memory.arrow_extra / nbytes:.1%}), "
                f"rss +{memory.rss_extra / 2**20:,.1f} MiB ({memory.rss_extra / nbytes:.1%})"
            )
        results.append((name, seconds, f"{rate:6.2f} GB/s", mem))
        return rate

    seconds, _ = best_of(args.repeat, lambda: numpy_sum(table))
    floor_sum = record("numpy sum over the buffers (1 thread)", seconds, nbytes)
    seconds, _ = best_of(args.repeat, lambda: raw_xxh3(table))
    floor_hash = record(f"xxh3-128 of raw buffers ({os.cpu_count()} threads)", seconds, nbytes)

    with PeakMemory() as memory:
        seconds, digest = best_of(args.repeat, lambda: fingerprint_table(table))
    ours = record("flowrecord fingerprint_table", seconds, nbytes, memory)
    memory_ours = memory
    with PeakMemory() as memory:
        seconds, _ = best_of(args.repeat, partial(fingerprint_table, with_nulls))
    ours_nulls = record(
        "flowrecord fingerprint_table, 10% nulls", seconds, with_nulls.nbytes, memory
    )
    memory_nulls = memory
    with_nulls_bytes = with_nulls.nbytes
    del with_nulls

    import pandas as pd

    frame = table.to_pandas()
    with PeakMemory() as memory:
        seconds, pandas_digest = best_of(args.repeat, partial(fingerprint, frame))
    ours_pandas = record("flowrecord fingerprint(pandas DataFrame)", seconds, nbytes, memory)
    memory_pandas = memory
    assert pandas_digest == digest, "pandas and Arrow views of the same data must agree"

    with PeakMemory() as memory:
        seconds, _ = best_of(args.repeat, partial(pd.util.hash_pandas_object, frame, index=False))
    peer_pandas = record("pandas.util.hash_pandas_object", seconds, nbytes, memory)
    memory_peer = memory

    try:
        from mlflow.data.digest_utils import compute_pandas_digest
    except ImportError:
        compute_pandas_digest = None
    peer_mlflow, mlflow_rows = None, 0
    if compute_pandas_digest is not None:
        head = frame.iloc[: args.mlflow_rows]
        head_bytes = int(head.memory_usage(index=False).sum())
        mlflow_rows = len(head)
        seconds, _ = best_of(max(1, args.repeat - 1), partial(compute_pandas_digest, head))
        peer_mlflow = record(
            f"mlflow compute_pandas_digest ({len(head):,} rows)", seconds, head_bytes
        )
    del frame

    seconds, prof = best_of(args.repeat, lambda: profile(table))
    assert prof["row_count"] == rows
    # The profile's temporaries are numpy arrays, which tracemalloc sees (RSS would
    # not: the allocator reuses what the pandas frame above left behind), and
    # Arrow buffers, which the pool counts. Measured in a run of its own, untimed.
    tracemalloc.start()
    with PeakMemory() as memory_profile:
        profile(table)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    memory_profile.rss_extra = max(memory_profile.rss_extra, traced_peak)
    min_max_seconds, _ = best_of(args.repeat, partial(min_max_all, table))
    single = pa.table({"x": np.random.default_rng(2).random(args.profile_rows)})
    single_seconds, _ = best_of(args.repeat, partial(profile, single))
    single_min_max, _ = best_of(args.repeat, partial(min_max_all, single))

    width = max(len(r[0]) for r in results) + 2
    print()
    print(f"{'measure':<{width}}{'seconds':>9}  {'throughput':>11}  {'x ours':>7}  extra memory")
    for name, secs, rate, mem in results:
        value = float(rate.split()[0])
        print(f"{name:<{width}}{secs:9.3f}  {rate:>11}  {value / ours:7.2f}  {mem}")
    print()
    print(f"{'profile':<{width}}{'seconds':>9}  {'M rows/s':>9}  {'M values/s':>11}  x min_max")
    for name, secs, n_rows, n_cols, base in (
        (f"flowrecord profile, {COLUMNS} columns", seconds, rows, COLUMNS, min_max_seconds),
        ("pyarrow min_max, same columns", min_max_seconds, rows, COLUMNS, min_max_seconds),
        (
            "flowrecord profile, 1 float64 column",
            single_seconds,
            args.profile_rows,
            1,
            single_min_max,
        ),
        ("pyarrow min_max, same column", single_min_max, args.profile_rows, 1, single_min_max),
    ):
        print(
            f"{name:<{width}}{secs:9.3f}  {n_rows / secs / 1e6:9.1f}  "
            f"{n_rows * n_cols / secs / 1e6:11.1f}  {secs / base:8.1f}"
        )
    print()
    print("ratios:")
    print(
        f"  fingerprint vs xxh3 floor            {ours / floor_hash:6.2f}  (1.00 = as fast as hashing raw memory)"
    )
    print(f"  fingerprint vs numpy sum             {ours / floor_sum:6.2f}")
    print(f"  fingerprint vs hash_pandas_object    {ours / peer_pandas:6.2f}x faster")
    print(f"  fingerprint(pandas) vs hash_pandas   {ours_pandas / peer_pandas:6.2f}x faster")
    print(f"  10% nulls vs no nulls                {ours_nulls / ours:6.2f}")
    if compute_pandas_digest is not None:
        print(
            f"  fingerprint vs mlflow digest         {ours / peer_mlflow:6.2f}x faster (per byte given)"
        )
    print(f"  goal 8 GB/s: {'met' if ours >= 8 else 'not met'} ({ours:.2f} GB/s)")
    values_per_second = rows * COLUMNS / seconds
    rows_per_second = rows / seconds
    print(
        f"  profile goal 50M rows/s: {'met' if rows_per_second >= 50e6 else 'not met'} "
        f"({rows_per_second / 1e6:.1f}M rows/s, {values_per_second / 1e6:.1f}M values/s "
        f"over {COLUMNS} columns)"
    )

    size = f"{nbytes / 2**20:,.0f} MiB, {rows:,} rows x {COLUMNS} columns"
    best = f"best of {args.repeat}"
    figures = [
        Figure(
            "fingerprint a table, against hash_pandas_object",
            ours,
            "GB/s",
            alternative=peer_pandas,
            alternative_name="pandas.util.hash_pandas_object",
            better="higher",
            goal=">= 8 GB/s",
            met=at_least(ours, 8),
            note=f"fingerprint_table on an Arrow table of {size}; {best}",
        ),
        Figure(
            "fingerprint a pandas DataFrame, against hash_pandas_object",
            ours_pandas,
            "GB/s",
            alternative=peer_pandas,
            alternative_name="pandas.util.hash_pandas_object",
            better="higher",
            note="fingerprint(DataFrame), the conversion to Arrow included",
        ),
        Figure(
            "fingerprint a table, against MLflow's dataset digest",
            ours,
            "GB/s",
            alternative=peer_mlflow,
            alternative_name="mlflow compute_pandas_digest",
            better="higher",
            note=(
                f"per byte given: MLflow gets the first {mlflow_rows:,} rows only (and hashes "
                "only its first 10,000)"
                if peer_mlflow is not None
                else "MLflow is not installed"
            ),
        ),
        Figure(
            "fingerprint a table, against a plain memory read",
            ours,
            "GB/s",
            alternative=floor_sum,
            alternative_name="numpy sum of the buffers, 1 thread",
            better="higher",
        ),
        Figure(
            "fingerprint a table, against hashing the raw buffers",
            ours,
            "GB/s",
            alternative=floor_hash,
            alternative_name=f"xxh3-128, {os.cpu_count()} threads",
            better="higher",
            note="the floor: what a fingerprint could at best cost",
        ),
        Figure(
            "fingerprint a table with 10% nulls",
            ours_nulls,
            "GB/s",
            alternative=ours,
            alternative_name="the same without nulls",
            better="higher",
        ),
        Figure(
            "peak extra memory while fingerprinting and profiling a table",
            100 * max(_extra(memory_ours), _extra(memory_profile)) / nbytes,
            "%",
            alternative=100 * _extra(memory_peer) / nbytes,
            alternative_name="hash_pandas_object",
            goal="< 10% of the table",
            met=max(_extra(memory_ours), _extra(memory_profile)) < 0.1 * nbytes,
            note=(
                "the larger of peak Arrow allocations and peak RSS (sampled every 2 ms) above "
                "the start, the larger of fingerprint_table's "
                f"({100 * _extra(memory_ours) / nbytes:.1f}%) and profile's "
                f"({100 * _extra(memory_profile) / nbytes:.1f}%, numpy's allocations as "
                "tracemalloc counts them), which log_dataset runs one after the other; "
                "fingerprint with 10% nulls "
                f"{100 * _extra(memory_nulls) / with_nulls_bytes:.1f}%, from pandas "
                f"{100 * _extra(memory_pandas) / nbytes:.1f}%"
            ),
        ),
        Figure(
            "profile a table",
            rows_per_second,
            "rows/s",
            alternative=rows / min_max_seconds,
            alternative_name="pyarrow.compute.min_max, same columns",
            better="higher",
            goal=">= 50M rows/s",
            met=at_least(rows_per_second, 50e6),
            note=(
                f"{size}: {values_per_second / 1e6:.1f}M values/s; the schema-free checks "
                "are not included"
            ),
        ),
        Figure(
            "profile one float64 column",
            args.profile_rows / single_seconds,
            "rows/s",
            alternative=args.profile_rows / single_min_max,
            alternative_name="pyarrow.compute.min_max",
            better="higher",
            note=f"{args.profile_rows:,} rows",
        ),
    ]
    report("bench_fingerprint", figures, json_path=args.json)


def _extra(memory: PeakMemory) -> int:
    """Bytes above the start at the peak: the larger of Arrow's and the process's count."""
    return max(memory.arrow_extra, memory.rss_extra)


if __name__ == "__main__":
    main()
