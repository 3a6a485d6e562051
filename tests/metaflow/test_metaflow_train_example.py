"""End to end: the documented example flow runs, and its whole record and card read back.

examples/metaflow/train_flow.py (also printed in docs/metaflow.md) runs once
through Metaflow's Runner API; the tests read the run from the local store and
the ``train`` task's card through ``metaflow.cards.get_cards``, and run the
documentation's snippets against it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "metaflow" / "train_flow.py"
DOC = REPO / "docs" / "metaflow.md"

# The first test to ask for a run waits for all the session's runs (see conftest.py):
# a few minutes on a busy 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def example_run(metaflow_world: Any, flow_runs: Any) -> dict[str, Any]:
    """The example flow, run once as a user would (its decorators are in the code)."""
    from metaflow import Run

    status, run_id, output = flow_runs.get("example_run")
    assert status == "successful", output[-3000:]
    run = Run(f"TrainFlow/{run_id}")
    (row,) = metaflow_world.rows("SELECT * FROM runs WHERE run_key = ?", (run.id,))
    return {"run": run, "row": row, "world": metaflow_world}


def _by_task(rows: list[dict[str, Any]], *keys: str) -> set[tuple[Any, ...]]:
    return {tuple(r[k] for k in keys) for r in rows}


@pytest.mark.e2e
def test_whole_record_of_the_run_reads_back(example_run: dict) -> None:
    """Run, tasks, params, metrics, datasets, validations and usage are all in the store."""
    world, run, row = example_run["world"], example_run["run"], example_run["row"]
    assert (row["orchestrator"], row["pipeline"], row["state"]) == (
        "metaflow",
        "TrainFlow",
        "succeeded",
    )
    tasks = {t["name"]: t for t in world.tasks(run.id)}
    assert set(tasks) == {"start", "train", "end"}
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    assert tasks["train"]["attributes"]["pathspec"] == run["train"].task.pathspec

    q = "SELECT * FROM {} WHERE run_id = ?"
    params = world.rows(q.format("params"), (row["run_id"],))
    assert {(p["key"], p["value"]) for p in params if p["task_id"] is None} == {
        ("learning_rate", "0.5"), ("epochs", "25"), ("api_key", "***"),
    }  # fmt: skip

    metrics = world.rows(q.format("metric_points"), (row["run_id"],))
    losses = sorted((m["step"], m["value"]) for m in metrics if m["key"] == "loss")
    assert [s for s, _ in losses] == list(range(25))
    assert losses[-1][1] < losses[0][1]  # it learnt something
    (accuracy,) = [m["value"] for m in metrics if m["key"] == "accuracy"]
    assert accuracy == pytest.approx(run["train"].task.data.accuracy)
    assert {m["task_id"] for m in metrics} == {tasks["train"]["task_id"]}

    datasets = world.rows(q.format("datasets"), (row["run_id"],))
    names = {t["task_id"]: n for n, t in tasks.items()}
    edges = {(names[d["task_id"]], d["role"], d["name"]) for d in datasets}
    assert edges == {
        ("start", "output", "data"),
        ("train", "input", "data"),
        ("train", "output", "model"),
        ("train", "output", "accuracy"),
        ("end", "input", "model"),
        ("end", "input", "accuracy"),
    }
    data = [d for d in datasets if d["name"] == "data"]
    assert {d["fingerprint"] for d in data} != {None} and len({d["fingerprint"] for d in data}) == 1
    assert {(d["data_type"], d["row_count"]) for d in data} == {("pandas", 500)}
    assert json.loads(data[0]["schema"])[0]["name"] == "x"

    validations = world.rows(q.format("validations"), (row["run_id"],))
    assert _by_task(validations, "dataset_name", "passed", "policy") == {
        ("data", 1, "fail"), ("holdout", 1, "warn"),
    }  # fmt: skip

    usage = world.rows(q.format("system_usage"), (row["run_id"],))
    assert {u["task_id"] for u in usage} == {t["task_id"] for t in tasks.values()}


@pytest.mark.e2e
def test_train_card_shows_the_task_record(example_run: dict, read_card_tables: Any) -> None:
    """The train task's card, read with get_cards, lists its metrics, data, checks and usage."""
    from metaflow.cards import get_cards

    cards = get_cards(example_run["run"]["train"].task, id="flowrecord")
    assert len(cards) == 1 and cards[0].type == "blank"
    tables = read_card_tables(cards[0].get())
    metrics = {row[0]: row for row in tables["Metrics"]}
    assert metrics["loss"][2] == "25" and metrics["loss"][5] == "24"
    assert float(metrics["accuracy"][1]) == pytest.approx(
        example_run["run"]["train"].task.data.accuracy, rel=1e-5
    )
    assert tables["Datasets"][0][:4] == ["input", "data", "pandas", "500"]
    assert [r[:4] for r in tables["Validations"]] == [
        ["holdout", "pandera", "train_data", "passed"]
    ]
    assert any(r[0] == "rss_bytes_peak" for r in tables["System usage"])
    assert ["api_key", "***"] in tables["Parameters"]


@pytest.mark.e2e
def test_steps_without_card_get_none(example_run: dict) -> None:
    """Only the step asking for a card gets one: start has no flowrecord card."""
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.exception import CardNotPresentException

    try:
        cards = get_cards(example_run["run"]["start"].task, id="flowrecord")
    except CardNotPresentException:
        cards = []
    assert len(cards) == 0


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.e2e
def test_documented_read_back_snippet_runs(example_run: dict) -> None:
    """The doc's snippet that reads the record and the card runs and prints the tasks."""
    world = example_run["world"]
    (snippet,) = [b for b in _python_blocks(DOC.read_text()) if "get_cards" in b]
    out = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=world.root,
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "start succeeded",
        "train succeeded",
        "end succeeded",
        "card: blank flowrecord True",
    ]
