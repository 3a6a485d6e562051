"""Promotion gates and retraining policies as Metaflow constructs.

Real flow runs (gate_flow.py twice, blocking_gate_flow.py once) show the gate
deciding before a switch, the untaken branch recorded as skipped, and a blocking
gate failing its step. In-process tests cover the compilation of a policy into
``@schedule``/``@trigger`` (read back through Metaflow's own decorators), the
retrain event (published to a local HTTP endpoint), ``promote`` and the pieces.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.lifecycle import (
    DriftTrigger,
    MetricDecayTrigger,
    PromotionGate,
    RetrainPolicy,
    register_model_version,
)

FLOWS = Path(__file__).parent / "flows"


# ---------------------------------------------------------------------------
# real runs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gate_runs(metaflow_world: Any, flow_runs: Any) -> dict[str, Any]:
    """GateFlow run twice on one model: auc 0.9 (promoted), then auc 0.7 (refused)."""
    promoted, refused = flow_runs.get("gate_runs")
    for result in (promoted, refused):
        assert result.returncode == 0, result.output[-3000:]
    return {"promoted": promoted, "refused": refused, "world": metaflow_world}


def _states(world: Any, run_key: str) -> dict[str, str]:
    return {t["name"]: t["state"] for t in world.tasks(run_key)}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gate_decides_before_the_switch_and_the_untaken_branch_is_skipped(
    gate_runs: dict,
) -> None:
    """Promoted: deploy runs, hold is skipped; refused: hold runs, deploy is skipped."""
    world = gate_runs["world"]
    first = _states(world, gate_runs["promoted"].run_id)
    second = _states(world, gate_runs["refused"].run_id)
    assert first == {
        "start": "succeeded", "gate": "succeeded", "deploy": "succeeded",
        "hold": "skipped", "end": "succeeded",
    }  # fmt: skip
    assert second == {
        "start": "succeeded", "gate": "succeeded", "deploy": "skipped",
        "hold": "succeeded", "end": "succeeded",
    }  # fmt: skip
    tasks = {t["name"]: t for t in world.tasks(gate_runs["refused"].run_id)}
    assert tasks["deploy"]["attributes"]["skipped_by"] == tasks["gate"]["attributes"]["pathspec"]
    assert tasks["deploy"]["attributes"]["condition"] == "promotion"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gate_decision_is_an_artifact_and_a_record_of_the_gate_task(gate_runs: dict) -> None:
    """self.gate_decision and self.promotion read back with Metaflow's client; the store agrees."""
    from metaflow import Run

    world = gate_runs["world"]
    for key, applied in (("promoted", True), ("refused", False)):
        run = Run(f"GateFlow/{gate_runs[key].run_id}")
        decision = run["gate"].task["gate_decision"].data
        assert decision["applied"] is applied and decision["model"] == "gated"
        assert run["gate"].task["promotion"].data == key
        gate_task = {t["name"]: t for t in world.tasks(run.id)}["gate"]
        (row,) = world.rows(
            "SELECT * FROM gate_decisions WHERE task_id = ?", (gate_task["task_id"],)
        )
        assert (row["version"], bool(row["applied"])) == (decision["version"], applied)
    refused = Run(f"GateFlow/{gate_runs['refused'].run_id}")
    assert refused["hold"].task["held"].data == ["auc = 0.7 < minimum 0.8"]


@pytest.fixture(scope="session")
def blocked_gate_run(metaflow_world: Any, flow_runs: Any) -> Any:
    """BlockingGateFlow (block=True, gate by reference) with a candidate below the floor."""
    return flow_runs.get("blocked_gate_run")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_blocking_gate_fails_its_step_and_nothing_after_it_runs(
    metaflow_world: Any, blocked_gate_run: Any
) -> None:
    """block=True: the refusal fails the gate step with PromotionRefused; deploy never starts."""
    result = blocked_gate_run
    assert result.returncode != 0
    assert "Promotion refused" in result.output and "auc = 0.5 < minimum 0.8" in result.output
    tasks = {t["name"]: t for t in metaflow_world.tasks(result.run_id)}
    assert set(tasks) == {"start", "gate"}
    assert tasks["gate"]["state"] == "failed"
    assert tasks["gate"]["error"].startswith("PromotionRefused")
    rows = metaflow_world.rows("SELECT * FROM gate_decisions WHERE model = 'blocked'")
    assert [(r["passed"], r["applied"]) for r in rows] == [(0, 0)]
    assert metaflow_world.rows("SELECT * FROM aliases WHERE model = 'blocked'") == []


