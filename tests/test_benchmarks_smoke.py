"""The benchmarks run: bench_core.py --quick prints its table and writes its figures.

Benchmarks are not tests: no number is checked against a goal here, only that
the script runs to the end and says what it measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FIGURES = (
    "import flowrecord",
    "open + close a task (sampler + code capture)",
    "open + close a task, until committed",
    "log_metric cost to the caller",
    "metric points into the local store, end to end",
)


@pytest.mark.slow
def test_bench_core_quick_prints_its_table(tmp_path: Path):
    """bench_core.py --quick exits 0, prints the table with every figure, and writes them as JSON."""
    out = tmp_path / "core.json"
    env = {**os.environ, "FLOWRECORD_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_core.py"),
            "--quick",
            "--no-mlflow",  # MLflow's import alone takes seconds: the alternative is not smoked
            "--points",
            "20000",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["figure", "flowrecord"]]
    assert headers, f"no table printed:\n{proc.stdout[-3000:]}"
    table = "\n".join(lines[headers[-1] :])
    for name in FIGURES:
        assert name in table, f"{name!r} missing from the table:\n{table}"
    data = json.loads(out.read_text())
    assert data["script"] == "bench_core"
    figures = {f["name"]: f for f in data["figures"]}
    assert set(FIGURES) <= set(figures)
    assert all(figures[name]["flowrecord"] is not None for name in FIGURES)
