"""Assets, multi-assets, partitions and MaterializeResult assets, recorded in process."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest
from fr_dagster_helpers import materialize, rows

import flowrecord
import flowrecord_dagster

pytestmark = pytest.mark.integration


@dg.asset
def raw() -> pd.DataFrame:
    flowrecord.log_metric("raw_rows", 3)
    return pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})


@dg.asset
def doubled(raw: pd.DataFrame) -> pd.DataFrame:
    flowrecord.log_metric("seen", len(raw), step=1)
    return raw.assign(x=raw.x * 2)


@dg.asset(deps=[doubled])
def published() -> dg.MaterializeResult:
    flowrecord.log_metric("published", 1.0)
    return dg.MaterializeResult(metadata={"target": "s3://bucket/doubled"})


CHAIN = dg.Definitions(assets=[raw, doubled, published])


def test_each_asset_is_a_task_with_its_own_metrics(flowrecord_home, store):
    """Every asset step becomes one succeeded task, and its body's metrics land in it."""
    result = materialize(flowrecord_dagster.instrument(CHAIN))
    assert result.success
    tasks = {t["name"]: t for t in rows(store, "SELECT * FROM tasks")}
    assert set(tasks) == {"raw", "doubled", "published"}
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    assert all(t["duration_s"] is not None and t["duration_s"] >= 0 for t in tasks.values())
    metrics = rows(store, "SELECT key, value, step, task_id FROM metric_points")
    by_key = {m["key"]: m for m in metrics}
    assert by_key["raw_rows"]["task_id"] == tasks["raw"]["task_id"]
    assert (by_key["seen"]["task_id"], by_key["seen"]["step"]) == (tasks["doubled"]["task_id"], 1)
    assert by_key["published"]["task_id"] == tasks["published"]["task_id"]
    (run,) = rows(store, "SELECT * FROM runs")
    assert (run["orchestrator"], run["state"], run["run_key"]) == (
        "dagster",
        "succeeded",
        result.run_id,
    )
    attributes = json.loads(tasks["doubled"]["attributes"])
    assert attributes == {"step": "doubled", "kind": "asset", "asset_keys": "doubled"}


def test_io_manager_objects_are_fingerprinted_and_linked(flowrecord_home, store):
    """What an asset stores is what its downstream loads: same fingerprint, output then input."""
    assert materialize(flowrecord_dagster.instrument(CHAIN)).success
    data = rows(
        store,
        "SELECT d.name, d.role, d.fingerprint, d.row_count, d.uri, t.name AS task "
        "FROM datasets d JOIN tasks t USING (task_id)",
    )
    raw_out = next(d for d in data if d["task"] == "raw" and d["role"] == "output")
    raw_in = next(d for d in data if d["task"] == "doubled" and d["role"] == "input")
    assert raw_out["fingerprint"] and raw_out["fingerprint"] == raw_in["fingerprint"]
    assert (raw_out["name"], raw_out["row_count"], raw_out["uri"]) == (
        "raw",
        3,
        "dagster://asset/raw",
    )
    doubled_out = next(d for d in data if d["task"] == "doubled" and d["role"] == "output")
    assert doubled_out["fingerprint"] not in (None, raw_out["fingerprint"])


def test_materialize_result_asset_gets_lineage_by_name(flowrecord_home, store):
    """An asset with no IO manager call still records its output and its upstream dependency."""
    assert materialize(flowrecord_dagster.instrument(CHAIN)).success
    data = rows(
        store,
        "SELECT d.name, d.role, d.fingerprint FROM datasets d JOIN tasks t USING (task_id) "
        "WHERE t.name = 'published' ORDER BY d.role",
    )
    assert [(d["name"], d["role"]) for d in data] == [("doubled", "input"), ("published", "output")]
    from flowrecord.query import lineage, open_store

    # Within the run, the name links it to the task that wrote "doubled".
    graph = lineage(open_store(flowrecord_home), "published", direction="upstream")
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    assert {(names[s], names[t]) for s, t in edges} >= {
        ("published", "published"),
        ("doubled", "published"),
    }


def test_system_usage_recorded_per_task(flowrecord_home, store):
    """Each task gets a system-usage summary from the sampler started with it."""
    assert materialize(flowrecord_dagster.instrument(CHAIN)).success
    usage = rows(
        store,
        "SELECT t.name, u.summary FROM system_usage u JOIN tasks t USING (task_id) ORDER BY t.name",
    )
    assert [u["name"] for u in usage] == ["doubled", "published", "raw"]
    assert all("rss_bytes_peak" in json.loads(u["summary"]) for u in usage)


