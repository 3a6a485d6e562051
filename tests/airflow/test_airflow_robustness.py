"""Recording never fails, changes or stalls the user's tasks."""

from __future__ import annotations

import time

import pytest

from flowrecord.hookspecs import hookimpl


class _Unreadable:
    """A task instance whose every attribute read raises."""

    def __getattr__(self, name):
        raise RuntimeError(f"cannot read {name}")


@pytest.mark.unit
@pytest.mark.parametrize(
    "task_instance", [object(), None, _Unreadable(), "ti"], ids=["object", "none", "raising", "str"]
)
def test_listener_hooks_swallow_any_task_instance(task_instance, flowrecord_home):
    """Every hook returns None, whatever it is handed: a listener error never reaches Airflow."""
    from flowrecord_airflow.listener import listener

    assert listener.on_task_instance_running(None, task_instance) is None
    assert listener.on_task_instance_success(None, task_instance) is None
    assert listener.on_task_instance_failed(None, task_instance, ValueError("x")) is None
    assert listener.on_task_instance_skipped(None, task_instance) is None
    assert listener.on_dag_run_success(task_instance, "success") is None
    assert listener.on_dag_run_failed(task_instance, "task_failure") is None
    assert listener.before_stopping(task_instance) is None


@pytest.mark.integration
def test_broken_store_leaves_outcomes_unchanged(load_dag, tmp_path, monkeypatch):
    """With a store that cannot be opened, the same tasks succeed and fail as without one."""
    import flowrecord
    from flowrecord.config import reset_config

    not_a_dir = tmp_path / "home"
    not_a_dir.write_text("this file is where the store's directory should be")
    monkeypatch.setenv("FLOWRECORD_HOME", str(not_a_dir))
    monkeypatch.setenv("FLOWRECORD_CAPTURE_CODE", "0")
    flowrecord.shutdown()
    reset_config()
    try:
        dag_run = load_dag("fr_failing").dag.test()
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    finally:
        flowrecord.shutdown()
        monkeypatch.undo()
        reset_config()
    assert dag_run.state == "failed"
    assert states == {
        "create_cluster": "success",
        "crunch": "failed",
        "publish": "upstream_failed",
        "delete_cluster": "success",
    }


class _SlowBackend:
    """A backend that takes far longer than the flush timeout for every finished task."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    @hookimpl
    def flowrecord_task_finished(self, tasks):
        time.sleep(self.delay)


@pytest.mark.integration
def test_slow_backend_does_not_hold_tasks(load_dag, flowrecord_home, record, monkeypatch):
    """A backend 10 s slow per call costs each task end at most FLOWRECORD_FLUSH_TIMEOUT."""
    import flowrecord
    from flowrecord import recorder
    from flowrecord.config import reset_config

    monkeypatch.setenv("FLOWRECORD_FLUSH_TIMEOUT", "0.3")
    flowrecord.shutdown()
    reset_config()
    recorder.register_backend("slow", _SlowBackend(10.0))
    try:
        started = time.perf_counter()
        dag_run = load_dag("fr_retry").dag.test()
        elapsed = time.perf_counter() - started
        flowrecord.flush(1)  # the slow backend spools; the local store has it all
    finally:
        recorder.unregister_backend("slow")
    assert dag_run.state == "success"
    # Two attempts, each ending with a bounded flush: far less than one 10 s call.
    assert elapsed < 8.0, elapsed
    run = record.run("fr_retry", dag_run.run_id)
    assert {(k[0], k[2]) for k in record.tasks(run)} == {("flaky", 1), ("flaky", 2)}


@pytest.mark.integration
def test_dag_test_returns_with_the_whole_record_stored(load_dag, flowrecord_home, record):
    """Under dag.test() tasks do not wait for delivery one by one, yet the record is complete on return."""
    from flowrecord_airflow import adapter

    dag_run = load_dag("fr_basic").dag.test()  # no flowrecord.flush() by the caller
    assert dag_run.state == "success"
    assert not adapter._unflushed, "the run's end did not flush what its tasks left"
    run = record.run("fr_basic", dag_run.run_id)
    assert run["state"] == "succeeded"
    tasks = record.tasks(run)
    assert {name for name, _, _ in tasks} == {"write_raw", "load", "train", "classic_python"}
    assert all(row["state"] == "succeeded" and row["ended_at"] for row in tasks.values())


class _CallableWithoutHash:
    """A task callable object that defines equality and so has no hash."""

    def __eq__(self, other):
        return isinstance(other, _CallableWithoutHash)

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, rows: int, label: str = "x") -> None:
        return None


@pytest.mark.unit
def test_argument_signatures_are_reused_and_an_unhashable_callable_still_gets_one():
    """A task function's signature is read once; a callable that cannot be a cache key still binds."""
    from flowrecord_airflow import adapter

    def task_fn(a: int, b: str = "y") -> None:
        return None

    assert adapter._signature(task_fn) is adapter._signature(task_fn)
    odd = _CallableWithoutHash()
    assert list(adapter._signature(odd).parameters) == ["rows", "label"]
