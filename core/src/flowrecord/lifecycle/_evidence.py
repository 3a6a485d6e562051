"""Reads of the record that gates and policies base their decisions on.

Validations, dataset profiles and monitored metrics live in the local store (the
registry hooks know only versions and aliases), so these helpers take the store
and return plain dicts. Nothing here decides anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowrecord.backends.local import LocalStore

#: Validators the lifecycle itself records (retraining triggers): they say what a
#: policy concluded about a champion, not whether data is valid, so gates skip them.
TRIGGER_VALIDATOR_PREFIX = "retrain:"


def loads(text: str | None, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def validations_for(store: LocalStore, fingerprint: str) -> list[dict[str, Any]]:
    """Data validations recorded for one dataset version, oldest first."""
    rows = store.query(
        "SELECT * FROM validations WHERE fingerprint = ? AND validator NOT LIKE ? "
        "ORDER BY ts, event_id",
        (fingerprint, TRIGGER_VALIDATOR_PREFIX + "%"),
    )
    out = []
    for r in rows:
        checks = loads(r["checks"], [])
        out.append(
            {
                "validation_id": r["validation_id"],
                "validator": r["validator"],
                "schema_name": r["schema_name"],
                "dataset": r["dataset_name"],
                "passed": bool(r["passed"]),
                "failure_count": r["failure_count"],
                "failed_checks": [
                    c.get("check")
                    for c in checks
                    if isinstance(c, Mapping) and c.get("passed") is False
                ][:10],
                "error": r["error"],
                "run_id": r["run_id"],
                "task_id": r["task_id"],
                "recorded_at": r["ts"],
            }
        )
    return out


def latest_dataset(store: LocalStore, name: str) -> dict[str, Any] | None:
    """The latest recorded version of dataset *name* that has a fingerprint."""
    rows = store.query(
        "SELECT * FROM datasets WHERE name = ? AND fingerprint IS NOT NULL "
        "ORDER BY ts DESC, event_id DESC LIMIT 1",
        (name,),
    )
    return _dataset(rows[0]) if rows else None


def dataset_by_fingerprint(store: LocalStore, fingerprint: str) -> dict[str, Any] | None:
    """The latest record of one dataset version, preferring one with a profile."""
    rows = store.query(
        "SELECT * FROM datasets WHERE fingerprint = ? "
        "ORDER BY (profile IS NULL OR profile IN ('', '{}')), ts DESC LIMIT 1",
        (fingerprint,),
    )
    return _dataset(rows[0]) if rows else None


def _dataset(r: Any) -> dict[str, Any]:
    return {
        "name": r["name"],
        "fingerprint": r["fingerprint"],
        "role": r["role"],
        "run_id": r["run_id"],
        "task_id": r["task_id"],
        "uri": r["uri"],
        "data_type": r["data_type"],
        "row_count": r["row_count"],
        "schema": loads(r["schema"], []),
        "profile": loads(r["profile"], {}),
        "recorded_at": r["ts"],
    }


def latest_metric(
    store: LocalStore, key: str, pipeline: str | None = None
) -> dict[str, Any] | None:
    """The most recently recorded point of metric *key* (in runs of *pipeline*)."""
    sql = (
        "SELECT m.value, m.value_text, m.ts, m.run_id, m.task_id, r.pipeline, r.orchestrator "
        "FROM metric_points m LEFT JOIN runs r ON r.run_id = m.run_id WHERE m.key = ?"
    )
    params: list[Any] = [key]
    if pipeline is not None:
        sql += " AND r.pipeline = ?"
        params.append(pipeline)
    rows = store.query(sql + " ORDER BY m.ts DESC, m.event_id DESC LIMIT 1", params)
    if not rows:
        return None
    r = rows[0]
    value = r["value"]
    if value is None:  # NaN and infinities are kept as text
        try:
            value = float(r["value_text"] or "nan")
        except ValueError:
            value = float("nan")
    return {
        "value": value,
        "recorded_at": r["ts"],
        "run_id": r["run_id"],
        "task_id": r["task_id"],
        "pipeline": r["pipeline"],
        "orchestrator": r["orchestrator"],
    }