@dg.multi_asset(
    outs={"left": dg.AssetOut(is_required=False), "right": dg.AssetOut(is_required=False)},
    deps=["source_table"],
    internal_asset_deps={"left": set(), "right": {dg.AssetKey("source_table")}},
    can_subset=True,
)
def split(context):
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        frame = pd.DataFrame({"side": [key.to_user_string()] * 2})
        yield dg.Output(frame, output_name=key.path[-1])


def test_multi_asset_is_one_task_with_one_dataset_per_selected_key(flowrecord_home, store):
    """A multi-asset step is named by its op; a subset records only the keys it produced."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[split]))
    assert materialize(defs).success
    assert materialize(defs, selection=["left"]).success
    tasks = rows(store, "SELECT run_id, name FROM tasks ORDER BY started_at")
    assert [t["name"] for t in tasks] == ["split", "split"]
    first, second = (t["run_id"] for t in tasks)
    outputs = rows(
        store, "SELECT run_id, name FROM datasets WHERE role = 'output' ORDER BY run_id, name"
    )
    assert [o["name"] for o in outputs if o["run_id"] == first] == ["left", "right"]
    assert [o["name"] for o in outputs if o["run_id"] == second] == ["left"]
    inputs = rows(store, "SELECT run_id, name FROM datasets WHERE role = 'input'")
    # source_table feeds only "right": the subset run does not claim it.
    assert [i["run_id"] for i in inputs if i["name"] == "source_table"] == [first]


DAYS = dg.StaticPartitionsDefinition(["2026-01-01", "2026-01-02"])


@dg.asset(partitions_def=DAYS)
def daily(context) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key] * 4})


@dg.asset
def answer() -> int:
    return 42


def test_output_without_data_facts_gets_no_metadata_but_is_recorded(flowrecord_home, store):
    """A number is linked by name in the record; its materialization stays free of entries.

    Dagster's cost of storing any output metadata is a step's biggest share of
    flowrecord's overhead; without facts to show there is nothing to pay it for.
    """
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(
        flowrecord_dagster.instrument(dg.Definitions(assets=[answer])), instance=instance
    )
    assert result.success
    event = instance.get_latest_materialization_event(dg.AssetKey("answer"))
    assert not [k for k in event.asset_materialization.metadata if k.startswith("flowrecord/")]
    (out,) = rows(store, "SELECT name, role, data_type, fingerprint, run_id FROM datasets")
    assert (out["name"], out["role"], out["data_type"], out["fingerprint"]) == (
        "answer",
        "output",
        "int",
        None,
    )
    # The Dagster run id alone leads to the record.
    from flowrecord.query import resolve_run

    assert resolve_run(store, result.run_id) == out["run_id"]


def test_partitioned_asset_records_its_partition(flowrecord_home, store):
    """The partition key is on the task, in the dataset URI, and the UI's partition row count."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[daily]))
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(defs, partition_key="2026-01-02", instance=instance).success
    (task,) = rows(store, "SELECT attributes FROM tasks")
    assert json.loads(task["attributes"])["partition_key"] == "2026-01-02"
    (data,) = rows(store, "SELECT uri, row_count FROM datasets WHERE role = 'output'")
    assert data == {"uri": "dagster://asset/daily?partition=2026-01-02", "row_count": 4}
    event = instance.get_latest_materialization_event(dg.AssetKey("daily"))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/partition_row_count"].value == 4
    assert "dagster/row_count" not in metadata


def test_materialization_metadata_carries_the_record(flowrecord_home, store):
    """Column schema, row count, fingerprint, profile and the record's ids reach the instance."""
    defs = flowrecord_dagster.instrument(CHAIN)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(defs, instance=instance).success
    event = instance.get_latest_materialization_event(dg.AssetKey("raw"))
    metadata = event.asset_materialization.metadata
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [(c.name, c.type) for c in schema.columns] == [("x", "int64"), ("y", "large_string")]
    assert metadata["dagster/row_count"].value == 3
    (out,) = rows(
        store,
        "SELECT fingerprint, run_id, task_id FROM datasets WHERE name = 'raw' AND role = 'output'",
    )
    assert metadata["flowrecord/fingerprint"].value == out["fingerprint"]
    assert metadata["flowrecord/run_id"].value == out["run_id"]
    assert metadata["flowrecord/task_id"].value == out["task_id"]
    assert metadata["flowrecord/record"].value == f"flowrecord show {out['run_id']}"
    assert metadata["flowrecord/profile"].value["x"]["max"] == 3
    # A MaterializeResult keeps its own metadata untouched.
    published_event = instance.get_latest_materialization_event(dg.AssetKey("published"))
    assert set(published_event.asset_materialization.metadata) == {"target"}
