"""docs/lifecycle.md stays true: its Python runs as written and its commands parse."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.integration


def test_the_python_snippets_run_in_order_and_print_what_the_comments_say(tmp_path: Path):
    """All ```python blocks, run in one fresh process and home, succeed with the shown output."""
    code = "\n".join(re.findall(r"```python\n(.*?)```", DOC, flags=re.S))
    env = {
        **os.environ,
        "FLOWRECORD_HOME": str(tmp_path / "home"),
        "FLOWRECORD_CAPTURE_CODE": "0",
        "FLOWRECORD_BACKENDS": "local",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "1 0.86 ['train']",
        "pass: version 1 is now champion",
        "auc/slice=young = 0.76 vs champion 0.82: regressed by 0.06 (allowed 0.02)",
        "-0.0022 0.0001",
        "1 3\n",
        "('2', 'careful', False)",
        "retrain\n",
        "churn 1 rollback",
        "[('airflow', 'build_features')]",
    ):
        assert expected in out, (expected, out)
    assert "<svg" in (tmp_path / "churn-report.html").read_text(encoding="utf-8")


def test_the_documented_commands_parse(monkeypatch: pytest.MonkeyPatch):
    """Every `$ flowrecord ...` line of the doc is a valid command line."""
    from flowrecord import cli

    if "flowrecord.lifecycle.cli" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "flowrecord.lifecycle.cli")
        )
    parser = cli.build_parser()
    lines = re.findall(r"^\$ flowrecord (.*?)(?:\s+#.*)?$", DOC, flags=re.M)
    assert len(lines) >= 8
    for line in lines:
        args = parser.parse_args(shlex.split(line))
        assert callable(args._run), line
