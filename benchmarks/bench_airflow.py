"""Overhead of flowrecord on Airflow: a DAG of no-op tasks under ``dag.test()``, with and without.

One process, one Airflow home (SQLite) in a temporary directory, one DAG of
``--tasks`` independent TaskFlow tasks that do nothing. The plugin is installed
in both modes; "without" sets ``FLOWRECORD_DISABLED=1``, which makes every
listener hook return at once. Rounds alternate the two modes after one warm-up
run of each (the first ``dag.test()`` of a process pays for Airflow's imports),
and the medians are compared::

    uv run --no-sync python benchmarks/bench_airflow.py --tasks 50 --rounds 5

Prints absolute wall times, the overhead per task and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DAG_TEMPLATE = """
from airflow.sdk import dag, task


@dag(schedule=None, catchup=False)
def fr_bench_noop():
    @task
    def noop(i: int) -> None:
        return None

    for i in range({tasks}):
        noop.override(task_id=f"noop_{{i:03d}}")(i)


dag = fr_bench_noop()
"""


def _setup(root: Path, tasks: int) -> None:
    dags = root / "dags"
    dags.mkdir(parents=True)
    (dags / "fr_bench_noop.py").write_text(DAG_TEMPLATE.format(tasks=tasks))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "FLOWRECORD_HOME": str(root / "flowrecord"),
        }
    )


def _load_dag(root: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fr_bench_noop", root / "dags" / "fr_bench_noop.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def _run(dag, enabled: bool) -> float:
    import flowrecord

    os.environ["FLOWRECORD_DISABLED"] = "0" if enabled else "1"
    started = time.perf_counter()
    dag_run = dag.test()
    if enabled:
        flowrecord.flush(30)  # the record is part of the cost
    elapsed = time.perf_counter() - started
    if dag_run.state != "success":
        raise SystemExit(f"the benchmark DAG failed: {dag_run.state}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fr-bench-airflow-") as tmp:
        root = Path(tmp)
        _setup(root, args.tasks)
        os.chdir(root)  # code capture sees no repository: measure the listener itself
        from airflow.utils import db

        db.upgradedb()
        dag = _load_dag(root)
        _run(dag, enabled=False)  # warm-up: imports, DAG bundle sync, plugin loading
        _run(dag, enabled=True)
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.rounds):
            for enabled in (i % 2 == 0, i % 2 != 0):
                times[enabled].append(_run(dag, enabled))

        from flowrecord.backends.local import LocalStore

        recorded = LocalStore(root / "flowrecord").query("SELECT count(*) AS n FROM tasks")[0]["n"]

    without = statistics.median(times[False])
    with_fr = statistics.median(times[True])
    per_task_ms = (with_fr - without) / args.tasks * 1000
    print(
        f"Airflow {_airflow_version()}, {args.tasks} no-op tasks per dag.test(), {args.rounds} rounds"
    )
    print(f"  without flowrecord: median {without:.3f} s  ({_fmt(times[False])})")
    print(f"  with flowrecord:    median {with_fr:.3f} s  ({_fmt(times[True])})")
    print(f"  overhead: {per_task_ms:+.2f} ms per task, ratio {with_fr / without:.3f}")
    print(f"  task attempts recorded: {recorded}")
    return 0


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _airflow_version() -> str:
    import airflow

    return airflow.__version__


if __name__ == "__main__":
    sys.exit(main())
