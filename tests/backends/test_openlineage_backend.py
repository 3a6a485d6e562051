"""The OpenLineage backend: a real pipeline's events, received over HTTP, checked against the spec.

Events go through the official client's HTTP transport to a small receiver on
127.0.0.1; each event and each facet is validated against the vendored
OpenLineage JSON schemas, and the lineage graph rebuilt from the events must be
the local store's.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _pipelines import PIPELINE, churn_pipeline

import flowrecord
from flowrecord import recorder
from flowrecord.backends.local import LocalStore
from flowrecord.backends.openlineage import OpenLineageBackend, resolve_settings
from flowrecord.dispatcher import pending_spool_files, replay_spool, send_batch, spool_dirs
from flowrecord.events import DatasetEvent, RunEvent, State, TaskEvent
from flowrecord.plugins import make_plugin_manager
from flowrecord.testing import isolated

pytestmark = pytest.mark.integration


@pytest.fixture
def lineage(lineage_receiver: Any, tmp_path: Path) -> dict[str, Any]:
    """The churn pipeline recorded to local and OpenLineage (HTTP transport)."""
    home = tmp_path / "home"
    with isolated(
        home,
        backends="local,openlineage",
        OPENLINEAGE_URL=lineage_receiver.url,
        FLOWRECORD_SYSTEM_SAMPLING="0",
    ) as rec:
        run = churn_pipeline(tmp_path / "work")
        assert flowrecord.flush(timeout=60)
        stats = recorder.get_runtime().dispatcher.stats()["openlineage"]  # type: ignore[union-attr]
    return {
        "home": home,
        "rec": rec,
        "run": run,
        "stats": stats,
        "events": list(lineage_receiver.events),
        "receiver": lineage_receiver,
        "store": LocalStore(home),
    }


def _by_run(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        runs.setdefault(event["run"]["runId"], []).append(event)
    return runs


def _edges(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(task, dataset, role) from the events, with flowrecord's dataset names."""

    def name_of(dataset: dict[str, Any]) -> str:
        symlinks = (dataset.get("facets") or {}).get("symlinks")
        return symlinks["identifiers"][0]["name"] if symlinks else dataset["name"]

    edges = set()
    for event in events:
        task = event["job"]["name"].removeprefix(f"{PIPELINE}.")
        for dataset in event.get("inputs") or []:
            edges.add((task, name_of(dataset), "input"))
        for dataset in event.get("outputs") or []:
            edges.add((task, name_of(dataset), "output"))
    return edges


def test_every_event_and_facet_matches_the_spec(lineage, openlineage_spec):
    """Each event validates against OpenLineage.json and each facet against its own schema."""
    assert lineage["stats"]["spooled"] == 0
    checked = sum(openlineage_spec.validate(event) for event in lineage["events"])
    keys = {
        key
        for event in lineage["events"]
        for place in ("inputs", "outputs")
        for dataset in event.get(place) or []
        for facets in (
            dataset.get("facets"),
            dataset.get("inputFacets"),
            dataset.get("outputFacets"),
        )
        for key in facets or {}
    }
    assert {"schema", "version", "dataQualityMetrics", "dataQualityAssertions"} <= keys
    assert {"outputStatistics", "symlinks"} <= keys
    assert checked > 30


def test_spec_validation_catches_a_broken_facet(lineage, openlineage_spec):
    """The validator is not a rubber stamp: a facet missing a required field fails."""
    import copy

    from jsonschema import ValidationError

    event = copy.deepcopy(
        next(
            e for e in lineage["events"] if any(d.get("inputFacets") for d in e.get("inputs") or [])
        )
    )
    dataset = next(d for d in event["inputs"] if d.get("inputFacets"))
    del dataset["inputFacets"]["dataQualityMetrics"]["columnMetrics"]
    with pytest.raises(ValidationError):
        openlineage_spec.validate(event)


