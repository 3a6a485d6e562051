"""instrument() itself: bad input, what it passes through, user IO managers, recording faults.

No ``from __future__ import annotations`` here: Dagster reads the annotations.
"""

import os

import dagster as dg
import pandas as pd
import pytest
from fr_dagster_helpers import materialize, rows

import flowrecord
import flowrecord_dagster
from flowrecord import recorder


@dg.asset
def numbers() -> list:
    return [1, 2, 3]


@dg.asset
def squares(numbers: list) -> list:
    flowrecord.log_metric("count", len(numbers))
    return [n * n for n in numbers]


@dg.op
def hello() -> str:
    return "hi"


@dg.job
def hello_job():
    hello()


# --------------------------------------------------------------------------- bad input


@pytest.mark.unit
def test_instrument_refuses_what_is_not_definitions():
    """Only a Definitions can be instrumented."""
    with pytest.raises(TypeError, match=r"dagster\.Definitions"):
        flowrecord_dagster.instrument([numbers])  # type: ignore[arg-type]


@pytest.mark.unit
def test_instrument_refuses_unknown_policies():
    """An unknown default or per-asset policy is a load-time error naming the asset."""
    with pytest.raises(ValueError, match="unknown validation policy"):
        flowrecord_dagster.instrument(dg.Definitions(assets=[numbers]), validation_policy="block")

    @dg.asset(metadata={flowrecord_dagster.POLICY_KEY: "sometimes"})
    def odd() -> int:
        return 1

    with pytest.raises(ValueError, match="asset 'odd'"):
        flowrecord_dagster.instrument(dg.Definitions(assets=[odd]))


@pytest.mark.unit
@pytest.mark.filterwarnings("ignore:Support for arbitrary metadata values:DeprecationWarning")
@pytest.mark.parametrize(
    ("schema", "error", "match"),
    [
        ("no_such_module:Schema", ValueError, "cannot import"),
        ("fr_dagster_defs:NoSuchName", ValueError, "cannot import"),
        ("not an import path", ValueError, "import path"),
        ({"price": "float"}, TypeError, "pandera DataFrameSchema or DataFrameModel"),
    ],
)
def test_instrument_refuses_bad_schemas(schema, error, match):
    """A schema that does not resolve to a pandera schema fails loudly at load, not in a run."""

    @dg.asset(metadata={flowrecord_dagster.SCHEMA_KEY: schema})
    def priced() -> int:
        return 1

    with pytest.raises(error, match=match):
        flowrecord_dagster.instrument(dg.Definitions(assets=[priced]))


@pytest.mark.unit
def test_instrument_refuses_a_taken_resource_key():
    """The "flowrecord" resource key is flowrecord's; a user resource there is an error."""
    with pytest.raises(ValueError, match="'flowrecord' is taken"):
        flowrecord_dagster.instrument(dg.Definitions(assets=[numbers], resources={"flowrecord": 1}))


@pytest.mark.unit
def test_instrument_is_idempotent_and_off_when_disabled(monkeypatch):
    """Instrumenting twice changes nothing; FLOWRECORD_DISABLED=1 returns the definitions as given."""
    once = flowrecord_dagster.instrument(dg.Definitions(assets=[numbers]))
    assert flowrecord_dagster.instrument(once) is once
    from flowrecord.config import reset_config

    monkeypatch.setenv("FLOWRECORD_DISABLED", "1")
    reset_config()
    try:
        plain = dg.Definitions(assets=[numbers])
        assert flowrecord_dagster.instrument(plain) is plain
    finally:
        monkeypatch.delenv("FLOWRECORD_DISABLED")
        reset_config()


# --------------------------------------------------------------------------- pass-through


@pytest.mark.unit
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::dagster.BetaWarning")
def test_schedules_and_sensors_follow_their_hooked_jobs():
    """Op jobs get the hook; schedules and sensors that target them target the hooked job."""
    schedule = dg.ScheduleDefinition(job=hello_job, cron_schedule="0 * * * *")

    @dg.sensor(job=hello_job)
    def on_demand():
        return None

    defs = flowrecord_dagster.instrument(
        dg.Definitions(jobs=[hello_job], schedules=[schedule], sensors=[on_demand])
    )
    dg.Definitions.validate_loadable(defs)  # one job of that name, not two
    for job in (
        defs.get_job_def("hello_job"),
        defs.get_schedule_def(schedule.name).job,
        defs.get_sensor_def("on_demand").job,
    ):
        assert flowrecord_dagster.HOOK_NAME in {h.name for h in job.hook_defs}


