"""The snippets of docs/airflow.md run, and say what they do."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "airflow.md"
EXAMPLE = REPO / "examples" / "airflow" / "flowrecord_example.py"

pytestmark = [pytest.mark.integration]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.unit
def test_doc_shows_the_example_dag_verbatim():
    """The DAG in the doc is the example file, character for character."""
    blocks = _python_blocks()
    assert len(blocks) == 2
    assert blocks[0] == EXAMPLE.read_text()


def test_example_dag_and_reading_snippet(run_dag, record):
    """The example DAG runs and is recorded; the doc's reading snippet prints that record."""
    dag_run = run_dag("flowrecord_example")
    assert dag_run.state == "success"
    run = record.run("flowrecord_example", dag_run.run_id)
    tasks = {name: row for (name, _m, _t), row in record.tasks(run).items()}
    assert {name: row["state"] for name, row in tasks.items()} == {
        "load_orders": "succeeded",
        "check_orders": "succeeded",
        "train": "succeeded",
    }
    metrics = {m["key"]: m["value"] for m in record.of_task("metric_points", tasks["train"])}
    assert metrics == {"auc": 0.91, "rows": 3.0, "loss": 0.42}
    params = {p["key"]: p["value"] for p in record.of_task("params", tasks["train"])}
    assert params == {"learning_rate": "0.1"}
    assert [v["passed"] for v in record.of_task("validations", tasks["load_orders"])] == [1]
    assert [v["policy"] for v in record.of_task("validations", tasks["check_orders"])] == ["record"]
    outputs = {
        d["name"] for d in record.of_task("datasets", tasks["train"]) if d["role"] == "output"
    }
    assert outputs == {"churn_model"}

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_python_blocks()[1], str(DOC), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert "{'name': 'train', 'try_number': 1, 'state': 'succeeded'" in "\n".join(lines)
    assert any(
        "'name': 'flowrecord_example.load_orders', 'role': 'output'" in line for line in lines
    )
