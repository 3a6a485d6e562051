"""The Python snippets of docs/backends.md run as written, in order, and print what they claim."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flowrecord import recorder
from flowrecord.config import reset_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_backends_doc_snippets_run(tmp_path, monkeypatch, capsys):
    """Every snippet runs in a scratch directory; MLflow and OpenLineage hold the example's record."""
    snippets = _snippets()
    assert len(snippets) >= 4
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("OPENLINEAGE", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "FLOWRECORD_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWRECORD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWRECORD_CAPTURE_CODE", "0")
    recorder.shutdown()
    reset_config()
    namespace: dict[str, object] = {"__name__": "__doc__"}
    try:
        for snippet in snippets:
            exec(compile(snippet, str(DOC), "exec"), namespace)
    finally:
        recorder.shutdown()
        reset_config()
    out = capsys.readouterr().out
    assert "train FINISHED {'max_depth': '6'}" in out
    assert "[(0, 0.9), (1, 0.5), (2, 0.3)]" in out
    assert "['customers']" in out
    assert "START churn []" in out
    assert "COMPLETE churn.train ['customers']" in out
    lines = out.splitlines()
    assert "1" in lines  # the champion alias points at version 1
