"""End to end: the Dagster churn retraining example, week 1, a sensor tick, then a drifted week 2.

examples/dagster/churn_defs.py runs as the demo runs it (``python churn_defs.py
--week N --shift S``) into a fresh FLOWRECORD_HOME and a fresh persistent
DAGSTER_HOME; between and after the weeks, ``--sense`` evaluates the retrain
sensor once, as the Dagster daemon would. The tests read the record back from
the local store and through ``flowrecord explain``, and Dagster's own view from
the instance in DAGSTER_HOME.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fr_e2e_world import StoreWorld

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dagster" / "churn_defs.py"

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

STEPS = {
    "churn_raw",
    "churn_raw:flowrecord_schema",
    "churn_features",
    "churn_features:flowrecord_schema",
    "churn_split",
    "churn_model",
    "churn_model_version",
    "churn_model_version:promotion_gate",
}


class World(StoreWorld):
    """A throwaway flowrecord home and Dagster home, and how to run the example in them."""

    pipeline = "churn_retrain"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dagster_home = root / "dagster-home"
        self.dagster_home.mkdir(parents=True)
        (self.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.dagster_home),
            "FLOWRECORD_HOME": str(self.home),
            "FLOWRECORD_BACKENDS": "local",
            "FLOWRECORD_CAPTURE_CODE": "0",
        }

    def example(self, *args: str) -> str:
        """``python churn_defs.py <args>``, which must exit 0; returns its stdout."""
        proc = subprocess.run(
            [sys.executable, str(EXAMPLE), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout


def _run_id(stdout: str) -> str:
    match = re.search(r"dagster run (\S+): churn (\w+)", stdout)
    assert match, stdout[-2000:]
    return match.group(1)


@pytest.fixture(scope="module")
def weeks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Week 1, a sensor tick, week 2 on drifted data, two more sensor ticks: in one world."""
    world = World(tmp_path_factory.mktemp("churn-dagster"))
    out1 = world.example("--week", "1")
    sense1 = world.example("--sense")
    out2 = world.example("--week", "2", "--shift", "1.5")
    sense2 = world.example("--sense")
    sense3 = world.example("--sense")
    yield {
        "world": world,
        1: _run_id(out1),
        2: _run_id(out2),
        "out": {1: out1, 2: out2},
        "sense": [sense1, sense2, sense3],
    }


def test_week_one_promotes_and_deploys(weeks: dict) -> None:
    """Week 1: every step recorded and succeeded, deploy included; the script says promoted."""
    assert f"dagster run {weeks[1]}: churn promoted" in weeks["out"][1]
    tasks = weeks["world"].tasks(weeks[1])
    assert set(tasks) == STEPS | {"churn_deploy"}
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    assert {t["run_state"] for t in tasks.values()} == {"succeeded"}


