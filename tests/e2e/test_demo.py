"""The demo `make demo` runs: its driver, on the quickest orchestrator, end to end.

The full demo runs all three examples twice (each also has its own e2e test);
here ``examples/demo.py --only dagster`` runs into a fresh home, and its output
must show both gate outcomes and the champion's explanation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_twice_and_explains_the_champion(tmp_path: Path):
    """Week 1 promotes, drifted week 2 is refused with a reason, explain names the champion."""
    home = tmp_path / "demo-home"
    env = {**os.environ, "FLOWRECORD_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--only", "dagster"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    lines = out.splitlines()
    (week1,) = [line for line in lines if line.startswith("dagster  week 1")]
    (week2,) = [line for line in lines if line.startswith("dagster  week 2")]
    assert week1.endswith("version 1 promoted to champion")
    assert "version 2 refused:" in week2 and "refused: pass" not in week2
    assert "churn version 1 (champion)" in out
    assert (home / "flowrecord.db").exists() and (home / ".flowrecord-demo").exists()

    # A second demo starts afresh in its own home; a directory it did not make is refused.
    again = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--only", "dagster"],
        cwd=tmp_path,
        env={**env, "FLOWRECORD_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode != 0 and "was not made by the demo" in again.stderr