def test_each_run_starts_once_and_ends_once(lineage):
    """Pipeline and task runs have one START and one terminal event; a failed task FAILs."""
    runs = _by_run(lineage["events"])
    tasks = {
        r["task_id"]: r["name"] for r in lineage["store"].query("SELECT task_id, name FROM tasks")
    }
    assert set(runs) == {lineage["run"].run_id, *tasks}
    kinds = {run_id: [e["eventType"] for e in events] for run_id, events in runs.items()}
    assert kinds[lineage["run"].run_id] == ["START", "COMPLETE"]
    by_name = {tasks[t]: kinds[t] for t in tasks}
    assert by_name == {
        "extract": ["START", "COMPLETE"],
        "train": ["START", "COMPLETE"],
        "evaluate": ["START", "FAIL"],
    }
    (fail,) = [e for e in lineage["events"] if e["eventType"] == "FAIL"]
    assert "holdout set is empty" in fail["run"]["facets"]["errorMessage"]["message"]


def test_task_runs_link_to_their_pipeline_run(lineage):
    """Task jobs are <pipeline>.<task> in the orchestrator's namespace, with a parent facet."""
    run_id = lineage["run"].run_id
    for event in lineage["events"]:
        job = event["job"]
        assert job["namespace"] == "python"
        assert job["facets"]["jobType"]["processingType"] == "BATCH"
        if event["run"]["runId"] == run_id:
            assert job["name"] == PIPELINE
            assert job["facets"]["jobType"]["jobType"] == "PIPELINE"
            continue
        assert job["name"].startswith(f"{PIPELINE}.")
        assert job["facets"]["jobType"]["jobType"] == "TASK"
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == run_id
        assert parent["job"] == {"namespace": "python", "name": PIPELINE, "facets": {}}
        assert parent["root"]["run"]["runId"] == run_id


def test_lineage_graph_matches_the_local_store(lineage):
    """The same datasets and the same task -> dataset edges as the local store."""
    expected = {
        (r["task"], r["dataset"], r["role"])
        for r in lineage["store"].query(
            "SELECT t.name AS task, d.name AS dataset, d.role FROM datasets d JOIN tasks t USING (task_id)"
        )
    }
    assert _edges(lineage["events"]) == expected


