"""The ``flowrecord`` command line against real stores: what people read, what scripts parse.

Most cases call ``main([...])`` in-process; a few run the installed ``flowrecord``
script in a subprocess to prove the entry point, exit codes and stderr hold for
real. The golden ``show --json`` document is built from events submitted as-is
(so it does not move when a collector's fingerprint or profile changes); the other
stores are filled through the public recorder API.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import flowrecord
from flowrecord import recorder
from flowrecord._ids import new_event_id
from flowrecord.backends.local import STORE_FILE, LocalStore
from flowrecord.cli import main, to_json
from flowrecord.dispatcher import pending_spool_files, spool_dirs
from flowrecord.events import (
    ArtifactEvent,
    CodeSnapshotEvent,
    DatasetEvent,
    GateDecisionEvent,
    RunEvent,
    State,
    SystemUsageEvent,
    ValidationEvent,
    event_to_dict,
)
from flowrecord.testing import RecordingBackend

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "cli_show.json"
FLOWRECORD = Path(sys.executable).with_name("flowrecord")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = _cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out, parse_constant=_no_constants)


def _no_constants(name: str) -> None:
    raise AssertionError(f"--json printed {name}, which is not JSON")


def _script(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLOWRECORD), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _submit(event: object) -> None:
    rt = recorder.get_runtime()
    assert rt is not None
    rt.submit(event)  # type: ignore[arg-type]


def _task(run: flowrecord.RunHandle, name: str, **kw: Any) -> flowrecord.TaskHandle:
    return flowrecord.start_task(name, run=run, sample_system=False, **kw)


# ---------------------------------------------------------------------------
# a small pipeline, recorded through the public API
# ---------------------------------------------------------------------------


def _frame(values: Sequence[int]) -> Any:
    import pandas as pd

    return pd.DataFrame({"x": list(values), "y": [f"v{v}" for v in values]})


def _record_pipeline(day: str, lr: float, auc: float, features: Sequence[int]) -> None:
    """extract -> raw -> featurize -> features -> train -> model, with params and metrics."""
    run = flowrecord.start_run("fraud", day, orchestrator="airflow", tags={"team": "risk"})
    t = _task(run, "extract")
    flowrecord.log_dataset(_frame([1, 2, 3]), name="raw", role="output")
    flowrecord.end_task(t)
    t = _task(run, "featurize")
    flowrecord.log_dataset(_frame([1, 2, 3]), name="raw", role="input")
    flowrecord.log_dataset(_frame(features), name="features", role="output")
    flowrecord.end_task(t)
    t = _task(run, "train")
    flowrecord.log_params({"lr": lr, "epochs": 3})
    for step in range(3):
        flowrecord.log_metric("loss", 1.0 / (step + 1), step=step)
    flowrecord.log_metric("auc", auc)
    flowrecord.log_metric("grad_norm", float("nan"))
    flowrecord.log_dataset(_frame(features), name="features", role="input")
    flowrecord.log_dataset(_frame([9]), name="model_card", role="output")
    flowrecord.end_task(t)
    flowrecord.end_run(run)


@pytest.fixture
def two_days(flowrecord_home: Path) -> Path:
    """Two runs of one pipeline: same raw data, different features, params and metrics."""
    _record_pipeline("day-1", 0.1, 0.80, [10, 20, 30])
    time.sleep(0.01)
    _record_pipeline("day-2", 0.2, 0.85, [10, 20, 30, 40])
    flowrecord.shutdown()
    return flowrecord_home


# ---------------------------------------------------------------------------
# runs, show
# ---------------------------------------------------------------------------


def test_runs_lists_recent_runs(two_days: Path, capsys: pytest.CaptureFixture[str]):
    """`runs` shows each run's short id, pipeline, key, state and task counts; --json agrees."""
    code, out, err = _cli(capsys, "runs")
    assert code == 0 and err == ""
    assert "day-1" in out and "day-2" in out and "fraud" in out and "airflow" in out
    assert out.index("day-2") < out.index("day-1")  # newest first
    assert "3 succeeded" in out
    doc = _json(capsys, "runs", "--limit", "1")
    assert [r["run_key"] for r in doc["runs"]] == ["day-2"]
    (run,) = doc["runs"]
    assert run["state"] == "succeeded" and run["task_counts"] == {"succeeded": 3}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", run["started_at"])
    assert run["run_id"][:8] in _cli(capsys, "runs")[1]
    assert _json(capsys, "runs", "--pipeline", "other") == {"runs": []}
    code, out, _ = _cli(capsys, "runs", "--pipeline", "other")
    assert code == 0 and "No runs" in out


