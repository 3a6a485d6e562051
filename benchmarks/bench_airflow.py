"""Overhead of flowrecord on Airflow: a DAG of no-op tasks under ``dag.test()``, with and without.

One process, one Airflow home (SQLite) in a temporary directory, one DAG of
``--tasks`` independent TaskFlow tasks that do nothing. The plugin is installed
in both modes; "without" sets ``FLOWRECORD_DISABLED=1``, which makes every
listener hook return at once. Rounds alternate the two modes after one warm-up
run of each (the first ``dag.test()`` of a process pays for Airflow's imports),
and the medians are compared::

    uv run --no-sync python benchmarks/bench_airflow.py --tasks 50 --rounds 21

Prints absolute wall times, the overhead per task and the ratio (the median of
each round's with/without ratio, with a 90% bootstrap interval that shows how
much this machine's noise leaves uncertain), and the time spent inside the
listener hooks (measured in-process, so it holds on a busy
machine where the wall-clock ratio is noisy). ``--quick`` runs 10 tasks for
one round; options given explicitly win. ``--json PATH`` writes the figures
for ``run_all.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import Figure, add_arguments, paired_overhead, report

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


class _HookClock:
    """Time spent inside Airflow's listener hooks (pluggy's hook-call monitoring).

    Under ``dag.test()`` every hook runs in this thread, so this is the time the
    listener takes away from the tasks, free of the machine's noise.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._starts: list[float] = []

    def before(self, hook_name, hook_impls, kwargs) -> None:
        self._starts.append(time.perf_counter())

    def after(self, outcome, hook_name, hook_impls, kwargs) -> None:
        self.seconds += time.perf_counter() - self._starts.pop()

    def install(self) -> None:
        from airflow.listeners.listener import get_listener_manager as core_manager
        from airflow.sdk.listener import get_listener_manager as task_manager

        for manager in {id(m): m for m in (core_manager(), task_manager())}.values():
            manager.pm.add_hookcall_monitoring(self.before, self.after)


def _run(dag, enabled: bool) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (every thread) of one dag.test()."""
    import flowrecord

    os.environ["FLOWRECORD_DISABLED"] = "0" if enabled else "1"
    started, cpu = time.perf_counter(), time.process_time()
    dag_run = dag.test()
    if enabled:
        flowrecord.flush(30)  # the record is part of the cost
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if dag_run.state != "success":
        raise SystemExit(f"the benchmark DAG failed: {dag_run.state}")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--tasks", type=int, help="no-op tasks in the DAG (default 50)")
    parser.add_argument("--rounds", type=int, help="runs of each mode (default 21)")
    args = parser.parse_args()
    if args.tasks is None:
        args.tasks = 10 if args.quick else 50
    if args.rounds is None:
        # dag.test() of the same DAG varies by +-20% from run to run on a shared
        # 2-core machine: a few ms per task only show in the median of many.
        args.rounds = 1 if args.quick else 21

    with tempfile.TemporaryDirectory(prefix="fr-bench-airflow-") as tmp:
        root = Path(tmp)
        _setup(root, args.tasks)
        os.chdir(root)  # code capture sees no repository: measure the listener itself
        from airflow.utils import db

        db.upgradedb()
        dag = _load_dag(root)
        _run(dag, enabled=False)  # warm-up: imports, DAG bundle sync, plugin loading
        _run(dag, enabled=True)
        clock = _HookClock()
        clock.install()
        times: dict[bool, list[float]] = {True: [], False: []}
        cpus: dict[bool, list[float]] = {True: [], False: []}
        in_hooks: dict[bool, float] = {True: 0.0, False: 0.0}
        for i in range(args.rounds):
            for enabled in (i % 2 == 0, i % 2 != 0):
                before = clock.seconds
                wall, cpu = _run(dag, enabled)
                times[enabled].append(wall)
                cpus[enabled].append(cpu)
                in_hooks[enabled] += clock.seconds - before

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
    print(f"  ratio of the medians: {with_fr / without:.3f}, {per_task_ms:+.2f} ms per task")
    overhead, low, high = paired_overhead(times[True], times[False])
    print(
        f"  overhead, median of the {args.rounds} rounds' ratios: {overhead:+.1%}"
        f" (90% interval {low:+.1%} .. {high:+.1%})"
    )
    cpu_without, cpu_with = statistics.median(cpus[False]), statistics.median(cpus[True])
    cpu_per_task_ms = (cpu_with - cpu_without) / args.tasks * 1000
    cpu_overhead, cpu_low, cpu_high = paired_overhead(cpus[True], cpus[False])
    print(
        f"  process CPU (every thread): median {cpu_without:.3f} s without, {cpu_with:.3f} s"
        f" with: {cpu_per_task_ms:+.2f} ms per task; rounds' ratios {cpu_overhead:+.1%}"
        f" (90% interval {cpu_low:+.1%} .. {cpu_high:+.1%})"
    )
    hook_ms = in_hooks[True] / (args.rounds * args.tasks) * 1000
    idle_ms = in_hooks[False] / (args.rounds * args.tasks) * 1000
    task_ms = without / args.tasks * 1000
    print(
        f"  inside the listener hooks: {hook_ms:.2f} ms per task when on, {idle_ms:.3f} ms when"
        f" off; {hook_ms / task_ms:.1%} of a no-op task's {task_ms:.1f} ms"
    )
    print(f"  task attempts recorded: {recorded}")
    figures = [
        Figure(
            "Airflow: DAG of no-op tasks, wall time",
            with_fr,
            "s",
            alternative=without,
            alternative_name="the same DAG without flowrecord",
            goal="< 2% of wall time",
            met=overhead < 0.02,
            note=(
                f"dag.test() of {args.tasks} no-op tasks, {args.rounds} rounds: "
                f"{overhead:+.1%} (median of the rounds' ratios; 90% interval "
                f"{low:+.1%} .. {high:+.1%}), {per_task_ms:+.2f} ms per task; "
                f"{recorded} task attempts recorded"
            ),
        ),
        Figure(
            "Airflow: DAG of no-op tasks, CPU time",
            cpu_with,
            "s",
            alternative=cpu_without,
            alternative_name="the same DAG without flowrecord",
            note=(
                f"process CPU, every thread: {cpu_overhead:+.1%} (90% interval "
                f"{cpu_low:+.1%} .. {cpu_high:+.1%}), {cpu_per_task_ms:+.2f} ms per task"
            ),
        ),
        Figure(
            "Airflow: time inside the listener hooks, per task",
            hook_ms,
            "ms",
            note=(
                f"{hook_ms / task_ms:.1%} of a no-op task's {task_ms:.1f} ms; "
                f"{idle_ms:.3f} ms with flowrecord off"
            ),
        ),
    ]
    report("bench_airflow", figures, json_path=args.json)
    return 0


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _airflow_version() -> str:
    import airflow

    return airflow.__version__


if __name__ == "__main__":
    sys.exit(main())