def test_week_two_is_refused_and_deploy_never_runs(
    weeks: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Week 2: the gate check fails (blocking), deploy is not executed, the Dagster run fails."""
    import dagster as dg

    out = weeks["out"][2]
    assert f"dagster run {weeks[2]}: churn refused" in out
    assert "churn_deploy was not materialised" in out
    tasks = weeks["world"].tasks(weeks[2])
    assert set(tasks) == STEPS | {"churn_deploy"}
    assert {n: t["state"] for n, t in tasks.items() if t["state"] != "succeeded"} == {
        "churn_model_version:promotion_gate": "failed",
        "churn_deploy": "skipped",  # never started: recorded as skipped, by the gate
    }
    skipped_by = json.loads(tasks["churn_deploy"]["attributes"])["skipped_by"]
    assert "promotion_gate" in skipped_by
    assert "DagsterAssetCheckFailedError" in tasks["churn_model_version:promotion_gate"]["error"]
    assert {t["run_state"] for t in tasks.values()} == {"failed"}

    monkeypatch.setenv("DAGSTER_HOME", str(weeks["world"].dagster_home))
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(weeks[2]).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(weeks[1]).status == dg.DagsterRunStatus.SUCCESS
        deploys = instance.fetch_materializations(dg.AssetKey("churn_deploy"), limit=10)
        assert [r.run_id for r in deploys.records] == [weeks[1]]
        check = dg.AssetCheckKey(dg.AssetKey("churn_model_version"), "promotion_gate")
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])
        record = latest[check]
        assert record.run_id == weeks[2]
        evaluation = record.event.dagster_event.event_specific_data
        assert not evaluation.passed
        assert evaluation.metadata["version"].value == "2"


def test_each_week_has_a_gate_decision_on_the_check_task(weeks: dict) -> None:
    """Version 1 promoted, version 2 refused with reasons; both recorded under the check's task."""
    world = weeks["world"]
    decisions = {}
    for week in (1, 2):
        decisions[week] = world.gate_decision(weeks[week], "churn_model_version:promotion_gate")
    assert (decisions[1]["version"], decisions[1]["applied"]) == ("1", 1)
    assert (decisions[2]["version"], decisions[2]["applied"]) == ("2", 0)
    reasons = json.loads(decisions[2]["reasons"])
    assert any(r.startswith("FAIL: auc = ") and "regressed" in r for r in reasons)
    assert any(r.startswith("pass: train dataset 'churn_raw'") for r in reasons)


def test_datasets_are_validated_and_linked_by_fingerprint(weeks: dict) -> None:
    """Each version's registered data is what its run wrote, validated, by fingerprint."""
    world = weeks["world"]
    for week, version in ((1, "1"), (2, "2")):
        (mv,) = world.rows(
            "SELECT datasets FROM model_versions WHERE model = 'churn' AND version = ?", (version,)
        )
        registered = {d["name"]: d for d in json.loads(mv["datasets"])}
        assert {n: d["role"] for n, d in registered.items()} == {
            "churn_raw": "train",
            "churn_features": "train",
            "churn_eval_set": "eval",
        }
        written = {
            r["name"]: r["fingerprint"]
            for r in world.rows(
                "SELECT d.name, d.fingerprint FROM datasets d JOIN runs r USING (run_id) "
                "WHERE r.run_key = ? AND d.role = 'output'",
                (weeks[week],),
            )
        }
        for name, d in registered.items():
            assert d["fingerprint"] == written[name] and d["fingerprint"].startswith("xxh3:")
        for name in ("churn_raw", "churn_features"):
            (validation,) = world.rows(
                "SELECT passed, policy FROM validations WHERE fingerprint = ? "
                "AND validator = 'pandera'",
                (written[name],),
            )
            assert validation == {"passed": 1, "policy": "fail"}


def test_explain_names_version_one_trained_in_week_one(weeks: dict) -> None:
    """flowrecord explain churn@champion --json: version 1, from week 1's registering asset."""
    world = weeks["world"]
    x = world.explain_champion(weeks[1], "churn_model_version")
    (raw,) = [d for d in x["datasets"] if d["name"] == "churn_raw"]
    assert raw["role"] == "train" and [w["task"] for w in raw["written_by"]] == ["churn_raw"]
    assert raw["validations"] and all(v["passed"] for v in raw["validations"])


def test_the_retrain_sensor_skips_after_week_one_and_fires_on_drift_once(weeks: dict) -> None:
    """Sensor ticks: nothing due after week 1; after week 2 drift requests one run key, kept."""
    sense1, sense2, sense3 = weeks["sense"]
    assert sense1.startswith("no retrain:") and "no new data" in sense1
    assert "retrain requested" in sense2 and "drift churn_features" in sense2
    assert "income_k" in sense2
    key2 = re.search(r"run key (\S+)", sense2)
    key3 = re.search(r"run key (\S+)", sense3)
    assert key2 and key3 and key2.group(1) == key3.group(1)  # the same drift: the same run


def test_trigger_evaluations_are_recorded_under_the_sensor(weeks: dict) -> None:
    """Each tick's trigger evaluations (cron, new data, drift) land in a check_retrain task."""
    rows = weeks["world"].rows(
        "SELECT v.validator, v.dataset_name, v.passed, t.name AS task, r.pipeline, r.run_id "
        "FROM validations v JOIN tasks t USING (task_id) JOIN runs r ON r.run_id = v.run_id "
        "WHERE v.validator LIKE 'retrain:%' ORDER BY v.ts"
    )
    assert {(r["task"], r["pipeline"]) for r in rows} == {("check_retrain", "churn_retrain_sensor")}
    ticks: dict[str, dict[str, int]] = {}
    for r in rows:
        ticks.setdefault(r["run_id"], {})[f"{r['validator']}/{r['dataset_name']}"] = r["passed"]
    first, second, third = ticks.values()
    assert first["retrain:drift/churn_features"] == 1  # the champion's own data
    assert first["retrain:new_data/churn_raw"] == 1
    assert second["retrain:drift/churn_features"] == 0  # fired
    assert second["retrain:new_data/churn_raw"] == 1  # version 2 was trained on it
    assert third == second
