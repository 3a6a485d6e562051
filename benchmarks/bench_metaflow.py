"""What ``--with flowrecord`` costs a Metaflow run, per task, against the same run without it.

Writes a flow of no-op steps (``start``, a linear step, the foreach split, a
foreach of ``--foreach`` tasks and its join, ``end``) into a scratch directory with a
local datastore, and runs it ``--repeat`` times without and with
``--with flowrecord``, alternating, in one go. For each it prints the wall
time of the run and the CPU time of all its processes (the launcher and every
task process: Metaflow runs each task in its own), then both per task and the
ratio. Each figure is the best of the repeats: on a shared machine the minimum
is the least noisy estimate, and CPU time is steadier than wall time.

``--quick`` runs a foreach of 3, once each; options given explicitly win.
``--json PATH`` writes the figures for ``run_all.py``.

    uv run --no-sync python benchmarks/bench_metaflow.py
    uv run --no-sync python benchmarks/bench_metaflow.py --foreach 10 --repeat 5 --max-workers 4
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Figure, add_arguments, bytecode_cache_env, report

FLOW = """
from metaflow import FlowSpec, step


class BenchFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range({n}))
        self.next(self.prepare)

    @step
    def prepare(self):
        self.ready = True
        self.next(self.fan_out)

    @step
    def fan_out(self):
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.result = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = [i.result for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BenchFlow()
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(flow: Path, root: Path, env: dict[str, str], args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every process) of one ``run``."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(flow), "--no-pylint", "--quiet", "run", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"the flow failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument(
        "--foreach", type=int, help="tasks in the foreach (default 45: 50 tasks in all)"
    )
    parser.add_argument("--repeat", type=int, help="runs of each variant (default 3)")
    parser.add_argument("--max-workers", type=int, default=1, help="Metaflow --max-workers")
    opts = parser.parse_args()
    if opts.foreach is None:
        opts.foreach = 3 if opts.quick else 45
    if opts.repeat is None:
        opts.repeat = 1 if opts.quick else 3

    with tempfile.TemporaryDirectory(prefix="bench-metaflow-") as scratch:
        root = Path(scratch)
        (root / ".metaflow").mkdir()
        flow = root / "bench_flow.py"
        flow.write_text(FLOW.format(n=opts.foreach))
        env = {
            **os.environ,
            "METAFLOW_HOME": str(root / "config"),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root),
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
            "USERNAME": os.environ.get("USERNAME", "bench"),
            "FLOWRECORD_HOME": str(root / "flowrecord"),
            "FLOWRECORD_CAPTURE_CODE": "0",  # a one-off per run, not per task
        }
        # Every task is a new Python process: without cached bytecode each one would
        # compile every module it imports, Metaflow's and flowrecord's alike, which no
        # installed package does. The warm-up runs (one of each variant) write it.
        for key, value in bytecode_cache_env(
            os.environ.get("PYTHONPYCACHEPREFIX") or root / "pycache"
        ).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        tasks = 5 + opts.foreach
        common = ["--max-workers", str(opts.max_workers)]
        variants = {"without": common, "with flowrecord": [*common, "--with", "flowrecord"]}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for args in variants.values():  # warm the file cache and bytecode
            run_once(flow, root, env, args)
        for _ in range(opts.repeat):
            for name, args in variants.items():
                results[name].append(run_once(flow, root, env, args))

    print(
        f"Metaflow flow: {tasks} tasks (foreach of {opts.foreach}), --max-workers "
        f"{opts.max_workers}, best of {opts.repeat} runs, {os.cpu_count()} CPUs"
    )
    print(f"{'':18}{'wall s':>9}{'CPU s':>9}{'wall/task':>11}{'CPU/task':>10}")
    best = {}
    for name, runs in results.items():
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        best[name] = (wall, cpu)
        print(f"{name:18}{wall:9.2f}{cpu:9.2f}{wall / tasks:11.3f}{cpu / tasks:10.3f}")
    (w0, c0), (w1, c1) = best["without"], best["with flowrecord"]
    print(
        f"overhead per task: wall {(w1 - w0) / tasks * 1000:+.0f} ms, "
        f"CPU {(c1 - c0) / tasks * 1000:+.0f} ms; ratio wall {w1 / w0:.2f}x, CPU {c1 / c0:.2f}x"
    )
    setting = (
        f"{tasks} no-op tasks (foreach of {opts.foreach}), --max-workers {opts.max_workers}, "
        f"best of {opts.repeat}"
    )
    figures = [
        Figure(
            "Metaflow: run of no-op tasks, wall time",
            w1,
            "s",
            alternative=w0,
            alternative_name="the same run without --with flowrecord",
            goal="< 2% of wall time",
            met=w1 / w0 - 1 < 0.02,
            note=f"{setting}: {w1 / w0 - 1:+.1%}, {(w1 - w0) / tasks * 1000:+.0f} ms per task",
        ),
        Figure(
            "Metaflow: run of no-op tasks, CPU time",
            c1,
            "s",
            alternative=c0,
            alternative_name="the same run without --with flowrecord",
            note=f"{(c1 - c0) / tasks * 1000:+.0f} ms CPU per task",
        ),
    ]
    report("bench_metaflow", figures, json_path=opts.json)


if __name__ == "__main__":
    main()
