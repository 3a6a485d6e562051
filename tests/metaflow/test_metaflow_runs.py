"""A real Metaflow run switched on with ``--with flowrecord``: every task, its lineage, its record.

RecordFlow (tests/metaflow/flows/record_flow.py) has a branch and a join, a
foreach of three shards run four at a time, one shard failing once under
``@retry``, a ``@catch`` step and a step with its own ``@flowrecord(...)``. It
runs once, switched on from the command line; every test reads that run back
from the local store.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

MetaflowWorld = Any  # the session's world, see conftest.py

# The first test to ask for a run waits for all the session's runs (see conftest.py):
# a few minutes on a busy 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def record_run(metaflow_world: Any, flow_runs: Any) -> dict[str, Any]:
    """RecordFlow, run once with --with flowrecord and --max-workers 4."""
    result = flow_runs.get("record_run")
    assert result.returncode == 0 and result.run_id, result.output[-3000:]
    tasks = metaflow_world.tasks(result.run_id)
    run = metaflow_world.rows("SELECT * FROM runs WHERE run_key = ?", (result.run_id,))
    return {"run_id": result.run_id, "tasks": tasks, "run": run[0], "world": metaflow_world}


def _datasets(world: MetaflowWorld, run: dict[str, Any]) -> list[dict[str, Any]]:
    return world.rows(
        "SELECT d.*, t.name AS task, t.map_index, t.try_number FROM datasets d "
        "JOIN tasks t USING (task_id) WHERE d.run_id = ? ORDER BY d.ts",
        (run["run_id"],),
    )


def test_every_task_attempt_is_recorded_with_metaflow_identity(record_run: dict) -> None:
    """Each step and foreach task, retries included, is a task with flow/run/step/task id."""
    tasks = record_run["tasks"]
    attempts = Counter(t["name"] for t in tasks)
    assert attempts == {
        "start": 1, "clean": 1, "stats": 1, "join": 1, "fan_out": 1,
        "train": 4, "gather": 1, "risky": 1, "end": 1,
    }  # fmt: skip
    run_id = record_run["run_id"]
    for task in tasks:
        attrs = task["attributes"]
        assert attrs["flow"] == "RecordFlow" and attrs["run_id"] == run_id
        assert attrs["step"] == task["name"]
        assert attrs["pathspec"] == f"RecordFlow/{run_id}/{task['name']}/{attrs['task_id']}"
        assert int(attrs["retry_count"]) == task["try_number"] - 1
        assert task["duration_s"] is not None and task["duration_s"] >= 0
    train = sorted(t["map_index"] for t in tasks if t["name"] == "train")
    assert train == [0, 1, 1, 2]
    assert record_run["run"]["orchestrator"] == "metaflow"
    assert record_run["run"]["pipeline"] == "RecordFlow"
    assert record_run["run"]["state"] == "succeeded"


def test_retry_records_the_failed_attempt_then_the_success(record_run: dict) -> None:
    """The shard that failed once has a 'retrying' attempt 1 with its error, then attempt 2."""
    shard = {
        t["try_number"]: t
        for t in record_run["tasks"]
        if t["name"] == "train" and t["map_index"] == 1
    }
    assert shard[1]["state"] == "retrying"
    assert shard[1]["error"] == "RuntimeError: flaky shard"
    assert shard[2]["state"] == "succeeded" and shard[2]["error"] is None
    assert shard[1]["attributes"]["task_id"] == shard[2]["attributes"]["task_id"]


def test_caught_exception_succeeds_and_keeps_the_error(record_run: dict) -> None:
    """@catch lets the flow go on: the task succeeded, its error and a tag say what was caught."""
    (risky,) = [t for t in record_run["tasks"] if t["name"] == "risky"]
    assert risky["state"] == "succeeded"
    assert risky["error"] == "ValueError: risky step always fails"
    tags = record_run["world"].rows(
        "SELECT key, value FROM tags WHERE task_id = ?", (risky["task_id"],)
    )
    assert {"key": "metaflow.caught_exception", "value": "true"} in tags


def test_parameters_are_recorded_and_secrets_redacted(record_run: dict) -> None:
    """Parameters land on the run (once) and on every task; the token's value never does."""
    world = record_run["world"]
    rows = world.rows(
        "SELECT task_id, key, value FROM params WHERE run_id = ?", (record_run["run"]["run_id"],)
    )
    run_level = {r["key"]: r["value"] for r in rows if r["task_id"] is None}
    assert run_level == {"alpha": "0.5", "api_token": "***"}
    per_task = Counter(r["task_id"] for r in rows if r["task_id"] is not None)
    assert len(per_task) == len(record_run["tasks"]) and set(per_task.values()) == {2}
    stored = json.dumps([dict(r) for r in world.store().query("SELECT * FROM params")])
    assert "tok-do-not-store" not in stored


