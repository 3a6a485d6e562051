"""End to end: the Metaflow churn retraining example, week 1 then a drifted week 2.

examples/metaflow/churn_flow.py runs twice into a fresh FLOWRECORD_HOME and a
fresh local Metaflow datastore, as the demo runs it (``python churn_flow.py run
--week N --shift S``); then the retrain watcher (retrain_watch_flow.py) runs as
if deployed on Argo Workflows, publishing its event to a local stand-in for the
Argo Events webhook. The tests read the record back from the local store and
through ``flowrecord explain``/``retrain check``, and the flow's Metaflow
decorators through the flow class.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fr_e2e_world import StoreWorld

REPO = Path(__file__).resolve().parents[2]
FLOW = REPO / "examples" / "metaflow" / "churn_flow.py"
WATCH = REPO / "examples" / "metaflow" / "retrain_watch_flow.py"
POLICY = REPO / "examples" / "churn_common.py"

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

STEPS = {"start", "features", "train", "evaluate", "gate", "deploy", "end"}


class World(StoreWorld):
    """A throwaway local Metaflow datastore and flowrecord home, and how to run in them."""

    pipeline = "ChurnFlow"

    def __init__(self, root: Path) -> None:
        (root / ".metaflow").mkdir(parents=True)
        super().__init__(root)
        self.env = {
            **os.environ,
            "METAFLOW_HOME": str(root / "metaflow-config"),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root),
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
            "USERNAME": "tester",
            "USER": "tester",
            "FLOWRECORD_HOME": str(self.home),
            "FLOWRECORD_BACKENDS": "local",
            "FLOWRECORD_CAPTURE_CODE": "0",
        }

    def week(self, week: int, shift: float) -> str:
        """Run one week of the example; returns its Metaflow run id."""
        return self.run(FLOW, "--week", str(week), "--shift", str(shift))

    def run(self, flow: Path, *args: str, env: dict[str, str] | None = None) -> str:
        """``python flow.py run <args>``, which must succeed; returns the Metaflow run id."""
        cmd = [sys.executable, str(flow), "--no-pylint", "run", *args]
        proc = subprocess.run(
            cmd,
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=400,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        match = re.search(r"run-id (\S+?)\)?:", out)
        assert match, out[-2000:]
        return match.group(1)


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def weeks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Week 1 (shift 0), week 2 (shift 1.5), then the watcher as on Argo: in one world."""
    import metaflow

    world = World(tmp_path_factory.mktemp("churn-metaflow"))
    week1 = world.week(1, 0.0)
    week2 = world.week(2, 1.5)
    received: list[dict[str, Any]] = []
    handler = type("Webhook", (_Webhook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        watch = world.run(
            WATCH,
            env={
                # What a deployed Argo workflow has, and where its events go.
                "ARGO_WORKFLOW_TEMPLATE": "churnretrainwatchflow",
                "METAFLOW_ARGO_EVENTS_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/",
            },
        )
    finally:
        server.shutdown()
        server.server_close()
    metaflow.metadata(f"local@{world.root}")
    metaflow.namespace(None)
    yield {"world": world, 1: week1, 2: week2, "watch": watch, "events": received}


def test_both_weeks_record_every_task_and_deploy_only_when_promoted(weeks: dict) -> None:
    """Week 1 deploys; week 2 is refused: deploy is skipped and the run still succeeds."""
    world = weeks["world"]
    one, two = world.tasks(weeks[1]), world.tasks(weeks[2])
    assert set(one) == set(two) == STEPS
    assert {t["run_state"] for t in [*one.values(), *two.values()]} == {"succeeded"}
    assert {t["state"] for t in one.values()} == {"succeeded"}
    assert {n: t["state"] for n, t in two.items() if t["state"] != "succeeded"} == {
        "deploy": "skipped"
    }
    assert json.loads(two["deploy"]["attributes"])["skipped_by"].endswith(
        f"/{weeks[2]}/gate/" + json.loads(two["gate"]["attributes"])["task_id"]
    )
    # every task that ran was measured in its own process
    usage = world.rows("SELECT task_id FROM system_usage")
    ran = [t for t in [*one.values(), *two.values()] if t["state"] == "succeeded"]
    assert {t["task_id"] for t in ran} <= {u["task_id"] for u in usage}


def _datasets(world: World, run_key: str) -> list[dict[str, Any]]:
    return world.rows(
        "SELECT d.*, t.name AS task FROM datasets d JOIN tasks t USING (task_id) "
        "JOIN runs r ON r.run_id = d.run_id WHERE r.run_key = ?",
        (run_key,),
    )


def test_datasets_carry_fingerprints_profiles_and_lineage(weeks: dict) -> None:
    """churn_raw and churn_features: written once, read downstream, same fingerprint, profiled."""
    world = weeks["world"]
    edge_of_model = ("train", "output", "model")
    for week in (1, 2):
        datasets = _datasets(world, weeks[week])
        edges = {(d["task"], d["role"], d["name"]) for d in datasets}
        assert {
            ("start", "output", "churn_raw"),
            ("features", "input", "churn_raw"),
            ("features", "output", "churn_features"),
            ("train", "input", "churn_features"),
            ("train", "output", "model"),
            ("evaluate", "input", "model"),
            ("evaluate", "input", "churn_raw"),
        } <= edges
        for name, rows in (("churn_raw", 4000), ("churn_features", 4000)):
            found = [d for d in datasets if d["name"] == name]
            assert len({d["fingerprint"] for d in found}) == 1
            (out,) = [d for d in found if d["role"] == "output"]
            assert out["fingerprint"].startswith("xxh3:") and out["row_count"] == rows
            assert json.loads(out["profile"])["columns"]
        (model,) = [d for d in datasets if (d["task"], d["role"], d["name"]) == edge_of_model]
        sha = model["uri"].split("#sha1=")[1]
        assert model["fingerprint"] == f"metaflow-sha1:{sha}"
        assert model["data_type"] == "sklearn.pipeline.Pipeline"
    week1 = {d["name"]: d["fingerprint"] for d in _datasets(world, weeks[1])}
    week2 = {d["name"]: d["fingerprint"] for d in _datasets(world, weeks[2])}
    assert week1["churn_raw"] != week2["churn_raw"]


def test_raw_data_and_features_are_validated_each_week(weeks: dict) -> None:
    """RAW_SCHEMA and FEATURES_SCHEMA validations, passed, tied to the data's fingerprints."""
    world = weeks["world"]
    for week in (1, 2):
        rows = world.rows(
            "SELECT v.*, t.name AS task FROM validations v JOIN tasks t USING (task_id) "
            "JOIN runs r ON r.run_id = v.run_id WHERE r.run_key = ? AND v.validator = 'pandera'",
            (weeks[week],),
        )
        assert {(v["task"], v["schema_name"], v["passed"], v["policy"]) for v in rows} == {
            ("start", "churn_raw", 1, "fail"),
            ("features", "churn_features", 1, "fail"),
        }
        written = {d["name"]: d["fingerprint"] for d in _datasets(world, weeks[week])}
        assert {v["fingerprint"] for v in rows} == {
            written["churn_raw"],
            written["churn_features"],
        }


def test_each_week_has_a_gate_decision_with_reasons(weeks: dict) -> None:
    """Week 1 promoted version 1; week 2 refused version 2 and says why; both on the gate task."""
    from metaflow import Run

    world = weeks["world"]
    decisions = {}
    for week in (1, 2):
        decisions[week] = world.gate_decision(weeks[week], "gate")
        artifact = Run(f"ChurnFlow/{weeks[week]}")["gate"].task["gate_decision"].data
        assert artifact["decision_id"] == decisions[week]["decision_id"]
    assert (decisions[1]["version"], decisions[1]["applied"]) == ("1", 1)
    assert (decisions[2]["version"], decisions[2]["applied"]) == ("2", 0)
    reasons = json.loads(decisions[2]["reasons"])
    assert any(r.startswith("FAIL: auc = ") and "regressed" in r for r in reasons)
    assert any(r.startswith("pass: train dataset 'churn_raw'") for r in reasons)


def test_week_two_drift_fired_the_retrain_trigger(weeks: dict) -> None:
    """The features step's policy check: no drift to judge in week 1; drift fired in week 2."""
    world = weeks["world"]

    def triggers(week: int) -> dict[str, int]:
        rows = world.rows(
            "SELECT v.validator, v.dataset_name, v.passed FROM validations v "
            "JOIN tasks t USING (task_id) JOIN runs r ON r.run_id = v.run_id "
            "WHERE r.run_key = ? AND t.name = 'features' AND v.validator LIKE 'retrain:%'",
            (weeks[week],),
        )
        return {f"{r['validator']}/{r['dataset_name']}": r["passed"] for r in rows}

    one, two = triggers(1), triggers(2)
    assert one["retrain:drift/churn_features"] == 1  # no champion yet: nothing to drift from
    assert one["retrain:new_data/churn_raw"] == 0  # fired: no champion
    assert two["retrain:drift/churn_features"] == 0  # fired
    assert two["retrain:new_data/churn_raw"] == 0  # fired: not the champion's data


def test_explain_traces_the_champion_back_to_the_raw_data(weeks: dict) -> None:
    """flowrecord explain churn@champion --json: version 1, trained by evaluate on churn_raw from start."""
    world = weeks["world"]
    x = world.explain_champion(weeks[1], "evaluate")
    (raw,) = [d for d in x["datasets"] if d["name"] == "churn_raw"]
    assert raw["role"] == "train" and [w["task"] for w in raw["written_by"]] == ["start"]
    assert raw["validations"] and all(v["passed"] for v in raw["validations"])
    nodes = {n["id"]: n for n in x["lineage"]["nodes"]}
    start = next(i for i, n in nodes.items() if n["kind"] == "task" and n["name"] == "start")
    assert any(e["source"] == start and e["target"] == f"dataset:{raw['fingerprint']}"
               for e in x["lineage"]["edges"])  # fmt: skip


def test_retrain_check_cli_reads_the_recorded_weeks(weeks: dict) -> None:
    """flowrecord retrain check churn_common.py:RETRAIN_POLICY says retrain, for drift."""
    out = weeks["world"].cli("retrain", "check", f"{POLICY}:RETRAIN_POLICY")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["retrain", "churn"]
    (drift,) = [line for line in lines if "drift churn_features" in line]
    assert drift.lstrip().startswith("!") and "income_k" in drift  # "!": fired


def test_the_flow_carries_its_retraining_policy_as_schedule_and_trigger() -> None:
    """ChurnFlow has @schedule(cron='0 3 ? * MON *') and @trigger(event='flowrecord.retrain.churn')."""
    spec = importlib.util.spec_from_file_location("churn_flow_e2e", FLOW)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    decorators = module.ChurnFlow(use_cli=False)._flow_decorators
    (schedule,) = decorators["schedule"]
    (trigger,) = decorators["trigger"]
    assert schedule.attributes["cron"] == "0 3 ? * MON *"
    assert trigger.attributes["event"] == "flowrecord.retrain.churn"
    assert "flowrecord_base" in decorators


def test_the_watcher_publishes_the_event_churn_flow_waits_for(weeks: dict) -> None:
    """After the drifted week the watcher, as on Argo, publishes flowrecord.retrain.churn."""
    from metaflow import Run

    (event,) = weeks["events"]
    assert event["name"] == "flowrecord.retrain.churn"
    payload = event["payload"]
    assert payload["model"] == "churn" and payload["triggers"] == "drift:churn_features"
    start = Run(f"ChurnRetrainWatchFlow/{weeks['watch']}")["start"].task
    assert start["event_id"].data == payload["id"] and start["retrain_due"].data is True
    # its evaluation is on record, in the watcher's own task
    rows = weeks["world"].rows(
        "SELECT v.validator, v.passed FROM validations v JOIN runs r USING (run_id) "
        "WHERE r.pipeline = 'ChurnRetrainWatchFlow' AND v.validator LIKE 'retrain:%'"
    )
    assert {(r["validator"], r["passed"]) for r in rows} >= {("retrain:drift", 0)}
