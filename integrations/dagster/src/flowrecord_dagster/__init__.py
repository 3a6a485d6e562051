"""flowrecord for Dagster: every asset and op recorded, validation as asset checks.

Wrap the code location's ``Definitions`` once:

>>> import dagster as dg
>>> import flowrecord_dagster
>>> @dg.asset
... def orders() -> list[int]:
...     return [3, 1, 2]
>>> defs = flowrecord_dagster.instrument(dg.Definitions(assets=[orders]))

Each materialization and op execution is then recorded (run, task per step,
state, duration, retries, partition, system usage, params, metrics, datasets
with fingerprints and lineage) and the facts show in the Dagster UI as
materialization metadata; assets with a pandera schema get a
``flowrecord_schema`` asset check. Promotion gates (a blocking asset check) and
retraining policies (a schedule and a sensor) are in :mod:`flowrecord_dagster.lifecycle`.
"""

from __future__ import annotations

from flowrecord_dagster._catalog import POLICY_KEY, SCHEMA_KEY
from flowrecord_dagster._checks import CHECK_NAME
from flowrecord_dagster._io import RecordingIOManager
from flowrecord_dagster.definitions import (
    HOOK_NAME,
    INSTRUMENTED_KEY,
    RESOURCE_KEY,
    instrument,
    schema_type,
)
from flowrecord_dagster.lifecycle import (
    GATE_CHECK_NAME,
    MODEL_KEY,
    MODEL_VERSION_KEY,
    RETRAIN_POLICY_TAG,
    RETRAIN_REASONS_TAG,
    RETRAIN_TRIGGERS_TAG,
    asset_datasets,
    model_version_metadata,
    promotion_gate_check,
    promotion_gate_op,
    retrain_run_request,
    retrain_schedule,
    retrain_sensor,
)

__all__ = [
    "CHECK_NAME",
    "GATE_CHECK_NAME",
    "HOOK_NAME",
    "INSTRUMENTED_KEY",
    "MODEL_KEY",
    "MODEL_VERSION_KEY",
    "POLICY_KEY",
    "RESOURCE_KEY",
    "RETRAIN_POLICY_TAG",
    "RETRAIN_REASONS_TAG",
    "RETRAIN_TRIGGERS_TAG",
    "SCHEMA_KEY",
    "RecordingIOManager",
    "asset_datasets",
    "instrument",
    "model_version_metadata",
    "promotion_gate_check",
    "promotion_gate_op",
    "retrain_run_request",
    "retrain_schedule",
    "retrain_sensor",
    "schema_type",
]