def test_metrics_logged_in_step_bodies_land_in_their_tasks(record_run: dict) -> None:
    """flowrecord.log_metric inside a step records into that step's task."""
    world = record_run["world"]
    rows = world.rows(
        "SELECT t.name, t.map_index, m.key, m.value FROM metric_points m JOIN tasks t USING (task_id) "
        "WHERE m.run_id = ?",
        (record_run["run"]["run_id"],),
    )
    by_key = {(r["name"], r["key"], r["map_index"]): r["value"] for r in rows}
    assert by_key[("clean", "kept_rows", None)] == 7.0
    assert {k[2]: v for k, v in by_key.items() if k[1] == "score"} == {0: 0.0, 1: 0.5, 2: 1.0}
    assert by_key[("end", "best", None)] == 1.0


def test_lineage_records_writes_not_inheritance(record_run: dict) -> None:
    """Each step's outputs are what it wrote; inherited and merged artifacts are not outputs."""
    outputs: dict[str, set[str]] = {}
    for d in _datasets(record_run["world"], record_run["run"]):
        if d["role"] == "output":
            outputs.setdefault(d["task"], set()).add(d["name"])
    assert outputs["start"] == {"raw", "settings", "shards"}
    assert outputs["clean"] == {"clean_table"}
    assert outputs["stats"] == {"mean_x"}
    assert outputs["gather"] == {"scores"}
    assert outputs["risky"] == {"partial", "risky_error"}
    # join re-exposes clean_table and mean_x, merges the rest: content unchanged, no write.
    assert "join" not in outputs and "fan_out" not in outputs and "end" not in outputs


def test_tables_are_fingerprinted_and_reads_match_writes(record_run: dict) -> None:
    """An Arrow table is profiled with a fingerprint; its readers see the same fingerprint."""
    datasets = _datasets(record_run["world"], record_run["run"])
    (raw_out,) = [d for d in datasets if d["name"] == "raw" and d["role"] == "output"]
    assert raw_out["data_type"] == "arrow" and raw_out["row_count"] == 10
    assert raw_out["fingerprint"].startswith("xxh3:") and json.loads(raw_out["profile"])
    raw_reads = [d for d in datasets if d["name"] == "raw" and d["role"] == "input"]
    assert {d["task"] for d in raw_reads} == {"clean", "stats"}
    assert {d["fingerprint"] for d in raw_reads} == {raw_out["fingerprint"]}
    (clean_out,) = [d for d in datasets if d["name"] == "clean_table" and d["role"] == "output"]
    assert clean_out["row_count"] == 7


def test_other_artifacts_are_linked_by_metaflow_identity(record_run: dict) -> None:
    """Non-table artifacts carry metaflow://.../name#sha1=<sha> and fingerprint metaflow-sha1:<sha>."""
    run_id = record_run["run_id"]
    datasets = _datasets(record_run["world"], record_run["run"])
    (scores_out,) = [d for d in datasets if d["name"] == "scores" and d["role"] == "output"]
    gather_task = scores_out["uri"].split("/")[5]
    assert scores_out["uri"].startswith(
        f"metaflow://RecordFlow/{run_id}/gather/{gather_task}/scores#sha1="
    )
    assert scores_out["data_type"] == "list"
    assert scores_out["fingerprint"] == "metaflow-sha1:" + scores_out["uri"].split("#sha1=")[1]
    # end reads scores that risky merely inherited: the URI names risky, the sha is gather's.
    (scores_in,) = [d for d in datasets if d["name"] == "scores" and d["task"] == "end"]
    assert f"/{run_id}/risky/" in scores_in["uri"]
    assert scores_in["uri"].split("#")[1] == scores_out["uri"].split("#")[1]
    # gather read each shard's score from its own task.
    score_reads = [d for d in datasets if d["name"] == "score" and d["role"] == "input"]
    assert len({d["uri"] for d in score_reads}) == 3


def test_every_task_has_system_usage_from_its_own_process(record_run: dict) -> None:
    """Each task attempt has a usage summary, sampled in the task's own process."""
    world = record_run["world"]
    usage = world.rows(
        "SELECT task_id, summary FROM system_usage WHERE run_id = ?", (record_run["run"]["run_id"],)
    )
    assert {u["task_id"] for u in usage} == {t["task_id"] for t in record_run["tasks"]}
    for row in usage:
        summary = json.loads(row["summary"])
        assert summary["rss_bytes_peak"] > 0
    assert len({t["pid"] for t in record_run["tasks"]}) == len(record_run["tasks"])


def test_foreach_tasks_ran_in_parallel(record_run: dict) -> None:
    """With --max-workers 4 at least two foreach tasks overlap in time."""
    train = [t for t in record_run["tasks"] if t["name"] == "train"]
    overlaps = sum(
        1
        for a in train
        for b in train
        if a is not b and a["started_at"] < b["started_at"] < a["ended_at"]
    )
    assert overlaps >= 1
