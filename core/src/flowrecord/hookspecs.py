"""Hook specifications: what a flowrecord backend can implement.

A backend is a pluggy plugin registered under the ``flowrecord.backends`` entry-point
group. It implements the hooks it supports and ignores the rest; an implementation
may accept fewer arguments than the spec, so specs only ever grow by optional
arguments. Event hooks receive *batches*: a sequence of events of one kind, in
the order they were recorded. A backend must be idempotent on ``event_id``: the
dispatcher replays spooled batches, and a batch may arrive twice.

Event hooks are notifications to every active backend and their return values are
ignored. Registry hooks marked ``firstresult`` stop at the first backend that
answers (not ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flowrecord.events import (
        ArtifactEvent,
        CodeSnapshotEvent,
        DatasetEvent,
        GateDecisionEvent,
        MetricEvent,
        ParamEvent,
        RunEvent,
        SystemUsageEvent,
        TagEvent,
        TaskEvent,
        ValidationEvent,
    )

hookspec = pluggy.HookspecMarker("flowrecord")
hookimpl = pluggy.HookimplMarker("flowrecord")

# ---------------------------------------------------------------------------
# backend lifecycle
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_backend_configure(config: Mapping[str, Any]) -> None:
    """Called once when the backend is activated, before any event.

    :param config: the resolved flowrecord configuration (``home``, ``backends``
        and the ``[tool.flowrecord]`` table merged with the environment).

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_backend_close() -> None:
    """Called once at interpreter exit after the last batch; release connections.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_batch_begin() -> bool | None:
    """A batch of events follows, delivered through the hooks below in order.

    A backend may open one transaction for the whole batch here, so that a
    burst of small events costs one commit rather than one each. Every event
    hook must still work without it (a backend is free to ignore both batch
    hooks), and :func:`flowrecord_batch_end` always follows, also when a hook
    in between raised.

    :returns: True if the backend's writes for different hooks commute (each
        hook's events only ever touch what that hook writes, and a late
        "started" never undoes a "finished"). The batch then comes grouped by
        hook: one call per hook with all its events, each hook's events still
        in their order, instead of one call per run of consecutive events
        (a task's start, dataset, end and system usage are four runs). None or
        False: the events come in their exact order.

    .. versionadded:: 0.2
    .. versionchanged:: 0.2 may return True to take a batch grouped by hook.
    """


@hookspec
def flowrecord_batch_end(ok: bool) -> None:
    """The batch begun by :func:`flowrecord_batch_begin` is over.

    :param ok: every hook of the batch returned; commit. False: one raised and
        the whole batch goes to the spool for replay, so undo what it wrote
        (replay is idempotent, keeping part of it would do no harm either).

    Raising here (a commit that failed) fails the batch: it is spooled.

    .. versionadded:: 0.2
    """


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_run_started(runs: Sequence[RunEvent]) -> None:
    """Runs were opened. Many processes of one run each send one; merge them.

    :param runs: events with ``state == STARTED``; the same ``run_id`` may repeat.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_run_finished(runs: Sequence[RunEvent]) -> None:
    """Runs reached a final state (succeeded, failed...).

    :param runs: events with a final ``state``. A late ``run_started`` for the same
        run must not turn a finished run back into a running one.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_code_captured(snapshots: Sequence[CodeSnapshotEvent]) -> None:
    """The code (commit, diff) and environment of a run were captured.

    :param snapshots: at most one per run and process; all copies of a run agree.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# task
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_task_started(tasks: Sequence[TaskEvent]) -> None:
    """Task attempts started.

    :param tasks: events with ``state == STARTED``.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_task_finished(tasks: Sequence[TaskEvent]) -> None:
    """Task attempts reached a final state, with duration and error.

    :param tasks: events with a final ``state``.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_system_usage_recorded(usages: Sequence[SystemUsageEvent]) -> None:
    """CPU, memory and GPU usage of task processes, summary and time series.

    :param usages: one per task attempt, sent when the attempt ends.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# metric, param and tag
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_metrics_logged(metrics: Sequence[MetricEvent]) -> None:
    """Metric points were logged. Values are finite floats.

    :param metrics: points in logging order; batches may be large.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_params_logged(params: Sequence[ParamEvent]) -> None:
    """Parameters were logged; values are redacted text.

    :param params: one event per key; a later value for the same key wins.

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_tags_set(tags: Sequence[TagEvent]) -> None:
    """Tags were set on a run or a task; values are redacted text.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# dataset and artifact
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_dataset_logged(datasets: Sequence[DatasetEvent]) -> None:
    """A task read or wrote datasets (one lineage edge per event).

    :param datasets: each names the dataset, its role (input/output) and what was
        learnt of its content (fingerprint, schema, row count, profile).

    .. versionadded:: 0.1
    """


@hookspec
def flowrecord_artifact_logged(artifacts: Sequence[ArtifactEvent]) -> None:
    """Files or directories a task asked to keep.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_validation_recorded(validations: Sequence[ValidationEvent]) -> None:
    """Validation results (pandera schemas and built-in checks).

    :param validations: per-check failure counts and a bounded failure sample.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# registry and gates
# ---------------------------------------------------------------------------


@hookspec
def flowrecord_gate_decided(decisions: Sequence[GateDecisionEvent]) -> None:
    """Promotion gates decided, with every reason and the evidence.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def flowrecord_registry_register_version(
    model: str,
    source_run_id: str | None,
    source_task_id: str | None,
    uri: str | None,
    metrics: Mapping[str, float],
    datasets: Sequence[Mapping[str, Any]],
    tags: Mapping[str, str],
) -> Mapping[str, Any] | None:
    """Register a new version of *model* with its lineage.

    :param model: registered model name.
    :param source_run_id: flowrecord run that produced it.
    :param source_task_id: flowrecord task that produced it.
    :param uri: where the model files are.
    :param metrics: evaluation metrics known at registration.
    :param datasets: training/evaluation datasets as ``{"name", "fingerprint", "role"}``.
    :param tags: free-form tags.
    :return: the version record (``{"model", "version", ...}``); stops at the first
        backend that returns one, so only one registry holds a version.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def flowrecord_registry_get_version(model: str, version: str) -> Mapping[str, Any] | None:
    """The record of one model version, or None when this backend does not know it.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def flowrecord_registry_set_alias(
    model: str, alias: str, version: str, reason: str | None
) -> Mapping[str, Any] | None:
    """Point *alias* (``champion``, ``challenger``, ``previous``) at *version*.

    :return: the alias move as recorded (``{"alias", "version", "previous_version"}``).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def flowrecord_registry_get_alias(model: str, alias: str) -> str | None:
    """The version *alias* points at, or None when it is not set here.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def flowrecord_registry_alias_history(
    model: str, alias: str | None
) -> Sequence[Mapping[str, Any]] | None:
    """Every move of *model*'s aliases (or of one *alias*), oldest first.

    :return: ``{"alias", "version", "previous_version", "reason", "ts"}`` per move,
        or None when this backend does not hold the model.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def flowrecord_registry_list_models() -> Sequence[Mapping[str, Any]] | None:
    """All registered models with their versions and aliases.

    .. versionadded:: 0.1
    """
