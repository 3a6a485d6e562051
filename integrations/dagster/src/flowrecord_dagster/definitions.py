"""The entry point: :func:`instrument` wraps a ``Definitions`` so that every step is recorded.

Dagster's public API offers no way to run code around a step's body that one
did not write (hooks run after it; the compute function of an asset is not
public API). So :func:`instrument` installs, with public API only, the pieces
that together see everything:

- a ``flowrecord`` resource that every step process initialises, because the
  recording IO managers require it (and, for steps without such an output, the
  hook below does); on init it attaches the run recorder
  (:mod:`flowrecord_dagster._adapter`) that opens and closes a task per step as
  Dagster logs the step's start and end, and on teardown it flushes (a step
  process of the multiprocess executor ends there);
- a hook (``AssetsDefinition.with_hooks``, ``JobDefinition.with_hooks``) on
  checks, op jobs and assets whose outputs bypass the recording IO managers,
  requiring that resource; it also records a step after the fact should the
  recorder be unable to listen (then it goes on every step);
- recording IO managers around the user's (:mod:`flowrecord_dagster._io`):
  datasets, fingerprints, validation, materialization metadata;
- a ``flowrecord_schema`` asset check per asset with a schema
  (:mod:`flowrecord_dagster._checks`);
- a wrapper of the default executor (:mod:`flowrecord_dagster._executor`), to
  see the end of runs whose steps run in other processes.

Everything else in the ``Definitions`` is passed through unchanged.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from flowrecord import recorder
from flowrecord.collectors.validation import check_policy
from flowrecord.config import load_config
from flowrecord_dagster import _adapter
from flowrecord_dagster._catalog import Catalog, build_catalog
from flowrecord_dagster._checks import schema_checks
from flowrecord_dagster._executor import recording_executor
from flowrecord_dagster._io import (
    INNER_PREFIX,
    default_recording_io_manager,
    is_io_manager,
    recording_io_manager,
)

__all__ = ["HOOK_NAME", "INSTRUMENTED_KEY", "RESOURCE_KEY", "instrument", "schema_type"]

log = logging.getLogger("flowrecord")

RESOURCE_KEY = "flowrecord"
"""Resource key of the recording resource that :func:`instrument` adds."""
HOOK_NAME = "flowrecord"
"""Name of the hook that :func:`instrument` puts on every asset, check and op job."""
INSTRUMENTED_KEY = "flowrecord/instrumented"
"""``Definitions`` metadata key marking definitions already instrumented."""

_FRAME_LIBRARIES = frozenset({"pandas", "polars", "pyarrow", "modin", "pyspark", "dask"})


def instrument(defs: dg.Definitions, *, validation_policy: str | None = None) -> dg.Definitions:
    """Return *defs* with every asset materialization and op execution recorded by flowrecord.

    Each step becomes a task of the run (the Dagster run id is the run key, the
    job the pipeline): state, duration, retries, partition, system and GPU usage,
    the run config that configures it (secrets redacted) and the metrics its body
    logs with ``flowrecord.log_metric``. Objects that IO managers store and load
    are fingerprinted and profiled, upstream assets become lineage, and assets
    with a pandera schema (metadata ``flowrecord/schema``, or an output type from
    :func:`schema_type`) are validated, with the result as a ``flowrecord_schema``
    asset check (blocking under the ``fail`` policy). The facts appear as
    materialization metadata in the Dagster UI.

    :param validation_policy: default policy for assets that name none:
        ``record``, ``warn`` or ``fail`` (default: ``FLOWRECORD_VALIDATION_POLICY``,
        else ``record``).
    :raises TypeError: *defs* is not a ``Definitions``, or a schema in metadata is
        not a pandera schema.
    :raises ValueError: an unknown policy, a schema import path that does not
        resolve, or a resource key ``flowrecord`` the user already uses.

    Instrumenting twice returns the same definitions; with ``FLOWRECORD_DISABLED=1``
    *defs* is returned unchanged.

    >>> import dagster as dg
    >>> import flowrecord_dagster
    >>> @dg.asset
    ... def numbers() -> list[int]:
    ...     return [1, 2, 3]
    >>> defs = flowrecord_dagster.instrument(dg.Definitions(assets=[numbers]))
    >>> result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources)
    >>> result.success
    True
    """
    if not isinstance(defs, dg.Definitions):
        raise TypeError(f"instrument() takes a dagster.Definitions, not {type(defs).__name__}")
    if INSTRUMENTED_KEY in (defs.metadata or {}):
        return defs
    config = load_config()
    if not config.enabled:
        return defs
    policy = check_policy(validation_policy or config.validation_policy)
    resources = dict(defs.resources or {})
    if RESOURCE_KEY in resources:
        raise ValueError(
            f"the resource key {RESOURCE_KEY!r} is taken; flowrecord needs it for its recorder"
        )

    user_assets = list(defs.assets or ())
    user_checks = list(defs.asset_checks or ())
    taken = {
        key for c in user_checks if isinstance(c, dg.AssetsDefinition) for key in c.check_keys
    } | {key for a in user_assets if isinstance(a, dg.AssetsDefinition) for key in a.check_keys}
    added_checks = schema_checks(build_catalog([*user_assets, *user_checks], policy), taken)
    catalog = build_catalog([*user_assets, *user_checks, *added_checks], policy)
    hook = _recording_hook(catalog)

    jobs, replaced = _hooked_jobs(defs.jobs or (), hook)
    resources[RESOURCE_KEY] = _recorder_resource(catalog)
    wrapped = [k for k, v in resources.items() if is_io_manager(v)]
    for key in wrapped:
        inner_key = f"{INNER_PREFIX}{key}"
        resources[inner_key] = resources[key]
        resources[key] = recording_io_manager(catalog, inner_key, RESOURCE_KEY)
    if "io_manager" not in resources:
        resources["io_manager"] = default_recording_io_manager(catalog, RESOURCE_KEY)
        wrapped.append("io_manager")
    # Where the event listener is available, the hook is only needed on steps that
    # use none of the recording IO managers (which require the recording resource).
    every_step = not _listener_available()

    return dg.Definitions(
        assets=[_hooked(a, hook, wrapped, every_step) for a in user_assets],
        asset_checks=[_hooked(c, hook, wrapped, every_step) for c in [*user_checks, *added_checks]],
        schedules=[_retargeted_schedule(s, replaced) for s in defs.schedules or ()],
        sensors=[_retargeted_sensor(s, replaced) for s in defs.sensors or ()],
        jobs=jobs,
        resources=resources,
        executor=recording_executor(defs.executor or dg.multi_or_in_process_executor, catalog),
        loggers=defs.loggers,
        metadata={**(defs.metadata or {}), INSTRUMENTED_KEY: "true"},
        component_tree=getattr(defs, "component_tree", None),
    )


def schema_type(schema: Any, *, name: str | None = None) -> dg.DagsterType:
    """A Dagster type for data frames that flowrecord validates against *schema*.

    Use it as ``@asset(dagster_type=schema_type(Model))``. For a pandera
    ``DataFrameModel`` it also makes the model usable as the asset's return
    annotation (``def orders() -> Orders``), which Dagster alone would reject
    at run time since a frame is not an instance of the model. The type's own
    check only asks for a data frame; the schema is flowrecord's to run, under
    the asset's validation policy.

    :raises TypeError: *schema* is not a pandera schema or ``DataFrameModel``.

    >>> import pandera.pandas as pa
    >>> class Orders(pa.DataFrameModel):
    ...     amount: float = pa.Field(ge=0)
    >>> schema_type(Orders).display_name
    'Orders'
    """
    from flowrecord_dagster._catalog import resolve_schema

    resolved = resolve_schema(schema, "schema_type()")
    label = name or getattr(resolved, "name", None) or getattr(resolved, "__name__", "DataFrame")

    def _is_frame(_context: Any, value: Any) -> dg.TypeCheck:
        library = type(value).__module__.split(".", 1)[0]
        is_frame = library in _FRAME_LIBRARIES
        return dg.TypeCheck(
            success=is_frame,
            description=None if is_frame else f"not a data frame: {type(value).__name__}",
        )

    dagster_type = dg.DagsterType(
        type_check_fn=_is_frame,
        name=str(label),
        description=f"A data frame validated by flowrecord against {label}.",
        typing_type=resolved if isinstance(resolved, type) else Any,
    )
    dagster_type.flowrecord_schema = resolved  # type: ignore[attr-defined]
    if isinstance(resolved, type):
        dg.make_python_type_usable_as_dagster_type(resolved, dagster_type)
    return dagster_type


# ---------------------------------------------------------------------------
# the recording resource and hook
# ---------------------------------------------------------------------------


def _recorder_resource(catalog: Catalog) -> dg.ResourceDefinition:
    def _recording(init_context: dg.InitResourceContext) -> Iterator[None]:
        run = init_context.run
        if run is not None and init_context.instance is not None:
            try:
                _adapter.attach(catalog, init_context.instance, run)
            except Exception as exc:
                log.warning("flowrecord: could not attach to the Dagster run: %s", exc)
        try:
            yield None
        finally:
            # A step process of the multiprocess executor ends right after this, with
            # os._exit (no atexit flush): its events must be out first. Elsewhere the
            # dispatcher writes in the background and flushes at exit.
            if multiprocessing.parent_process() is not None:
                recorder.flush()

    return dg.ResourceDefinition(
        resource_fn=_recording,
        description="flowrecord: records the steps this process executes.",
    )


def _recording_hook(catalog: Catalog) -> dg.HookDefinition:
    def _after_step(
        context: dg.HookContext, events: Sequence[dg.DagsterEvent]
    ) -> dg.HookExecutionResult:
        try:
            _adapter.replay_step(catalog, context, events)
        except Exception as exc:
            log.warning("flowrecord: could not record step %s: %s", context.step_key, exc)
        return dg.HookExecutionResult(hook_name=HOOK_NAME, is_skipped=False)

    return dg.HookDefinition(
        name=HOOK_NAME,
        hook_fn=_after_step,
        required_resource_keys={RESOURCE_KEY},
        decorated_fn=None,
    )


# ---------------------------------------------------------------------------
# passing the rest of the definitions through
# ---------------------------------------------------------------------------


def _listener_available() -> bool:
    return callable(getattr(dg.DagsterInstance, "add_event_listener", None))


def _hooked(item: Any, hook: dg.HookDefinition, wrapped: Sequence[str], every_step: bool) -> Any:
    """*item* with the hook, unless its step initialises the recording resource anyway.

    A hook costs each step a context and an event; an asset op whose outputs go
    through a recording IO manager gets the resource that way (Dagster initialises
    an output's IO manager, and its resources, even when the body returns a
    ``MaterializeResult``).
    """
    if not isinstance(item, dg.AssetsDefinition) or not item.is_executable:
        return item
    node = item.node_def
    uses_recording_io = (
        not isinstance(item, dg.AssetChecksDefinition)
        and isinstance(node, dg.OpDefinition)
        and any(out.io_manager_key in wrapped for out in node.outs.values())
    )
    if uses_recording_io and not every_step:
        return item
    return item.with_hooks({hook})


def _hooked_jobs(jobs: Iterable[Any], hook: dg.HookDefinition) -> tuple[list[Any], dict[int, Any]]:
    """Op jobs with the hook (asset jobs take it from their assets); old id -> new job."""
    out, replaced = [], {}
    for job in jobs:
        if isinstance(job, dg.JobDefinition):
            new = job.with_hooks({hook})
            replaced[id(job)] = new
            out.append(new)
        else:
            out.append(job)
    return out, replaced


def _retargeted_schedule(schedule: Any, replaced: Mapping[int, Any]) -> Any:
    if isinstance(schedule, dg.ScheduleDefinition) and schedule.has_job:
        new = replaced.get(id(schedule.job))
        if new is not None:
            return schedule.with_updated_job(new)
    return schedule


def _retargeted_sensor(sensor: Any, replaced: Mapping[int, Any]) -> Any:
    if isinstance(sensor, dg.SensorDefinition) and sensor.has_jobs:
        jobs = list(sensor.jobs)
        if any(id(j) in replaced for j in jobs):
            return sensor.with_updated_jobs([replaced.get(id(j), j) for j in jobs])
    return sensor
