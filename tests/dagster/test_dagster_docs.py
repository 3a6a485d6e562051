"""docs/dagster.md stays true: its snippets run, in order, as one script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "dagster.md"

pytestmark = pytest.mark.integration


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a markdown text, in order."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_dagster_doc_snippets_run_in_order(tmp_path: Path):
    """Every python snippet of docs/dagster.md runs, in a fresh process and home."""
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    script = tmp_path / "doc_snippets.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(FLOWRECORD_HOME=str(tmp_path / "home"), FLOWRECORD_CAPTURE_CODE="0")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "flowrecord_schema False 1" in proc.stdout
