"""IO managers that record what passes through them, on top of the user's own.

Every object an asset or op returns reaches storage through an IO manager, and
every upstream value reaches a step through one: that is where the data itself
can be seen. :class:`RecordingIOManager` wraps the IO manager the user
configured (or Dagster's default) and, around each call, fingerprints and
profiles the object (``recorder.log_dataset``), validates it against the
asset's schema (``recorder.validate``) and hands the facts back to Dagster as
materialization metadata. The wrapped manager stores and loads exactly as
before; recording runs after it stored, and a recording error is logged, never
raised.

Two ways to wrap, both public Dagster API:

- an IO manager the user gave in ``Definitions(resources=...)`` moves to the key
  ``flowrecord_inner__<key>`` and the recording one, which requires that key,
  takes its place (a resource dependency, so its own config and resources are
  untouched);
- when the user gave none, the recording manager builds Dagster's default
  itself with ``build_resources``: the job default (filesystem, or whatever
  ``DAGSTER_DEFAULT_IO_MANAGER_*`` names), or the in-memory manager for a job's
  ``execute_in_process`` on an ephemeral instance, as Dagster would have used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from flowrecord import recorder
from flowrecord.collectors.validation import ValidationFailed, check_policy
from flowrecord_dagster import _adapter
from flowrecord_dagster._catalog import POLICY_KEY, SCHEMA_KEY, Catalog, key_name, resolve_schema
from flowrecord_dagster._metadata import (
    dataset_metadata,
    record_metadata,
    validation_metadata,
    validation_summary,
)

__all__ = [
    "INNER_PREFIX",
    "RecordingIOManager",
    "default_recording_io_manager",
    "is_io_manager",
    "recording_io_manager",
]

log = logging.getLogger("flowrecord")

INNER_PREFIX = "flowrecord_inner__"
"""Resource key prefix under which a wrapped IO manager keeps living."""

_MATERIALIZE_JOB = "__ephemeral_asset_job__"  # the job that dg.materialize() runs


class RecordingIOManager(dg.IOManager):
    """Records each object stored or loaded by *inner*, then behaves exactly as *inner*."""

    def __init__(self, inner: Any, catalog: Catalog) -> None:
        self._inner = inner
        self._catalog = catalog

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        self._inner.handle_output(context, obj)
        metadata = output_seen(self._catalog, context, obj)
        if metadata:
            try:
                _add_metadata(context, metadata)
            except Exception as exc:
                log.warning("flowrecord: could not add output metadata: %s", exc)

    def load_input(self, context: dg.InputContext) -> Any:
        obj = self._inner.load_input(context)
        input_seen(context, obj)
        return obj

    def __getattr__(self, name: str) -> Any:
        # Anything else the user's code asks of its IO manager (never our own
        # attributes, which a half-built object may lack).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def _add_metadata(context: dg.OutputContext, metadata: Mapping[str, Any]) -> None:
    # What the body or the user's IO manager said about its own output wins.
    given = set(context.output_metadata or ())
    entries = {k: v for k, v in metadata.items() if k not in given}
    try:
        context.add_output_metadata(entries)
        return
    except dg.DagsterError:
        pass  # one of ours is already there (the user's IO manager added it): one by one
    for key, value in entries.items():
        try:
            context.add_output_metadata({key: value})
        except Exception:
            continue


# ---------------------------------------------------------------------------
# what the IO managers saw
# ---------------------------------------------------------------------------


def output_seen(catalog: Catalog, context: dg.OutputContext, obj: Any) -> dict[str, Any]:
    """Record an output just stored; return the metadata to show on its materialization.

    Raises only ``ValidationFailed`` for an op output under a ``fail`` policy (an
    op has no asset check to block on).
    """
    if obj is None:
        return {}  # nothing to describe; an asset that stores None is linked by name
    try:
        step = _adapter.step_of_current_task()
        if step is None:
            return {}
        key = context.asset_key if context.has_asset_key else None
        partitions = list(context.asset_partition_keys) if _has_partitions(context) else None
        if key is not None:
            name, uri = key_name(key), _adapter.asset_uri(key, partitions)
        else:
            name, uri = _op_dataset(
                step.run.job, context.step_key, context.name, context.mapping_key
            )
        event = recorder.log_dataset(obj, name=name, role="output", uri=uri)
        step.written.add(name)
        metadata = dataset_metadata(event, partitioned=bool(partitions))
        schema, policy = _schema_for(catalog, key, context)
        # The way to the record goes with the facts. An output the record has no
        # facts about (a number, a dict, a model object) gets no entries at all:
        # there is nothing to show, Dagster charges for storing any output
        # metadata (bench_dagster.py's "Dagster + 1 metadata" row), and the
        # Dagster run id alone finds the record (`flowrecord show <run id>`).
        if metadata or schema is not None:
            metadata.update(record_metadata(step.run.handle.run_id, step.task.task_id))
    except Exception as exc:
        log.warning("flowrecord: could not record output %s: %s", context.name, exc)
        return {}
    if schema is not None:
        metadata.update(_validate(obj, schema, name, policy, op_output=key is None))
    return metadata


def _validate(obj: Any, schema: Any, name: str, policy: str, *, op_output: bool) -> dict[str, Any]:
    from flowrecord.collectors.validation import schema_name

    try:
        result = recorder.validate(obj, schema, name=name, policy=policy)
    except ValidationFailed as exc:
        if op_output:
            raise
        # An asset's "fail" is its blocking asset check's to enforce.
        result = exc.result
    except Exception as exc:
        log.warning("flowrecord: could not validate %s: %s", name, exc)
        summary = {
            "passed": False,
            "validator": "pandera",
            "schema": _schema_label(schema),
            "policy": policy,
            "failure_count": 0,
            "failed_checks": [],
            "checks": 0,
            "failure_sample": [],
            "error": f"{type(exc).__name__}: {exc}",
        }
        return validation_metadata(summary)
    return validation_metadata(
        validation_summary(result, schema=schema_name(schema), policy=policy)
    )


def _schema_label(schema: Any) -> str:
    return (
        getattr(schema, "name", None) or getattr(schema, "__name__", None) or type(schema).__name__
    )


def _schema_for(
    catalog: Catalog, key: dg.AssetKey | None, context: dg.OutputContext
) -> tuple[Any, str]:
    if key is not None:
        facts = catalog.assets.get(key)
        if facts is None:
            return None, catalog.default_policy
        return facts.schema, facts.policy
    # An op output may carry a schema in its Out(metadata=...).
    metadata = context.definition_metadata or {}
    raw = metadata.get(SCHEMA_KEY)
    if raw is None:
        return None, catalog.default_policy
    where = f"output {context.step_key}.{context.name}"
    schema = resolve_schema(getattr(raw, "value", raw), where)
    raw_policy = metadata.get(POLICY_KEY)
    policy = (
        check_policy(str(getattr(raw_policy, "value", raw_policy)))
        if raw_policy is not None
        else catalog.default_policy
    )
    return schema, policy


def input_seen(context: dg.InputContext, obj: Any) -> None:
    """Record an input just loaded into the current step."""
    if obj is None:
        return
    try:
        step = _adapter.step_of_current_task()
        if step is None:
            return
        if context.has_asset_key:
            key = context.asset_key
            partitions = list(context.asset_partition_keys) if _has_partitions(context) else None
            name, uri = key_name(key), _adapter.asset_uri(key, partitions)
        else:
            upstream = context.upstream_output
            if upstream is None:
                return
            name, uri = _op_dataset(step.run.job, upstream.step_key, upstream.name, None)
        recorder.log_dataset(obj, name=name, role="input", uri=uri)
        step.read.add(name)
    except Exception as exc:
        log.warning("flowrecord: could not record input %s: %s", context.name, exc)


def _has_partitions(context: dg.OutputContext | dg.InputContext) -> bool:
    try:
        return bool(context.has_asset_partitions)
    except Exception:
        return False


def _op_dataset(job: str, step_key: str, output: str, mapping_key: str | None) -> tuple[str, str]:
    """Name and URI of an op output: the job, the step and the output identify it."""
    suffix = f"[{mapping_key}]" if mapping_key and not step_key.endswith("]") else ""
    name = f"{job}.{step_key}.{output}{suffix}"
    return name, f"dagster://job/{job}/{step_key}/{output}{suffix}"


# ---------------------------------------------------------------------------
# the IO manager definitions that instrument() installs
# ---------------------------------------------------------------------------


def is_io_manager(value: object) -> bool:
    """Whether a ``Definitions`` resource is an IO manager (that Dagster will use for outputs)."""
    return isinstance(
        value, dg.IOManagerDefinition | dg.IOManager | dg.ConfigurableIOManagerFactory
    )


def recording_io_manager(
    catalog: Catalog, inner_key: str, recorder_key: str
) -> dg.IOManagerDefinition:
    """An IO manager recording around the one kept under *inner_key*.

    It requires the recording resource (*recorder_key*) too, so that every step
    using it, in whatever process, has the run recorder attached.
    """

    def _create(init_context: dg.InitResourceContext) -> RecordingIOManager:
        return RecordingIOManager(getattr(init_context.resources, inner_key), catalog)

    return dg.IOManagerDefinition(
        resource_fn=_create,
        required_resource_keys={inner_key, recorder_key},
        description=f"flowrecord: records what the IO manager '{inner_key}' stores and loads.",
    )


def _job_default_io_manager() -> dg.ResourceDefinition:
    # What Dagster binds to "io_manager" when nothing else is given, read from a
    # job of our own rather than imported from Dagster's internals.
    probe = dg.GraphDefinition(name="flowrecord_probe", node_defs=[]).to_job()
    return probe.resource_defs["io_manager"]


def default_recording_io_manager(catalog: Catalog, recorder_key: str) -> dg.IOManagerDefinition:
    """An IO manager recording around the one Dagster would have used by default."""
    job_default = _job_default_io_manager()

    def _create(init_context: dg.InitResourceContext) -> Iterator[RecordingIOManager]:
        instance = init_context.instance
        run = init_context.run
        # As Dagster: `materialize` stores to the filesystem, `execute_in_process`
        # (always an ephemeral instance unless given one) keeps values in memory.
        in_memory = (
            getattr(instance, "is_ephemeral", False)
            and run is not None
            and run.job_name != _MATERIALIZE_JOB
        )
        inner = dg.mem_io_manager if in_memory else job_default
        with dg.build_resources({"io_manager": inner}, instance=instance) as resources:
            yield RecordingIOManager(resources.io_manager, catalog)

    return dg.IOManagerDefinition(
        resource_fn=_create,  # type: ignore[arg-type]  # a generator: Dagster tears it down
        required_resource_keys={recorder_key},
        description="flowrecord: records what Dagster's default IO manager stores and loads.",
    )
