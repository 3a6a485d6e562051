"""The README's snippets and commands stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.unit


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a markdown text, in order."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_readme_python_snippet_runs(index: int, tmp_path: Path):
    """Each python snippet of the README runs as written, in a fresh process and home."""
    code = python_blocks(README)[index]
    env = {**os.environ, "FLOWRECORD_HOME": str(tmp_path / "home"), "FLOWRECORD_CAPTURE_CODE": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_names_the_two_commands_and_ci_calls_the_test_one():
    """The README gives `make demo` and `make test`, and .ci/run calls `make test`."""
    assert "make demo" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, flags=re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


def test_reliability_table_names_tests_that_exist():
    """Every test the README's reliability table cites exists, so the table cannot rot."""
    section = README.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"`((?:tests/[\w/]+/)?test_\w+\.py)(?:::(\w+))?`", section)
    assert len(cited) >= 8
    root = Path(__file__).resolve().parent
    for file, name in cited:
        path = root.parent / file if file.startswith("tests/") else root / "reliability" / file
        assert path.exists(), f"README cites {file}, which does not exist"
        if name:
            assert f"def {name}(" in path.read_text(), f"README cites {file}::{name}"
