"""explain and the HTML report: the whole provenance chain of a model, across orchestrators."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandera.pandas as pa
import pytest
from lifecycle_support import frame

import flowrecord
from flowrecord import recorder
from flowrecord.backends.local import LocalStore
from flowrecord.config import reset_config
from flowrecord.lifecycle import PromotionGate, explain, register_model_version
from flowrecord.lifecycle.explain import diff_summary, parse_model_ref
from flowrecord.lifecycle.registry import ModelNotFound
from flowrecord.lifecycle.report import lineage_svg, render_report, write_report

pytestmark = pytest.mark.integration

SCHEMA = pa.DataFrameSchema({"x": pa.Column(float), "z": pa.Column(float, pa.Check.ge(0))})


def _git_repo(path: Path) -> Path:
    path.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "ml@example.com")
    git("config", "user.name", "ML")
    (path / "train.py").write_text("lr = 0.1\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "train")
    (path / "train.py").write_text("lr = 0.05\nepochs = 3\n")  # uncommitted
    return path


@pytest.fixture
def pipeline(flowrecord_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Airflow writes raw and features; a Dagster asset trains on features; a gate promotes it."""
    raw, features, holdout = frame(1), frame(2), frame(3)
    with flowrecord.run("etl", "2026-05-01", orchestrator="airflow"):
        with flowrecord.task("extract"):
            flowrecord.log_dataset(raw, name="raw_events", role="output")
        with flowrecord.task("featurize"):
            flowrecord.log_dataset(raw, name="raw_events", role="input")
            flowrecord.log_dataset(features, name="features", role="output")
            flowrecord.validate(features, SCHEMA, name="features")
            flowrecord.log_dataset(holdout, name="holdout", role="output")
    # the training run captures its code: a repository with an uncommitted change
    monkeypatch.chdir(_git_repo(tmp_path / "repo"))
    monkeypatch.setenv("FLOWRECORD_CAPTURE_CODE", "1")
    recorder.shutdown()
    reset_config()
    with (
        flowrecord.run("train_churn", "run-7", orchestrator="dagster") as run,
        flowrecord.task("churn_model") as task,
    ):
        f = flowrecord.log_dataset(features, name="features_table", role="input")
        h = flowrecord.log_dataset(holdout, name="holdout", role="input")
        flowrecord.log_params({"lr": 0.05, "epochs": 3})
        flowrecord.log_metric("auc", 0.87)
        version = register_model_version(
            "churn", uri="s3://models/churn/1", datasets={"train": f, "eval": h}
        )
    store = LocalStore(flowrecord_home)
    deadline = time.monotonic() + 20
    while not store.query("SELECT 1 FROM code_snapshots WHERE run_id = ?", (run.run_id,)):
        assert time.monotonic() < deadline, "code snapshot never arrived"
        time.sleep(0.05)
        recorder.flush()
    gate = PromotionGate(model="churn", minimums={"auc": 0.8}, require_validations=["train"])
    decision = gate.apply(version.version)
    assert decision.applied, decision.failures
    return {"version": version, "run": run, "task": task, "decision": decision, "store": store}


