"""Read-side queries: runs, run details, lineage and comparisons over a real store.

Stores are filled through the recorder. Events that collectors would make (datasets,
code snapshots) are submitted to the recorder's runtime as-is, so the queries are
tested against exact fingerprints independent of the fingerprinting algorithm.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import flowrecord
from flowrecord import recorder
from flowrecord._ids import new_event_id
from flowrecord.backends.local import STORE_FILE, StoreError
from flowrecord.events import CodeSnapshotEvent, DatasetEvent
from flowrecord.query import (
    AmbiguousReference,
    RecordNotFound,
    compare_runs,
    effective_task_state,
    lineage,
    list_runs,
    open_store,
    resolve_dataset,
    resolve_run,
    run_details,
    short_fingerprint,
)

pytestmark = pytest.mark.unit


def _submit(event: object) -> None:
    rt = recorder.get_runtime()
    assert rt is not None
    rt.submit(event)  # type: ignore[arg-type]


def _dataset(name: str, role: str, fingerprint: str | None, rows: int | None = None) -> None:
    task = recorder.current_task()
    assert task is not None
    _submit(
        DatasetEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=task.run_id,
            task_id=task.task_id,
            name=name,
            role=role,
            data_type="pandas",
            fingerprint=fingerprint,
            schema=({"name": "x", "type": "int64", "nullable": False},),
            row_count=rows,
        )
    )


def _code(run: flowrecord.RunHandle, commit: str) -> None:
    _submit(
        CodeSnapshotEvent(
            event_id=new_event_id(),
            ts=time.time(),
            run_id=run.run_id,
            commit=commit,
            branch="main",
            dirty=False,
        )
    )


def _task(run: flowrecord.RunHandle, name: str, **kw: object) -> flowrecord.TaskHandle:
    return flowrecord.start_task(name, run=run, sample_system=False, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------


def test_list_runs_newest_first_with_task_counts(flowrecord_home: Path):
    """Runs come newest first, filtered by pipeline and limited, with task counts by state."""
    for i, pipeline in enumerate(["a", "b", "a"]):
        run = flowrecord.start_run(pipeline, f"k{i}", orchestrator="airflow")
        ok = _task(run, "ok")
        flowrecord.end_task(ok)
        bad = _task(run, "bad")
        flowrecord.end_task(bad, state="failed", error="boom")
        flowrecord.end_run(run, state="failed")
        time.sleep(0.01)
    flowrecord.shutdown()
    store = open_store(flowrecord_home)
    runs = list_runs(store)
    assert [r["run_key"] for r in runs] == ["k2", "k1", "k0"]
    assert runs[0]["task_counts"] == {"failed": 1, "succeeded": 1}
    assert runs[0]["duration_s"] is not None and runs[0]["duration_s"] >= 0
    assert [r["run_key"] for r in list_runs(store, pipeline="a")] == ["k2", "k0"]
    assert [r["run_key"] for r in list_runs(store, limit=1)] == ["k2"]
    assert list_runs(store, pipeline="nope") == []


def test_resolve_run_by_id_prefix_and_run_key(flowrecord_home: Path):
    """A run is found by full id, unique prefix or run key; ambiguity and misses are errors."""
    handles = [flowrecord.start_run("p", f"key-{i}") for i in range(17)]
    same_key = [flowrecord.start_run(p, "shared") for p in ("x", "y")]
    for h in handles + same_key:
        flowrecord.end_run(h)
    flowrecord.shutdown()
    store = open_store(flowrecord_home)
    target = handles[3].run_id
    assert resolve_run(store, target) == target
    assert resolve_run(store, "key-3") == target
    others = [h.run_id for h in handles if h.run_id != target]
    unique = next(n for n in range(1, 36) if not any(o.startswith(target[:n]) for o in others))
    assert resolve_run(store, target[:unique]) == target
    assert resolve_run(store, target[:unique].upper()) == target
    # 17 runs over 16 hex digits: some first digit is shared.
    firsts = [h.run_id[0] for h in handles]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(AmbiguousReference, match="prefix"):
        resolve_run(store, shared)
    with pytest.raises(AmbiguousReference, match="2 runs"):
        resolve_run(store, "shared")
    with pytest.raises(RecordNotFound):
        resolve_run(store, "no-such-run")
    with pytest.raises(RecordNotFound):
        resolve_run(store, "  ")


# ---------------------------------------------------------------------------
# tasks that never ended
# ---------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_effective_state_of_a_task_that_never_ended():
    """A 'started' task is incomplete when its local process is gone or it is too old."""
    host = socket.gethostname()
    now = time.time()
    base = {"state": "started", "ended_at": None, "started_at": now - 10}
    alive = {**base, "host": host, "pid": os.getpid()}
    assert effective_task_state(alive, now=now) == ("started", None)
    dead = {**base, "host": host, "pid": _dead_pid()}
    state, reason = effective_task_state(dead, now=now)
    assert state == "incomplete" and "gone" in (reason or "")
    # On another host the pid says nothing; only the age does.
    remote = {**base, "host": "elsewhere.invalid", "pid": _dead_pid()}
    assert effective_task_state(remote, now=now) == ("started", None)
    state, reason = effective_task_state(remote, now=now + 25 * 3600)
    assert state == "incomplete" and "never ended" in (reason or "")
    assert effective_task_state(remote, now=now + 60, stale_after_s=30)[0] == "incomplete"
    finished = {**dead, "state": "failed", "ended_at": now}
    assert effective_task_state(finished, now=now) == ("failed", None)


def test_run_with_an_open_task_is_incomplete_only_when_stale(flowrecord_home: Path):
    """An open task of a live process shows as started, and as incomplete past the threshold."""
    run = flowrecord.start_run("p", "open")
    task = _task(run, "still-open")
    flowrecord.flush()
    store = open_store(flowrecord_home)
    details = run_details(store, run.run_id)
    assert details["tasks"][0]["state"] == "started"
    assert details["run"]["state"] == "started"
    later = run_details(store, run.run_id, now=time.time() + 2 * 24 * 3600)
    assert later["tasks"][0]["state"] == "incomplete"
    assert later["tasks"][0]["recorded_state"] == "started"
    assert later["run"]["state"] == "incomplete"
    assert later["run"]["recorded_state"] == "started"
    flowrecord.end_task(task)
    flowrecord.end_run(run)


# ---------------------------------------------------------------------------
# run details
# ---------------------------------------------------------------------------


def test_run_details_keep_the_latest_value_and_count_points(flowrecord_home: Path):
    """Metrics show the latest point per key and task, their count and range; NaN as text."""
    run = flowrecord.start_run("p", "k", tags={"team": "fraud"})
    flowrecord.log_param("seed", 1)  # run level
    task = _task(run, "train")
    for step, loss in enumerate([0.9, 0.5, 0.7]):
        flowrecord.log_metric("loss", loss, step=step)
    flowrecord.log_metric("grad", float("inf"))
    flowrecord.log_param("lr", 0.1)
    time.sleep(0.01)
    flowrecord.log_param("lr", 0.2)
    flowrecord.set_tags(stage="fit")
    flowrecord.end_task(task)
    flowrecord.end_run(run)
    flowrecord.shutdown()
    d = run_details(open_store(flowrecord_home), run.run_id)
    metrics = {m["key"]: m for m in d["metrics"]}
    assert metrics["loss"]["value"] == 0.7
    assert metrics["loss"]["step"] == 2
    assert metrics["loss"]["points"] == 3
    assert (metrics["loss"]["min"], metrics["loss"]["max"]) == (0.5, 0.9)
    assert metrics["loss"]["task"] == "train"
    assert metrics["grad"]["value"] is None and metrics["grad"]["value_text"] == "inf"
    params = {(p["task"], p["key"]): p["value"] for p in d["params"]}
    assert params == {(None, "seed"): "1", ("train", "lr"): "0.2"}
    assert d["params"][0]["key"] == "seed"  # run-level first
    tags = {(t["task"], t["key"]): t["value"] for t in d["tags"]}
    assert tags == {(None, "team"): "fraud", ("train", "stage"): "fit"}


# ---------------------------------------------------------------------------
# lineage
# ---------------------------------------------------------------------------

FP_RAW = "xxh3:" + "a1" * 16
FP_FEAT = "xxh3:" + "b2" * 16
FP_MODEL = "xxh3:" + "c3" * 16


def _pipeline(flowrecord_home: Path) -> tuple[flowrecord.RunHandle, flowrecord.RunHandle]:
    """raw -> [features] -> feat in an Airflow run; feat -> [train] -> model in a Dagster run."""
    one = flowrecord.start_run("etl", "day-1", orchestrator="airflow")
    t = _task(one, "extract")
    _dataset("raw", "output", FP_RAW, 100)
    flowrecord.end_task(t)
    t = _task(one, "features")
    _dataset("raw", "input", FP_RAW, 100)
    _dataset("feat", "output", FP_FEAT, 100)
    flowrecord.end_task(t)
    flowrecord.end_run(one)
    two = flowrecord.start_run("training", "r-1", orchestrator="dagster")
    t = _task(two, "train")
    _dataset("features_table", "input", FP_FEAT, 100)  # same data, another name
    _dataset("model", "output", FP_MODEL)
    flowrecord.end_task(t)
    flowrecord.end_run(two)
    flowrecord.shutdown()
    return one, two


def _names(graph: dict, kind: str) -> set[str]:
    return {n["name"] for n in graph["nodes"] if n["kind"] == kind}


def test_lineage_follows_fingerprints_across_runs_and_orchestrators(flowrecord_home: Path):
    """Upstream of the model reaches the extract task of another run through one fingerprint."""
    one, two = _pipeline(flowrecord_home)
    store = open_store(flowrecord_home)
    up = lineage(store, "model")
    assert up["root"] == f"dataset:{FP_MODEL}"
    assert _names(up, "task") == {"train", "features", "extract"}
    feat = next(n for n in up["nodes"] if n["id"] == f"dataset:{FP_FEAT}")
    assert sorted(feat["names"]) == ["feat", "features_table"]
    edges = {(e["source"], e["target"], e["role"]) for e in up["edges"]}
    train_id = next(n["id"] for n in up["nodes"] if n["name"] == "train")
    assert (f"dataset:{FP_FEAT}", train_id, "input") in edges
    assert (train_id, f"dataset:{FP_MODEL}", "output") in edges
    runs = {n["run_id"] for n in up["nodes"] if n["kind"] == "task"}
    assert runs == {one.run_id, two.run_id}

    down = lineage(store, FP_RAW, direction="downstream")
    assert _names(down, "task") == {"features", "train"}
    assert _names(down, "dataset") >= {"raw", "model"}

    shallow = lineage(store, "model", depth=1)
    assert _names(shallow, "task") == {"train"}
    assert lineage(store, "model", depth=0)["edges"] == []


def test_resolve_dataset_by_name_fingerprint_and_prefix(flowrecord_home: Path):
    """A dataset is named by fingerprint, a prefix with or without 'algo:', or its name."""
    _pipeline(flowrecord_home)
    store = open_store(flowrecord_home)
    assert resolve_dataset(store, FP_FEAT)["fingerprint"] == FP_FEAT
    assert resolve_dataset(store, "xxh3:b2b2")["fingerprint"] == FP_FEAT
    assert resolve_dataset(store, "b2b2b2")["fingerprint"] == FP_FEAT
    assert resolve_dataset(store, "features_table")["fingerprint"] == FP_FEAT
    with pytest.raises(AmbiguousReference):
        resolve_dataset(store, "xxh3:")
    with pytest.raises(RecordNotFound):
        resolve_dataset(store, "ffff")
    assert short_fingerprint(FP_FEAT) == "xxh3:b2b2b2b2b2b2"


def test_lineage_of_a_name_is_its_latest_version_and_survives_cycles(flowrecord_home: Path):
    """A name means its newest fingerprint; a task that rewrites its input does not loop."""
    run = flowrecord.start_run("p", "k")
    t = _task(run, "make")
    _dataset("table", "output", "xxh3:old")
    flowrecord.end_task(t)
    time.sleep(0.01)
    t = _task(run, "touch")
    _dataset("table", "input", "xxh3:old")
    _dataset("table", "output", "xxh3:new")
    _dataset("table", "input", "xxh3:new")  # reads back what it wrote
    flowrecord.end_task(t)
    flowrecord.end_run(run)
    flowrecord.shutdown()
    store = open_store(flowrecord_home)
    graph = lineage(store, "table")
    assert graph["root"] == "dataset:xxh3:new"
    assert _names(graph, "task") == {"touch", "make"}
    down = lineage(store, "xxh3:old", direction="downstream")
    assert _names(down, "task") == {"touch"}


def test_datasets_without_fingerprint_link_by_name_within_a_run(flowrecord_home: Path):
    """Objects that cannot be fingerprinted link writer and reader in one run, not across runs."""
    for key in ("k1", "k2"):
        run = flowrecord.start_run("p", key)
        t = _task(run, "write")
        _dataset("blob", "output", None)
        flowrecord.end_task(t)
        t = _task(run, "read")
        _dataset("blob", "input", None)
        flowrecord.end_task(t)
        flowrecord.end_run(run)
        time.sleep(0.01)
    flowrecord.shutdown()
    graph = lineage(open_store(flowrecord_home), "blob", direction="downstream")
    tasks = [n for n in graph["nodes"] if n["kind"] == "task"]
    assert [t["name"] for t in tasks] == ["read"]
    assert {t["run_key"] for t in tasks} == {"k2"}


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------


def test_compare_runs_lines_up_params_metrics_datasets_and_code(flowrecord_home: Path):
    """Only differing params and datasets are listed; metrics side by side with deltas."""
    handles = []
    for key, lr, auc, fp, commit in (
        ("a", 0.1, 0.80, "xxh3:1111", "c0ffee1"),
        ("b", 0.2, 0.85, "xxh3:2222", "c0ffee2"),
    ):
        run = flowrecord.start_run("p", key)
        _code(run, commit)
        t = _task(run, "train")
        flowrecord.log_params({"lr": lr, "epochs": 3})
        flowrecord.log_metric("auc", auc)
        if key == "b":
            flowrecord.log_metric("new_metric", float("nan"))
        _dataset("train", "input", fp, 10)
        _dataset("labels", "input", "xxh3:same", 10)
        flowrecord.end_task(t)
        flowrecord.end_run(run)
        handles.append(run)
    flowrecord.shutdown()
    c = compare_runs(open_store(flowrecord_home), handles[0].run_id, handles[1].run_id)
    assert c["params"] == [{"task": "train", "key": "lr", "a": "0.1", "b": "0.2"}]
    assert c["params_same"] == 1
    metrics = {m["key"]: m for m in c["metrics"]}
    assert metrics["auc"]["delta"] == pytest.approx(0.05)
    assert metrics["new_metric"]["a"] is None and metrics["new_metric"]["b_text"] == "nan"
    assert metrics["new_metric"]["delta"] is None
    assert [(d["name"], d["a"], d["b"]) for d in c["datasets"]] == [
        ("train", "xxh3:1111", "xxh3:2222")
    ]
    assert c["datasets_same"] == 1
    assert c["code"]["a"]["commit"] == "c0ffee1" and c["code"]["same_commit"] is False
    with pytest.raises(RecordNotFound):
        compare_runs(open_store(flowrecord_home), handles[0].run_id, "nope")


# ---------------------------------------------------------------------------
# opening the store
# ---------------------------------------------------------------------------


def test_reading_never_creates_a_store(tmp_path: Path):
    """No store, an empty file, another SQLite file or garbage: StoreError, nothing written."""
    missing = tmp_path / "missing"
    with pytest.raises(StoreError, match="no flowrecord store"):
        open_store(missing)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / STORE_FILE).touch()
    with pytest.raises(StoreError, match="empty"):
        open_store(empty)
    assert (empty / STORE_FILE).stat().st_size == 0
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a flowrecord store"):
        open_store(foreign)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a flowrecord store"):
        open_store(garbage)


def test_store_written_by_a_newer_flowrecord_is_refused(flowrecord_home: Path):
    """A store whose schema version is newer than ours is refused, not misread."""
    flowrecord.log_metric("x", 1.0)
    flowrecord.shutdown()
    conn = sqlite3.connect(flowrecord_home / STORE_FILE)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(flowrecord_home)


def test_the_store_file_itself_can_be_opened(flowrecord_home: Path):
    """open_store accepts the flowrecord.db file as well as its directory."""
    run = flowrecord.start_run("p", "k")
    flowrecord.end_run(run)
    flowrecord.shutdown()
    assert [r["run_key"] for r in list_runs(open_store(flowrecord_home / STORE_FILE))] == ["k"]


_READ_AS_OTHER_USER = """
import json, sys
from flowrecord.query import open_store, list_runs
print(json.dumps([r["run_key"] for r in list_runs(open_store(sys.argv[1]))]))
"""


@pytest.mark.parametrize("clean_close", [False, True], ids=["wal-files-left", "closed-cleanly"])
def test_read_only_directory_is_readable(clean_close: bool):
    """A store in a directory the reader cannot write to is read, with or without WAL files."""
    base = Path(tempfile.mkdtemp(prefix="fr-ro-"))
    home = base / "home"
    try:
        base.chmod(0o755)
        env = {**os.environ, "FLOWRECORD_HOME": str(home), "FLOWRECORD_CAPTURE_CODE": "0"}
        write = "import flowrecord\nr = flowrecord.start_run('p', 'ro')\nflowrecord.end_run(r)\n"
        if not clean_close:  # die with the connection open: the runs are in the WAL only
            write += "flowrecord.flush()\nimport os\nos._exit(0)\n"
        subprocess.run([sys.executable, "-c", write], env=env, check=True, timeout=60)
        if clean_close:  # the last connection closing merges and removes -wal and -shm
            conn = sqlite3.connect(home / STORE_FILE)
            conn.execute("SELECT count(*) FROM runs").fetchone()
            conn.close()
        wal = home / f"{STORE_FILE}-wal"
        assert (wal.exists() and wal.stat().st_size > 0) is not clean_close
        before = sorted(p.name for p in home.iterdir())
        for p in home.iterdir():
            p.chmod(0o444)
        home.chmod(0o555)
        cmd = [sys.executable, "-c", _READ_AS_OTHER_USER, str(home)]
        if os.geteuid() == 0:  # root ignores permissions: read as nobody instead
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == '["ro"]'
        assert sorted(p.name for p in home.iterdir()) == before
    finally:
        for p in (base, home, *home.glob("*")) if home.exists() else (base,):
            p.chmod(0o755)
        import shutil

        shutil.rmtree(base, ignore_errors=True)
