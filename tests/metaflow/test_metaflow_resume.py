"""A failing step, a validation that fails the step, and ``resume``: all on the record.

ResumeFlow (tests/metaflow/flows/resume_flow.py) is recorded by
``@flowrecord_base``; its ``check`` step validates ``frame`` under policy
``fail``. The first run fails there; ``resume`` with the data healed clones
``start`` and ``prepare`` and re-runs ``check`` and ``end``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

# The first test to ask for a run waits for all the session's runs (see conftest.py):
# a few minutes on a busy 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def resumed(metaflow_world: Any, flow_runs: Any) -> dict[str, Any]:
    """ResumeFlow run (fails), then resumed with RESUME_FLOW_HEAL=1 (succeeds)."""
    first, second = flow_runs.get("resumed")
    assert first.returncode != 0 and first.run_id, first.output[-3000:]
    assert second.returncode == 0 and second.run_id, second.output[-3000:]
    return {"first": first, "second": second, "world": metaflow_world}


def _run(world: Any, run_key: str) -> dict[str, Any]:
    (row,) = world.rows("SELECT * FROM runs WHERE run_key = ?", (run_key,))
    return row


def test_flow_level_decorator_records_every_step(resumed: dict) -> None:
    """@flowrecord_base records each step of the flow, none of which is decorated itself."""
    tasks = resumed["world"].tasks(resumed["first"].run_id)
    assert sorted(t["name"] for t in tasks) == ["check", "prepare", "start"]


def test_failing_step_fails_task_and_run(resumed: dict) -> None:
    """The step that raised is 'failed' with its error; the run is 'failed' too."""
    world, first = resumed["world"], resumed["first"]
    by_name = {t["name"]: t for t in world.tasks(first.run_id)}
    assert by_name["check"]["state"] == "failed"
    assert by_name["check"]["error"].startswith("ValidationFailed: Validation of dataset 'frame'")
    assert by_name["start"]["state"] == by_name["prepare"]["state"] == "succeeded"
    run = _run(world, first.run_id)
    assert run["state"] == "failed" and "check" in run["error"]


def test_fail_policy_validation_is_recorded_before_failing(resumed: dict) -> None:
    """The failed validation is on the record, with policy 'fail' and the failing check."""
    world, first = resumed["world"], resumed["first"]
    rows = world.rows(
        "SELECT v.* FROM validations v JOIN runs r USING (run_id) WHERE r.run_key = ?",
        (first.run_id,),
    )
    (validation,) = rows
    assert validation["dataset_name"] == "frame" and validation["schema_name"] == "positive"
    assert validation["passed"] == 0 and validation["policy"] == "fail"
    assert validation["failure_count"] == 1
    failing = [c for c in json.loads(validation["checks"]) if not c["passed"]]
    assert failing[0]["check"].startswith("greater_than_or_equal_to")


def test_resumed_run_records_reruns_and_clones(resumed: dict) -> None:
    """The resumed run re-runs check and end, and lists start and prepare as cloned tasks."""
    world, first, second = resumed["world"], resumed["first"], resumed["second"]
    by_name = {t["name"]: t for t in world.tasks(second.run_id)}
    assert set(by_name) == {"start", "prepare", "check", "end"}
    assert all(t["state"] == "succeeded" for t in by_name.values())
    for name in ("check", "end"):
        assert by_name[name]["attributes"]["origin_run_id"] == first.run_id
        assert "cloned_from" not in by_name[name]["attributes"]
    for name in ("start", "prepare"):
        cloned_from = by_name[name]["attributes"]["cloned_from"]
        assert cloned_from.startswith(f"ResumeFlow/{first.run_id}/{name}/")
    run = _run(world, second.run_id)
    assert run["state"] == "succeeded"
    tags = world.rows("SELECT key, value FROM tags WHERE run_id = ?", (run["run_id"],))
    assert {"key": "metaflow.origin_run_id", "value": first.run_id} in tags


def test_resumed_validation_passes_on_the_new_run(resumed: dict) -> None:
    """The healed frame passes the same schema, recorded on the resumed run."""
    world, second = resumed["world"], resumed["second"]
    rows = world.rows(
        "SELECT v.passed, v.policy FROM validations v JOIN runs r USING (run_id) WHERE r.run_key = ?",
        (second.run_id,),
    )
    assert rows == [{"passed": 1, "policy": "fail"}]
