"""The recorder: ambient context, deterministic ids, events per call, implicit runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import flowrecord
from flowrecord import recorder
from flowrecord._ids import new_event_id, run_id_for, task_id_for
from flowrecord.backends.local import LocalStore
from flowrecord.events import State

pytestmark = pytest.mark.unit


def test_ids_are_deterministic_and_distinct():
    """Run and task ids depend only on the orchestrator's identity."""
    a = run_id_for("airflow", "dag", "manual__1")
    assert a == run_id_for("airflow", "dag", "manual__1")
    assert a != run_id_for("dagster", "dag", "manual__1")
    assert task_id_for(a, "t", 1, None) == task_id_for(a, "t", 1, None)
    assert task_id_for(a, "t", 1, None) != task_id_for(a, "t", 2, None)
    assert task_id_for(a, "t", 1, 0) != task_id_for(a, "t", 1, None)
    assert uuid.UUID(a).version == 5


def test_event_ids_are_uuid7_unique_and_sorted():
    """Event ids are UUIDv7, unique, and increase within a thread."""
    ids = [new_event_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    parsed = uuid.UUID(hex=ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_task_context_routes_metrics(recording):
    """A metric logged inside a task lands in that task; outside, in the run."""
    with flowrecord.run("pipe", "r1") as run:
        flowrecord.log_metric("run_level", 1.0)
        with flowrecord.task("train") as task:
            assert flowrecord.current_task() is task
            flowrecord.log_metric("auc", 0.9, step=3)
        assert flowrecord.current_task() is None
    flowrecord.flush(5)
    metrics = {m.key: m for m in recording.events("metric")}
    assert metrics["auc"].task_id == task.task_id
    assert metrics["auc"].run_id == run.run_id
    assert metrics["auc"].step == 3
    assert metrics["run_level"].task_id is None
    states = [(e.kind, e.state) for e in recording.events() if e.kind in ("run", "task")]
    assert states == [
        ("run", State.STARTED),
        ("task", State.STARTED),
        ("task", State.SUCCEEDED),
        ("run", State.SUCCEEDED),
    ]


def test_failing_task_records_error_and_reraises(recording):
    """An exception in a task body marks the task and run failed and propagates unchanged."""
    with pytest.raises(ZeroDivisionError), flowrecord.run("pipe"), flowrecord.task("boom"):
        1 / 0  # noqa: B018
    flowrecord.flush(5)
    task_end = next(e for e in recording.events("task") if e.state is not State.STARTED)
    assert task_end.state is State.FAILED
    assert task_end.error.startswith("ZeroDivisionError")
    assert task_end.duration_s is not None and task_end.duration_s >= 0
    run_end = next(e for e in recording.events("run") if e.state is not State.STARTED)
    assert run_end.state is State.FAILED


def test_each_thread_keeps_its_own_task(recording):
    """Eight threads, each in its own task, never log into each other's task."""
    run = flowrecord.start_run("threads", "r")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with flowrecord.task(f"t{i}", run=run) as t:
                for step in range(50):
                    flowrecord.log_metric("i", float(i), step=step)
                assert flowrecord.current_task() is t
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flowrecord.end_run(run)
    flowrecord.flush(5)
    assert not errors
    by_task: dict[str, set[float]] = {}
    for m in recording.events("metric"):
        by_task.setdefault(m.task_id, set()).add(m.value)
    assert len(by_task) == 8
    assert all(len(values) == 1 for values in by_task.values())


def test_user_thread_inside_single_task_logs_into_it(recording):
    """A thread started by user code inside the only open task logs into that task."""
    with flowrecord.run("p"), flowrecord.task("t") as task:
        worker = threading.Thread(target=lambda: flowrecord.log_metric("from_thread", 1))
        worker.start()
        worker.join()
    flowrecord.flush(5)
    (metric,) = recording.events("metric")
    assert metric.task_id == task.task_id


def test_same_identity_in_two_processes_converges(flowrecord_home: Path):
    """Two processes opening the same run and task produce one run record and one task."""
    script = (
        "import flowrecord;"
        "r=flowrecord.start_run('pipe','run-7',orchestrator='airflow');"
        "t=flowrecord.start_task('extract', try_number=1);"
        "flowrecord.log_metric('rows', 10);"
        "flowrecord.end_task(t, flush=True)"
    )
    env = {**_env(), "FLOWRECORD_HOME": str(flowrecord_home)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    store = LocalStore(flowrecord_home)
    runs = store.query("SELECT run_id, state FROM runs")
    assert len(runs) == 1
    assert runs[0]["run_id"] == run_id_for("airflow", "pipe", "run-7")
    tasks = store.query("SELECT task_id, state FROM tasks")
    assert [(t["state"]) for t in tasks] == ["succeeded"]
    assert len(store.query("SELECT * FROM metric_points")) == 2


def test_implicit_run_in_a_plain_script(tmp_path: Path):
    """A script that only logs gets an implicit run named after it, closed at exit."""
    script = tmp_path / "train_model.py"
    script.write_text(
        "import flowrecord\nflowrecord.log_param('lr', 0.1)\nflowrecord.log_metric('loss', 0.5)\n"
    )
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, str(script)],
        check=True,
        env={**_env(), "FLOWRECORD_HOME": str(home)},
        timeout=60,
    )
    store = LocalStore(home)
    (run,) = store.query("SELECT * FROM runs")
    assert run["pipeline"] == "train_model"
    assert run["orchestrator"] == "python"
    assert run["state"] == "succeeded"
    assert store.query("SELECT value FROM params WHERE key='lr'")[0]["value"] == "0.1"


def test_implicit_run_fails_when_script_crashes(tmp_path: Path):
    """An uncaught exception marks the implicit run failed with the error."""
    script = tmp_path / "crash.py"
    script.write_text("import flowrecord\nflowrecord.log_metric('x', 1)\nraise ValueError('bad')\n")
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={**_env(), "FLOWRECORD_HOME": str(home)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1
    (run,) = LocalStore(home).query("SELECT state, error FROM runs")
    assert run["state"] == "failed"
    assert "ValueError: bad" in run["error"]


def test_nan_and_inf_metrics_are_recorded_faithfully(flowrecord_home: Path):
    """NaN and infinities are kept (a diverging loss matters) and read back as such."""
    with flowrecord.run("p"), flowrecord.task("t"):
        flowrecord.log_metric("loss", float("nan"))
        flowrecord.log_metric("grad", float("inf"))
        flowrecord.log_metric("neg", float("-inf"))
    flowrecord.flush(5)
    rows = {r["key"]: r for r in LocalStore(flowrecord_home).query("SELECT * FROM metric_points")}
    assert rows["loss"]["value"] is None and rows["loss"]["value_text"] == "nan"
    assert rows["grad"]["value_text"] == "inf"
    assert rows["neg"]["value_text"] == "-inf"


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("auc", "high", TypeError),
        ("auc", None, TypeError),
        ("auc", {"a": 1}, TypeError),
        (3, 1.0, TypeError),
        ("", 1.0, ValueError),
        ("k" * 300, 1.0, ValueError),
    ],
)
def test_bad_metrics_raise_clear_errors(flowrecord_home, key, value, error):
    """Non-numeric values and bad keys raise a clear error naming the problem."""
    with pytest.raises(error) as info:
        flowrecord.log_metric(key, value)
    assert "metric" in str(info.value)


