"""The lifecycle commands: exit codes, text and --json output, errors a user can make."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from lifecycle_support import frame, train

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.lifecycle import registry as reg

pytestmark = pytest.mark.unit

Cli = Callable[..., tuple[int, str, str]]

GATE = """
from flowrecord.lifecycle import PromotionGate
GATE = PromotionGate(model="churn", minimums={"auc": 0.8}, non_regression={"auc": 0.0})
NOT_A_GATE = 42
"""

POLICY = """
from flowrecord.lifecycle import RetrainPolicy
POLICY = RetrainPolicy(model="churn", new_data=["features"])
BROKEN = RetrainPolicy(model="churn", new_data=["never_seen"])
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "gate.py").write_text(GATE)
    (tmp_path / "policy.py").write_text(POLICY)
    return {"gate": tmp_path / "gate.py", "policy": tmp_path / "policy.py"}


@pytest.fixture
def versions(flowrecord_home: Path) -> None:
    """churn: 1 (auc 0.85, champion), 2 (auc 0.80), 3 (auc 0.90)."""
    for auc in (0.85, 0.80, 0.90):
        train("churn", {"auc": auc})
    reg.set_alias("churn", "champion", "1")


def test_promote_exit_codes_and_output(versions: None, files: dict, run_cli: Cli):
    """Refused: exit 2 with the failing reason; promoted: exit 0; the champion moves only then."""
    code, out, _ = run_cli("promote", "churn", "2", "--gate", f"{files['gate']}:GATE")
    assert code == 2
    assert "REFUSED" in out and "auc = 0.8 vs champion 0.85: regressed by 0.05" in out
    assert reg.get_alias("churn", "champion") == "1"
    code, out, _ = run_cli("promote", "churn", "latest", "--gate", f"{files['gate']}:GATE")
    assert code == 0 and "PROMOTED" in out and "version 3 is now champion" in out
    assert reg.get_alias("churn", "champion") == "3"
    assert reg.get_alias("churn", "previous") == "1"


def test_promote_json_and_the_decision_lands_in_a_cli_task(
    versions: None, files: dict, run_cli: Cli, flowrecord_home: Path
):
    """--json prints the decision; the decision is recorded in a 'promote' task of a cli run."""
    code, out, _ = run_cli("promote", "churn", "3", "--gate", f"{files['gate']}:GATE", "--json")
    decision = json.loads(out)
    assert code == 0 and decision["applied"] and decision["champion_version"] == "1"
    assert [m["alias"] for m in decision["moves"]] == ["previous", "champion"]
    store = LocalStore(flowrecord_home)
    [row] = store.query(
        "SELECT t.name, r.orchestrator, r.pipeline FROM gate_decisions g "
        "JOIN tasks t ON t.task_id = g.task_id JOIN runs r ON r.run_id = g.run_id "
        "WHERE g.decision_id = ?",
        (decision["decision_id"],),
    )
    assert tuple(row) == ("promote", "cli", "flowrecord")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("{gate}:MISSING", "defines no 'MISSING'"),
        ("{gate}:NOT_A_GATE", "is a int, not a PromotionGate"),
        ("/nowhere/gate.py:GATE", "no such file"),
        ("{gate}", "expected FILE.py:NAME"),
        ("{policy}:POLICY", "not a PromotionGate"),
    ],
)
def test_promote_with_a_bad_gate_spec_is_an_error(
    versions: None, files: dict, run_cli: Cli, spec: str, message: str
):
    """A gate that cannot be loaded is exit 1 with one line on stderr; nothing moves."""
    code, _, err = run_cli(
        "promote", "churn", "3", "--gate", spec.format(gate=files["gate"], policy=files["policy"])
    )
    assert code == 1 and message in err
    assert reg.get_alias("churn", "champion") == "1"


def test_promote_with_a_gate_for_another_model_is_an_error(
    versions: None, files: dict, run_cli: Cli
):
    """The gate's model must be the model named on the command line."""
    code, _, err = run_cli("promote", "fraud", "1", "--gate", f"{files['gate']}:GATE")
    assert code == 1 and "declared for model 'churn', not 'fraud'" in err


def test_a_gate_file_that_raises_is_an_error(versions: None, run_cli: Cli, tmp_path: Path):
    """An exception while loading the gate file is reported with its type."""
    (tmp_path / "bad.py").write_text("raise RuntimeError('no gate today')\n")
    code, _, err = run_cli("promote", "churn", "3", "--gate", f"{tmp_path / 'bad.py'}:GATE")
    assert code == 1 and "RuntimeError: no gate today" in err


