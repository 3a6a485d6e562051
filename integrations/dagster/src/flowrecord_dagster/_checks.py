"""Validation results as Dagster asset checks: the native place the UI shows them.

An asset with a pandera schema gets one ``@asset_check`` named
``flowrecord_schema``. The schema runs where the data is, in the asset's own
step (its recording IO manager calls ``recorder.validate`` on the object it just
stored, see :mod:`flowrecord_dagster._io`), and the summary travels with the
materialization as ``flowrecord/validation`` metadata. The check reads it back
from the instance's event log, so it works across processes (the multiprocess
executor runs it in its own), and turns it into an ``AssetCheckResult`` with
the failure counts as metadata. A ``fail`` policy makes the check blocking
(``blocking=True``, severity ERROR): downstream assets of a run do not
materialise on bad data. ``record`` and ``warn`` report with severity WARN.

A check with no validation to report (the asset was never materialised, or not
through a recording IO manager) fails closed under ``fail`` and passes with a
note otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from flowrecord_dagster._catalog import AssetFacts, Catalog
from flowrecord_dagster._metadata import FINGERPRINT_KEY, RUN_ID_KEY, TASK_ID_KEY, VALIDATION_KEY

__all__ = ["CHECK_NAME", "schema_checks"]

CHECK_NAME = "flowrecord_schema"
"""Name of the asset check flowrecord adds to each asset that has a schema."""

_LOOKBACK = 50  # materializations of one asset read to find those of this run


def schema_checks(catalog: Catalog, taken: set[dg.AssetCheckKey]) -> list[dg.AssetChecksDefinition]:
    """One ``flowrecord_schema`` check per asset with a schema (unless the name is taken)."""
    checks = []
    for facts in catalog.schema_assets:
        if dg.AssetCheckKey(facts.key, CHECK_NAME) in taken:
            continue
        checks.append(_schema_check(facts))
    return checks


def _schema_check(facts: AssetFacts) -> dg.AssetChecksDefinition:
    blocking = facts.policy == "fail"
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    schema = getattr(facts.schema, "name", None) or getattr(facts.schema, "__name__", "schema")
    description = (
        f"flowrecord: the asset matches the pandera schema {schema} "
        f"(policy {facts.policy}{', blocking' if blocking else ''})."
    )

    @dg.asset_check(
        asset=facts.key,
        name=CHECK_NAME,
        blocking=blocking,
        description=description,
        metadata={"flowrecord/policy": facts.policy, "flowrecord/schema_name": str(schema)},
    )
    # No annotations: Dagster reads them, and under postponed evaluation they are strings.
    def _check(context):  # type: ignore[no-untyped-def]
        entries = _validations_of(context.instance, facts.key, context.run.run_id)
        return check_result(entries, policy=facts.policy, severity=severity)

    return _check


def _validations_of(
    instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str
) -> list[Mapping[str, Any]]:
    """Metadata of the materializations of *key* in *run_id* (else the latest one)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=_LOOKBACK, ascending=False
    )
    records = list(result.records)
    mine = [r for r in records if r.run_id == run_id] or records[:1]
    out: list[Mapping[str, Any]] = []
    for record in mine:
        materialization = record.asset_materialization
        if materialization is not None:
            out.append(dict(materialization.metadata or {}))
    return out


def check_result(
    entries: Sequence[Mapping[str, Any]], *, policy: str, severity: dg.AssetCheckSeverity
) -> dg.AssetCheckResult:
    """The check's result from the materializations' metadata (several: one per partition)."""
    summaries = [_value(e[VALIDATION_KEY]) for e in entries if VALIDATION_KEY in e]
    if not summaries:
        passed = policy != "fail"
        why = (
            "no materialization of this asset yet"
            if not entries
            else "the materialization carries no flowrecord validation"
        )
        return dg.AssetCheckResult(
            passed=passed,
            severity=severity,
            description=f"flowrecord: {why}.",
            metadata={"validated": False, "policy": policy},
        )
    failure_count = sum(int(s.get("failure_count") or 0) for s in summaries)
    failed = [c for s in summaries for c in s.get("failed_checks") or ()]
    errors = [s["error"] for s in summaries if s.get("error")]
    passed = all(bool(s.get("passed")) for s in summaries)
    metadata: dict[str, Any] = {
        "validated": True,
        "policy": policy,
        "schema": str(summaries[0].get("schema") or ""),
        "failure_count": dg.MetadataValue.int(failure_count),
        "failed_checks": dg.MetadataValue.json(failed),
        "checks": dg.MetadataValue.int(max(int(s.get("checks") or 0) for s in summaries)),
    }
    sample = [row for s in summaries for row in s.get("failure_sample") or ()][:10]
    if sample:
        metadata["failure_sample"] = dg.MetadataValue.json(sample)
    if errors:
        metadata["error"] = dg.MetadataValue.text("; ".join(str(e) for e in errors)[:2000])
    last = entries[0]
    for key in (FINGERPRINT_KEY, RUN_ID_KEY, TASK_ID_KEY):
        if key in last:
            metadata[key] = dg.MetadataValue.text(str(_value(last[key])))
    if passed:
        description = f"flowrecord: {summaries[0].get('schema')} passed."
    else:
        names = sorted({f"{c.get('column') or '*'}:{c.get('check')}" for c in failed})
        description = (
            f"flowrecord: {failure_count} failing case(s)"
            + (f" in {', '.join(names[:10])}" if names else "")
            + (f"; validator error: {errors[0]}" if errors else "")
            + "."
        )
    return dg.AssetCheckResult(
        passed=passed, severity=severity, description=description, metadata=metadata
    )


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)
