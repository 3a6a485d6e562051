"""The benchmarks run: each script, with --quick --json, writes the figures run_all.py combines.

Benchmarks are not tests: no number is checked against a goal here, only that
each script runs to the end, prints its table and writes every headline figure
(by name) as JSON, and that run_all.py folds the scripts' figures into one
table. Sizes below ``--quick`` are passed where they save time (options given
explicitly win over ``--quick``): the numbers mean nothing, the names do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

#: Per script: the figures it must write, and options that make the smoke run shorter.
SCRIPTS: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "bench_core": (
        (
            "import flowrecord",
            "import the Airflow plugin at task start",
            "open + close a task (sampler + code capture)",
            "open + close a task, until committed",
            "log_metric cost to the caller",
            "metric points into the local store, end to end",
            "metric points, against a plain log_metric loop",
            "metric points, against the SQLite floor",
        ),
        # MLflow's import alone takes seconds: the alternative is not smoked here.
        ["--no-mlflow", "--points", "20000"],
    ),
    "bench_mlflow": (
        (
            "metric points through the MLflow backend",
            "log_metric cost to the caller, MLflow backend",
        ),
        ["--points", "500", "--plain-points", "10"],
    ),
    "bench_airflow": (
        (
            "Airflow: DAG of no-op tasks, wall time",
            "Airflow: time inside the listener hooks, per task",
        ),
        ["--tasks", "3"],
    ),
    "bench_dagster": (
        ("Dagster: trivial assets, wall time", "Dagster: trivial assets, CPU time"),
        ["--assets", "3"],
    ),
    "bench_metaflow": (
        ("Metaflow: run of no-op tasks, wall time", "Metaflow: run of no-op tasks, CPU time"),
        ["--foreach", "1"],
    ),
}

#: The two quickest scripts run through run_all.py, which must combine them.
COMBINED: dict[str, tuple[str, ...]] = {
    "bench_fingerprint": (
        "fingerprint a table, against hash_pandas_object",
        "fingerprint a pandas DataFrame, against hash_pandas_object",
        "fingerprint a table, against MLflow's dataset digest",
        "fingerprint a table, against a plain memory read",
        "fingerprint a table, against hashing the raw buffers",
        "fingerprint a table with 10% nulls",
        "peak extra memory while fingerprinting and profiling a table",
        "profile a table",
        "profile one float64 column",
    ),
    "bench_validation": (
        "pandera through flowrecord, pandas, passing",
        "pandera through flowrecord, pandas, 1% failing",
        "pandera through flowrecord, polars, passing",
        "pandera through flowrecord, polars, 1% failing",
        "drift (PSI + KS) of a whole table",
        "drift (PSI + KS) of one column",
    ),
}

#: Figures that carry a goal of the benchmark issue: they must say whether it is met.
WITH_GOAL = {
    "import flowrecord",
    "open + close a task (sampler + code capture)",
    "log_metric cost to the caller",
    "metric points into the local store, end to end",
    "metric points through the MLflow backend",
    "fingerprint a table, against hash_pandas_object",
    "peak extra memory while fingerprinting and profiling a table",
    "profile a table",
    "pandera through flowrecord, pandas, passing",
    "drift (PSI + KS) of a whole table",
    "Airflow: DAG of no-op tasks, wall time",
    "Dagster: trivial assets, wall time",
    "Metaflow: run of no-op tasks, wall time",
}


def _run(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWRECORD_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _table(stdout: str) -> str:
    lines = stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["figure", "flowrecord"]]
    assert headers, f"no table printed:\n{stdout[-3000:]}"
    return "\n".join(lines[headers[-1] :])


def _check_figures(figures: list[dict], expected: tuple[str, ...]) -> None:
    by_name = {f["name"]: f for f in figures}
    missing = [name for name in expected if name not in by_name]
    assert not missing, f"figures missing: {missing}; written: {sorted(by_name)}"
    for name in expected:
        figure = by_name[name]
        assert figure["flowrecord"] is not None, f"{name}: no number"
        if name in WITH_GOAL:
            assert figure["goal"], f"{name}: no goal"
            assert isinstance(figure["met"], bool), f"{name}: met is {figure['met']!r}"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_quick_writes_its_figures(tmp_path: Path, script: str) -> None:
    """A bench script run with --quick --json exits 0, prints its table and writes every figure."""
    expected, extra = SCRIPTS[script]
    out = tmp_path / f"{script}.json"
    proc = _run(
        tmp_path,
        str(BENCHMARKS / f"{script}.py"),
        "--quick",
        "--json",
        str(out),
        *extra,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = _table(proc.stdout)
    for name in expected:
        assert name in table, f"{name!r} missing from the table:\n{table}"
    data = json.loads(out.read_text())
    assert data["script"] == script
    _check_figures(data["figures"], expected)


def test_run_all_quick_combines_the_scripts_figures(tmp_path: Path) -> None:
    """run_all.py --quick prints one table, and the markdown, with the figures of every script run."""
    results = tmp_path / "latest.json"
    proc = _run(
        tmp_path,
        str(BENCHMARKS / "run_all.py"),
        "--quick",
        "--only",
        *(name.removeprefix("bench_") for name in COMBINED),
        "--results",
        str(results),
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(results.read_text())
    assert [s["script"] for s in data["scripts"]] == [f"{name}.py" for name in COMBINED]
    assert all("--quick" in s["args"] and "--json" in s["args"] for s in data["scripts"])
    everything = tuple(name for names in COMBINED.values() for name in names)
    _check_figures(data["figures"], everything)
    combined, markdown = proc.stdout.rsplit("\nmarkdown:\n", 1)
    table = _table(combined)
    assert "(--quick sizes)" in combined
    for name in everything:
        assert name in table, f"{name!r} missing from the combined table:\n{table}"
        assert f"| {name} |" in markdown, f"{name!r} missing from the markdown:\n{markdown}"
    assert "Measured " in markdown and " CPUs (" in markdown
    assert "goals met: " in markdown


def test_paired_overhead_reads_a_known_shift_and_refuses_unpaired_rounds(monkeypatch) -> None:
    """Rounds 3% slower with flowrecord read +3%, inside an interval; unequal rounds are refused."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _common import paired_overhead

    # A drifting machine: each round slower than the last, both variants alike.
    without = [1.0 + 0.05 * i + (0.01 if i % 3 == 0 else -0.01) for i in range(21)]
    with_ = [w * 1.03 for w in without]
    estimate, low, high = paired_overhead(with_, without)
    assert abs(estimate - 0.03) < 1e-9
    assert low <= estimate <= high
    # One round hit by a burst of noise does not move the estimate.
    with_[7] *= 1.5
    assert abs(paired_overhead(with_, without)[0] - 0.03) < 1e-9
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        paired_overhead(with_[:-1], without)
