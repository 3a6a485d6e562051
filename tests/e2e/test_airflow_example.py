"""End to end: the Airflow churn retraining example, week 1 then a drifted week 2.

examples/airflow/churn_dag.py runs as the demo and docs/airflow.md run it — the
commands of the doc's "The churn retraining example" section, in a fresh
FLOWRECORD_HOME with no Airflow setting at all (the script puts its Airflow home
beside the flowrecord store and migrates it) — with the retrain watcher after
each week. The tests read the record back from the local store, through
``flowrecord explain``, and the watcher's Asset events from Airflow's metadata DB.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fr_e2e_world import StoreWorld

from flowrecord.backends.local import LocalStore

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "examples" / "airflow" / "churn_dag.py"
DOC = REPO / "docs" / "airflow.md"

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

TASKS = {
    "ingest",
    "validate",
    "features",
    "validate_features",
    "train",
    "evaluate",
    "gate",
    "deploy",
}


def doc_commands() -> list[list[str]]:
    """The shell commands of the doc's churn example section, split into words."""
    text = DOC.read_text()
    start = text.index("\n## The churn retraining example\n")
    end = text.find("\n## ", start + 1)
    (block,) = re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


class World(StoreWorld):
    """A throwaway flowrecord home (and the Airflow home the script puts inside it)."""

    pipeline = "churn_retrain"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # Nothing of the test session's Airflow setup: the script must manage alone.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env = {
            **env,
            "FLOWRECORD_HOME": str(self.home),
            "FLOWRECORD_BACKENDS": "local",
            "FLOWRECORD_CAPTURE_CODE": "0",
        }

    def run(self, args: list[str], timeout: float = 400) -> str:
        """*args* from the repository (as the doc shows them), which must succeed; its stdout."""
        if args[0] == "python":
            args = [sys.executable, *args[1:]]
        proc = subprocess.run(
            args,
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        return proc.stdout

    def airflow_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of the Airflow metadata DB the script used."""
        db = self.home / "airflow" / "airflow.db"
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, params)]

    def run_keys(self, dag_id: str) -> list[str]:
        rows = self.rows(
            "SELECT run_key FROM runs WHERE pipeline = ? ORDER BY started_at", (dag_id,)
        )
        return [r["run_key"] for r in rows]


@pytest.fixture(scope="module")
def weeks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Week 1, the watcher, week 2 (drifted), the watcher: the doc's commands, in one world."""
    world = World(tmp_path_factory.mktemp("churn-airflow"))
    commands = doc_commands()
    week1, week2, check = commands[:3]
    out = {"world": world}
    out["out1"] = world.run(week1)
    out["check1"] = world.run(check)
    out["out2"] = world.run(week2)
    out["check2"] = world.run(check)
    keys = world.run_keys("churn_retrain")
    assert len(keys) == 2, keys
    out[1], out[2] = keys
    out["checks"] = world.run_keys("churn_retrain_check")
    yield out


@pytest.mark.unit
def test_the_doc_runs_the_example_as_the_demo_does():
    """The doc's commands: --week 1, --week 2 --shift 1.5, --check, then flowrecord explain."""
    script = str(DAG_FILE.relative_to(REPO))
    assert doc_commands() == [
        ["python", script, "--week", "1"],
        ["python", script, "--week", "2", "--shift", "1.5"],
        ["python", script, "--check"],
        ["flowrecord", "explain", "churn@champion"],
    ]


def test_both_weeks_record_every_task_and_deploy_only_when_promoted(weeks: dict) -> None:
    """Week 1 deploys; week 2 is refused: deploy is skipped, by Airflow too, and the run succeeds."""
    world = weeks["world"]
    one, two = world.tasks(weeks[1]), world.tasks(weeks[2])
    assert set(one) == set(two) == TASKS
    assert {t["run_state"] for t in [*one.values(), *two.values()]} == {"succeeded"}
    assert {t["state"] for t in one.values()} == {"succeeded"}
    assert {
        n: (t["state"], t["try_number"]) for n, t in two.items() if t["state"] != "succeeded"
    } == {"deploy": ("skipped", 0)}
    airflow = world.airflow_rows(
        "SELECT task_id, state FROM task_instance WHERE dag_id = 'churn_retrain' AND run_id = ?",
        (weeks[2],),
    )
    assert {r["task_id"]: r["state"] for r in airflow}["deploy"] == "skipped"
    assert "churn version 1 promoted" in weeks["out1"]
    assert "churn version 2 refused" in weeks["out2"]
    assert "deployed churn version 1" in weeks["out1"] and "deployed" not in weeks["out2"]
    # the week and shift are params of the ingest task
    params = world.rows(
        "SELECT key, value FROM params WHERE task_id = ?", (two["ingest"]["task_id"],)
    )
    assert {p["key"]: p["value"] for p in params} == {"week": "2", "shift": "1.5"}


def test_each_week_has_a_gate_decision_under_the_gate_task(weeks: dict) -> None:
    """Week 1 promoted version 1; week 2 refused version 2 and says why."""
    world = weeks["world"]
    decisions = {}
    for week in (1, 2):
        decisions[week] = world.gate_decision(weeks[week], "gate")
    assert (decisions[1]["version"], decisions[1]["applied"]) == ("1", 1)
    assert (decisions[2]["version"], decisions[2]["applied"]) == ("2", 0)
    reasons = json.loads(decisions[2]["reasons"])
    assert any(r.startswith("FAIL: auc = ") and "regressed" in r for r in reasons)
    assert any(r.startswith("pass: train dataset 'churn_raw'") for r in reasons)
    assert any(r.startswith("FAIL: roc_auc improvement") for r in reasons)  # the bootstrap ran


def test_versions_are_registered_with_the_fingerprints_of_their_data(weeks: dict) -> None:
    """Each version's train and eval datasets are the frames ingest, features and train wrote."""
    from flowrecord.lifecycle import ModelRegistry

    world = weeks["world"]
    registry = ModelRegistry(LocalStore(world.home))
    for week in (1, 2):
        version = registry.get_version("churn", str(week))
        assert version is not None
        registered = {(d["name"], d["role"]): d["fingerprint"] for d in version.datasets}
        assert set(registered) == {
            ("churn_raw", "train"),
            ("churn_features", "train"),
            ("churn_eval", "eval"),
        }
        tasks = world.tasks(weeks[week])
        written = {
            r["task"]: r["fingerprint"]
            for r in world.rows(
                "SELECT t.name AS task, d.fingerprint FROM datasets d JOIN tasks t USING (task_id) "
                "WHERE d.run_id = ? AND d.role = 'output'",
                (tasks["ingest"]["run_id"],),
            )
        }
        assert registered[("churn_raw", "train")] == written["ingest"]
        assert registered[("churn_features", "train")] == written["features"]
        assert registered[("churn_eval", "eval")] == written["train"]
        assert version.task_id == tasks["evaluate"]["task_id"]
        # and the validations the gate required are tied to the same fingerprints
        validated = world.rows(
            "SELECT v.dataset_name, v.fingerprint, v.passed, t.name AS task FROM validations v "
            "JOIN tasks t USING (task_id) WHERE v.run_id = ? AND v.validator = 'pandera'",
            (tasks["ingest"]["run_id"],),
        )
        assert {
            (v["task"], v["dataset_name"], v["fingerprint"], v["passed"]) for v in validated
        } == {
            ("validate", "churn_raw", written["ingest"], 1),
            ("validate_features", "churn_features", written["features"], 1),
        }


def test_the_policy_check_in_features_records_why_each_week_was_due(weeks: dict) -> None:
    """Week 1: first model (cron, new data); week 2: drift fired, and the cron had not."""
    world = weeks["world"]

    def triggers(week: int) -> dict[str, int]:
        task = world.tasks(weeks[week])["features"]
        rows = world.rows(
            "SELECT validator, dataset_name, passed FROM validations "
            "WHERE task_id = ? AND validator LIKE 'retrain:%'",
            (task["task_id"],),
        )
        return {f"{r['validator']}/{r['dataset_name']}": 1 - r["passed"] for r in rows}

    assert triggers(1) == {
        "retrain:cron/0 3 * * 1": 1,
        "retrain:new_data/churn_raw": 1,
        "retrain:drift/churn_features": 0,
    }
    two = triggers(2)
    assert two["retrain:drift/churn_features"] == 1
    assert two["retrain:new_data/churn_raw"] == 1


def test_the_watcher_emits_the_retrain_asset_event_only_after_the_drifted_week(weeks: dict) -> None:
    """After week 1 the watcher skips (no event); after week 2 it emits drift:churn_features."""
    world = weeks["world"]
    first, second = weeks["checks"]
    states = {
        r["run_id"]: r["state"]
        for r in world.airflow_rows(
            "SELECT run_id, state FROM task_instance WHERE dag_id = 'churn_retrain_check'"
        )
    }
    assert (states[first], states[second]) == ("skipped", "success")
    assert "no retrain due" in weeks["check1"] and "event emitted" in weeks["check2"]
    events = world.airflow_rows(
        "SELECT e.extra, e.source_dag_id, e.source_run_id FROM asset_event e "
        "JOIN asset a ON a.id = e.asset_id WHERE a.uri = 'flowrecord://retrain/churn'"
    )
    assert [(e["source_dag_id"], e["source_run_id"]) for e in events] == [
        ("churn_retrain_check", second)
    ]
    extra = json.loads(events[0]["extra"])
    assert extra["model"] == "churn" and extra["triggers"] == ["drift:churn_features"]
    assert "income_k" in extra["reasons"][0]
    # the training DAG is the one that Asset schedules
    consumers = world.airflow_rows(
        "SELECT r.dag_id FROM dag_schedule_asset_reference r JOIN asset a ON a.id = r.asset_id "
        "WHERE a.uri = 'flowrecord://retrain/churn'"
    )
    assert [c["dag_id"] for c in consumers] == ["churn_retrain"]
    # its evaluations are on record, in the watcher's own task
    rows = world.rows(
        "SELECT v.validator, v.passed, r.run_key FROM validations v JOIN runs r USING (run_id) "
        "WHERE r.pipeline = 'churn_retrain_check'"
    )
    fired = {(r["run_key"], r["validator"]) for r in rows if not r["passed"]}
    assert (second, "retrain:drift") in fired
    assert not any(key == first for key, validator in fired if validator != "retrain:cron")


def test_explain_still_names_version_one_and_traces_its_data(weeks: dict) -> None:
    """flowrecord explain churn@champion --json: version 1, trained by evaluate, raw data from ingest."""
    world = weeks["world"]
    x = world.explain_champion(weeks[1], "evaluate")
    (raw,) = [d for d in x["datasets"] if d["name"] == "churn_raw"]
    assert raw["role"] == "train" and {w["task"] for w in raw["written_by"]} == {"ingest"}
    assert raw["validations"] and all(v["passed"] for v in raw["validations"])
