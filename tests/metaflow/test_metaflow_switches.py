"""Switching recording on without touching the flow, and recording that fails open."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

FLOWS = Path(__file__).parent / "flows"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="session")
def decospec_run(flow_runs: Any) -> Any:
    """TinyFlow run with METAFLOW_DEFAULT_DECOSPECS=flowrecord and no other switch."""
    return flow_runs.get("decospec_run")


def test_default_decospecs_record_a_flow_with_no_flowrecord_in_it(
    metaflow_world: Any, decospec_run: Any
) -> None:
    """METAFLOW_DEFAULT_DECOSPECS=flowrecord records every step of an untouched flow."""
    result = decospec_run
    assert result.returncode == 0, result.output[-3000:]
    tasks = metaflow_world.tasks(result.run_id)
    assert [(t["name"], t["state"]) for t in tasks] == [
        ("end", "succeeded"),
        ("start", "succeeded"),
    ]
    outputs = metaflow_world.rows(
        "SELECT d.name FROM datasets d JOIN tasks t USING (task_id) "
        "WHERE t.name = 'end' AND d.role = 'output' AND d.run_id = ?",
        (tasks[0]["run_id"],),
    )
    assert outputs == [{"name": "answer"}]


def test_a_broken_store_never_fails_the_flow(tmp_path: Path, new_metaflow_world: Any) -> None:
    """With FLOWRECORD_HOME unusable (under a file), the flow still runs to success."""
    world = new_metaflow_world(tmp_path / "world")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    result = world.run(
        FLOWS / "tiny_flow.py",
        "run",
        "--with",
        "flowrecord:card=true",
        env={"FLOWRECORD_HOME": os.fspath(blocker / "home")},
    )
    assert result.returncode == 0, result.output[-3000:]
    assert "Done!" in result.output
    assert "flowrecord:" in result.output  # it did fail, and said so, without failing a step