# ---------------------------------------------------------------------------
# the retraining policy as @schedule and @trigger
# ---------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    "cron, expected",
    [
        ("0 3 * * 1", "0 3 ? * MON *"),
        ("30 2 * * mon-fri", "30 2 ? * MON-FRI *"),
        ("0 0 * * 7", "0 0 ? * SUN *"),
        ("0 12 * jan,jul 0,6", "0 12 ? 1,7 SUN,SAT *"),
        ("*/15 * * * *", "0,15,30,45 * * * ? *"),
        ("0 6-18/6 1,15 * *", "0 6,12,18 1,15 * ? *"),
        ("0 0 1-31 * 1", "0 0 * * ? *"),  # cron's "either": every day of the month matches
        ("@daily", "0 0 * * ? *"),
        ("@weekly", "0 0 ? * SUN *"),
    ],
)
def test_cron_compiles_to_the_dialect_of_metaflow_schedule(cron: str, expected: str) -> None:
    """Six fields, weekdays by name, exactly one of day-of-month and day-of-week a '?'."""
    from flowrecord_metaflow import eventbridge_cron

    out = eventbridge_cron(cron)
    assert out == expected
    fields = out.split()
    assert len(fields) == 6 and [fields[2], fields[4]].count("?") == 1


@pytest.mark.unit
@pytest.mark.parametrize(
    "cron, message",
    [
        ("0 0 1 * 1", "both the day of the month and the day of the week"),
        ("0 0 13 * */2", "both the day of the month and the day of the week"),
        ("61 * * * *", "out of range"),
        ("every monday", "5 fields"),
    ],
)
def test_cron_neither_scheduler_can_express_is_refused(cron: str, message: str) -> None:
    """A malformed cron, or one restricting both day fields, is a ValueError naming why."""
    from flowrecord_metaflow import eventbridge_cron

    with pytest.raises(ValueError, match=message):
        eventbridge_cron(cron)


@pytest.mark.unit
def test_policy_compiles_to_schedule_and_trigger_arguments() -> None:
    """cron -> @schedule(cron=...); data and metric triggers -> @trigger(event=...)."""
    from flowrecord_metaflow import retrain_decorators

    full = RetrainPolicy(
        model="churn",
        cron="0 3 * * 1",
        new_data=["raw"],
        metric_decay=MetricDecayTrigger("live_auc", floor=0.8),
    )
    d = retrain_decorators(full, timezone="Etc/UTC")
    assert d.schedule == {"cron": "0 3 ? * MON *", "timezone": "Etc/UTC"}
    assert d.trigger == {"event": "flowrecord.retrain.churn"}
    assert retrain_decorators(RetrainPolicy(model="m", cron="@hourly")).trigger is None
    data_only = retrain_decorators(RetrainPolicy(model="m x/y", drift=DriftTrigger("f")))
    assert data_only.schedule is None
    assert data_only.trigger == {"event": "flowrecord.retrain.m_x_y"}
    named = retrain_decorators(RetrainPolicy(model="m", new_data="f"), event="mfns.churn_data")
    assert named.trigger == {"event": "mfns.churn_data"}
    with pytest.raises(TypeError, match="RetrainPolicy"):
        retrain_decorators(object())  # type: ignore[arg-type]


def _flow_decorators(flow_class: type) -> dict[str, Any]:
    """The flow decorators as Metaflow's deployers read them (``flow._flow_decorators``),
    each initialised by Metaflow's own ``flow_init``."""
    decorators = flow_class(use_cli=False)._flow_decorators
    for name in ("schedule", "trigger"):
        for deco in decorators.get(name, []):
            deco.flow_init(None, None, None, None, None, None, None, None)
    return decorators


@pytest.mark.unit
def test_flow_carries_the_schedule_and_trigger_metaflow_deploys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """@flowrecord_retrain("module:NAME") gives the flow Metaflow's @schedule and @trigger."""
    from metaflow import FlowSpec, step

    from flowrecord_metaflow import flowrecord_retrain

    monkeypatch.syspath_prepend(str(FLOWS))

    @flowrecord_retrain("lifecycle_refs:WEEKLY_POLICY")
    class WeeklyFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    decorators = _flow_decorators(WeeklyFlow)
    (schedule,) = decorators["schedule"]
    (trigger,) = decorators["trigger"]
    assert schedule.schedule == "0 3 ? * MON *"  # what Step Functions hands EventBridge
    assert " ".join(schedule.schedule.split()[:5]) == "0 3 ? * MON"  # what Argo takes
    assert trigger.triggers == [{"name": "flowrecord.retrain.weekly-churn"}]


