"""Backends as plugins: discovery by entry point, third-party packages, the hook surface."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowrecord import hookspecs
from flowrecord.plugins import BackendNotFound, available_backends, load_backend

pytestmark = pytest.mark.unit

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("flowrecord_"))


def test_builtin_backends_register_through_entry_points():
    """The local, mlflow and openlineage backends are found like any third-party plugin."""
    found = available_backends()
    assert {"local", "mlflow", "openlineage"} <= set(found)
    assert found["local"] == "flowrecord.backends.local:LocalBackend"


def test_unknown_backend_names_what_is_installed():
    """Asking for a backend that is not installed says which ones are."""
    with pytest.raises(BackendNotFound, match=r"installed: .*local"):
        load_backend("does-not-exist")


def test_every_hook_is_documented():
    """Each hook spec has a docstring with a versionadded note."""
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40, name
        assert "versionadded" in doc, name


def test_every_hook_is_exercised_by_a_test():
    """Each hook name appears in at least one test file other than this one."""
    tests = Path(__file__).resolve().parents[1]
    corpus = "\n".join(
        p.read_text(encoding="utf-8", errors="ignore")
        for p in tests.rglob("test_*.py")
        if p.name != Path(__file__).name
    )
    missing = [n for n in HOOKS if n not in corpus]
    assert not missing, f"hooks without a test: {missing}"


_PLUGIN = textwrap.dedent(
    '''
    """A third-party flowrecord backend that appends every event to a JSON-lines file."""
    import json, os
    import pluggy

    hookimpl = pluggy.HookimplMarker("flowrecord")


    class JsonLinesBackend:
        def __init__(self):
            self.path = os.environ["JSONL_BACKEND_PATH"]

        def _write(self, events):
            with open(self.path, "a") as fh:
                for e in events:
                    fh.write(json.dumps({"kind": e.kind, "event_id": e.event_id}) + "\\n")

        @hookimpl
        def flowrecord_metrics_logged(self, metrics):
            self._write(metrics)

        @hookimpl
        def flowrecord_task_finished(self, tasks):
            self._write(tasks)
    '''
)


def _install_fake_distribution(site: Path) -> None:
    """Lay the plugin out exactly as an installer would: module + dist-info with entry points."""
    (site / "jsonl_backend.py").write_text(_PLUGIN)
    info = site / "flowrecord_jsonl-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowrecord-jsonl\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[flowrecord.backends]\njsonl = jsonl_backend:JsonLinesBackend\n"
    )
    (info / "RECORD").write_text("")


def test_third_party_backend_package_is_discovered_and_fed(tmp_path: Path):
    """A separately installed package adds a backend without touching flowrecord."""
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_distribution(site)
    out = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "FLOWRECORD_HOME": str(tmp_path / "home"),
        "FLOWRECORD_BACKENDS": "local,jsonl",
        "FLOWRECORD_CAPTURE_CODE": "0",
        "JSONL_BACKEND_PATH": str(out),
    }
    script = (
        "import flowrecord\n"
        "with flowrecord.run('p'), flowrecord.task('t'):\n"
        "    flowrecord.log_metrics({'a': 1, 'b': 2})\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert kinds == ["metric", "metric", "task"]


def test_trace_env_var_logs_hook_calls(tmp_path: Path):
    """FLOWRECORD_TRACE=1 logs every hook call, for debugging a backend."""
    env = {
        **os.environ,
        "FLOWRECORD_HOME": str(tmp_path / "home"),
        "FLOWRECORD_TRACE": "1",
        "FLOWRECORD_CAPTURE_CODE": "0",
    }
    script = (
        "import logging, flowrecord\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "with flowrecord.run('p'), flowrecord.task('t'):\n"
        "    flowrecord.log_metric('a', 1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "flowrecord_metrics_logged" in proc.stderr


def test_builtin_shortcut_matches_the_declared_entry_points():
    """The fast path for built-in backends names exactly what core's entry points declare."""
    from flowrecord.plugins import BUILTIN_BACKENDS

    declared = available_backends()
    assert {k: declared[k] for k in BUILTIN_BACKENDS} == BUILTIN_BACKENDS
