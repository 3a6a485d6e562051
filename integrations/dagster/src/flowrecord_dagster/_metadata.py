"""What the record says about an output, as Dagster materialization metadata.

The UI has its own views for a table's columns and row count, fed by the
well-known keys ``dagster/column_schema`` (a ``TableSchema``) and
``dagster/row_count`` (``dagster/partition_row_count`` for one partition);
flowrecord fills them, and adds its own facts under ``flowrecord/``: the
content fingerprint, a compact column profile, the validation summary and the
way to the full record. Values are made JSON-safe (no NaN) and bounded: the
full profile stays in the store, the UI gets its scalar statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

from flowrecord.events import DatasetEvent

__all__ = [
    "FINGERPRINT_KEY",
    "PROFILE_KEY",
    "RECORD_KEY",
    "RUN_ID_KEY",
    "TASK_ID_KEY",
    "VALIDATION_KEY",
    "dataset_metadata",
    "record_metadata",
    "validation_metadata",
    "validation_summary",
]

FINGERPRINT_KEY = "flowrecord/fingerprint"
PROFILE_KEY = "flowrecord/profile"
VALIDATION_KEY = "flowrecord/validation"
RECORD_KEY = "flowrecord/record"
RUN_ID_KEY = "flowrecord/run_id"
TASK_ID_KEY = "flowrecord/task_id"

_MAX_PROFILE_COLUMNS = 100
_MAX_SAMPLE = 10


def _safe(value: Any) -> Any:
    """*value* with non-finite floats as None and containers copied (JSON for the UI)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _compact_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    # Histograms, quantiles and top values are for the store and the report;
    # the UI gets one line of scalars per column.
    nested = profile.get("columns")
    columns: Mapping[str, Any] = nested if isinstance(nested, Mapping) else profile
    out: dict[str, Any] = {}
    for i, (name, stats) in enumerate(columns.items()):
        if i >= _MAX_PROFILE_COLUMNS:
            out["..."] = f"{len(columns) - _MAX_PROFILE_COLUMNS} more columns in the record"
            break
        if isinstance(stats, Mapping):
            out[str(name)] = {
                k: _safe(v) for k, v in stats.items() if not isinstance(v, Mapping | list | tuple)
            }
    return out


def dataset_metadata(event: DatasetEvent, *, partitioned: bool = False) -> dict[str, Any]:
    """Metadata entries for one recorded output (empty entries left out)."""
    metadata: dict[str, Any] = {}
    if event.schema:
        metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(
            dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        name=str(column.get("name")),
                        type=str(column.get("type", "unknown")),
                        constraints=dg.TableColumnConstraints(
                            nullable=bool(column.get("nullable", True))
                        ),
                    )
                    for column in event.schema
                ]
            )
        )
    if event.row_count is not None:
        key = "dagster/partition_row_count" if partitioned else "dagster/row_count"
        metadata[key] = dg.MetadataValue.int(int(event.row_count))
    if event.fingerprint:
        metadata[FINGERPRINT_KEY] = dg.MetadataValue.text(event.fingerprint)
    if event.profile:
        metadata[PROFILE_KEY] = dg.MetadataValue.json(_compact_profile(event.profile))
    return metadata


def validation_summary(result: Any, *, schema: str | None, policy: str) -> dict[str, Any]:
    """A JSON-safe summary of a ``ValidationResult``: what the asset check reports."""
    checks = [dict(c) for c in (result.checks or ())]
    return _safe(
        {
            "passed": bool(result.passed),
            "validator": result.validator,
            "schema": schema or result.schema_name,
            "policy": policy,
            "failure_count": int(result.failure_count),
            "failed_checks": [
                {k: c.get(k) for k in ("check", "column", "failures") if k in c}
                for c in checks
                if not c.get("passed", True)
            ],
            "checks": len(checks),
            "failure_sample": list(result.failure_sample or ())[:_MAX_SAMPLE],
            "error": result.error,
        }
    )


def validation_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The validation entry of an output's metadata."""
    return {VALIDATION_KEY: dg.MetadataValue.json(dict(summary))}


def record_metadata(run_id: str, task_id: str) -> dict[str, Any]:
    """Where the full record of this output is: ids, and the command that shows it."""
    return {
        RUN_ID_KEY: dg.MetadataValue.text(run_id),
        TASK_ID_KEY: dg.MetadataValue.text(task_id),
        RECORD_KEY: dg.MetadataValue.text(f"flowrecord show {run_id}"),
    }