def test_numpy_scalars_and_bools_are_numbers(recording):
    """numpy scalars and bools are accepted as metric values."""
    import numpy as np

    with flowrecord.run("p"), flowrecord.task("t"):
        flowrecord.log_metrics({"a": np.float32(0.5), "b": np.int64(3), "c": True})
    flowrecord.flush(5)
    assert {m.key: m.value for m in recording.events("metric")} == {"a": 0.5, "b": 3.0, "c": 1.0}


def test_log_metrics_is_all_or_nothing(recording):
    """One bad value in log_metrics records none of them."""
    with flowrecord.run("p"), flowrecord.task("t"), pytest.raises(TypeError):
        flowrecord.log_metrics({"good": 1.0, "bad": "x"})
    flowrecord.flush(5)
    assert recording.events("metric") == []


def test_huge_param_is_cut_with_a_warning(flowrecord_home: Path):
    """A param over 64 KiB is cut to the limit, flagged, and warned about."""
    with flowrecord.run("p"), flowrecord.task("t"):
        with pytest.warns(flowrecord.FlowrecordWarning, match="longer than"):
            flowrecord.log_param("blob", "x" * 200_000)
        flowrecord.log_param("small", {"b": 2, "a": [1, 2]})
    flowrecord.flush(5)
    rows = {r["key"]: r for r in LocalStore(flowrecord_home).query("SELECT * FROM params")}
    assert rows["blob"]["truncated"] == 1
    assert len(rows["blob"]["value"].encode()) == 65536
    assert json.loads(rows["small"]["value"]) == {"a": [1, 2], "b": 2}


def test_unicode_and_path_like_names_are_plain_data(flowrecord_home: Path):
    """Odd names (unicode, ../../etc) are stored verbatim and touch no file system path."""
    odd = "../../etc/passwd ✓ 日本"
    with flowrecord.run(odd), flowrecord.task(odd):
        flowrecord.log_metric(odd, 1.0)
        flowrecord.log_param(odd, odd)
    flowrecord.flush(5)
    store = LocalStore(flowrecord_home)
    assert store.query("SELECT pipeline FROM runs")[0]["pipeline"] == odd
    assert store.query("SELECT key FROM metric_points")[0]["key"] == odd
    assert not (flowrecord_home.parent.parent / "etc").exists()


