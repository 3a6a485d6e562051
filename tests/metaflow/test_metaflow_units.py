"""The Metaflow integration's parts that need no Metaflow run: extension, settings, lineage, card."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowrecord.events import (
    DatasetEvent,
    MetricBatch,
    ParamEvent,
    State,
    SystemUsageEvent,
    TaskEvent,
    ValidationEvent,
)
from flowrecord_metaflow import StepSettings, artifact_uri, task_name
from flowrecord_metaflow.card import TaskCardCollector, card_components
from flowrecord_metaflow.lineage import (
    MetaflowArtifact,
    is_data_frame,
    is_user_artifact,
    log_artifact_dataset,
    written_artifacts,
)
from flowrecord_metaflow.recording import resolve_schema

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------
# the extension
# ---------------------------------------------------------------------------


@pytest.mark.unit
def test_namespace_package_comes_from_the_editable_install() -> None:
    """metaflow_extensions resolves to the integration's src/ (the editable install works)."""
    import metaflow_extensions

    paths = [Path(p).resolve() for p in metaflow_extensions.__path__]
    assert REPO / "integrations" / "metaflow" / "src" / "metaflow_extensions" in paths


@pytest.mark.unit
def test_metaflow_loads_both_decorators_from_the_extension() -> None:
    """Metaflow registers @flowrecord (step) and @flowrecord_base (flow) and exports them."""
    import metaflow
    from metaflow.plugins import FLOW_DECORATORS, STEP_DECORATORS

    import flowrecord_metaflow

    steps = {d.name: d for d in STEP_DECORATORS}
    flows = {d.name: d for d in FLOW_DECORATORS}
    assert steps["flowrecord"] is flowrecord_metaflow.FlowrecordStepDecorator
    assert flows["flowrecord_base"] is flowrecord_metaflow.FlowrecordFlowDecorator
    assert callable(metaflow.flowrecord) and callable(metaflow.flowrecord_base)


