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
``flowrecord_schema`` asset check. Promotion gates and retraining schedules are
not part of this package yet (their place is ``flowrecord_dagster.lifecycle``).
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

__all__ = [
    "CHECK_NAME",
    "HOOK_NAME",
    "INSTRUMENTED_KEY",
    "POLICY_KEY",
    "RESOURCE_KEY",
    "SCHEMA_KEY",
    "RecordingIOManager",
    "instrument",
    "schema_type",
]
