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


def test_builtin_marker_sets_what_pluggy_sets():
    """The pluggy-free marker of the built-in backends leaves the attribute pluggy's marker does."""
    import pluggy

    from flowrecord._impl import IMPL_ATTRIBUTE, hookimpl

    def ours():
        pass

    def theirs():
        pass

    hookimpl(ours)
    pluggy.HookimplMarker("flowrecord")(theirs)
    assert getattr(ours, IMPL_ATTRIBUTE) == theirs.flowrecord_impl


def test_a_process_on_builtin_backends_imports_no_pluggy(tmp_path: Path):
    """Recording a task to the local store goes without pluggy; the registry still gets it.

    Each short task process of Metaflow paid for importing pluggy and building a
    plugin manager (about 6 ms); the built-in backend is called directly.
    """
    script = textwrap.dedent(
        """
        import sys
        import flowrecord
        from flowrecord import recorder
        with flowrecord.run("pipe", "no-pluggy"), flowrecord.task("t"):
            flowrecord.log_metric("m", 1.0)
        assert flowrecord.flush(10)
        assert "pluggy" not in sys.modules, "pluggy was imported"
        rt = recorder.get_runtime()
        assert rt.local_store() is not None
        # Who asks for the plugin manager gets one, with the local backend in it.
        assert rt.pm.get_plugin("local") is not None and "pluggy" in sys.modules
        from flowrecord.backends.local import LocalStore
        store = LocalStore(rt.config.home)
        assert store.query("SELECT count(*) AS n FROM metric_points")[0]["n"] == 1
        print("ok")
        """
    )
    env = {**os.environ, "FLOWRECORD_HOME": str(tmp_path / "home"), "FLOWRECORD_CAPTURE_CODE": "0"}
    env.pop("FLOWRECORD_BACKENDS", None)
    env.pop("FLOWRECORD_TRACE", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_direct_callers_answer_as_a_one_plugin_subset_does(tmp_path: Path):
    """The same answers and the same stored record as pluggy's caller; [] for a hook not there.

    Like pluggy, an implementation gets only the arguments it declares, and an
    unmarked method of the same name is not a hook.
    """
    from _bursts import task_burst

    from flowrecord._impl import hookimpl
    from flowrecord.backends.local import LocalBackend, LocalStore
    from flowrecord.dispatcher import DirectCallers, send_batch, subset_callers
    from flowrecord.plugins import make_plugin_manager

    class Narrow:
        """Declares fewer arguments than the spec passes, and one unmarked method."""

        def __init__(self) -> None:
            self.ended = 0

        @hookimpl
        def flowrecord_batch_end(self) -> None:
            self.ended += 1

        def flowrecord_batch_begin(self) -> bool:  # not marked: not an implementation
            raise AssertionError("an unmarked method was called")

    events = task_burst("direct-or-not", 3, metrics=2)
    stored = {}
    for label in ("direct", "pluggy"):
        backend = LocalBackend(tmp_path / label)
        narrow = Narrow()
        if label == "direct":
            callers, narrow_callers = DirectCallers(backend), DirectCallers(narrow)
        else:
            pm = make_plugin_manager([("local", backend), ("narrow", narrow)])
            callers, narrow_callers = subset_callers(pm, "local"), subset_callers(pm, "narrow")
        callers("flowrecord_backend_configure")(config={"home": str(tmp_path / label)})
        assert callers("flowrecord_batch_begin")() == [True]
        assert callers("flowrecord_batch_end")(ok=True) == []
        send_batch(callers, events)
        assert narrow_callers("flowrecord_batch_end")(ok=True) == [] and narrow.ended == 1
        assert narrow_callers("flowrecord_batch_begin")() == []
        store = LocalStore(tmp_path / label)
        stored[label] = [
            tuple(r)
            for table in ("runs", "tasks", "metric_points")
            for r in store.query(f"SELECT * FROM {table} ORDER BY 1")
        ]
    assert stored["direct"] == stored["pluggy"] and len(stored["direct"]) == 1 + 3 + 6
    # A hook the plugin does not implement is nobody's business.
    assert DirectCallers(Narrow())("flowrecord_no_such_hook")(anything=1) == []