def test_secrets_never_reach_the_store(flowrecord_home: Path):
    """Planted secrets in params and tags are redacted before any backend sees them."""
    with flowrecord.run("p", tags={"db": "postgresql://u:hunter2@db/x"}), flowrecord.task("t"):
        flowrecord.log_params({"password": "hunter2", "api_token": "tok-123456"})
        flowrecord.set_tags(aws_secret_access_key="hunter2")
    flowrecord.flush(5)
    dump = "\n".join(
        str(tuple(r))
        for table in ("params", "tags", "runs", "tasks")
        for r in LocalStore(flowrecord_home).query(f"SELECT * FROM {table}")
    )
    assert "hunter2" not in dump
    assert "tok-123456" not in dump


def test_disabled_records_nothing(tmp_path: Path):
    """FLOWRECORD_DISABLED=1 turns every call into a no-op that still validates input."""
    home = tmp_path / "home"
    script = "import flowrecord\nwith flowrecord.run('p'), flowrecord.task('t'):\n    flowrecord.log_metric('a', 1)\n"
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        timeout=60,
        env={**_env(), "FLOWRECORD_HOME": str(home), "FLOWRECORD_DISABLED": "1"},
    )
    assert not (home / "flowrecord.db").exists()


def test_end_task_is_idempotent(recording):
    """Closing a task twice sends one final event."""
    run = flowrecord.start_run("p")
    t = flowrecord.start_task("t", run=run)
    flowrecord.end_task(t)
    flowrecord.end_task(t, state=State.FAILED)
    flowrecord.end_run(run)
    flowrecord.flush(5)
    finals = [e for e in recording.events("task") if e.state is not State.STARTED]
    assert [e.state for e in finals] == [State.SUCCEEDED]


def test_system_usage_is_recorded_per_task(recording):
    """Each task attempt gets a system usage summary from its own process."""
    with flowrecord.run("p"), flowrecord.task("t") as t:
        sum(i * i for i in range(200_000))
    flowrecord.flush(5)
    (usage,) = recording.events("system")
    assert usage.task_id == t.task_id
    assert usage.summary["rss_bytes_peak"] > 0
    assert len(usage.samples) >= 1


def test_metric_value_types_survive_roundtrip(flowrecord_home: Path):
    """Metric values read back exactly as logged."""
    values = [0.0, -1.5, 1e300, 5e-324, 123456789.125]
    with flowrecord.run("p"), flowrecord.task("t"):
        for i, v in enumerate(values):
            flowrecord.log_metric("v", v, step=i)
    flowrecord.flush(5)
    rows = LocalStore(flowrecord_home).query("SELECT value FROM metric_points ORDER BY step")
    assert [r["value"] for r in rows] == values
    assert not any(math.isnan(r["value"]) for r in rows)


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("FLOWRECORD_DISABLED", None)
    env["FLOWRECORD_CAPTURE_CODE"] = "0"
    return env


def test_recorder_module_exports_are_public():
    """Everything in flowrecord.__all__ exists."""
    for name in flowrecord.__all__:
        assert hasattr(flowrecord, name), name
    assert recorder.log_metric is flowrecord.log_metric


def test_secret_inside_an_objects_text_is_redacted(flowrecord_home: Path):
    """An object whose text form carries a DSN with a password is redacted too."""

    class Settings:
        def __repr__(self) -> str:
            return "Settings(url='postgresql://app:s3cr3t-pw@db:5432/prod')"

    with flowrecord.run("p"), flowrecord.task("t"):
        flowrecord.log_param("settings", Settings())
    flowrecord.flush(5)
    (value,) = LocalStore(flowrecord_home).query("SELECT value FROM params")
    assert "s3cr3t-pw" not in value[0]
    assert "postgresql://app:" in value[0]


def test_configured_redact_patterns_apply(tmp_path: Path):
    """Key patterns from FLOWRECORD_REDACT_PATTERNS redact matching params."""
    from flowrecord.collectors.secrets import clear_patterns
    from flowrecord.testing import isolated

    home = tmp_path / "home"
    try:
        with (
            isolated(home, FLOWRECORD_CAPTURE_CODE="0", FLOWRECORD_REDACT_PATTERNS="^customer_id$"),
            flowrecord.run("p"),
            flowrecord.task("t"),
        ):
            flowrecord.log_params({"customer_id": "C-991", "epochs": 3})
    finally:
        clear_patterns()
    rows = {r["key"]: r["value"] for r in LocalStore(home).query("SELECT key, value FROM params")}
    assert rows["customer_id"] != "C-991"
    assert rows["epochs"] == "3"