# --------------------------------------------------------------------------- IO managers


class FrameStore(dg.ConfigurableIOManager):
    """A user IO manager that keeps CSV files and reports its own row count."""

    root: str

    def _path(self, context) -> str:
        return os.path.join(self.root, "_".join(context.asset_key.path) + ".csv")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        obj.to_csv(self._path(context), index=False)
        context.add_output_metadata({"dagster/row_count": -1, "path": self._path(context)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return pd.read_csv(self._path(context))


@dg.asset
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2]})


@dg.asset
def frame_twice(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame])


@pytest.mark.integration
def test_user_io_manager_stores_as_before_and_keeps_its_metadata(flowrecord_home, store, tmp_path):
    """The user's IO manager still stores and loads; its own metadata wins over flowrecord's."""
    defs = flowrecord_dagster.instrument(
        dg.Definitions(
            assets=[frame, frame_twice], resources={"io_manager": FrameStore(root=str(tmp_path))}
        )
    )
    assert isinstance(defs.resources["io_manager"], dg.IOManagerDefinition)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(defs, instance=instance).success
    assert pd.read_csv(tmp_path / "frame_twice.csv").a.tolist() == [1, 2, 1, 2]
    metadata = instance.get_latest_materialization_event(
        dg.AssetKey("frame")
    ).asset_materialization.metadata
    assert metadata["dagster/row_count"].value == -1
    assert metadata["path"].value.endswith("frame.csv")
    assert "flowrecord/fingerprint" in metadata and "dagster/column_schema" in metadata
    data = rows(store, "SELECT name, role, fingerprint FROM datasets WHERE name = 'frame'")
    assert {d["role"] for d in data} == {"input", "output"}
    assert len({d["fingerprint"] for d in data}) == 1


@pytest.mark.integration
def test_execute_in_process_keeps_values_in_memory(flowrecord_home):
    """Without a user IO manager, execute_in_process still keeps outputs in memory (no pickling)."""

    class Unpicklable:
        def __reduce__(self):
            raise TypeError("cannot pickle")

    @dg.asset
    def handle() -> object:
        return Unpicklable()

    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[handle]))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process()
    assert result.success and isinstance(result.output_for_node("handle"), Unpicklable)


# --------------------------------------------------------------------------- faults


@pytest.mark.reliability
def test_recording_errors_never_fail_the_asset(flowrecord_home, store, monkeypatch):
    """When every recorder call an integration makes raises, assets run and store as usual."""

    def broken(*args, **kwargs):
        raise RuntimeError("recorder is broken")

    # start_run stays: the body's own flowrecord.log_metric needs it (an implicit run).
    for name in ("start_task", "end_task", "log_dataset", "log_params", "validate", "end_run"):
        monkeypatch.setattr(recorder, name, broken)
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[numbers, squares]))
    result = materialize(defs)
    assert result.success and result.output_for_node("squares") == [1, 4, 9]


@pytest.mark.reliability
def test_without_an_event_listener_steps_are_recorded_after_the_fact(
    flowrecord_home, store, monkeypatch
):
    """Should a Dagster release drop add_event_listener, the hook still records each step."""
    monkeypatch.setattr(dg.DagsterInstance, "add_event_listener", None)
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[numbers, squares]))
    assert materialize(defs).success
    tasks = {t["name"]: t["state"] for t in rows(store, "SELECT name, state FROM tasks")}
    assert tasks == {"numbers": "succeeded", "squares": "succeeded"}
    lineage = rows(
        store,
        "SELECT t.name AS task, d.name, d.role FROM datasets d JOIN tasks t USING (task_id)",
    )
    assert {(d["task"], d["name"], d["role"]) for d in lineage} >= {
        ("numbers", "numbers", "output"),
        ("squares", "numbers", "input"),
        ("squares", "squares", "output"),
    }


@pytest.mark.integration
def test_materialize_keeps_storing_to_the_filesystem(flowrecord_home):
    """As without flowrecord, a later materialize on the same instance loads what an earlier stored."""
    defs = flowrecord_dagster.instrument(dg.Definitions(assets=[numbers, squares]))
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(defs, instance=instance, selection=["numbers"]).success
    result = materialize(defs, instance=instance, selection=["squares"])
    assert result.success and result.output_for_node("squares") == [1, 4, 9]
