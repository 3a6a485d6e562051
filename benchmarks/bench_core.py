"""What flowrecord's core costs the code it records, against MLflow and against SQLite itself.

Every figure is measured side by side in one run, flowrecord first, then the
alternative a user would otherwise reach for:

* **import time**: ``import flowrecord`` against ``import mlflow``, each in
  fresh interpreters (median of ``--import-repeat``), and the Airflow plugin
  (``flowrecord_airflow.plugin``) imported after ``airflow``, as a task pays it
  at start.
* **open + close a task** with every collector on (the system sampler; the
  code capture, once per run, in the background): the median of
  ``start_task`` + ``end_task`` over ``--runs`` runs of ``--tasks`` tasks,
  against ``mlflow.start_run(nested=True)`` + ``mlflow.end_run()`` on a SQLite
  tracking store in a temporary directory. flowrecord writes in the
  background, MLflow before it returns; a second row waits for the commit
  (``end_task(flush=True)``) so that both sides are compared doing the same.
* **log_metric cost to the caller**: the wall time of a loop of ``log_metric``
  calls divided by the calls, the writer thread running beside it, against
  ``mlflow.log_metric``.
* **sustained metric points into the local store**: from the first
  ``log_metric`` until ``flush()`` returns with every point committed (best of
  ``--repeat``), against ``MlflowClient.log_batch`` (1000 points a call, its
  limit) and plain ``mlflow.log_metric``; and against the floor, a raw
  ``executemany`` of the same rows into the same SQLite table.

On a shared machine wall times move with the neighbours' load, which the
table's notes give; CPU seconds are printed beside the wall times.

    uv run --no-sync python benchmarks/bench_core.py
    uv run --no-sync python benchmarks/bench_core.py --quick --json /tmp/core.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from _common import (
    Figure,
    Stopwatch,
    add_arguments,
    at_least,
    at_most,
    bytecode_cache_env,
    fresh_process_numbers,
    machine,
    report,
)

# No network from a benchmark: MLflow would otherwise try to send telemetry.
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}

IMPORT_CODE = (
    "import time\n"
    "{setup}\n"
    "wall, cpu = time.perf_counter(), time.process_time()\n"
    "import {module}\n"
    "print(time.perf_counter() - wall, time.process_time() - cpu)\n"
)


# ---------------------------------------------------------------------------
# import time
# ---------------------------------------------------------------------------


def import_figures(repeat: int, with_airflow: bool, with_mlflow: bool) -> list[Figure]:
    """``import flowrecord`` against ``import mlflow``; the Airflow plugin after ``airflow``."""
    cache = tempfile.TemporaryDirectory(prefix="bench-pycache-")
    home = tempfile.TemporaryDirectory(prefix="bench-import-")
    # Airflow writes a config into AIRFLOW_HOME on import: not the user's.
    env = {**QUIET_MLFLOW, **bytecode_cache_env(cache.name), "AIRFLOW_HOME": home.name}

    def median_import(module: str, setup: str = "") -> tuple[float | None, float | None]:
        try:
            runs = fresh_process_numbers(
                IMPORT_CODE.format(module=module, setup=setup), repeat, env=env
            )
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"  import {module} failed: {exc}", file=sys.stderr)
            return None, None
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    with cache, home:
        ours, ours_cpu = median_import("flowrecord")
        theirs, theirs_cpu = median_import("mlflow") if with_mlflow else (None, None)
        print(
            f"  import flowrecord {ours} s (CPU {ours_cpu}), import mlflow {theirs} s (CPU {theirs_cpu})"
        )
        figures = [
            Figure(
                "import flowrecord",
                ours,
                "s",
                alternative=theirs,
                alternative_name="import mlflow",
                goal="<= 0.15 s",
                met=at_most(ours, 0.15),
                note=(
                    f"fresh interpreter, bytecode cached, median of {repeat}; CPU "
                    f"{_fmt(ours_cpu)} s against {_fmt(theirs_cpu)} s"
                ),
            )
        ]
        if with_airflow:
            plugin, plugin_cpu = median_import("flowrecord_airflow.plugin", setup="import airflow")
            print(f"  import flowrecord_airflow.plugin after airflow {plugin} s (CPU {plugin_cpu})")
            figures.append(
                Figure(
                    "import the Airflow plugin at task start",
                    plugin,
                    "s",
                    goal="<= 0.15 s",
                    met=at_most(plugin, 0.15),
                    note=f"flowrecord_airflow.plugin, airflow already imported; CPU {_fmt(plugin_cpu)} s",
                )
            )
    return figures


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------------------
# flowrecord
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def flowrecord_home() -> Iterator[Path]:
    """A fresh store with every collector on, shut down after."""
    import flowrecord
    from flowrecord.config import reset_config

    with tempfile.TemporaryDirectory(prefix="flowrecord-bench-") as tmp:
        saved = {k: os.environ.get(k) for k in _FLOWRECORD_ENV}
        os.environ.update(
            {
                "FLOWRECORD_HOME": tmp,
                "FLOWRECORD_BACKENDS": "local",
                "FLOWRECORD_SYSTEM_SAMPLING": "1",
                "FLOWRECORD_CAPTURE_CODE": "1",
            }
        )
        reset_config()
        try:
            yield Path(tmp)
        finally:
            flowrecord.shutdown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset_config()


_FLOWRECORD_ENV = (
    "FLOWRECORD_HOME",
    "FLOWRECORD_BACKENDS",
    "FLOWRECORD_SYSTEM_SAMPLING",
    "FLOWRECORD_CAPTURE_CODE",
)


def flowrecord_tasks(runs: int, tasks: int, committed: int) -> dict[str, float]:
    """Median ms of start_task + end_task, and of the same until the events are committed."""
    import flowrecord

    with flowrecord_home() as home:
        # First use opens the store and starts the writer: not a task's cost.
        warm = flowrecord.start_run("bench-core", "warm-up")
        flowrecord.end_task(flowrecord.start_task("warm-up", run=warm))
        flowrecord.flush(30)
        times, cpu = [], []
        for r in range(runs):
            run = flowrecord.start_run("bench-core", f"run-{r}")  # code capture starts here
            for i in range(tasks):
                c0, t0 = time.thread_time(), time.perf_counter()
                handle = flowrecord.start_task(f"task-{i}", run=run)
                flowrecord.end_task(handle)
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
            flowrecord.end_run(run)
        flowrecord.flush(60)
        flushed = []
        run = flowrecord.start_run("bench-core", "committed")
        for i in range(committed):
            t0 = time.perf_counter()
            handle = flowrecord.start_task(f"task-{i}", run=run)
            flowrecord.end_task(handle, flush=True)
            flushed.append(time.perf_counter() - t0)
        flowrecord.end_run(run)
        flowrecord.flush(60)
        from flowrecord.backends.local import LocalStore

        stored = LocalStore(home).query("SELECT count(*) FROM tasks")[0][0]
        usages = LocalStore(home).query("SELECT count(*) FROM system_usage")[0][0]
    expected = runs * tasks + committed + 1
    if stored != expected or usages != expected:
        print(f"  WARNING: {stored} tasks and {usages} usages stored, {expected} expected")
    times.sort()
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * times[int(0.9 * (len(times) - 1))],
        "cpu_median_ms": 1e3 * statistics.median(cpu),
        "committed_median_ms": 1e3 * statistics.median(flushed),
    }


def flowrecord_metrics(points: int, repeat: int) -> dict[str, float]:
    """log_metric cost to the caller, and points/s until flush() returns with all committed."""
    import flowrecord

    best_rate, callers, cpus = 0.0, [], []
    with flowrecord_home() as home:
        run = flowrecord.start_run("bench-core", "metrics")
        flowrecord.log_metric("warm-up", 0.0)
        flowrecord.flush(30)
        from flowrecord.backends.local import LocalStore

        store = LocalStore(home)
        before = store.query("SELECT count(*) FROM metrics")[0][0]
        for r in range(repeat):
            task = flowrecord.start_task(f"train-{r}", run=run, sample_system=False)
            log_metric = flowrecord.log_metric
            with Stopwatch() as total:
                t0 = time.perf_counter()
                for step in range(points):
                    log_metric("loss", 1.0 / (step + 1), step=step)
                caller = time.perf_counter() - t0
                delivered = flowrecord.flush(600)
            flowrecord.end_task(task)
            if not delivered:
                print("  WARNING: flush timed out; points were spooled, not committed")
            callers.append(caller / points)
            cpus.append(total.cpu / points)
            best_rate = max(best_rate, points / total.wall)
            print(
                f"  repeat {r + 1}: caller {1e6 * caller / points:.2f} us/call, "
                f"{points / total.wall:,.0f} points/s end to end, "
                f"{1e6 * total.cpu / points:.2f} us CPU per point (all threads)"
            )
        flowrecord.flush(60)
        stored = store.query("SELECT count(*) FROM metrics")[0][0] - before
    if stored != points * repeat:
        print(f"  WARNING: {stored} points stored, {points * repeat} logged")
    return {
        "caller_us": 1e6 * statistics.median(callers),
        "points_per_s": best_rate,
        "cpu_us_per_point": 1e6 * min(cpus),
    }


def sqlite_floor(points: int, repeat: int) -> float:
    """Rows/s of a raw executemany of the same rows into the same table (4096 per commit)."""
    from flowrecord._ids import new_event_id
    from flowrecord.backends.local import LocalStore

    now = time.time()
    rows = [(1, new_event_id(), 1.0 / (i + 1), None, i, now + i * 1e-6) for i in range(points)]
    best = 0.0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="flowrecord-bench-sqlite-") as tmp:
            store = LocalStore(tmp)
            conn = store.connect()
            t0 = time.perf_counter()
            for start in range(0, points, 4096):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR IGNORE INTO metrics VALUES (?,?,?,?,?,?)", rows[start : start + 4096]
                )
                conn.execute("COMMIT")
            best = max(best, points / (time.perf_counter() - t0))
            store.close()
    return best


# ---------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------


def mlflow_figures(tasks: int, plain_points: int, batch_points: int) -> dict[str, float] | None:
    """MLflow on a SQLite tracking store: nested run open+close, log_metric, log_batch."""
    os.environ.update(QUIET_MLFLOW)
    try:
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        print(f"  MLflow is not installed ({exc}): no alternative figures")
        return None
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("bench-core")  # creates the schema: not a run's cost
        client = MlflowClient(uri)
        with mlflow.start_run():
            mlflow.start_run(nested=True)  # warm-up
            mlflow.end_run()
            times = []
            for _ in range(tasks):
                t0 = time.perf_counter()
                mlflow.start_run(nested=True)
                mlflow.end_run()
                times.append(time.perf_counter() - t0)
            out["open_close_ms"] = 1e3 * statistics.median(times)

            with mlflow.start_run(nested=True):
                t0 = time.perf_counter()
                for step in range(plain_points):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                elapsed = time.perf_counter() - t0
            out["log_metric_us"] = 1e6 * elapsed / plain_points
            out["log_metric_points_per_s"] = plain_points / elapsed

            with mlflow.start_run(nested=True) as child:
                ts = int(time.time() * 1000)
                metrics = [
                    Metric("loss", 1.0 / (step + 1), ts, step) for step in range(batch_points)
                ]
                t0 = time.perf_counter()
                for start in range(0, batch_points, 1000):
                    client.log_batch(child.info.run_id, metrics=metrics[start : start + 1000])
                elapsed = time.perf_counter() - t0
            out["log_batch_points_per_s"] = batch_points / elapsed
    return out


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--points", type=int, help="metric points per repeat (default 1,000,000)")
    parser.add_argument("--repeat", type=int, help="repeats of the sustained run (default 3)")
    parser.add_argument("--runs", type=int, help="runs for open + close (default 10)")
    parser.add_argument("--tasks", type=int, help="tasks per run for open + close (default 100)")
    parser.add_argument("--import-repeat", type=int, help="fresh imports per module (default 7)")
    parser.add_argument(
        "--no-mlflow", action="store_true", help="skip MLflow, the alternative (a faster smoke run)"
    )
    args = parser.parse_args()
    quick = args.quick
    points = args.points or (50_000 if quick else 1_000_000)
    repeat = args.repeat or (1 if quick else 3)
    runs = args.runs or (2 if quick else 10)
    tasks = args.tasks or (25 if quick else 100)
    import_repeat = args.import_repeat or (2 if quick else 7)
    committed = 20 if quick else 200
    mlflow_tasks = 20 if quick else 200
    plain_points = 50 if quick else 500
    batch_points = 5_000 if quick else 50_000

    start_machine = machine()
    print(
        f"bench_core: {start_machine['cpus']} CPUs ({start_machine['cpu_model']}), "
        f"load average {start_machine['load_average']}"
    )
    print("import times (fresh interpreters)...")
    # Only looked up: importing it here would import Airflow into this process.
    with_airflow = importlib.util.find_spec("flowrecord_airflow") is not None
    figures = import_figures(import_repeat, with_airflow, not args.no_mlflow)

    print(f"open + close a task: {runs} runs x {tasks} tasks, then {committed} committed...")
    task = flowrecord_tasks(runs, tasks, committed)
    print(
        f"  median {task['median_ms']:.3f} ms (p90 {task['p90_ms']:.3f}, CPU "
        f"{task['cpu_median_ms']:.3f}); until committed {task['committed_median_ms']:.3f} ms"
    )
    print(f"sustained metrics: {points:,} points x {repeat}...")
    metrics = flowrecord_metrics(points, repeat)
    print("raw SQLite executemany of the same rows...")
    floor = sqlite_floor(points, repeat)
    print(f"  {floor:,.0f} rows/s")

    theirs = None
    if not args.no_mlflow:
        print("MLflow on a SQLite tracking store...")
        theirs = mlflow_figures(mlflow_tasks, plain_points, batch_points)
        if theirs:
            print("  " + ", ".join(f"{k} {v:,.3f}" for k, v in theirs.items()))
    theirs = theirs or {}
    end_machine = machine()
    load = f"load average {start_machine['load_average']} -> {end_machine['load_average']}"

    figures += [
        Figure(
            "open + close a task (sampler + code capture)",
            task["median_ms"],
            "ms",
            alternative=theirs.get("open_close_ms"),
            alternative_name="mlflow nested start_run + end_run",
            goal="<= 0.5 ms",
            met=at_most(task["median_ms"], 0.5),
            note=(
                f"median of {runs * tasks}; events written in the background; "
                f"p90 {task['p90_ms']:.2f} ms; {load}"
            ),
        ),
        Figure(
            "open + close a task, until committed",
            task["committed_median_ms"],
            "ms",
            alternative=theirs.get("open_close_ms"),
            alternative_name="mlflow nested start_run + end_run",
            note=f"end_task(flush=True), median of {committed}",
        ),
        Figure(
            "log_metric cost to the caller",
            metrics["caller_us"],
            "us",
            alternative=theirs.get("log_metric_us"),
            alternative_name="mlflow.log_metric",
            goal="<= 10 us",
            met=at_most(metrics["caller_us"], 10),
            note=f"loop of {points:,} calls, the writer thread running beside it",
        ),
        Figure(
            "metric points into the local store, end to end",
            metrics["points_per_s"],
            "points/s",
            alternative=theirs.get("log_batch_points_per_s"),
            alternative_name="MlflowClient.log_batch",
            better="higher",
            goal=">= 250,000 points/s",
            met=at_least(metrics["points_per_s"], 250_000),
            note=(
                f"first log_metric until flush() returns, best of {repeat} x {points:,}; "
                f"{metrics['cpu_us_per_point']:.2f} us CPU per point, all threads"
            ),
        ),
        Figure(
            "metric points, against a plain log_metric loop",
            metrics["points_per_s"],
            "points/s",
            alternative=theirs.get("log_metric_points_per_s"),
            alternative_name="mlflow.log_metric loop",
            better="higher",
        ),
        Figure(
            "metric points, against the SQLite floor",
            metrics["points_per_s"],
            "points/s",
            alternative=floor,
            alternative_name="raw executemany, same rows",
            better="higher",
            note="the floor writes prepared rows from one thread; flowrecord makes them too",
        ),
    ]
    report(
        "bench_core",
        figures,
        json_path=args.json,
        extra={"task": task, "metrics": metrics, "sqlite_floor": floor, "mlflow": theirs},
    )


if __name__ == "__main__":
    main()