def test_promote_without_a_store_is_an_error(files: dict, tmp_path: Path, run_cli: Cli):
    """--home pointing nowhere fails (and does not create a store there)."""
    code, _, err = run_cli(
        "--home", str(tmp_path / "typo"), "promote", "churn", "1", "--gate", f"{files['gate']}:GATE"
    )
    assert code == 1 and "no flowrecord store" in err
    assert not (tmp_path / "typo").exists()


def test_rollback_exit_codes(versions: None, files: dict, run_cli: Cli):
    """No previous champion: exit 2 and a clear line; after a promotion: exit 0, champion restored."""
    code, out, _ = run_cli("rollback", "churn")
    assert code == 2 and "no 'previous' version to roll back to" in out
    run_cli("promote", "churn", "3", "--gate", f"{files['gate']}:GATE")
    code, out, _ = run_cli("rollback", "churn", "--reason", "canary failed", "--json")
    document = json.loads(out)
    assert code == 0 and document["rolled_back"] and document["version"] == "1"
    assert reg.get_alias("churn", "champion") == "1"
    code, out, _ = run_cli("rollback", "unknown-model", "--json")
    assert code == 2 and json.loads(out)["rolled_back"] is False


def test_retrain_check_lines_and_exit_codes(flowrecord_home: Path, files: dict, run_cli: Cli):
    """'retrain' or 'no retrain' first; exit 0 either way, or 0/3 with --exit-code."""
    with flowrecord.run("train"), flowrecord.task("fit"):
        flowrecord.log_dataset(frame(1), name="features", role="input")
        reg.register_model_version("churn", metrics={"auc": 0.9})
    reg.set_alias("churn", "champion", "1")
    spec = f"{files['policy']}:POLICY"
    code, out, _ = run_cli("retrain", "check", spec)
    assert code == 0 and out.startswith("no retrain")
    assert run_cli("retrain", "check", spec, "--exit-code")[0] == 3
    with flowrecord.run("etl"), flowrecord.task("build"):
        flowrecord.log_dataset(frame(2), name="features", role="output")
    code, out, _ = run_cli("retrain", "check", spec)
    assert code == 0 and out.startswith("retrain") and "differs from the champion" in out
    assert run_cli("retrain", "check", spec, "--exit-code")[0] == 0
    code, out, _ = run_cli("retrain", "check", spec, "--json")
    assert json.loads(out)["should_retrain"] is True
    code, out, _ = run_cli("retrain", "check", f"{files['policy']}:BROKEN", "--exit-code")
    assert code == 1 and "could not be evaluated" in out


def test_retrain_needs_an_action(run_cli: Cli):
    """'flowrecord retrain' alone is a usage error."""
    with pytest.raises(SystemExit) as exc:
        run_cli("retrain")
    assert exc.value.code == 2


def test_models_explain_and_report(versions: None, run_cli: Cli, tmp_path: Path):
    """models lists versions and aliases; explain prints the chain; report writes the page."""
    code, out, _ = run_cli("models", "--json")
    assert code == 0
    assert json.loads(out)["models"] == [
        {
            "name": "churn",
            "created_at": json.loads(out)["models"][0]["created_at"],
            "versions": ["1", "2", "3"],
            "latest": "3",
            "aliases": {"champion": "1"},
        }
    ]
    code, out, _ = run_cli("models")
    assert code == 0 and "champion → 1" in out
    code, out, _ = run_cli("explain", "churn")
    assert code == 0 and "churn version 1 (champion)" in out and "auc = 0.85" in out
    assert "no gate decision promoted this version" in out
    code, out, _ = run_cli("explain", "churn:3", "--json")
    assert code == 0 and json.loads(out)["metrics"] == {"auc": 0.9}
    code, _, err = run_cli("report", "churn@champion", "-o", str(tmp_path / "r.html"))
    assert code == 0 and "wrote" in err and "<svg" in (tmp_path / "r.html").read_text()


def test_explain_unknown_model_is_an_error(versions: None, run_cli: Cli):
    """An unknown model or version is exit 1 naming what exists."""
    code, _, err = run_cli("explain", "fraud")
    assert code == 1 and "no registered model 'fraud' (registered: churn)" in err
    code, _, err = run_cli("explain", "churn:9")
    assert code == 1 and "has no version '9'" in err


def test_no_models_yet(flowrecord_home: Path, run_cli: Cli):
    """An empty registry is said plainly, and is an empty list in JSON."""
    with flowrecord.run("x"):
        flowrecord.log_metric("m", 1.0)  # the store exists, with no model in it
    code, out, _ = run_cli("models")
    assert code == 0 and "No registered models." in out
    assert json.loads(run_cli("models", "--json")[1]) == {"models": []}