def test_show_prints_tasks_metrics_params_and_datasets(
    two_days: Path, capsys: pytest.CaptureFixture[str]
):
    """`show RUN_KEY` prints the tasks, latest metrics, params and dataset fingerprints."""
    code, out, err = _cli(capsys, "show", "day-2")
    assert code == 0, err
    for expected in ("extract", "featurize", "train", "loss", "auc", "0.85", "lr", "0.2"):
        assert expected in out
    assert "features" in out and "xxh3:" in out and "team=risk" in out
    assert "nan" in out  # the NaN metric, as text
    doc = _json(capsys, "show", "day-2")
    metrics = {m["key"]: m for m in doc["metrics"]}
    assert metrics["loss"]["points"] == 3 and metrics["loss"]["step"] == 2
    assert metrics["grad_norm"]["value"] is None and metrics["grad_norm"]["value_text"] == "nan"
    feat = [d for d in doc["datasets"] if d["name"] == "features"]
    assert {d["role"] for d in feat} == {"input", "output"}
    assert feat[0]["row_count"] == 4 and [c["name"] for c in feat[0]["schema"]] == ["x", "y"]


def test_show_accepts_a_run_id_or_a_unique_prefix(
    two_days: Path, capsys: pytest.CaptureFixture[str]
):
    """The same run is shown for its id, an id prefix, and its run key."""
    run_id = _json(capsys, "show", "day-1")["run"]["run_id"]
    assert _json(capsys, "show", run_id)["run"]["run_key"] == "day-1"
    other = _json(capsys, "show", "day-2")["run"]["run_id"]
    n = next(i for i in range(1, 37) if run_id[:i] != other[:i])
    assert _json(capsys, "show", run_id[:n])["run"]["run_key"] == "day-1"


def _golden_store(home: Path) -> None:
    """One run with every kind of record, all values fixed."""
    run = flowrecord.start_run("golden", "2024-06-01", orchestrator="airflow", tags={"team": "x"})
    _submit(
        CodeSnapshotEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run.run_id,
            commit="0123456789abcdef0123456789abcdef01234567",
            branch="main",
            dirty=True,
            diff="+ changed line\n",
            python="3.11.9",
            platform="Linux-x86_64",
            packages={"pandas": "3.0.0"},
        )
    )
    prep = _task(run, "prepare", attributes={"dag_id": "golden"})
    flowrecord.log_param("rows", 3)
    for role, name, fp in (("input", "raw", "aa"), ("output", "features", "bb")):
        _submit(
            DatasetEvent(
                event_id=new_event_id(),
                ts=time.time(),
                run_id=run.run_id,
                task_id=prep.task_id,
                name=name,
                role=role,
                uri=f"s3://bucket/{name}.parquet",
                data_type="pandas",
                fingerprint="xxh3:" + fp * 16,
                schema=(
                    {"name": "x", "type": "int64", "nullable": False},
                    {"name": "y", "type": "string", "nullable": True},
                ),
                row_count=3,
                size_bytes=48,
            )
        )
    _submit(
        ValidationEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run.run_id,
            task_id=prep.task_id,
            dataset_name="features",
            fingerprint="xxh3:" + "bb" * 16,
            validator="pandera",
            schema_name="FeatureSchema",
            passed=False,
            policy="record",
            checks=(
                {"check": "greater_than_or_equal_to(0)", "column": "x", "passed": False},
                {"check": "dtype('int64')", "column": "x", "passed": True},
            ),
            failure_count=1,
        )
    )
    _submit(
        SystemUsageEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run.run_id,
            task_id=prep.task_id,
            summary={
                "cpu_percent_peak": 90.0,
                "cpu_percent_mean": 45.0,
                "rss_bytes_peak": 2**30,
                "rss_bytes_mean": 2**29,
                "gpus": [
                    {
                        "index": 0,
                        "name": "NVIDIA H100",
                        "utilization_percent_peak": 97.0,
                        "memory_used_bytes_peak": 40 * 2**30,
                    }
                ],
            },
            samples=({"t": 0.0, "cpu_percent": 45.0, "rss_bytes": 2**29, "gpus": []},),
        )
    )
    flowrecord.end_task(prep)
    train = _task(run, "train")
    flowrecord.log_params({"lr": 0.01})
    for step, loss in enumerate([0.5, 0.25]):
        flowrecord.log_metric("loss", loss, step=step)
    flowrecord.log_metric("auc", 0.9)
    flowrecord.log_metric("grad_norm", float("inf"))
    flowrecord.set_tags(stage="fit")
    _submit(
        ArtifactEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run.run_id,
            task_id=train.task_id,
            name="model.pkl",
            path="/models/model.pkl",
            size_bytes=1234,
            fingerprint="xxh3:" + "cc" * 16,
        )
    )
    _submit(
        GateDecisionEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run.run_id,
            task_id=train.task_id,
            decision_id="decision-1",
            model="fraud",
            version="1",
            gate="auc-gate",
            passed=True,
            applied=True,
            reasons=("auc 0.9 >= 0.85",),
            evidence={"auc": 0.9, "champion_auc": None},
        )
    )
    flowrecord.end_task(train)
    for index, state in ((0, "succeeded"), (1, "failed")):
        t = _task(run, "score", map_index=index, try_number=2)
        flowrecord.end_task(t, state=state, error=ValueError("bad split") if index else None)
    flowrecord.end_run(run, state="failed", error="score[1] failed")
    flowrecord.shutdown()
    store = LocalStore(home)
    store.register_version(
        "fraud", run.run_id, train.task_id, "s3://models/1", {"auc": 0.9}, [], {}
    )
    store.set_alias("fraud", "champion", "1", "first")
    store.close()


