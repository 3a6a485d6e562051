"""The MLflow backend against a real tracking server on PostgreSQL (and a sqlite store).

A plain-Python pipeline runs through the recorder with ``local,mlflow``; what
MLflow holds is read back through ``MlflowClient`` and the REST API and
compared with the local store.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from _pipelines import LOSS_POINTS, PIPELINE, churn_pipeline

import flowrecord
from flowrecord import recorder
from flowrecord.backends.local import LocalStore
from flowrecord.backends.mlflow import (
    EventRefused,
    MlflowBackend,
    RunNotKnownYet,
    resolve_settings,
)
from flowrecord.dispatcher import send_batch, subset_callers
from flowrecord.events import MetricBatch, RunEvent, State, TaskEvent
from flowrecord.plugins import make_plugin_manager
from flowrecord.testing import isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_for_code(home: Path, runs: int, timeout: float = 60.0) -> None:
    """The code snapshot is taken in a background thread: wait until it is recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flowrecord.flush(timeout=30)
        if len(LocalStore(home).query("SELECT 1 FROM code_snapshots")) == runs:
            return
        time.sleep(0.2)
    raise AssertionError("the code snapshot never arrived")


@pytest.fixture(scope="module")
def recorded(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The churn pipeline (and one failing run) recorded to local and MLflow."""
    root = tmp_path_factory.mktemp("mlflow_pipeline")
    home = root / "home"
    with isolated(
        home,
        backends="local,mlflow",
        MLFLOW_TRACKING_URI=mlflow_server.url,
        FLOWRECORD_CAPTURE_CODE="1",
        FLOWRECORD_SAMPLE_INTERVAL="0.05",
    ) as rec:
        t0 = time.monotonic()
        run = churn_pipeline(root / "work")
        print(f"pipeline took {time.monotonic() - t0:.1f} s")
        with pytest.raises(RuntimeError), flowrecord.run(PIPELINE, "failing"):
            raise RuntimeError("upstream data missing")
        t0 = time.monotonic()
        _wait_for_code(home, runs=2)
        print(f"code snapshots took {time.monotonic() - t0:.1f} s")
        assert flowrecord.flush(timeout=120)
        stats = recorder.get_runtime().dispatcher.stats()["mlflow"]  # type: ignore[union-attr]
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name(PIPELINE)
    return {
        "home": home,
        "rec": rec,
        "run": run,
        "stats": stats,
        "client": client,
        "experiment_id": experiment.experiment_id,
        "url": mlflow_server.url,
        "store": LocalStore(home),
    }


def _runs(recorded: dict[str, Any], flt: str) -> list[Any]:
    return recorded["client"].search_runs([recorded["experiment_id"]], filter_string=flt)


def _parent(recorded: dict[str, Any]) -> Any:
    (parent,) = _runs(
        recorded,
        f"tags.`flowrecord.run_id` = '{recorded['run'].run_id}' and tags.`flowrecord.kind` = 'run'",
    )
    return parent


def _children(recorded: dict[str, Any]) -> dict[str, Any]:
    parent = _parent(recorded)
    runs = _runs(recorded, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return {r.data.tags["flowrecord.task"]: r for r in runs}


def test_everything_was_delivered_without_spooling(recorded):
    """With the server up, every event reaches MLflow directly; nothing is spooled."""
    assert recorded["stats"]["spooled"] == 0
    assert recorded["stats"]["error"] is None
    assert recorded["stats"]["delivered"] > LOSS_POINTS


def test_pipeline_run_is_a_parent_run_with_nested_task_runs(recorded):
    """One parent run per pipeline run; each task a nested run with orchestrator tags."""
    parent = _parent(recorded)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "2026-11-22"
    tags = parent.data.tags
    assert tags["flowrecord.orchestrator"] == "python"
    assert tags["flowrecord.pipeline"] == PIPELINE
    assert tags["owner"] == "ana"
    children = _children(recorded)
    assert set(children) == {"extract", "train", "evaluate"}
    tasks = {
        r["name"]: r
        for r in recorded["store"].query("SELECT name, task_id, try_number, state FROM tasks")
    }
    for name, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["flowrecord.task_id"] == tasks[name]["task_id"]
        assert child.data.tags["flowrecord.try_number"] == "1"
        assert child.data.tags["flowrecord.pipeline"] == PIPELINE
        assert child.info.run_name == name
    assert children["extract"].data.tags["flowrecord.attr.dag_id"] == PIPELINE
    assert children["train"].info.status == "FINISHED"
    assert children["evaluate"].info.status == "FAILED"
    assert "holdout set is empty" in children["evaluate"].data.tags["flowrecord.error"]


def test_failed_pipeline_run_is_failed_in_mlflow(recorded):
    """A run whose body raised is FAILED, with the error as a tag."""
    (failing,) = _runs(recorded, "tags.`flowrecord.run_key` = 'failing'")
    assert failing.info.status == "FAILED"
    assert "upstream data missing" in failing.data.tags["flowrecord.error"]


def test_code_commit_and_environment(recorded):
    """The run carries mlflow.source.git.commit and the environment as an artifact."""
    (code,) = recorded["store"].query(
        "SELECT commit_sha, python FROM code_snapshots WHERE run_id = ?", (recorded["run"].run_id,)
    )
    parent = _parent(recorded)
    assert parent.data.tags["mlflow.source.git.commit"] == code["commit_sha"]
    client = recorded["client"]
    env_file = client.download_artifacts(parent.info.run_id, "flowrecord/environment.json")
    environment = json.loads(Path(env_file).read_text())
    assert environment["python"] == code["python"]
    assert environment["packages"]


def test_params_metrics_and_tags_match_the_local_store(recorded):
    """Params, tags and every metric point (value, step, timestamp) agree with the local store."""
    client = recorded["client"]
    train = _children(recorded)["train"]
    assert train.data.params == {"max_depth": "6", "learning_rate": "0.1"}
    assert train.data.tags["team"] == "fraud"
    history = client.get_metric_history(train.info.run_id, "loss")
    store_points = recorded["store"].query(
        "SELECT value, step, ts FROM metric_points WHERE key = 'loss' ORDER BY step"
    )
    assert len(history) == len(store_points) == LOSS_POINTS
    assert sorted((m.step, m.value, m.timestamp) for m in history) == [
        (p["step"], p["value"], round(p["ts"] * 1000)) for p in store_points
    ]
    assert train.data.metrics["auc"] == 0.91
    rest = requests.get(
        f"{recorded['url']}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": train.info.run_id, "metric_key": "loss", "max_results": 5000},
        timeout=30,
    ).json()
    assert len(rest["metrics"]) == LOSS_POINTS


def test_datasets_are_mlflow_dataset_inputs(recorded):
    """Datasets are MLflow dataset inputs: name, digest = fingerprint, context, profile."""
    children = _children(recorded)
    store = recorded["store"]
    for task_name, child in children.items():
        expected = {
            (r["name"], r["role"], r["fingerprint"], r["row_count"])
            for r in store.query(
                "SELECT d.name, d.role, d.fingerprint, d.row_count FROM datasets d "
                "JOIN tasks t USING (task_id) WHERE t.name = ?",
                (task_name,),
            )
        }
        got = set()
        for dataset_input in child.inputs.dataset_inputs:
            dataset = dataset_input.dataset
            tags = {t.key: t.value for t in dataset_input.tags}
            profile = json.loads(dataset.profile)
            assert dataset.digest == profile["fingerprint"].split(":")[-1]
            assert tags["flowrecord.fingerprint"] == profile["fingerprint"]
            got.add(
                (
                    dataset.name,
                    tags["mlflow.data.context"],
                    profile["fingerprint"],
                    profile["num_rows"],
                )
            )
        assert got == expected, task_name
    train = children["train"]
    (customers,) = [d.dataset for d in train.inputs.dataset_inputs if d.dataset.name == "customers"]
    assert customers.source_type == "code"
    columns = json.loads(customers.schema)["mlflow_colspec"]
    assert [c["name"] for c in columns] == ["age", "city"]
    (features,) = [d.dataset for d in train.inputs.dataset_inputs if d.dataset.name == "features"]
    assert features.source_type == "local"
    assert json.loads(features.source)["uri"].endswith("features.csv")


def test_validation_results_are_tags_metrics_and_an_artifact(recorded):
    """A validation is a tag (passed/failed), metrics and a JSON artifact with the checks."""
    client = recorded["client"]
    train = _children(recorded)["train"]
    (row,) = recorded["store"].query(
        "SELECT validation_id, passed, failure_count FROM validations WHERE validator = 'pandera'"
    )
    assert row["passed"] == 0
    assert train.data.tags["flowrecord.validation.customers.pandera"] == "failed"
    assert train.data.metrics["validation/customers/pandera/passed"] == 0.0
    assert train.data.metrics["validation/customers/pandera/failure_count"] == row["failure_count"]
    listed = requests.get(
        f"{recorded['url']}/api/2.0/mlflow/artifacts/list",
        params={"run_id": train.info.run_id, "path": "flowrecord/validations"},
        timeout=30,
    ).json()
    assert [f["path"] for f in listed["files"]] == [
        f"flowrecord/validations/{row['validation_id']}.json"
    ]
    body = json.loads(
        Path(client.download_artifacts(train.info.run_id, listed["files"][0]["path"])).read_text()
    )
    assert body["failure_count"] == row["failure_count"]
    assert body["checks"]


def test_system_usage_is_system_metrics(recorded):
    """CPU and memory samples are system/ metrics with one point per sample."""
    client = recorded["client"]
    train = _children(recorded)["train"]
    (usage,) = recorded["store"].query(
        "SELECT u.summary, count(s.seq) AS n FROM system_usage u JOIN tasks t USING (task_id) "
        "LEFT JOIN system_samples s ON s.event_id = u.event_id WHERE t.name = 'train' GROUP BY u.event_id"
    )
    assert (
        len(client.get_metric_history(train.info.run_id, "system/cpu_percent")) == usage["n"] >= 1
    )
    assert (
        train.data.metrics["system/rss_bytes_peak"]
        == json.loads(usage["summary"])["rss_bytes_peak"]
    )


def test_artifact_is_uploaded(recorded):
    """A logged artifact is in the task run's artifacts, byte for byte."""
    client = recorded["client"]
    train = _children(recorded)["train"]
    local = client.download_artifacts(train.info.run_id, "model.pkl")
    assert Path(local).read_bytes() == b"weights"


def _census(recorded: dict[str, Any]) -> dict[str, Any]:
    """What MLflow holds for the experiment: runs, metric points, datasets, params."""
    client = recorded["client"]
    runs = client.search_runs([recorded["experiment_id"]], max_results=1000)
    census: dict[str, Any] = {"runs": len(runs)}
    for run in runs:
        rid = run.info.run_id
        for key in run.data.metrics:
            census[f"{rid}:{key}"] = len(client.get_metric_history(rid, key))
        census[f"{rid}:inputs"] = len(run.inputs.dataset_inputs)
        census[f"{rid}:params"] = dict(run.data.params)
        census[f"{rid}:status"] = run.info.status
    return census


def _replay(recorded: dict[str, Any], home: Path) -> None:
    backend = MlflowBackend()
    pm = make_plugin_manager([("mlflow", backend)])
    callers = subset_callers(pm, "mlflow")
    callers("flowrecord_backend_configure")(
        config={"home": str(home), "mlflow": {"tracking_uri": recorded["url"]}}
    )
    for _, batch in recorded["rec"].calls:
        send_batch(callers, batch)


def test_replaying_every_event_twice_creates_nothing_new(recorded, tmp_path, monkeypatch):
    """Every recorded batch sent again, with and without the ledger, adds no run or point."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = _census(recorded)
    _replay(recorded, recorded["home"])  # same home: the ledger skips what was applied
    assert _census(recorded) == before
    _replay(recorded, tmp_path / "fresh-home")  # no ledger: runs found by tag, SQL dedupes points
    assert _census(recorded) == before


def test_racing_processes_converge_on_one_mlflow_run(mlflow_server, tmp_path):
    """Two backends creating the same run at once end up using the same, single MLflow run."""
    event = RunEvent(
        event_id="e1",
        ts=time.time(),
        run_id="11111111-2222-5333-8444-555555555555",
        state=State.STARTED,
        orchestrator="airflow",
        pipeline="race",
        run_key="r",
    )
    backends = []
    for i in range(2):
        backend = MlflowBackend(
            resolve_settings(
                {"home": str(tmp_path / f"h{i}"), "mlflow": {"tracking_uri": mlflow_server.url}}
            )
        )
        backend.flowrecord_backend_configure({})
        backend.client  # noqa: B018 - import and connect before the race starts
        backends.append(backend)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def start(backend: MlflowBackend) -> None:
        barrier.wait()
        results.append(backend._parent(event.run_id, identity=event, create=True))

    threads = [threading.Thread(target=start, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and results[0] == results[1]
    client = backends[0].client
    experiment = client.get_experiment_by_name("race")
    active = client.search_runs([experiment.experiment_id], "tags.`flowrecord.kind` = 'run'")
    assert [r.info.run_id for r in active] == [results[0]]


def test_events_of_an_unknown_run_wait_then_are_given_up(mlflow_server, tmp_path):
    """Points for a run MLflow never saw raise (so they spool); over a day old they are refused for good."""
    backend = MlflowBackend(
        resolve_settings({"home": str(tmp_path), "mlflow": {"tracking_uri": mlflow_server.url}})
    )
    backend.flowrecord_backend_configure({})
    point = (
        "e-unknown-1",
        time.time(),
        "99999999-0000-5000-8000-000000000000",
        None,
        "loss",
        1.0,
        0,
    )
    with pytest.raises(RunNotKnownYet):
        backend.flowrecord_metrics_logged(MetricBatch([point]))
    old = ("e-unknown-2", time.time() - 2 * 86400, *point[2:])
    with pytest.raises(EventRefused):  # permanent: the dispatcher keeps it as a dead letter
        backend.flowrecord_metrics_logged(MetricBatch([old]))
    # Once the run's start arrives, the waiting point goes through.
    run = RunEvent(
        event_id="s",
        ts=time.time(),
        run_id=point[2],
        state=State.STARTED,
        orchestrator="python",
        pipeline="late-start",
        run_key="k",
    )
    backend.flowrecord_run_started([run])
    backend.flowrecord_metrics_logged(MetricBatch([point]))
    mlflow_run = backend._parent(point[2])
    assert len(backend.client.get_metric_history(mlflow_run, "loss")) == 1


def _run_and_task(backend: MlflowBackend, run_id: str, task_ids: list[str]) -> None:
    backend.flowrecord_run_started(
        [
            RunEvent(
                event_id=f"s-{run_id}",
                ts=time.time(),
                run_id=run_id,
                state=State.STARTED,
                orchestrator="python",
                pipeline="refused",
                run_key=run_id,
            )
        ]
    )
    backend.flowrecord_task_started(
        [
            TaskEvent(
                event_id=f"t-{task_id}",
                ts=time.time(),
                run_id=run_id,
                task_id=task_id,
                state=State.STARTED,
                name=f"train-{task_id[-1]}",
            )
            for task_id in task_ids
        ]
    )


def test_a_refused_event_raises_a_permanent_refusal(mlflow_server, tmp_path):
    """When MLflow refuses for good (the run was deleted), the hook raises EventRefused, not marked done."""
    backend = MlflowBackend(
        resolve_settings({"home": str(tmp_path), "mlflow": {"tracking_uri": mlflow_server.url}})
    )
    backend.flowrecord_backend_configure({})
    run_id, task_id = "aaaaaaaa-0000-5000-8000-000000000001", "aaaaaaaa-0000-5000-8000-000000000002"
    _run_and_task(backend, run_id, [task_id])
    backend.client.delete_run(backend._child(task_id, run_id))
    point = ("e-refused", time.time(), run_id, task_id, "loss", 1.0, 0)
    with pytest.raises(EventRefused, match="MLflow refused"):
        backend.flowrecord_metrics_logged(MetricBatch([point]))
    assert backend.ledger.applied(["e-refused"]) == set()


def test_refused_points_become_dead_letters_and_the_rest_reach_mlflow(mlflow_server, tmp_path):
    """Through the dispatcher: the points MLflow refuses are kept as dead letters, the others stored once."""
    from flowrecord.dispatcher import Dispatcher, list_dead_letters, spool_dirs

    backend = MlflowBackend(
        resolve_settings({"home": str(tmp_path), "mlflow": {"tracking_uri": mlflow_server.url}})
    )
    backend.flowrecord_backend_configure({})
    run_id = "aaaaaaaa-0000-5000-8000-000000000011"
    live, gone = "aaaaaaaa-0000-5000-8000-000000000012", "aaaaaaaa-0000-5000-8000-000000000013"
    _run_and_task(backend, run_id, [live, gone])
    backend.client.delete_run(backend._child(gone, run_id))
    pm = make_plugin_manager([("mlflow", backend)])
    dispatcher = Dispatcher({"mlflow": subset_callers(pm, "mlflow")}, home=tmp_path)
    try:
        for step in range(20):  # the two tasks' points interleaved, as a batch holds them
            for task_id in (live, gone):
                dispatcher.submit(
                    (f"p-{task_id[-2:]}-{step}", time.time(), run_id, task_id, "loss", 0.5, step)
                )
        assert dispatcher.flush(60)
        stats = dispatcher.stats()["mlflow"]
    finally:
        dispatcher.close(10)
    history = backend.client.get_metric_history(backend._child(live, run_id), "loss")
    assert sorted(m.step for m in history) == list(range(20))
    assert stats["dead"] == 20 and stats["lost"] == 0
    dead = list_dead_letters(spool_dirs(tmp_path, "mlflow"))
    assert len(dead) == 20
    assert all("MLflow refused" in entry["error"] for entry in dead)


def test_sqlite_tracking_uri_from_pyproject(tmp_path, monkeypatch):
    """[tool.flowrecord.mlflow] picks a sqlite store, an experiment template, an artifact root."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "mlflow.db"
    artifacts = tmp_path / "mlartifacts"
    (tmp_path / "pyproject.toml").write_text(
        "[tool.flowrecord.mlflow]\n"
        f'tracking_uri = "sqlite:///{db}"\n'
        'experiment = "fr-{orchestrator}-{pipeline}"\n'
        f'artifact_location = "{artifacts.as_uri()}"\n'
    )
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    with isolated(home, backends="local,mlflow"):
        with flowrecord.run("nightly", "k1"), flowrecord.task("fit"):
            flowrecord.log_param("alpha", 0.5)
            flowrecord.log_metric("rmse", 1.25, step=3)
            flowrecord.log_artifact(_write(tmp_path / "report.txt", "ok"))
        assert flowrecord.flush(timeout=120)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fr-python-nightly")
    assert experiment.artifact_location == artifacts.as_uri()
    (fit,) = client.search_runs([experiment.experiment_id], "tags.`flowrecord.kind` = 'task'")
    assert fit.data.params == {"alpha": "0.5"}
    (point,) = client.get_metric_history(fit.info.run_id, "rmse")
    assert (point.value, point.step) == (1.25, 3)
    assert fit.info.status == "FINISHED"
    assert Path(client.download_artifacts(fit.info.run_id, "report.txt")).read_text() == "ok"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
