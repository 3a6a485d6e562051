"""The MLflow tracking server dies in the middle of a pipeline run, and comes back.

The server is killed (SIGKILL) exactly between two ``log_batch`` calls of one
batch of metric points, while a pipeline runs through the recorder with
``local,mlflow``. The tasks must still end quickly, the events must wait in the
spool, and once the server is back on the same database and port, replaying
the spool must deliver every metric point exactly once: the points accepted
before the kill are in the ledger and are not sent again.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import flowrecord
from flowrecord import recorder
from flowrecord.backends.local import LocalStore
from flowrecord.backends.mlflow import MlflowBackend
from flowrecord.dispatcher import pending_spool_files, replay_spool, spool_dirs, subset_callers
from flowrecord.events import State
from flowrecord.plugins import make_plugin_manager
from flowrecord.testing import isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.reliability]

FLUSH_TIMEOUT_S = 1.0


class CountingClient:
    """The real MlflowClient, counting metric points per ``log_batch`` call.

    With *kill* set, the tracking server is killed just before that call (1-based)
    goes out, so the call itself meets a dead server.
    """

    def __init__(self, client: Any, server: Any = None, kill: int | None = None) -> None:
        self._client = client
        self._server = server
        self._kill = kill
        self.metric_calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def log_batch(self, run_id: str, metrics: Any = (), **kwargs: Any) -> Any:
        if metrics:
            self.metric_calls.append(len(metrics))
            if len(self.metric_calls) == self._kill:
                self._server.kill()
        return self._client.log_batch(run_id, metrics=metrics, **kwargs)


def _timed_task(name: str, points: int) -> float:
    """One task ending like an integration's task process does (flush=True); its end's wall time."""
    task = recorder.start_task(name)
    for step in range(points):
        flowrecord.log_metric(f"{name}_loss", 1.0 / (step + 1), step=step)
    t0 = time.monotonic()
    recorder.end_task(task, state=State.SUCCEEDED, flush=True)
    return time.monotonic() - t0


def test_server_killed_mid_batch_then_spool_replays_exactly_once(mlflow_server, tmp_path):
    """Tasks end within the flush timeout, events spool, replay delivers each point once."""
    from mlflow import MlflowClient

    home = tmp_path / "home"
    with isolated(
        home,
        backends="local,mlflow",
        MLFLOW_TRACKING_URI=mlflow_server.url,
        FLOWRECORD_FLUSH_TIMEOUT=str(FLUSH_TIMEOUT_S),
        FLOWRECORD_SYSTEM_SAMPLING="0",
    ):
        run = flowrecord.start_run("faulty", "k1")
        _timed_task("warmup", 3)
        assert flowrecord.flush(timeout=120)  # the runs exist in MLflow before the fault
        backend = recorder.get_runtime().pm.get_plugin("mlflow")  # type: ignore[union-attr]
        killer = CountingClient(backend.client, mlflow_server, kill=2)
        backend.client = killer
        # 2500 points: log_batch calls of up to 1000; the server dies before the second.
        ends = [_timed_task("train", 2500)]
        deadline = time.monotonic() + 60
        while mlflow_server.proc is not None and time.monotonic() < deadline:
            time.sleep(0.1)  # the worker kills the server when it reaches the second call
        assert mlflow_server.proc is None, "the server was never killed"
        ends += [_timed_task("score", 10), _timed_task("publish", 10)]
        flowrecord.end_run(run)
        flowrecord.flush()
        stats = recorder.get_runtime().dispatcher.stats()["mlflow"]  # type: ignore[union-attr]
    assert max(ends) < FLUSH_TIMEOUT_S + 1.5, ends
    assert stats["spooled"] > 0 and stats["error"]
    spooled = pending_spool_files(spool_dirs(home, "mlflow"))
    assert spooled and all(p.parent == home / "spool" / "mlflow" for p in spooled)

    # Before the kill the server accepted exactly one call of points, and the ledger says so.
    first_call = killer.metric_calls[0]
    store = LocalStore(home)
    train_ids = [
        r["event_id"]
        for r in store.query("SELECT event_id FROM metric_points WHERE key = 'train_loss'")
    ]
    assert len(backend.ledger.applied(train_ids)) == first_call

    all_ids = [r[0] for r in store.query("SELECT event_id FROM metric_points")]
    total_points = len(all_ids)
    applied_before = len(backend.ledger.applied(all_ids))

    mlflow_server.start()  # same database, same port
    fresh = MlflowBackend()
    pm = make_plugin_manager([("mlflow", fresh)])
    callers = subset_callers(pm, "mlflow")
    callers("flowrecord_backend_configure")(
        config={"home": str(home), "mlflow": {"tracking_uri": mlflow_server.url}}
    )
    counter = CountingClient(fresh.client)
    fresh.client = counter
    result = replay_spool(spool_dirs(home, "mlflow"), callers)
    assert result.failed_files == 0, result.errors
    assert not pending_spool_files(spool_dirs(home, "mlflow"))
    assert sum(counter.metric_calls) == total_points - applied_before

    # A second replay of everything finds nothing left to send.
    assert replay_spool(spool_dirs(home, "mlflow"), callers).events == 0

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("faulty")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`flowrecord.kind` = 'run'")
    assert parent.info.status == "FINISHED"
    children = client.search_runs([experiment.experiment_id], "tags.`flowrecord.kind` = 'task'")
    assert sorted(c.data.tags["flowrecord.task"] for c in children) == [
        "publish",
        "score",
        "train",
        "warmup",
    ]
    expected = {
        (r["task"], r["key"]): r["n"]
        for r in store.query(
            "SELECT t.name AS task, m.key, count(*) AS n FROM metric_points m "
            "JOIN tasks t USING (task_id) GROUP BY t.name, m.key"
        )
    }
    got = {
        (c.data.tags["flowrecord.task"], key): len(client.get_metric_history(c.info.run_id, key))
        for c in children
        for key in c.data.metrics
    }
    assert got == expected
    assert expected[("train", "train_loss")] == 2500
    assert all(c.info.status == "FINISHED" for c in children)