@pytest.mark.unit
def test_a_flow_with_its_own_schedule_gets_metaflows_duplicate_error() -> None:
    """@flowrecord_retrain on a flow that has @schedule already is Metaflow's duplicate error."""
    from metaflow import FlowSpec, schedule, step
    from metaflow.decorators import DuplicateFlowDecoratorException

    from flowrecord_metaflow import flowrecord_retrain

    policy = RetrainPolicy(model="dup", cron="@daily")
    with pytest.raises(DuplicateFlowDecoratorException):

        @flowrecord_retrain(policy)
        @schedule(hourly=True)
        class TwiceFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass


class _Events(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def argo_events_endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint standing in for Argo Events' webhook; yields (url, received)."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Events,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", received
    finally:
        server.shutdown()
        server.server_close()


def _record_champion_and_drift() -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    old = pd.DataFrame({"income": rng.normal(50.0, 10.0, 2000), "age": rng.integers(18, 90, 2000)})
    with flowrecord.run("train", orchestrator="test"), flowrecord.task("fit"):
        flowrecord.log_dataset(old, name="features", role="input")
        version = register_model_version("churn", metrics={"auc": 0.9})
    PromotionGate(model="churn", minimums={"auc": 0.5}).apply(version.version)
    drifted = old.assign(income=old["income"] + 25.0)
    with flowrecord.run("ingest", orchestrator="test"), flowrecord.task("features"):
        flowrecord.log_dataset(drifted, name="features", role="output")


@pytest.mark.unit
def test_check_retrain_publishes_the_event_when_drift_fires(
    flowrecord_home: Path, argo_events_endpoint: tuple[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drift past the threshold: the trigger's event goes out, with model, triggers and reasons."""
    from flowrecord_metaflow import check_retrain

    url, received = argo_events_endpoint
    _record_champion_and_drift()
    policy = RetrainPolicy(model="churn", drift=DriftTrigger("features", psi=0.2, ks=0.1))

    quiet = check_retrain(policy, url=url)  # outside a deployed Argo workflow: nothing goes out
    assert quiet.fired == ("drift:features",) and not quiet.published and received == []
    assert not check_retrain(policy, url=url, force=True, publish=False).published

    monkeypatch.setenv("ARGO_WORKFLOW_TEMPLATE", "churnflow")  # as inside Argo
    sent = check_retrain(policy, url=url)
    assert sent.published and sent.decision.should_retrain
    (event,) = received
    assert event["name"] == sent.event == "flowrecord.retrain.churn"
    payload = event["payload"]
    assert payload["model"] == "churn" and payload["triggers"] == "drift:features"
    assert "drift features" in payload["reasons"] and payload["id"] == sent.event_id


@pytest.mark.unit
def test_a_cron_alone_publishes_no_event(
    flowrecord_home: Path, argo_events_endpoint: tuple[str, list]
) -> None:
    """A due cron is @schedule's to act on: check_retrain fires no event for it."""
    from flowrecord_metaflow import check_retrain

    url, received = argo_events_endpoint
    result = check_retrain(
        RetrainPolicy(model="never-trained", cron="@hourly"), force=True, url=url
    )
    assert result.decision.should_retrain and result.fired == () and not result.published
    assert received == []


# ---------------------------------------------------------------------------
# the gate, in process
# ---------------------------------------------------------------------------


@pytest.mark.unit
def test_promote_keeps_the_decision_on_the_flow_and_in_the_record(
    flowrecord_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """promote() sets self.gate_decision / self.promotion; gates by object, reference, factory."""
    from flowrecord_metaflow import PROMOTED, REFUSED, promote

    monkeypatch.syspath_prepend(str(FLOWS))
    with flowrecord.run("train", orchestrator="test"), flowrecord.task("gate") as task:
        good = register_model_version("blocked", metrics={"auc": 0.9}, datasets=[])
        bad = register_model_version("blocked", metrics={"auc": 0.6}, datasets=[])
        first, second = SimpleNamespace(), SimpleNamespace(floor=0.8)
        decision = promote(first, "lifecycle_refs:BLOCKING_GATE", good)
        refused = promote(
            second,
            lambda flow: PromotionGate(model="blocked", minimums={"auc": flow.floor}),
            int(bad.version),
            artifact="verdict",
            outcome="result",
        )
    assert decision.applied and first.promotion == PROMOTED
    assert first.gate_decision == decision.as_dict()
    assert not refused.applied and second.result == REFUSED
    assert second.verdict["failures"] == ["auc = 0.6 < minimum 0.8"]
    flowrecord.flush()
    rows = LocalStore(flowrecord_home).query("SELECT version, applied, task_id FROM gate_decisions")
    assert [(r["version"], r["applied"], r["task_id"]) for r in rows] == [
        ("1", 1, task.task_id),
        ("2", 0, task.task_id),
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    "gate, version, error",
    [
        (object(), None, "PromotionGate"),
        (lambda flow: "not a gate", None, "PromotionGate"),
        (PromotionGate(model="m", minimums={"auc": 0.5}), True, "model version"),
        (PromotionGate(model="m", minimums={"auc": 0.5}), 1.5, "model version"),
    ],
)
def test_promote_refuses_what_is_not_a_gate_or_a_version(
    gate: Any, version: Any, error: str
) -> None:
    """A gate or version promote() cannot use is a TypeError: the step fails, nothing moves."""
    from flowrecord_metaflow import promote

    with pytest.raises(TypeError, match=error):
        promote(SimpleNamespace(), gate, version)


@pytest.mark.unit
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs gate="),
        ({"gate": "no_colon"}, "'module:NAME'"),
        ({"gate": "m:G", "version_from": "not a name"}, "version_from must name"),
        ({"gate": "m:G", "block": "sometimes"}, "block must be True or False"),
    ],
)
def test_gate_decorator_refuses_bad_arguments(kwargs: dict, message: str) -> None:
    """@flowrecord_gate's arguments are checked when Metaflow initialises it, before any run."""
    from metaflow.exception import MetaflowException

    from flowrecord_metaflow import flowrecord_gate

    deco = flowrecord_gate(**kwargs)
    with pytest.raises(MetaflowException, match=message):
        deco.external_init()


@pytest.mark.unit
def test_gate_decorator_fails_the_step_when_the_version_artifact_is_missing() -> None:
    """No artifact to take the candidate from: the step fails before any gate is applied."""
    from metaflow.exception import MetaflowException

    from flowrecord_metaflow import flowrecord_gate

    deco = flowrecord_gate(gate="m:G", version_from="model_version")
    deco.external_init()
    flow = SimpleNamespace()
    with pytest.raises(MetaflowException, match="no artifact to read"):
        deco.pre_step("gate", flow, None)
    assert not hasattr(flow, "promotion")


@pytest.mark.unit
def test_artifact_datasets_outside_a_recorded_step_says_what_is_missing() -> None:
    """Without @flowrecord on the step there is no recorded read to register: a clear error."""
    from flowrecord_metaflow import artifact_datasets

    with pytest.raises(RuntimeError, match="add @flowrecord"):
        artifact_datasets(SimpleNamespace(), train=["features"])


def _graph(path: Path, cls: str) -> Any:
    from metaflow.graph import FlowGraph

    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return FlowGraph(getattr(module, cls))


@pytest.mark.unit
def test_skipped_branches_are_the_cases_a_switch_did_not_take() -> None:
    """The switch's other cases are skipped; plain steps and unknown values skip nothing."""
    from flowrecord_metaflow.recording import skipped_branches

    graph = _graph(FLOWS / "gate_flow.py", "GateFlow")
    assert skipped_branches(graph, "gate", SimpleNamespace(promotion="refused")) == ["deploy"]
    assert skipped_branches(graph, "gate", SimpleNamespace(promotion="promoted")) == ["hold"]
    assert skipped_branches(graph, "gate", SimpleNamespace(promotion="maybe")) == []
    assert skipped_branches(graph, "start", SimpleNamespace()) == []


@pytest.mark.unit
def test_a_switch_in_a_loop_skips_nothing(tmp_path: Path) -> None:
    """A branch not taken this time round may run on the next: nothing is recorded as skipped."""
    from flowrecord_metaflow.recording import skipped_branches

    flow = tmp_path / "loop_flow.py"
    flow.write_text(
        "from metaflow import FlowSpec, step\n\n\n"
        "class LoopFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.next(self.poll)\n\n"
        "    @step\n"
        "    def poll(self):\n"
        '        self.next({"again": self.poll, "done": self.end}, condition="state")\n\n'
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
    )
    graph = _graph(flow, "LoopFlow")
    assert graph["poll"].type == "split-switch"
    assert skipped_branches(graph, "poll", SimpleNamespace(state="again")) == []
    assert skipped_branches(graph, "poll", SimpleNamespace(state="done")) == []
