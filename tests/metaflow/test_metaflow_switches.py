"""Switching recording on without touching the flow, and recording that fails open."""

from __future__ import annotations

from typing import Any

import pytest

# The first test to ask for a run waits for all the session's runs (see conftest.py):
# a few minutes on a busy 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


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


@pytest.fixture(scope="session")
def broken_store_run(flow_runs: Any) -> Any:
    """TinyFlow run with --with flowrecord:card=true and FLOWRECORD_HOME under a file."""
    return flow_runs.get("broken_store_run")


def test_a_broken_store_never_fails_the_flow(broken_store_run: Any) -> None:
    """With FLOWRECORD_HOME unusable (under a file), the flow, card and all, still succeeds."""
    result = broken_store_run
    assert result.returncode == 0, result.output[-3000:]
    assert "Done!" in result.output
    assert "flowrecord:" in result.output  # it did fail, and said so, without failing a step
