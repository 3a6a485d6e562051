"""Metric points per second into MLflow: flowrecord's MLflow backend vs a plain ``mlflow.log_metric`` loop.

Both write to the same MLflow tracking server (by default a local ``mlflow
server`` on a sqlite store, started here), in one run of this script:

* plain: ``mlflow.log_metric`` in a loop, one HTTP request per point, as a
  training script that logs through MLflow's fluent API does;
* flowrecord: ``flowrecord.log_metric`` in a task with ``FLOWRECORD_BACKENDS=mlflow``;
  the clock stops when every point is in MLflow (``flowrecord.flush``), and the
  count is checked with ``MlflowClient.get_metric_history``.

It prints absolute times, points per second, the user thread's cost per call,
and the ratio (goal: flowrecord at least 10x the plain loop). ``--quick`` logs
2,000 points through flowrecord and 50 through the plain loop; options given
explicitly win. ``--json PATH`` writes the figures for ``run_all.py``.

    uv run --no-sync python benchmarks/bench_mlflow.py [--points 20000] [--plain-points 500]
        [--tracking-uri http://host:5000] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import Figure, add_arguments, at_least, report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_server(workdir: Path) -> Iterator[str]:
    """A ``mlflow server`` on a sqlite store with served artifacts, for the length of the block."""
    import requests

    port = _free_port()
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(workdir / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((workdir / "server.log").read_text()[-2000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def bench_plain(url: str, points: int) -> float:
    """Seconds for *points* calls of ``mlflow.log_metric`` in one run."""
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench-plain")
    with mlflow.start_run():
        mlflow.log_metric("warmup", 0.0)
        t0 = time.perf_counter()
        for step in range(points):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        return time.perf_counter() - t0


def bench_flowrecord(url: str, points: int, home: Path) -> tuple[float, float, str]:
    """(seconds until all *points* are in MLflow, seconds of the logging loop, task id)."""
    os.environ.update(
        FLOWRECORD_HOME=str(home),
        FLOWRECORD_BACKENDS="mlflow",
        MLFLOW_TRACKING_URI=url,
        FLOWRECORD_CAPTURE_CODE="0",
        FLOWRECORD_SYSTEM_SAMPLING="0",
    )
    import flowrecord

    # Warm up: import MLflow in the worker, create the experiment and the client.
    with flowrecord.run("bench-flowrecord", "warmup"), flowrecord.task("warmup"):
        flowrecord.log_metric("warmup", 0.0)
    if not flowrecord.flush(timeout=300):
        raise RuntimeError("warm-up did not reach MLflow")
    t0 = time.perf_counter()
    with flowrecord.run("bench-flowrecord", "measured"), flowrecord.task("train") as task:
        for step in range(points):
            flowrecord.log_metric("loss", 1.0 / (step + 1), step=step)
        loop = time.perf_counter() - t0
    if not flowrecord.flush(timeout=600):
        raise RuntimeError("flowrecord did not deliver within 600 s")
    total = time.perf_counter() - t0
    flowrecord.shutdown()
    return total, loop, task.task_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--points", type=int, help="points through flowrecord (default 20,000)")
    parser.add_argument("--plain-points", type=int, help="points through log_metric (500)")
    parser.add_argument("--tracking-uri", help="an existing tracking server (default: start one)")
    args = parser.parse_args()
    if args.points is None:
        args.points = 2_000 if args.quick else 20_000
    if args.plain_points is None:
        args.plain_points = 50 if args.quick else 500
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    workdir = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    try:
        with contextlib.ExitStack() as stack:
            url = args.tracking_uri or stack.enter_context(local_server(workdir))
            plain_s = bench_plain(url, args.plain_points)
            fr_s, loop_s, task_id = bench_flowrecord(url, args.points, workdir / "home")
            from mlflow import MlflowClient

            client = MlflowClient(url)
            experiment = client.get_experiment_by_name("bench-flowrecord")
            (run,) = client.search_runs(
                [experiment.experiment_id], f"tags.`flowrecord.task_id` = '{task_id}'"
            )
            delivered = len(client.get_metric_history(run.info.run_id, "loss"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    plain_rate = args.plain_points / plain_s
    fr_rate = args.points / fr_s
    print(
        f"tracking server: {'given' if args.tracking_uri else 'local mlflow server, sqlite store'}"
    )
    print(
        f"plain mlflow.log_metric : {args.plain_points:>7} points in {plain_s:8.2f} s "
        f"= {plain_rate:10.0f} points/s ({1e3 * plain_s / args.plain_points:.2f} ms per call)"
    )
    print(
        f"flowrecord -> MLflow    : {args.points:>7} points in {fr_s:8.2f} s "
        f"= {fr_rate:10.0f} points/s (delivered and counted: {delivered})"
    )
    print(
        f"flowrecord user thread  : {1e6 * loop_s / args.points:.2f} us per log_metric call "
        f"({loop_s:.3f} s for the loop)"
    )
    print(f"ratio flowrecord / plain: {fr_rate / plain_rate:.1f}x (goal >= 10x)")
    server = "the given server" if args.tracking_uri else "a local mlflow server, sqlite store"
    figures = [
        Figure(
            "metric points through the MLflow backend",
            fr_rate,
            "points/s",
            alternative=plain_rate,
            alternative_name="mlflow.log_metric loop, same server",
            better="higher",
            goal=">= 10x",
            met=at_least(fr_rate / plain_rate, 10),
            note=(
                f"{args.points:,} points until all are in MLflow ({delivered:,} counted) "
                f"against {args.plain_points:,}; {server}"
            ),
        ),
        Figure(
            "log_metric cost to the caller, MLflow backend",
            1e6 * loop_s / args.points,
            "us",
            alternative=1e6 * plain_s / args.plain_points,
            alternative_name="mlflow.log_metric",
        ),
    ]
    report("bench_mlflow", figures, json_path=args.json)
    if delivered != args.points:
        raise SystemExit(f"expected {args.points} points in MLflow, found {delivered}")


if __name__ == "__main__":
    main()