def test_dataset_facets_describe_the_content(lineage):
    """Fingerprint as version, schema, row and null counts, assertions, output statistics."""
    store = lineage["store"]
    (train_end,) = [
        e
        for e in lineage["events"]
        if e["job"]["name"] == f"{PIPELINE}.train" and e["eventType"] == "COMPLETE"
    ]
    customers = next(d for d in train_end["inputs"] if d["name"] == "customers")
    (row,) = store.query(
        "SELECT d.fingerprint, d.row_count FROM datasets d JOIN tasks t USING (task_id) "
        "WHERE t.name = 'train' AND d.name = 'customers'"
    )
    assert customers["namespace"] == "flowrecord"
    assert customers["facets"]["version"]["datasetVersion"] == row["fingerprint"]
    assert [f["name"] for f in customers["facets"]["schema"]["fields"]] == ["age", "city"]
    metrics = customers["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == row["row_count"] == 4
    assert metrics["columnMetrics"]["age"]["nullCount"] == 1
    assert metrics["columnMetrics"]["age"]["min"] == 22.0
    assertions = customers["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert {k: assertions[0][k] for k in ("assertion", "success")} == {
        "assertion": "pandera",
        "success": False,
    }
    assert any(a.get("column") == "age" and not a["success"] for a in assertions[1:])
    features = next(
        d
        for d in train_end["inputs"]
        if d["facets"].get("symlinks", {}).get("identifiers", [{}])[0].get("name") == "features"
    )
    assert features["namespace"] == "file" and features["name"].endswith("features.csv")
    (extract_end,) = [
        e
        for e in lineage["events"]
        if e["job"]["name"] == f"{PIPELINE}.extract" and e["eventType"] == "COMPLETE"
    ]
    written = next(d for d in extract_end["outputs"] if d["name"] == "customers")
    assert written["outputFacets"]["outputStatistics"]["rowCount"] == 4
    assert written["facets"]["dataQualityMetrics"]["columnMetrics"]["city"]["nullCount"] == 0


def test_replayed_batches_emit_nothing_twice(lineage):
    """Every recorded batch sent again through a new backend in the same home emits nothing."""
    receiver = lineage["receiver"]
    before = len(receiver.events)
    backend = OpenLineageBackend(
        resolve_settings({"home": str(lineage["home"])}, {"OPENLINEAGE_URL": receiver.url})
    )
    pm = make_plugin_manager([("openlineage", backend)])
    os.environ["OPENLINEAGE_URL"] = receiver.url
    for _, batch in lineage["rec"].calls:
        send_batch(lambda hook: getattr(pm.hook, hook), batch)
    backend.flowrecord_backend_close()
    assert len(receiver.events) == before


def _http_transport(tmp_path: Path, url: str) -> Path:
    """An OpenLineage config file: the HTTP transport to *url*, no retries of its own."""
    config = tmp_path / "openlineage.yml"
    config.write_text(f"transport:\n  type: http\n  url: {url}\n  retry:\n    total: 0\n")
    return config


def _recording_to(home: Path, config: Path) -> Any:
    """Record into *home* with the local store and OpenLineage through *config*."""
    return isolated(
        home,
        backends="local,openlineage",
        OPENLINEAGE_CONFIG=str(config),
        FLOWRECORD_SYSTEM_SAMPLING="0",
    )


def test_failing_endpoint_spools_then_replay_delivers(lineage_receiver, tmp_path, openlineage_spec):
    """An endpoint answering 500 spools the events; the replay sends each run's events once."""
    home = tmp_path / "home"
    lineage_receiver.status = 500
    config = _http_transport(tmp_path, lineage_receiver.url)
    with _recording_to(home, config):
        churn_pipeline(tmp_path / "work")
        flowrecord.flush(timeout=30)
    assert lineage_receiver.events == []
    assert pending_spool_files(spool_dirs(home, "openlineage"))

    lineage_receiver.status = 200
    backend = OpenLineageBackend()
    pm = make_plugin_manager([("openlineage", backend)])
    os.environ["OPENLINEAGE_CONFIG"] = str(config)
    backend.flowrecord_backend_configure({"home": str(home)})
    stats = replay_spool(spool_dirs(home, "openlineage"), lambda hook: getattr(pm.hook, hook))
    assert stats.failed_files == 0, stats.errors
    runs = _by_run(lineage_receiver.events)
    assert len(runs) == 4
    for events in runs.values():
        types = [e["eventType"] for e in events]
        assert types[0] == "START" and types.count("START") == 1
        assert len([t for t in types if t in ("COMPLETE", "FAIL", "ABORT")]) == 1
    for event in lineage_receiver.events:
        openlineage_spec.validate(event)
    expected = {
        (r["task"], r["dataset"], r["role"])
        for r in LocalStore(home).query(
            "SELECT t.name AS task, d.name AS dataset, d.role FROM datasets d JOIN tasks t USING (task_id)"
        )
    }
    assert _edges(lineage_receiver.events) == expected


def test_events_the_endpoint_refuses_are_dead_letters_the_rest_arrive(lineage_receiver, tmp_path):
    """An endpoint answering 400 to one task's events: those are dead letters, all others arrive."""
    from flowrecord.dispatcher import list_dead_letters

    home = tmp_path / "home"
    lineage_receiver.refuse = lambda event: event["job"]["name"].endswith(".train")
    with _recording_to(home, _http_transport(tmp_path, lineage_receiver.url)):
        churn_pipeline(tmp_path / "work")
        assert flowrecord.flush(timeout=30)
        stats = recorder.get_runtime().dispatcher.stats()["openlineage"]
    assert stats["dead"] >= 1 and stats["lost"] == 0
    assert pending_spool_files(spool_dirs(home, "openlineage")) == []
    dead = list_dead_letters(spool_dirs(home, "openlineage"))
    assert dead and all("refused" in entry["error"] for entry in dead)
    jobs = {event["job"]["name"] for event in lineage_receiver.events}
    assert not any(name.endswith(".train") for name in jobs)
    assert any(name.endswith(".extract") for name in jobs)
    assert any(name.endswith(".evaluate") for name in jobs)


# ---------------------------------------------------------------------------
# datasets held between a task's start and end
# ---------------------------------------------------------------------------

RUN_ID = "cccccccc-0000-5000-8000-000000000001"
TASK_ID = "cccccccc-0000-5000-8000-000000000002"


def _backend(home: Path, url: str) -> OpenLineageBackend:
    os.environ["OPENLINEAGE_URL"] = url
    backend = OpenLineageBackend()
    backend.flowrecord_backend_configure({"home": str(home)})
    return backend


def _start(backend: OpenLineageBackend) -> None:
    now = time.time()
    backend.flowrecord_run_started(
        [
            RunEvent(
                event_id="r",
                ts=now,
                run_id=RUN_ID,
                state=State.STARTED,
                orchestrator="dagster",
                pipeline="assets",
                run_key="k",
            )
        ]
    )
    backend.flowrecord_task_started(
        [
            TaskEvent(
                event_id="t",
                ts=now,
                run_id=RUN_ID,
                task_id=TASK_ID,
                state=State.STARTED,
                name="orders",
            )
        ]
    )
    backend.flowrecord_dataset_logged(
        [
            DatasetEvent(
                event_id="d",
                ts=now,
                run_id=RUN_ID,
                task_id=TASK_ID,
                name="orders",
                role="output",
                fingerprint="xxh3:00ff",
                row_count=7,
            )
        ]
    )


def _finish(backend: OpenLineageBackend) -> None:
    backend.flowrecord_task_finished(
        [
            TaskEvent(
                event_id="f",
                ts=time.time(),
                run_id=RUN_ID,
                task_id=TASK_ID,
                state=State.SUCCEEDED,
                name="orders",
            )
        ]
    )


def _outputs(event: dict[str, Any]) -> list[str]:
    return [d["name"] for d in event.get("outputs") or []]


def test_datasets_survive_a_process_restart(lineage_receiver, tmp_path, openlineage_spec):
    """Datasets seen by one process reach the task's COMPLETE sent by the next one."""
    first = _backend(tmp_path / "home", lineage_receiver.url)
    _start(first)
    del first  # the process is gone without closing anything
    second = _backend(tmp_path / "home", lineage_receiver.url)
    _finish(second)
    (complete,) = lineage_receiver.of_type("COMPLETE")
    assert _outputs(complete) == ["orders"]
    assert complete["job"] == {**complete["job"], "namespace": "dagster", "name": "assets.orders"}
    for event in lineage_receiver.events:
        openlineage_spec.validate(event)


def test_open_task_datasets_go_out_in_running_at_process_end(lineage_receiver, tmp_path):
    """A process ending before its task ends sends the task's datasets in a RUNNING event."""
    first = _backend(tmp_path / "home", lineage_receiver.url)
    _start(first)
    first.flowrecord_backend_close()
    (running,) = lineage_receiver.of_type("RUNNING")
    assert running["run"]["runId"] == TASK_ID and _outputs(running) == ["orders"]
    _finish(_backend(tmp_path / "home", lineage_receiver.url))
    (complete,) = lineage_receiver.of_type("COMPLETE")
    assert _outputs(complete) == ["orders"]  # the end repeats them: consumers merge


def test_datasets_of_a_killed_process_go_out_with_the_next_one(lineage_receiver, tmp_path):
    """Datasets held by a process that died (SIGKILL, no close) are sent in RUNNING by the next."""
    first = _backend(tmp_path / "home", lineage_receiver.url)
    _start(first)
    dead = subprocess.Popen(["true"])
    dead.wait()
    first.state.execute("UPDATE pending SET pid = ?", (dead.pid,))
    second = _backend(tmp_path / "home", lineage_receiver.url)
    second.flowrecord_run_started(
        [
            RunEvent(
                event_id="r2",
                ts=time.time(),
                run_id="cccccccc-0000-5000-8000-000000000009",
                state=State.STARTED,
                orchestrator="dagster",
                pipeline="other",
                run_key="k",
            )
        ]
    )
    (running,) = lineage_receiver.of_type("RUNNING")
    assert running["run"]["runId"] == TASK_ID and _outputs(running) == ["orders"]


def test_a_dataset_after_the_end_goes_out_in_other(lineage_receiver, tmp_path, openlineage_spec):
    """A dataset that arrives after its task's terminal event is sent in an OTHER event."""
    backend = _backend(tmp_path / "home", lineage_receiver.url)
    _start(backend)
    _finish(backend)
    backend.flowrecord_dataset_logged(
        [
            DatasetEvent(
                event_id="late",
                ts=time.time(),
                run_id=RUN_ID,
                task_id=TASK_ID,
                name="late_report",
                role="output",
            )
        ]
    )
    (other,) = lineage_receiver.of_type("OTHER")
    assert _outputs(other) == ["late_report"]
    openlineage_spec.validate(other)