def test_explain_shows_the_whole_chain_across_orchestrators(pipeline: dict):
    """From the model back to the first Airflow task, through the Dagster training asset."""
    x = explain("churn", store=pipeline["store"])
    assert (x["model"], x["version"], x["aliases"]) == ("churn", "1", ["champion"])
    # why it is here
    assert x["promotion"]["decision_id"] == pipeline["decision"].decision_id
    assert (
        x["promotion"]["applied"] and "pass: auc = 0.87 >= minimum 0.8" in x["promotion"]["reasons"]
    )
    assert [m["alias"] for m in x["alias_history"]] == ["champion"]
    assert x["metrics"] == {"auc": 0.87}
    # how it was trained
    t = x["training"]
    assert t["recorded"] and t["run"]["orchestrator"] == "dagster"
    assert (t["run"]["pipeline"], t["run"]["run_key"], t["task"]["name"]) == (
        "train_churn",
        "run-7",
        "churn_model",
    )
    assert {p["key"]: p["value"] for p in t["params"]} == {"lr": "0.05", "epochs": "3"}
    assert len(t["code"]["commit"]) == 40 and t["code"]["dirty"] is True
    assert t["code"]["diff_summary"]["files"] == ["train.py"]
    assert t["code"]["diff_summary"]["insertions"] == 2
    # the exact data
    by_role = {d["role"]: d for d in x["datasets"]}
    train_ds = by_role["train"]
    assert train_ds["fingerprint"] == pipeline["version"].datasets[0]["fingerprint"]
    assert [c["name"] for c in train_ds["schema"]] == ["x", "z", "y"]
    assert [v["validator"] for v in train_ds["validations"]] == ["pandera"]
    assert [(w["orchestrator"], w["task"]) for w in train_ds["written_by"]] == [
        ("airflow", "featurize")
    ]
    assert by_role["eval"]["validations"] == []
    # every upstream task, recursively, across orchestrators
    assert sorted(n["name"] for n in x["upstream_tasks"]) == ["extract", "featurize"]
    assert {n["orchestrator"] for n in x["upstream_tasks"]} == {"airflow"}
    assert x["orchestrators"] == ["airflow", "dagster"]
    graph = x["lineage"]
    names = {n["id"]: n.get("name") for n in graph["nodes"]}
    chain = {(names[e["source"]], names[e["target"]]) for e in graph["edges"]}
    assert {
        ("extract", "raw_events"),
        ("raw_events", "featurize"),
        ("churn_model", "churn v1"),
    } <= chain
    # one node for the features table, whatever each orchestrator called it
    fp_nodes = [n for n in graph["nodes"] if n.get("fingerprint") == train_ds["fingerprint"]]
    assert len(fp_nodes) == 1 and set(fp_nodes[0]["names"]) == {"features", "features_table"}
    fp_id, task_id = fp_nodes[0]["id"], f"task:{pipeline['task'].task_id}"
    assert {"source": fp_id, "target": task_id, "role": "input"} in graph["edges"]
    assert ("featurize", names[fp_id]) in chain
    json.dumps(x)  # a JSON document as it stands


def test_explain_resolves_versions_and_aliases(pipeline: dict):
    """MODEL:VERSION and MODEL@ALIAS name the same version; unknown ones raise ModelNotFound."""
    store = pipeline["store"]
    assert explain("churn:1", store=store)["version"] == "1"
    assert explain("churn@champion", store=store)["version"] == "1"
    for ref in ("churn:2", "churn@challenger", "fraud"):
        with pytest.raises(ModelNotFound):
            explain(ref, store=store)


def test_report_is_self_contained_html_with_an_svg_graph(pipeline: dict, tmp_path: Path):
    """The report has the decision, metrics, data and an inline SVG of the lineage."""
    x = explain("churn", store=pipeline["store"])
    path = write_report(x, tmp_path / "out" / "report.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</svg>" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    for text in (
        "featurize",
        "extract",
        "churn_model",
        "churn v1",
        pipeline["decision"].decision_id,
    ):
        assert text in page
    assert page.count('class="node ') == len(x["lineage"]["nodes"])


def test_report_escapes_recorded_text():
    """Names from the record are escaped: a dataset called <script> stays text."""
    x = {
        "model": "m<b>",
        "version": "1",
        "lineage": {
            "nodes": [
                {"id": "d", "kind": "dataset", "name": "<script>alert(1)</script>"},
                {"id": "m", "kind": "model", "name": "m v1", "aliases": []},
            ],
            "edges": [{"source": "d", "target": "m", "role": "train"}],
        },
        "datasets": [{"name": "<img src=x>", "role": "train", "schema": [], "validations": []}],
    }
    page = render_report(x)
    assert "<script>" not in page and "<img src" not in page
    assert "&lt;script&gt;" in page and "m&lt;b&gt;" in page


def test_svg_layers_follow_the_data_flow():
    """Each node is placed right of its predecessors; a cycle does not hang the layout."""
    graph = {
        "nodes": [{"id": i, "kind": "task", "name": i} for i in ("a", "b", "c", "d")],
        "edges": [
            {"source": "a", "target": "b", "role": "x"},
            {"source": "b", "target": "c", "role": "x"},
            {"source": "a", "target": "c", "role": "x"},
            {"source": "c", "target": "b", "role": "x"},  # a cycle
        ],
    }
    svg = lineage_svg(graph)
    import re

    xs = {
        name: float(x)
        for x, name in re.findall(r'<rect x="([\d.]+)".*?font-weight="600"[^>]*>([a-d])<', svg)
    }
    assert xs["a"] < xs["b"] and xs["a"] < xs["c"] and set(xs) == {"a", "b", "c", "d"}


def test_refs_and_diff_summaries_parse():
    """Model references split on @ and :, a known name is taken whole; diffs are counted."""
    assert parse_model_ref("team:churn", {"team:churn"}) == ("team:churn", None)
    assert parse_model_ref("team:churn:4") == ("team:churn", "4")
    with pytest.raises(ValueError):
        parse_model_ref("  ")
    assert diff_summary(None) == {"files_changed": 0, "insertions": 0, "deletions": 0, "files": []}