def _normalise(doc: Any) -> Any:
    """Ids become <run-N>/<task-N> in order of appearance; times, durations, host, pid fixed."""
    ids: dict[str, str] = {}
    counts: dict[str, int] = {}

    def placeholder(kind: str, value: str) -> str:
        if value not in ids:
            counts[kind] = counts.get(kind, 0) + 1
            ids[value] = f"<{kind}-{counts[kind]}>"
        return ids[value]

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if value is None or key is None:
            return value
        if key in ("run_id", "task_id"):
            return placeholder(key.removesuffix("_id"), value)
        if key.endswith("_at"):
            return "<time>"
        if key in ("duration_s", "host", "pid"):
            return f"<{key}>"
        return value

    return walk(doc)


def test_show_json_matches_the_golden_document(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str]
):
    """The --json shape of `show` is a contract: it matches the golden file (ids, times normalised)."""
    _golden_store(flowrecord_home)
    doc = _normalise(_json(capsys, "show", "2024-06-01"))
    if os.environ.get("FLOWRECORD_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    assert doc == json.loads(GOLDEN.read_text())


def test_show_renders_every_section(flowrecord_home: Path, capsys: pytest.CaptureFixture[str]):
    """Human `show` has the validation, system, code, artifact, gate and model sections."""
    _golden_store(flowrecord_home)
    code, out, err = _cli(capsys, "show", "2024-06-01")
    assert code == 0, err
    for expected in (
        "FeatureSchema",
        "FAILED",
        "1/2",  # failed checks
        "90%",
        "1.0 GiB",
        "GPU0 97% 40.0 GiB",
        "0123456789abcdef",
        "dirty",
        "model.pkl",
        "auc-gate",
        "champion",
        "ValueError: bad split",
        "xxh3:aaaaaaaaaaaa",
        "2 cols: x:int64, y:string",
        "inf",
    ):
        assert expected in out, expected


# ---------------------------------------------------------------------------
# errors: one line, exit 1
# ---------------------------------------------------------------------------


def test_unknown_run_is_one_line_and_exit_1(two_days: Path, capsys: pytest.CaptureFixture[str]):
    """An unknown run id prints one line on stderr, nothing on stdout, and exits 1."""
    for argv in (["show", "nope"], ["show", "nope", "--json"], ["compare", "day-1", "nope"]):
        code, out, err = _cli(capsys, *argv)
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and "nope" in err and "Traceback" not in err


def test_missing_store_and_foreign_file_exit_1_without_traceback(tmp_path: Path):
    """No store yet, or --home at a file that is not a store: one line, exit 1, nothing created."""
    missing = tmp_path / "nowhere"
    result = _script("--home", str(missing), "runs")
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert "no flowrecord store" in result.stderr
    assert not missing.exists()
    foreign = tmp_path / "notes.db"
    foreign.write_text("not sqlite\n" * 200)
    result = _script("runs", "--home", str(foreign), "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert "not a flowrecord store" in result.stderr and "Traceback" not in result.stderr
    assert foreign.read_text() == "not sqlite\n" * 200


def test_home_option_works_before_and_after_the_command(
    two_days: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
):
    """--home overrides FLOWRECORD_HOME wherever it is placed."""
    monkeypatch.setenv("FLOWRECORD_HOME", str(tmp_path / "elsewhere"))
    assert _cli(capsys, "runs")[0] == 1
    for argv in (["--home", str(two_days), "runs"], ["runs", "--home", str(two_days)]):
        code, out, _ = _cli(capsys, *argv)
        assert code == 0 and "day-2" in out


def test_entry_point_version_help_and_light_import():
    """The installed script answers --version and --help; importing the CLI skips rich."""
    result = _script("--version")
    assert (
        result.returncode == 0 and result.stdout.strip() == f"flowrecord {flowrecord.__version__}"
    )
    result = _script("--help")
    assert result.returncode == 0
    for command in ("runs", "show", "lineage", "compare", "sync"):
        assert command in result.stdout
    probe = "import sys, flowrecord.cli; print(sorted(m for m in ('rich', 'sqlite3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_json_never_prints_nan_or_infinity():
    """to_json turns NaN and infinities into null and *_at times into ISO strings."""
    doc = json.loads(to_json({"value": float("nan"), "x": [float("-inf")], "started_at": 0.0}))
    assert doc == {"value": None, "x": [None], "started_at": "1970-01-01T00:00:00.000+00:00"}


# ---------------------------------------------------------------------------
# a task killed with SIGKILL
# ---------------------------------------------------------------------------

_KILLED = """
import os, signal, flowrecord
run = flowrecord.start_run("crashy", "kill-1")
task = flowrecord.start_task("doomed", run=run)
flowrecord.log_metric("progress", 0.5)
flowrecord.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_task_shows_as_incomplete(flowrecord_home: Path):
    """A task whose process died by SIGKILL after starting shows as incomplete, not running."""
    proc = subprocess.run([sys.executable, "-c", _KILLED], timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    result = _script("show", "kill-1", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (task,) = doc["tasks"]
    assert task["state"] == "incomplete" and task["recorded_state"] == "started"
    assert "gone" in task["incomplete_reason"]
    assert doc["run"]["state"] == "incomplete"
    human = _script("show", "kill-1")
    assert "incomplete" in human.stdout and "doomed" in human.stdout
    assert "1 incomplete" in _script("runs").stdout


# ---------------------------------------------------------------------------
# lineage, compare
# ---------------------------------------------------------------------------


def test_lineage_upstream_and_downstream_across_runs(
    two_days: Path, capsys: pytest.CaptureFixture[str]
):
    """raw, written once by content, links both days' tasks; the tree says who wrote and read."""
    up = _json(capsys, "lineage", "model_card")  # latest version: day 2
    tasks = {(n["name"], n["run_key"]) for n in up["nodes"] if n["kind"] == "task"}
    assert tasks >= {("train", "day-2"), ("featurize", "day-2")}
    # Both days wrote the same raw data: one node, written by two extract tasks.
    assert {("extract", "day-1"), ("extract", "day-2")} <= tasks
    raw = [n for n in up["nodes"] if n["kind"] == "dataset" and n["name"] == "raw"]
    assert len(raw) == 1
    code, out, _ = _cli(capsys, "lineage", "model_card", "--upstream")
    assert code == 0
    assert "written by" in out and "read" in out and "extract" in out and "day-1" in out

    raw_fp = raw[0]["fingerprint"]
    down = _json(capsys, "lineage", raw_fp[:14], "--downstream")
    names = {(n["name"], n.get("run_key")) for n in down["nodes"]}
    assert ("featurize", "day-1") in names and ("featurize", "day-2") in names
    assert ("model_card", None) in names
    code, out, _ = _cli(capsys, "lineage", "raw", "--downstream", "--depth", "1")
    assert code == 0 and "read by" in out and "featurize" in out and "train" not in out
    code, out, err = _cli(capsys, "lineage", "no-such-dataset")
    assert code == 1 and out == "" and "no-such-dataset" in err


def test_compare_shows_differences(two_days: Path, capsys: pytest.CaptureFixture[str]):
    """`compare` lists the differing param, metric deltas and the changed features."""
    doc = _json(capsys, "compare", "day-1", "day-2")
    assert doc["params"] == [{"task": "train", "key": "lr", "a": "0.1", "b": "0.2"}]
    auc = next(m for m in doc["metrics"] if m["key"] == "auc")
    assert auc["delta"] == pytest.approx(0.05)
    changed = {(d["task"], d["name"], d["role"]) for d in doc["datasets"]}
    assert changed == {("featurize", "features", "output"), ("train", "features", "input")}
    code, out, _ = _cli(capsys, "compare", "day-1", "day-2")
    assert code == 0
    assert "train:lr" in out and "+0.05" in out and "features" in out


# ---------------------------------------------------------------------------
# sync
# ---------------------------------------------------------------------------


class Flaky(RecordingBackend):
    """A backend that refuses everything while down, and counts what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def _keep(self, hook: str, events: Sequence[Any]) -> None:
        if self.down:
            raise ConnectionError("flaky backend is down")
        super()._keep(hook, events)


def test_sync_delivers_spooled_events_exactly_once(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str]
):
    """Events spooled while a backend was down reach it once via `sync`; failures exit 1."""
    flaky = Flaky()
    recorder.register_backend("flaky", flaky)
    try:
        run = flowrecord.start_run("p", "spooled")
        with flowrecord.task("t"):
            flowrecord.log_metrics({"a": 1.0, "b": float("nan")})
            flowrecord.log_param("k", "v")
        flowrecord.end_run(run)
        flowrecord.shutdown()
        assert pending_spool_files(spool_dirs(flowrecord_home, "flaky"))

        code, out, err = _cli(capsys, "sync", "--json")  # still down
        assert code == 1
        doc = json.loads(out)
        (report,) = [b for b in doc["backends"] if b["backend"] == "flaky"]
        assert report["failed_files"] >= 1 and report["left"] >= 1 and not doc["ok"]
        assert "flaky backend is down" in err and err.count("\n") == 1

        flaky.down = False
        code, out, err = _cli(capsys, "sync")
        assert code == 0, err
        assert "flaky" in out and "Delivered" in out
        ids = [e.event_id for e in flaky.events()]
        assert len(ids) == len(set(ids))
        kinds = {e.kind for e in flaky.events()}
        assert {"run", "task", "metric", "param"} <= kinds
        assert sorted(e.key for e in flaky.events("metric")) == ["a", "b"]
        assert not pending_spool_files(spool_dirs(flowrecord_home, "flaky"))

        code, out, _ = _cli(capsys, "sync", "--json")
        assert code == 0 and json.loads(out)["files"] == 0
        assert len(flaky.events()) == len(ids)  # nothing delivered twice
    finally:
        recorder.unregister_backend("flaky")


_PLUGIN = '''
import os
from pathlib import Path

from flowrecord.testing import RecordingBackend


class FileBackend(RecordingBackend):
    """Appends event ids to a file; down while a 'down' marker file exists."""

    def _keep(self, hook, events):
        state = Path(os.environ["FILE_BACKEND_DIR"])
        if (state / "down").exists():
            raise ConnectionError("file backend is down")
        with open(state / "received.txt", "a") as fh:
            for event in events:
                fh.write(event.event_id + "\\n")
'''


@pytest.mark.slow
def test_sync_replays_a_third_party_backend_from_its_entry_point(tmp_path: Path):
    """A plugin installed under `flowrecord.backends` gets its spool replayed by `flowrecord sync`."""
    site = tmp_path / "site"
    (site / "file_backend-1.0.dist-info").mkdir(parents=True)
    (site / "file_backend.py").write_text(_PLUGIN)
    (site / "file_backend-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: file-backend\nVersion: 1.0\n"
    )
    (site / "file_backend-1.0.dist-info" / "entry_points.txt").write_text(
        "[flowrecord.backends]\nfile = file_backend:FileBackend\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "down").touch()
    home = tmp_path / "home"
    env = {
        "PYTHONPATH": str(site),
        "FILE_BACKEND_DIR": str(state),
        "FLOWRECORD_HOME": str(home),
        "FLOWRECORD_BACKENDS": "local,file",
        "FLOWRECORD_CAPTURE_CODE": "0",
    }
    record = textwrap.dedent(
        """
        import flowrecord
        with flowrecord.run("third-party", "tp-1"), flowrecord.task("t"):
            for i in range(5):
                flowrecord.log_metric("m", i, step=i)
        """
    )
    subprocess.run(
        [sys.executable, "-c", record], env={**os.environ, **env}, check=True, timeout=120
    )
    assert not (state / "received.txt").exists()

    failed = _script("sync", env=env)
    assert failed.returncode == 1
    assert "file backend is down" in failed.stderr and "Traceback" not in failed.stderr

    (state / "down").unlink()
    ok = _script("sync", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    (report,) = [b for b in doc["backends"] if b["backend"] == "file"]
    received = (state / "received.txt").read_text().split()
    assert len(received) == len(set(received)) == report["events"] == doc["events"]
    metric_ids = {
        r["event_id"] for r in LocalStore(home).query("SELECT event_id FROM metric_points")
    }
    assert len(metric_ids) == 5 and metric_ids <= set(received)
    again = _script("sync", env=env)
    assert again.returncode == 0 and "Nothing to sync" in again.stdout
    assert (state / "received.txt").read_text().split() == received


def test_sync_replays_the_temp_fallback_spool(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str]
):
    """Batches spooled to the temp-dir fallback (home unwritable at the time) are replayed too."""
    fallback = spool_dirs(flowrecord_home, "local")[1]
    fallback.mkdir(parents=True, exist_ok=True)
    event = RunEvent(
        event_id=new_event_id(),
        ts=time.time(),
        run_id="fallback-run",
        state=State.STARTED,
        orchestrator="python",
        pipeline="p",
        run_key="from-fallback",
    )
    (fallback / f"{new_event_id()}.jsonl").write_text(json.dumps(event_to_dict(event)) + "\n")
    try:
        doc = _json(capsys, "sync")
        (local,) = [b for b in doc["backends"] if b["backend"] == "local"]
        assert (local["backend"], local["files"], local["events"]) == ("local", 1, 1)
        assert _json(capsys, "show", "from-fallback")["run"]["run_id"] == "fallback-run"
        assert not list(fallback.glob("*.jsonl"))
    finally:
        import shutil

        shutil.rmtree(fallback.parent, ignore_errors=True)


def test_sync_leaves_spools_of_unconfigured_backends(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str]
):
    """Spooled files of a backend that is not configured are reported and left in place."""
    flaky = Flaky()
    recorder.register_backend("gone", flaky)
    try:
        flowrecord.log_metric("x", 1.0)
        flowrecord.shutdown()
    finally:
        recorder.unregister_backend("gone")
    spooled = pending_spool_files(spool_dirs(flowrecord_home, "gone"))
    assert spooled
    doc = _json(capsys, "sync")
    assert doc["skipped"] == [{"backend": "gone", "files": len(spooled)}] and doc["ok"]
    assert pending_spool_files(spool_dirs(flowrecord_home, "gone")) == spooled


# ---------------------------------------------------------------------------
# docs/cli.md stays true
# ---------------------------------------------------------------------------


def _documented_commands() -> list[str]:
    text = (REPO / "docs" / "cli.md").read_text()
    return [
        line.removeprefix("$ ").strip()
        for line in text.splitlines()
        if line.startswith("$ flowrecord ")
    ]


def test_documented_commands_run(two_days: Path, capsys: pytest.CaptureFixture[str]):
    """Every `$ flowrecord ...` example in docs/cli.md runs against a small store, exit 0."""
    commands = _documented_commands()
    assert len(commands) >= 8
    seen = set()
    for command in commands:
        argv = shlex.split(command)[1:]
        seen.add(argv[0] if not argv[0].startswith("-") else argv[-1])
        code, out, err = _cli(capsys, *argv)
        assert code == 0, f"{command}: {err}"
        assert out.strip(), command
        if "--json" in argv:
            json.loads(out)
    assert {"runs", "show", "lineage", "compare", "sync"} <= seen


def test_store_file_is_not_touched_by_reading(two_days: Path, capsys: pytest.CaptureFixture[str]):
    """Reading commands leave the store file's bytes as they were."""
    db = two_days / STORE_FILE
    before = db.read_bytes()
    for argv in (["runs"], ["show", "day-1"], ["lineage", "raw"], ["compare", "day-1", "day-2"]):
        assert _cli(capsys, *argv)[0] == 0
    assert db.read_bytes() == before
