"""The executor wrapper: the one place that sees a whole run from start to end.

With the multiprocess executor each step runs in a process of its own, which
records its step (see :mod:`flowrecord_dagster._adapter`), but only the
process that orchestrates the run logs its end, and skipped steps. Wrapping the
default executor of the ``Definitions`` (public ``Executor`` and
``ExecutorDefinition`` API, same name, config schema and requirements) lets
that process attach its run recorder before the steps are launched. Under
``materialize`` and ``execute_in_process`` Dagster uses its own in-process
executor; there the recording resource attaches in the same process and sees
the run end itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import dagster as dg

from flowrecord_dagster import _adapter
from flowrecord_dagster._catalog import Catalog

__all__ = ["RecordingExecutor", "recording_executor"]

log = logging.getLogger("flowrecord")


class RecordingExecutor(dg.Executor):
    """Runs the plan with *inner*, with the run recorder attached in this process."""

    def __init__(self, inner: dg.Executor, catalog: Catalog) -> None:
        self._inner = inner
        self._catalog = catalog

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        try:
            _adapter.attach(self._catalog, plan_context.instance, plan_context.dagster_run)
        except Exception as exc:
            log.warning("flowrecord: could not attach to the Dagster run: %s", exc)
        yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def recording_executor(
    inner: dg.ExecutorDefinition | dg.Executor, catalog: Catalog
) -> dg.ExecutorDefinition | dg.Executor:
    """*inner* (an executor or its definition), recording the runs it executes."""
    if isinstance(inner, dg.Executor):
        return RecordingExecutor(inner, catalog)
    create = inner.executor_creation_fn
    if create is None:
        return inner

    def _create(init_context: dg.InitExecutorContext) -> dg.Executor:
        return RecordingExecutor(create(init_context), catalog)

    return dg.ExecutorDefinition(
        name=inner.name,
        # The definition's own schema object: Dagster takes it as is (stubs say otherwise).
        config_schema=inner.config_schema,  # type: ignore[arg-type]
        requirements=inner.get_requirements,
        executor_creation_fn=_create,
        description=inner.description,
    )