def test_code_snapshot_keeps_untracked_file_names(tmp_path: Path):
    """The run's code snapshot records commit, dirty flag, diff and untracked names."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (repo / "train.py").write_text("print(2)\n")
    (repo / "notes.txt").write_text("x")
    home = tmp_path / "home"
    script = "import flowrecord\nwith flowrecord.run('p'), flowrecord.task('t'):\n    pass\n"
    env = {**_env(), "FLOWRECORD_HOME": str(home), "FLOWRECORD_CAPTURE_CODE": "1"}
    subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, check=True, timeout=60)
    (row,) = LocalStore(home).query("SELECT * FROM code_snapshots")
    assert row["dirty"] == 1 and len(row["commit_sha"]) == 40
    assert "+print(2)" in row["diff"]
    assert json.loads(row["untracked"]) == ["notes.txt"]


def test_known_content_id_is_used_without_reading(recording):
    """log_dataset(fingerprint=...) records the caller's content id and type as given."""
    with flowrecord.run("p"), flowrecord.task("t"):
        event = flowrecord.log_dataset(
            object(),
            name="model",
            role="output",
            fingerprint="metaflow:sha1:abc",
            data_type="sklearn.Pipeline",
        )
        with pytest.raises(TypeError):
            flowrecord.log_dataset(object(), fingerprint="")
    assert (event.fingerprint, event.data_type, event.warnings) == (
        "metaflow:sha1:abc",
        "sklearn.Pipeline",
        (),
    )


def test_listener_joins_a_live_runtime_without_spooling(flowrecord_home: Path):
    """A plugin registered after recording began gets later events once; its failures
    are dropped, not spooled, when registered with spool=False."""
    from flowrecord.dispatcher import pending_spool_files, spool_dirs
    from flowrecord.testing import RecordingBackend

    with flowrecord.run("p"), flowrecord.task("t"):
        flowrecord.log_metric("before", 1)
        listener = RecordingBackend()
        recorder.register_backend("listener", listener, spool=False)
        try:
            flowrecord.log_metric("after", 2)
            flowrecord.flush(5)
        finally:
            recorder.unregister_backend("listener")
    assert [m.key for m in listener.events("metric")] == ["after"]
    flowrecord.flush(5)
    rows = LocalStore(flowrecord_home).query("SELECT key FROM metric_points ORDER BY key")
    assert [r[0] for r in rows] == ["after", "before"]
    assert pending_spool_files(spool_dirs(flowrecord_home, "listener")) == []


@pytest.mark.unit
def test_log_dataset_uri_is_a_str_or_path_and_anything_else_is_refused_at_the_call(
    tmp_path: Path,
):
    """A path uri is stored as text; bytes, numbers, empty text raise TypeError, never
    reaching a backend that would refuse the event on every replay."""
    import pandas as pd

    from flowrecord.testing import isolated

    frame = pd.DataFrame({"a": [1]})
    with isolated(tmp_path / "home"):
        with flowrecord.run("p", "r"), flowrecord.task("t"):
            event = flowrecord.log_dataset(frame, name="t", uri=tmp_path / "data.parquet")
            assert event.uri == str(tmp_path / "data.parquet")
            for bad in (123, b"s3://bucket/key", ""):
                with pytest.raises(TypeError, match="uri"):
                    flowrecord.log_dataset(frame, name="t", uri=bad)
            with pytest.raises(TypeError, match="data_type"):
                flowrecord.log_dataset(frame, name="t", fingerprint="x", data_type=7)
        assert flowrecord.flush(5)
        from flowrecord.dispatcher import pending_spool_files, spool_dirs

        assert pending_spool_files(spool_dirs(tmp_path / "home", "local")) == []


def test_task_attributes_are_redacted_under_the_rules_in_force(recording):
    """Repeated attribute values reuse their redaction, yet a new rule applies at once.

    The reuse is keyed by type too: 1 and True are equal in Python but recorded
    as "1" and "true".
    """
    from flowrecord.collectors import secrets

    def attributes_of(**attributes):
        with flowrecord.run("pipe", "redact-cache"), flowrecord.task("t", attributes=attributes):
            pass
        flowrecord.flush(5)
        return recording.events("task")[-1].attributes

    try:
        assert attributes_of(customer_ref="c-17", flag=1) == {"customer_ref": "c-17", "flag": "1"}
        assert attributes_of(customer_ref="c-17", flag=True) == {
            "customer_ref": "c-17",
            "flag": "true",
        }
        secrets.add_patterns(["customer"])
        assert attributes_of(customer_ref="c-17", flag=True)["customer_ref"] == "***"
        assert attributes_of(source="postgresql://u:pw@db/x")["source"] == "postgresql://u:***@db/x"
    finally:
        secrets.clear_patterns()