@pytest.mark.unit
def test_importing_the_package_first_does_not_break_metaflow() -> None:
    """Importing flowrecord_metaflow before metaflow leaves Metaflow's plugin loading intact."""
    code = (
        "import flowrecord_metaflow as f\n"
        "cls = f.FlowrecordStepDecorator\n"
        "from metaflow import flowrecord\n"
        "print(cls.name, flowrecord.args[0] is cls)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["flowrecord", "True"]


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------


@pytest.mark.unit
def test_settings_accept_what_the_command_line_passes() -> None:
    """card/policy arrive as strings through --with; they parse the same as in code."""
    s = StepSettings.from_attributes({"card": "True", "policy": " Fail "})
    assert s.card is True and s.policy == "fail"
    assert StepSettings.from_attributes({"card": False}).card is False
    assert StepSettings.from_attributes({}).validate == {}


@pytest.mark.unit
@pytest.mark.parametrize(
    "attributes, message",
    [
        ({"policy": "explode"}, "unknown validation policy"),
        ({"card": "maybe"}, "card must be True or False"),
        ({"validate": ["train_df"]}, "validate must map"),
        ({"validate": {"not a name": object()}}, "is not an artifact name"),
        ({"validate": {"df": "no_colon_here"}}, "'module:Name'"),
    ],
)
def test_settings_refuse_bad_arguments(attributes: dict, message: str) -> None:
    """A decorator argument flowrecord cannot use is refused with a message naming it."""
    with pytest.raises(ValueError, match=message):
        StepSettings.from_attributes(attributes)


@pytest.mark.unit
def test_schema_reference_is_imported_when_resolved() -> None:
    """A "module:Name" schema resolves to the named object; an object resolves to itself."""
    marker = object()
    assert resolve_schema(marker) is marker
    assert resolve_schema("flowrecord_metaflow.card:CARD_ID") == "flowrecord"


# ---------------------------------------------------------------------------
# identity and lineage
# ---------------------------------------------------------------------------


@pytest.mark.unit
def test_task_names_keep_every_foreach_task_apart() -> None:
    """Foreach index is the map index; outer indices of a nested foreach join the name."""
    assert task_name("train", []) == ("train", None)
    assert task_name("train", [7]) == ("train", 7)
    names = {task_name("inner", [outer, inner]) for outer in range(3) for inner in range(4)}
    assert len(names) == 12
    assert task_name("inner", [2, 0]) == ("inner[2]", 0)


@pytest.mark.unit
def test_written_means_new_or_changed_against_every_input() -> None:
    """A step wrote an artifact when its sha is new; inherited and merged ones are not writes."""
    before = [{"raw": "a1", "model": "m1", "_foreach_stack": "f"}, {"raw": "a1", "score": "s2"}]
    after = {"raw": "a1", "model": "m9", "score": "s2", "report": "r1", "_foreach_stack": "g"}
    assert written_artifacts(after, before) == {"model": "m9", "report": "r1"}
    assert written_artifacts(after, before, exclude=["report"]) == {"model": "m9"}
    assert written_artifacts({"x": "1"}, []) == {"x": "1"}


@pytest.mark.unit
def test_only_user_artifacts_count() -> None:
    """Metaflow's own bookkeeping (underscored names, name/index/input) is never lineage."""
    assert is_user_artifact("train_df")
    assert not any(is_user_artifact(n) for n in ("_graph_info", "name", "index", "input", ""))


@pytest.mark.unit
def test_frames_and_tables_are_told_from_other_objects() -> None:
    """Arrow tables and pandas frames are data; dicts and strings are not."""
    import pandas as pd
    import pyarrow as pa

    assert is_data_frame(pa.table({"x": [1]})) and is_data_frame(pd.DataFrame({"x": [1]}))
    assert not is_data_frame({"x": [1]}) and not is_data_frame("x.parquet")


@pytest.mark.unit
def test_artifact_uri_is_a_pathspec_plus_the_sha() -> None:
    """The URI reads as Metaflow's pathspec of the artifact, then its content sha."""
    assert artifact_uri("F", "1", "s", "2", "m") == "metaflow://F/1/s/2/m"
    assert artifact_uri("F", "1", "s", "2", "m", "ab") == "metaflow://F/1/s/2/m#sha1=ab"


@pytest.mark.unit
def test_other_artifacts_go_by_metaflow_sha_and_frames_by_content(
    recording: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A model or a path is recorded with metaflow-sha1:<sha>, unread; a frame is fingerprinted."""
    import pandas as pd

    import flowrecord

    model_ref = MetaflowArtifact(
        uri="metaflow://F/1/train/3/model#sha1=9f2c", name="model", sha="9f2c", type_name="Pipe"
    )
    path_ref = MetaflowArtifact(uri="metaflow://F/1/s/2/out#sha1=77", name="out", sha="77")
    frame_ref = MetaflowArtifact(uri="metaflow://F/1/s/2/df#sha1=aa", name="df", sha="aa")
    with flowrecord.run("F", "1", orchestrator="metaflow"), flowrecord.task("train"):
        model = log_artifact_dataset(model_ref, object(), role="output")
        # a path the recorder would otherwise walk as a directory
        path = log_artifact_dataset(path_ref, "/", role="output")
        frame = log_artifact_dataset(frame_ref, pd.DataFrame({"x": [1, 2]}), role="input")
    assert (model.fingerprint, model.data_type, model.uri) == (
        "metaflow-sha1:9f2c",
        "Pipe",
        model_ref.uri,
    )
    assert (path.fingerprint, path.data_type) == ("metaflow-sha1:77", "metaflow artifact")
    assert frame.fingerprint.startswith("xxh3:") and frame.row_count == 2
    assert "not a data frame" not in caplog.text


# ---------------------------------------------------------------------------
# the card
# ---------------------------------------------------------------------------


def _feed(collector: TaskCardCollector, task_id: str) -> None:
    now = time.time()
    common = {"ts": now, "run_id": "r"}
    collector.flowrecord_metrics_logged(
        MetricBatch(
            [
                ("e1", now, "r", task_id, "loss", 0.9, 0),
                ("e2", now, "r", task_id, "loss", 0.4, 1),
                ("e3", now, "r", "another-task", "loss", 99.0, 0),
            ]
        )
    )
    collector.flowrecord_params_logged(
        [ParamEvent(event_id="p", task_id=task_id, key="api_key", value="***", **common)]
    )
    collector.flowrecord_dataset_logged(
        [
            DatasetEvent(
                event_id="d",
                task_id=task_id,
                name="train_df",
                role="output",
                data_type="pandas",
                fingerprint="xxh3:00ff",
                row_count=500,
                **common,
            )
        ]
    )
    collector.flowrecord_validation_recorded(
        [
            ValidationEvent(
                event_id="v",
                task_id=task_id,
                dataset_name="train_df",
                fingerprint=None,
                validator="pandera",
                schema_name="train",
                passed=False,
                policy="warn",
                failure_count=3,
                **common,
            )
        ]
    )
    collector.flowrecord_system_usage_recorded(
        [
            SystemUsageEvent(
                event_id="s",
                task_id=task_id,
                summary={"cpu_percent_peak": 87.5, "rss_bytes_peak": 3 * 2**20, "gpus": []},
                **common,
            )
        ]
    )
    collector.flowrecord_task_finished(
        [
            TaskEvent(
                event_id="t",
                task_id=task_id,
                state=State.SUCCEEDED,
                name="train",
                try_number=2,
                duration_s=1.25,
                **common,
            )
        ]
    )


@pytest.mark.unit
def test_card_shows_only_its_task_and_every_section() -> None:
    """The card lists this task's metrics, datasets, validations, usage and params, no other's."""

    collector = TaskCardCollector()
    _feed(collector, "t-1")
    parts = card_components(collector.card("t-1"))
    rendered = [p.render() for p in parts]
    tables = {}
    heading = None
    for item in rendered:
        if item["type"] == "markdown" and item["source"].startswith("## "):
            heading = item["source"][3:]
        elif item["type"] == "table":
            tables[heading] = item["data"]
    assert tables["Metrics"] == [["loss", "0.4", "2", "0.4", "0.9", "1"]]
    assert tables["Datasets"][0][:4] == ["output", "train_df", "pandas", "500"]
    assert tables["Validations"] == [["train_df", "pandera", "train", "FAILED", "3", "warn"]]
    assert ["rss_bytes_peak", "3.0 MiB"] in tables["System usage"]
    assert tables["Parameters"] == [["api_key", "***"]]
    header = " ".join(i["source"] for i in rendered if i["type"] == "markdown")
    assert "succeeded" in header and "attempt** 2" in header and "1.250 s" in header


@pytest.mark.unit
def test_card_of_a_task_that_recorded_nothing_says_so() -> None:
    """A task with no events of its own (another task's do not count) says so in each section."""
    collector = TaskCardCollector()
    _feed(collector, "t-1")
    text = " ".join(
        str(p.render().get("source", "")) for p in card_components(collector.card("t-2"))
    )
    for phrase in ("no metrics logged", "no datasets", "no validations", "no system usage"):
        assert phrase in text


@pytest.mark.unit
def test_documented_flow_is_the_example_file() -> None:
    """docs/metaflow.md prints examples/metaflow/train_flow.py exactly, so its e2e run tests the doc."""
    doc = (REPO / "docs" / "metaflow.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert blocks[0] == (REPO / "examples" / "metaflow" / "train_flow.py").read_text()


def _doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "metaflow.md").read_text(), re.S)


@pytest.mark.unit
def test_documented_excerpts_are_the_example_files_verbatim() -> None:
    """Each "(excerpt)" block of docs/metaflow.md is a verbatim part of the file it names."""
    excerpts = 0
    for block in _doc_blocks():
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"# (\S+) \(excerpt\)", first)
        if not match:
            continue
        excerpts += 1
        assert body.rstrip() in (REPO / match.group(1)).read_text(), match.group(1)
    assert excerpts == 2


@pytest.mark.unit
def test_documented_retrain_snippet_prints_what_it_says() -> None:
    """The @schedule/@trigger snippet runs from the repository root and prints its comments."""
    (block,) = [b for b in _doc_blocks() if "retrain_decorators(" in b]
    expected = [line[2:] for line in block.splitlines() if line.startswith("# {")]
    out = subprocess.run(
        [sys.executable, "-c", block],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLOWRECORD_DISABLED": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (
        out.stdout.splitlines()
        == expected
        == [
            "{'cron': '0 3 ? * MON *'}",
            "{'event': 'flowrecord.retrain.churn'}",
        ]
    )


@pytest.mark.unit
def test_command_line_decorator_spec_parses_to_settings() -> None:
    """The documented --with string goes through Metaflow's own parser into valid settings."""
    from flowrecord_metaflow import FlowrecordStepDecorator

    spec = 'card=true,validate={"train_df":"schemas:TrainSchema"},policy=warn'
    deco = FlowrecordStepDecorator.parse_decorator_spec(spec)
    settings = StepSettings.from_attributes(deco.attributes)
    assert settings.card is True and settings.policy == "warn"
    assert settings.validate == {"train_df": "schemas:TrainSchema"}
    # Metaflow hands the decorator to task processes as a spec again: it round-trips.
    again = FlowrecordStepDecorator.parse_decorator_spec(
        deco.make_decorator_spec().split(":", 1)[1]
    )
    assert StepSettings.from_attributes(again.attributes) == settings


@pytest.mark.integration
def test_bad_decorator_argument_stops_the_flow_before_it_runs(tmp_path: Path) -> None:
    """An unknown policy is refused when Metaflow loads the flow, naming the step and the value."""
    flow = Path(__file__).parent / "flows" / "bad_args_flow.py"
    out = subprocess.run(
        [sys.executable, str(flow), "--no-pylint", "check"],
        cwd=tmp_path,
        env={
            **os.environ,
            "METAFLOW_HOME": str(tmp_path),
            "USERNAME": "tester",
            "METAFLOW_DEFAULT_METADATA": "local",
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "@flowrecord on step start" in text and "unknown validation policy 'sometimes'" in text


@pytest.mark.unit
def test_a_task_process_imports_neither_the_card_nor_the_hashing_for_plain_artifacts():
    """What every task process pays stays small: no card, pluggy-free package import, no hashing for an int."""
    code = (
        "import sys\n"
        "import flowrecord_metaflow\n"
        "from flowrecord_metaflow import StepSettings\n"
        "from flowrecord_metaflow.lineage import is_data_frame\n"
        "assert not is_data_frame(3)\n"
        "heavy = [m for m in ('flowrecord_metaflow.card', 'flowrecord.collectors.fingerprint',\n"
        "         'flowrecord.collectors.profile', 'importlib.metadata', 'pluggy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported by a plain task: {out.stdout.strip()}"
