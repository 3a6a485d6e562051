"""The ``mlflow`` backend: flowrecord's record, written into an MLflow tracking server.

It follows MLflow's own conventions, so the record reads naturally in the MLflow
UI: a pipeline run is a parent MLflow run in the pipeline's experiment, each
task attempt a nested child run (tag ``mlflow.parentRunId``); metrics keep their
steps and timestamps, datasets become MLflow dataset inputs, system usage
becomes ``system/...`` metrics, validation results tags, metrics and a JSON
artifact, code and environment tags and artifacts, and model versions live in
the MLflow model registry with aliases (never the deprecated stages).

Delivery is at least once (the dispatcher replays spooled batches) and the
backend makes it exactly once: MLflow runs are found by deterministic tags
(``flowrecord.run_id`` / ``flowrecord.task_id``) before one is created, and
every unit of data sent is written to a ledger after the server accepted it
(see :mod:`flowrecord.backends._mlflow_ledger`). A server that is down or
failing makes a hook raise, so the batch is spooled and replayed later; a
request MLflow refuses for good (a 4xx answer) raises :class:`EventRefused`, a
``ValueError``, which the dispatcher treats as permanent: it delivers the rest
of the batch and keeps the refused events as dead letters, so one bad event
neither blocks the spool nor takes good ones down with it. MLflow is imported on first use, in the
dispatcher's thread, never when flowrecord is imported or configured.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlparse

from flowrecord._impl import hookimpl
from flowrecord.backends import _mlflow_mapping as mapping
from flowrecord.errors import EventRefused
from flowrecord.events import MetricBatch, metric_point

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from flowrecord.backends._mlflow_ledger import Ledger
    from flowrecord.events import (
        ArtifactEvent,
        CodeSnapshotEvent,
        DatasetEvent,
        GateDecisionEvent,
        ParamEvent,
        RunEvent,
        SystemUsageEvent,
        TagEvent,
        TaskEvent,
        ValidationEvent,
    )

__all__ = [
    "EventRefused",
    "MlflowBackend",
    "MlflowSettings",
    "RunNotKnownYet",
    "resolve_settings",
]

log = logging.getLogger("flowrecord")

T = TypeVar("T")

#: MLflow's per-call limits of ``log_batch`` (mlflow/utils/validation.py).
MAX_METRICS_PER_CALL = 1000
MAX_PARAMS_TAGS_PER_CALL = 100
#: An event whose run MLflow still does not know after this long is refused for
#: good (a dead letter): its run's start was lost, and waiting longer would block
#: the spool.
ORPHAN_AFTER_S = 86400.0
#: Tag names that identify flowrecord's runs in MLflow.
KIND_TAG = "flowrecord.kind"
RUN_TAG = "flowrecord.run_id"
TASK_TAG = "flowrecord.task_id"
CREATED_TAG = "flowrecord.created_ns"

#: Environment variables of the MLflow client set (when the user has not) so that a
#: dead server fails in seconds in the worker thread instead of retrying for minutes.
_HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "http_max_retries",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "http_timeout_s",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "http_backoff_factor",
}


class RunNotKnownYet(RuntimeError):
    """An event refers to a flowrecord run or task that MLflow does not hold yet.

    Raised from a hook, it makes the dispatcher spool the batch: the event that
    creates the run (an earlier spool file) is replayed first.
    """


@dataclass(frozen=True, slots=True)
class MlflowSettings:
    """Where and how the backend writes (``[tool.flowrecord.mlflow]`` and environment)."""

    home: Path
    """flowrecord's home; the ledger lives in ``<home>/mlflow/ledger.db``."""
    tracking_uri: str | None = None
    """``MLFLOW_TRACKING_URI``, else ``tracking_uri``; None: MLflow's default."""
    registry_uri: str | None = None
    """``MLFLOW_REGISTRY_URI``, else ``registry_uri``; None: the tracking URI."""
    experiment: str = "{pipeline}"
    """Experiment name template (``FLOWRECORD_MLFLOW_EXPERIMENT``, ``experiment``)."""
    artifact_location: str | None = None
    """Artifact root of experiments the backend creates; None: the server's default."""
    http_timeout_s: int = 10
    http_max_retries: int = 1
    http_backoff_factor: int = 1
    registry_wait_s: float = 2.0
    """How long registering a version waits for its source run to reach MLflow."""


def resolve_settings(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> MlflowSettings:
    """Settings from the flowrecord *config* mapping and the environment (which wins).

    :raises ValueError: the experiment template names unknown fields, or a number is not one.
    """
    env = os.environ if environ is None else environ
    table = config.get("mlflow") or {}
    if not isinstance(table, Mapping):
        raise ValueError("[tool.flowrecord.mlflow] must be a table")
    experiment = str(
        env.get("FLOWRECORD_MLFLOW_EXPERIMENT") or table.get("experiment") or "{pipeline}"
    )
    mapping.check_template(experiment)

    def number(key: str, default: float) -> float:
        value = table.get(key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"[tool.flowrecord.mlflow] {key} must be a number, not {value!r}"
            ) from None

    return MlflowSettings(
        home=Path(str(config.get("home") or ".flowrecord")),
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or table.get("tracking_uri") or None,
        registry_uri=env.get("MLFLOW_REGISTRY_URI") or table.get("registry_uri") or None,
        experiment=experiment,
        artifact_location=table.get("artifact_location") or None,
        http_timeout_s=int(number("http_timeout_s", 10)),
        http_max_retries=int(number("http_max_retries", 1)),
        http_backoff_factor=int(number("http_backoff_factor", 1)),
        registry_wait_s=number("registry_wait_s", float(config.get("flush_timeout_s", 2.0))),
    )


def _is_permanent(exc: BaseException) -> bool:
    """True for an answer MLflow will give again (a 4xx): retrying cannot help.

    Not a timeout (408) or "too many requests" (429): those pass.
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    status: int = exc.get_http_status_code()  # type: ignore[no-untyped-call]
    return 400 <= status < 500 and status not in (408, 429)


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _task_id(task: TaskEvent) -> str:
    if task.task_id is None:  # a task event always names its task; say so if one does not
        raise ValueError(f"task event {task.event_id} has no task_id")
    return task.task_id


def _json_text(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)


class MlflowBackend:
    """The ``mlflow`` backend plugin (entry point ``flowrecord.backends: mlflow``).

    Activate it beside the local store::

        FLOWRECORD_BACKENDS=local,mlflow MLFLOW_TRACKING_URI=http://mlflow:5000 python train.py

    or in ``pyproject.toml``::

        [tool.flowrecord]
        backends = ["local", "mlflow"]
        [tool.flowrecord.mlflow]
        tracking_uri = "http://mlflow:5000"
        experiment = "{pipeline}"
    """

    def __init__(self, settings: MlflowSettings | None = None) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._client: MlflowClient | None = None
        self._ledger: Ledger | None = None
        self._runs: dict[str, str] = {}  # "run:<id>" / "task:<id>" -> MLflow run id
        self._run_experiment: dict[str, str] = {}  # MLflow run id -> experiment id
        self._experiments: dict[str, str] = {}  # experiment name -> id
        self._identities: dict[str, RunEvent] = {}  # flowrecord run id -> a RunEvent of it
        self._commits: dict[str, str] = {}  # flowrecord run id -> git commit

    # ------------------------------------------------------------------ lifecycle

    @hookimpl
    def flowrecord_backend_configure(self, config: Mapping[str, Any]) -> None:
        if self.settings is None:
            self.settings = resolve_settings(config)
        for variable, field_name in _HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(variable, str(getattr(self.settings, field_name)))
        # set_terminated prints links to stdout for HTTP servers: from a background
        # thread that is noise in every task log.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    @hookimpl
    def flowrecord_backend_close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (MLflow is imported on the first call)."""
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                from flowrecord.backends._mlflow_ledger import Ledger

                if self.settings is None:
                    from flowrecord.config import load_config

                    self.flowrecord_backend_configure(load_config().as_mapping())
                assert self.settings is not None
                client = MlflowClient(
                    tracking_uri=self.settings.tracking_uri,
                    registry_uri=self.settings.registry_uri,
                )
                self._ledger = Ledger(
                    self.settings.home / "mlflow" / "ledger.db", str(client.tracking_uri)
                )
                self._client = client
            return self._client

    @client.setter
    def client(self, value: MlflowClient) -> None:
        with self._lock:
            self._client = value

    @property
    def ledger(self) -> Ledger:
        """The ledger of applied units for this tracking server."""
        self.client  # noqa: B018 - creating the client opens the ledger
        assert self._ledger is not None
        return self._ledger

    # ------------------------------------------------------------------ sending

    def _apply(
        self, units: Sequence[str], what: str, call: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> bool:
        """Run ``call(*args, **kwargs)``, then mark *units* applied; skip units already applied.

        A permanent refusal raises :class:`EventRefused` (the dispatcher keeps
        the refused events as dead letters and delivers the rest); anything
        else propagates as it is (the batch is spooled and replayed).
        """
        if units and len(self.ledger.applied(units)) == len(units):
            return False
        try:
            call(*args, **kwargs)
        except Exception as exc:
            if not _is_permanent(exc):
                raise
            raise EventRefused(f"MLflow refused {what}: {exc}") from exc
        if units:
            self.ledger.mark_applied(units)
        return True

    @staticmethod
    def _give_up_if_orphaned(ts: float, what: str, exc: RunNotKnownYet) -> None:
        """Return for an event young enough to wait for its run (the caller re-raises).

        :raises EventRefused: it is over a day old: its run's start is not
            coming, and it becomes a dead letter instead of blocking the spool.
        """
        if time.time() - ts >= ORPHAN_AFTER_S:
            raise EventRefused(f"{what} for MLflow: {exc} (and it is over a day old)") from exc

    # ------------------------------------------------------------------ experiments and runs

    def _experiment_id(self, name: str) -> str:
        with self._lock:
            cached = self._experiments.get(name)
        if cached is not None:
            return cached
        from mlflow.exceptions import MlflowException

        client = self.client
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(
                    name,
                    artifact_location=self.settings.artifact_location if self.settings else None,
                    tags={"flowrecord.managed": "true"},
                )
            except MlflowException as exc:
                if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                log.warning(
                    "flowrecord: restoring deleted MLflow experiment %r to record in it", name
                )
                client.restore_experiment(experiment_id)
        with self._lock:
            self._experiments[name] = experiment_id
        return experiment_id

    def _experiment_for(self, run: RunEvent) -> str:
        assert self.settings is not None
        name = mapping.experiment_name(
            self.settings.experiment, orchestrator=run.orchestrator, pipeline=run.pipeline
        )
        return self._experiment_id(name)

    def _remember(self, key: str, mlflow_run_id: str, experiment_id: str) -> None:
        with self._lock:
            self._runs[key] = mlflow_run_id
            self._run_experiment[mlflow_run_id] = experiment_id
        self.ledger.remember_run(key, mlflow_run_id, experiment_id)

    def _cached(self, key: str) -> str | None:
        with self._lock:
            found = self._runs.get(key)
        if found is not None:
            return found
        row = self.ledger.run_for(key)
        if row is None:
            return None
        with self._lock:
            self._runs[key] = row[0]
            self._run_experiment[row[0]] = row[1]
        return row[0]

    def _search(self, experiment_ids: Sequence[str], kind: str, ident: str) -> str | None:
        """The MLflow run holding flowrecord *kind* ``ident`` in these experiments.

        When racing processes created two, every process picks the same one: the
        first created (by its creation tag), then the smallest run id.
        """
        if not experiment_ids:
            return None
        id_tag = RUN_TAG if kind == "run" else TASK_TAG
        found: list[Any] = []
        for chunk in _chunks(list(experiment_ids), 100):
            found.extend(
                self.client.search_runs(
                    list(chunk),
                    filter_string=f"tags.`{KIND_TAG}` = '{kind}' and tags.`{id_tag}` = '{ident}'",
                    max_results=100,
                )
            )
        if not found:
            return None

        def order(r: Any) -> tuple[int, str]:
            try:
                return int(r.data.tags.get(CREATED_TAG, "0")), r.info.run_id
            except ValueError:
                return 0, r.info.run_id

        winner = min(found, key=order)
        with self._lock:
            self._run_experiment[winner.info.run_id] = winner.info.experiment_id
        return str(winner.info.run_id)

    def _all_experiment_ids(self) -> list[str]:
        ids: list[str] = []
        token = None
        while True:
            page = self.client.search_experiments(max_results=1000, page_token=token)
            ids.extend(e.experiment_id for e in page)
            token = page.token
            if not token:
                return ids

    def _search_everywhere(self, kind: str, ident: str) -> str | None:
        with self._lock:
            known = list(dict.fromkeys(self._experiments.values()))
        found = self._search(known, kind, ident)
        if found is not None:
            return found
        rest = [e for e in self._all_experiment_ids() if e not in known]
        return self._search(rest, kind, ident)

    def _create(
        self,
        experiment_id: str,
        kind: str,
        ident: str,
        *,
        tags: Mapping[str, str],
        run_name: str,
        start_ms: int,
    ) -> str:
        """Create the MLflow run of flowrecord *kind* ``ident``, then settle any race."""
        all_tags = {
            **{
                mapping.mlflow_key(k): mapping.truncate(v, mapping.MAX_TAG_VALUE)
                for k, v in tags.items()
            },
            KIND_TAG: kind,
            RUN_TAG if kind == "run" else TASK_TAG: ident,
            CREATED_TAG: str(time.time_ns()),
        }
        run = self.client.create_run(
            experiment_id, start_time=start_ms, tags=all_tags, run_name=run_name[:250]
        )
        mine = run.info.run_id
        winner = self._search([experiment_id], kind, ident) or mine
        if winner != mine:
            # Another process created the same run a moment earlier: use that one.
            with contextlib.suppress(Exception):
                self.client.delete_run(mine)
        return winner

    def _parent(
        self, run_id: str, *, identity: RunEvent | None = None, create: bool = False
    ) -> str:
        """The MLflow run of flowrecord run *run_id*, created from *identity* if allowed.

        :raises RunNotKnownYet: MLflow does not hold it and it cannot be created here.
        """
        key = f"run:{run_id}"
        found = self._cached(key)
        if found is not None:
            return found
        identity = identity or self._identities.get(run_id)
        if identity is not None:
            experiment_id = self._experiment_for(identity)
            found = self._search([experiment_id], "run", run_id)
            if found is None and create:
                found = self._create(
                    experiment_id,
                    "run",
                    run_id,
                    tags=self._run_tags(identity),
                    run_name=identity.run_key or identity.pipeline,
                    start_ms=mapping.timestamp_ms(identity.ts),
                )
            if found is not None:
                self._remember(key, found, experiment_id)
                return found
        found = self._search_everywhere("run", run_id)
        if found is None:
            raise RunNotKnownYet(f"MLflow holds no run for flowrecord run {run_id}")
        self._remember(key, found, self._run_experiment[found])
        return found

    def _experiment_of(self, mlflow_run_id: str) -> str:
        with self._lock:
            experiment_id = self._run_experiment.get(mlflow_run_id)
        if experiment_id is None:
            experiment_id = self.client.get_run(mlflow_run_id).info.experiment_id
            with self._lock:
                self._run_experiment[mlflow_run_id] = experiment_id
        return experiment_id

    def _child(
        self, task_id: str, run_id: str, *, identity: TaskEvent | None = None, create: bool = False
    ) -> str:
        """The nested MLflow run of task attempt *task_id*, created from *identity* if allowed.

        :raises RunNotKnownYet: MLflow does not hold it (or its parent) yet.
        """
        key = f"task:{task_id}"
        found = self._cached(key)
        if found is not None:
            return found
        parent = self._parent(run_id)
        experiment_id = self._experiment_of(parent)
        found = self._search([experiment_id], "task", task_id)
        if found is None and create and identity is not None:
            found = self._create(
                experiment_id,
                "task",
                task_id,
                tags=self._task_tags(identity, parent),
                run_name=self._task_run_name(identity),
                start_ms=mapping.timestamp_ms(identity.started_at or identity.ts),
            )
        if found is None:
            raise RunNotKnownYet(f"MLflow holds no run for flowrecord task {task_id}")
        self._remember(key, found, experiment_id)
        return found

    def _target(self, run_id: str, task_id: str | None) -> str:
        """The MLflow run that data of (run, task) goes to: the task's, else the run's."""
        if task_id is None:
            return self._parent(run_id)
        return self._child(task_id, run_id)

    # ------------------------------------------------------------------ tags of runs

    def _run_tags(self, run: RunEvent) -> dict[str, str]:
        tags = {
            RUN_TAG: run.run_id,
            "flowrecord.orchestrator": run.orchestrator,
            "flowrecord.pipeline": run.pipeline,
            "flowrecord.run_key": run.run_key,
            "mlflow.source.name": f"{run.orchestrator}:{run.pipeline}",
        }
        commit = self._commits.get(run.run_id)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        tags.update(run.tags)
        return tags

    @staticmethod
    def _task_run_name(task: TaskEvent) -> str:
        name = task.name if task.map_index is None else f"{task.name}[{task.map_index}]"
        return name if task.try_number <= 1 else f"{name} (try {task.try_number})"

    def _task_tags(self, task: TaskEvent, parent: str) -> dict[str, str]:
        tags = {
            "mlflow.parentRunId": parent,
            RUN_TAG: task.run_id,
            "flowrecord.task": task.name,
            "flowrecord.try_number": str(task.try_number),
        }
        if task.map_index is not None:
            tags["flowrecord.map_index"] = str(task.map_index)
        if task.host:
            tags["flowrecord.host"] = task.host
        identity = self._identities.get(task.run_id)
        if identity is not None:
            tags["flowrecord.orchestrator"] = identity.orchestrator
            tags["flowrecord.pipeline"] = identity.pipeline
            tags["mlflow.source.name"] = f"{identity.orchestrator}:{identity.pipeline}"
        commit = self._commits.get(task.run_id)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        for key, value in task.attributes.items():
            tags[f"flowrecord.attr.{key}"] = str(value)
        return tags

    def _set_tags(self, mlflow_run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [
            RunTag(mapping.mlflow_key(k), mapping.truncate(str(v), mapping.MAX_TAG_VALUE))
            for k, v in tags.items()
        ]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_CALL):
            self.client.log_batch(mlflow_run_id, tags=list(chunk))

    def _terminate(self, mlflow_run_id: str, state: Any, ts: float) -> None:
        self.client.set_terminated(
            mlflow_run_id, status=mapping.run_status(state), end_time=mapping.timestamp_ms(ts)
        )

    # ------------------------------------------------------------------ run and task hooks

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[RunEvent]) -> None:
        for run in runs:
            self._identities.setdefault(run.run_id, run)
            mlflow_run = self._parent(run.run_id, identity=run, create=True)
            if run.tags:
                self._apply(
                    [],
                    f"tags of run {run.run_id}",
                    self._set_tags,
                    mlflow_run,
                    run.tags,
                )

    @hookimpl
    def flowrecord_run_finished(self, runs: Sequence[RunEvent]) -> None:
        for run in runs:
            self._identities.setdefault(run.run_id, run)
            mlflow_run = self._parent(run.run_id, identity=run, create=True)
            current = self.client.get_run(mlflow_run).info
            end_ms = mapping.timestamp_ms(run.ts)
            if current.end_time and current.status != "RUNNING" and current.end_time > end_ms:
                continue  # a later outcome is already recorded; an old one must not undo it
            tags = {"flowrecord.state": run.state.value}
            if run.error:
                tags["flowrecord.error"] = run.error

            def finish(
                mlflow_run: str = mlflow_run, run: RunEvent = run, tags: dict[str, str] = tags
            ) -> None:
                self._set_tags(mlflow_run, tags)
                self._terminate(mlflow_run, run.state, run.ts)

            self._apply([], f"the end of run {run.run_id}", finish)

    @hookimpl
    def flowrecord_task_started(self, tasks: Sequence[TaskEvent]) -> None:
        for task in tasks:
            try:
                self._child(_task_id(task), task.run_id, identity=task, create=True)
            except RunNotKnownYet as exc:
                self._give_up_if_orphaned(task.ts, f"the start of task {task.name}", exc)
                raise

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[TaskEvent]) -> None:
        for task in tasks:
            try:
                mlflow_run = self._child(_task_id(task), task.run_id, identity=task, create=True)
            except RunNotKnownYet as exc:
                self._give_up_if_orphaned(task.ts, f"the end of task {task.name}", exc)
                raise
            tags = {"flowrecord.state": task.state.value}
            if task.error:
                tags["flowrecord.error"] = task.error
            if task.duration_s is not None:
                tags["flowrecord.duration_s"] = f"{task.duration_s:.6f}"

            def finish(
                mlflow_run: str = mlflow_run, task: TaskEvent = task, tags: dict[str, str] = tags
            ) -> None:
                self._set_tags(mlflow_run, tags)
                self._terminate(mlflow_run, task.state, task.ts)

            self._apply([], f"the end of task {task.name}", finish)

    # ------------------------------------------------------------------ grouping

    def _by_target(
        self, events: Iterable[T], ids: Callable[[T], tuple[str, str | None, float]], what: str
    ) -> Iterable[tuple[str, list[T]]]:
        """Events grouped by the MLflow run they go to, in first-seen order.

        A group whose run MLflow does not know raises :class:`RunNotKnownYet`
        (the batch is spooled), unless it is old enough to be given up.
        """
        groups: dict[tuple[str, str | None], list[T]] = {}
        oldest: dict[tuple[str, str | None], float] = {}
        for event in events:
            run_id, task_id, ts = ids(event)
            groups.setdefault((run_id, task_id), []).append(event)
            oldest[(run_id, task_id)] = min(ts, oldest.get((run_id, task_id), ts))
        for (run_id, task_id), items in groups.items():
            try:
                target = self._target(run_id, task_id)
            except RunNotKnownYet as exc:
                self._give_up_if_orphaned(oldest[(run_id, task_id)], f"{len(items)} {what}", exc)
                raise
            yield target, items

    # ------------------------------------------------------------------ metrics, params, tags

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        from mlflow.entities import Metric

        points = (
            metrics.points
            if isinstance(metrics, MetricBatch)
            else [metric_point(m) for m in metrics]
        )
        done = self.ledger.applied([p[0] for p in points])
        todo = [p for p in points if p[0] not in done]
        for target, group in self._by_target(todo, lambda p: (p[2], p[3], p[1]), "metric points"):
            for chunk in _chunks(group, MAX_METRICS_PER_CALL):
                batch = [
                    Metric(
                        mapping.mlflow_key(p[4]),
                        p[5],
                        mapping.timestamp_ms(p[1]),
                        p[6] if p[6] is not None else 0,
                    )
                    for p in chunk
                ]
                self._apply(
                    [p[0] for p in chunk],
                    f"{len(batch)} metric points",
                    self.client.log_batch,
                    target,
                    metrics=batch,
                )

    @hookimpl
    def flowrecord_params_logged(self, params: Sequence[ParamEvent]) -> None:
        done = self.ledger.applied([p.event_id for p in params])
        todo = [p for p in params if p.event_id not in done]
        for target, group in self._by_target(todo, lambda p: (p.run_id, p.task_id, p.ts), "params"):
            latest: dict[str, ParamEvent] = {}
            for p in group:  # a later value for the same key wins
                latest.pop(mapping.mlflow_key(p.key), None)
                latest[mapping.mlflow_key(p.key)] = p
            items = list(latest.items())
            for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_CALL):
                units = [p.event_id for p in group if mapping.mlflow_key(p.key) in dict(chunk)]
                self._apply(
                    units,
                    f"{len(chunk)} params",
                    self._log_params,
                    target,
                    chunk,
                )

    def _log_params(self, mlflow_run: str, items: Sequence[tuple[str, ParamEvent]]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        params = [Param(k, mapping.truncate(p.value, mapping.MAX_PARAM_VALUE)) for k, p in items]
        try:
            self.client.log_batch(mlflow_run, params=params)
            return
        except MlflowException as exc:
            if _error_code(exc) != "INVALID_PARAMETER_VALUE":
                raise
        # MLflow params are immutable: one of these changed value. Log them one by
        # one and keep each changed value as a tag, where a later value may go.
        for param in params:
            try:
                self.client.log_param(mlflow_run, param.key, param.value)
            except MlflowException as exc:
                if _error_code(exc) != "INVALID_PARAMETER_VALUE":
                    raise
                self._set_tags(mlflow_run, {f"flowrecord.param.{param.key}": param.value})

    @hookimpl
    def flowrecord_tags_set(self, tags: Sequence[TagEvent]) -> None:
        done = self.ledger.applied([t.event_id for t in tags])
        todo = [t for t in tags if t.event_id not in done]
        for target, group in self._by_target(
            todo, lambda t: (t.run_id, t.task_id, t.ts), "tag events"
        ):
            merged: dict[str, str] = {}
            for event in group:
                merged.update(event.tags)
            self._apply(
                [t.event_id for t in group],
                f"{len(merged)} tags",
                self._set_tags,
                target,
                merged,
            )

    # ------------------------------------------------------------------ datasets, validation

    @hookimpl
    def flowrecord_dataset_logged(self, datasets: Sequence[DatasetEvent]) -> None:
        done = self.ledger.applied([d.event_id for d in datasets])
        todo = [d for d in datasets if d.event_id not in done]
        for target, group in self._by_target(
            todo, lambda d: (d.run_id, d.task_id, d.ts), "datasets"
        ):
            for event in group:
                self._apply(
                    [event.event_id],
                    f"dataset {event.name!r}",
                    self.client.log_inputs,
                    target,
                    datasets=[mapping.dataset_input(event)],
                )

    @hookimpl
    def flowrecord_validation_recorded(self, validations: Sequence[ValidationEvent]) -> None:
        from mlflow.entities import Metric

        from flowrecord.events import event_to_dict

        done = self.ledger.applied([v.event_id for v in validations])
        todo = [v for v in validations if v.event_id not in done]
        for target, group in self._by_target(
            todo, lambda v: (v.run_id, v.task_id, v.ts), "validation results"
        ):
            for event in group:
                metrics = [Metric(*row) for row in mapping.validation_metric_rows(event)]
                name = mapping.mlflow_key(event.validation_id or event.event_id)

                def send(
                    target: str = target,
                    event: ValidationEvent = event,
                    metrics: list[Any] = metrics,
                    name: str = name,
                ) -> None:
                    self._set_tags(target, mapping.validation_tags(event))
                    self.client.log_batch(target, metrics=metrics)
                    self.client.log_text(
                        target,
                        _json_text(event_to_dict(event)),
                        f"flowrecord/validations/{name}.json",
                    )

                self._apply([event.event_id], f"validation of {event.dataset_name!r}", send)

    # ------------------------------------------------------------------ system, code, artifacts

    @hookimpl
    def flowrecord_system_usage_recorded(self, usages: Sequence[SystemUsageEvent]) -> None:
        from mlflow.entities import Metric

        for target, group in self._by_target(
            usages, lambda u: (u.run_id, u.task_id, u.ts), "usage"
        ):
            for event in group:
                rows = mapping.system_metric_rows(event)
                for n, chunk in enumerate(_chunks(rows, MAX_METRICS_PER_CALL)):
                    batch = [Metric(*row) for row in chunk]
                    self._apply(
                        [f"{event.event_id}#{n}"],
                        f"{len(batch)} system metric points",
                        self.client.log_batch,
                        target,
                        metrics=batch,
                    )

    @hookimpl
    def flowrecord_code_captured(self, snapshots: Sequence[CodeSnapshotEvent]) -> None:
        for snapshot in snapshots:
            if snapshot.commit:
                self._commits[snapshot.run_id] = snapshot.commit
        done = self.ledger.applied([s.event_id for s in snapshots])
        todo = [s for s in snapshots if s.event_id not in done]
        for target, group in self._by_target(
            todo, lambda s: (s.run_id, None, s.ts), "code snapshots"
        ):
            for event in group:
                self._apply(
                    [event.event_id],
                    "the code snapshot",
                    self._log_code,
                    target,
                    event,
                )

    def _log_code(self, mlflow_run: str, code: CodeSnapshotEvent) -> None:
        tags: dict[str, str] = {}
        if code.commit:
            tags["mlflow.source.git.commit"] = code.commit
        if code.branch:
            tags["mlflow.source.git.branch"] = code.branch
        if code.dirty is not None:
            tags["flowrecord.code.dirty"] = str(code.dirty).lower()
        if tags:
            self._set_tags(mlflow_run, tags)
        if code.diff:
            self.client.log_text(mlflow_run, code.diff, "flowrecord/code/diff.patch")
        environment = {
            "python": code.python,
            "platform": code.platform,
            "commit": code.commit,
            "branch": code.branch,
            "dirty": code.dirty,
            "diff_truncated": code.diff_truncated,
            "repo_root": code.repo_root,
            "packages": dict(code.packages),
            "environment": dict(code.environment),
            "warnings": list(code.warnings),
        }
        self.client.log_text(mlflow_run, _json_text(environment), "flowrecord/environment.json")

    @hookimpl
    def flowrecord_artifact_logged(self, artifacts: Sequence[ArtifactEvent]) -> None:
        done = self.ledger.applied([a.event_id for a in artifacts])
        todo = [a for a in artifacts if a.event_id not in done]
        for target, group in self._by_target(
            todo, lambda a: (a.run_id, a.task_id, a.ts), "artifacts"
        ):
            for event in group:
                self._apply(
                    [event.event_id],
                    f"artifact {event.name!r}",
                    self._log_artifact,
                    target,
                    event,
                )

    def _log_artifact(self, mlflow_run: str, artifact: ArtifactEvent) -> None:
        path = Path(artifact.path)
        if not path.exists():
            # Gone before it could be sent (a temp file, a replay much later): keep
            # what is known of it rather than block the spool.
            log.warning(
                "flowrecord: artifact %s no longer exists; recording its fingerprint only", path
            )
            self._set_tags(
                mlflow_run,
                {
                    f"flowrecord.artifact.{artifact.name}": f"{artifact.fingerprint or ''} {path}".strip()
                },
            )
            return
        if path.is_dir():
            self.client.log_artifacts(
                mlflow_run, str(path), artifact_path=mapping.mlflow_key(artifact.name)
            )
        else:
            folder = None if artifact.name == path.name else mapping.mlflow_key(artifact.name)
            self.client.log_artifact(mlflow_run, str(path), artifact_path=folder)

    # ------------------------------------------------------------------ gates

    @hookimpl
    def flowrecord_gate_decided(self, decisions: Sequence[GateDecisionEvent]) -> None:
        from flowrecord.events import event_to_dict

        done = self.ledger.applied([d.event_id for d in decisions])
        todo = [d for d in decisions if d.event_id not in done]
        for target, group in self._by_target(
            todo, lambda d: (d.run_id, d.task_id, d.ts), "gate decisions"
        ):
            for event in group:
                verdict = "passed" if event.passed else "failed"

                def send(
                    target: str = target, event: GateDecisionEvent = event, verdict: str = verdict
                ) -> None:
                    self._set_tags(
                        target,
                        {f"flowrecord.gate.{event.gate}.{event.model}.{event.version}": verdict},
                    )
                    self.client.log_text(
                        target,
                        _json_text(event_to_dict(event)),
                        f"flowrecord/gates/{mapping.mlflow_key(event.decision_id)}.json",
                    )
                    self._tag_version(
                        event.model, event.version, {f"flowrecord.gate.{event.gate}": verdict}
                    )

                self._apply([event.event_id], f"gate decision {event.decision_id}", send)

    def _tag_version(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        from mlflow.exceptions import MlflowException

        for key, value in tags.items():
            try:
                self.client.set_model_version_tag(model, version, mapping.mlflow_key(key), value)
            except MlflowException as exc:
                if not _is_permanent(exc):
                    raise  # the model is not in this registry: nothing to tag

    # ------------------------------------------------------------------ registry

    def _source_run(self, run_id: str | None, task_id: str | None) -> str | None:
        """The MLflow run a model version came from, waiting briefly for it to arrive."""
        if run_id is None and task_id is None:
            return None
        assert self.settings is not None
        deadline = time.monotonic() + self.settings.registry_wait_s
        while True:
            try:
                if task_id is not None and run_id is not None:
                    return self._child(task_id, run_id)
                if run_id is not None:
                    return self._parent(run_id)
                return self._search_everywhere("task", str(task_id))
            except RunNotKnownYet:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.25)

    def _model_source(self, model: str, uri: str | None, mlflow_run: str | None) -> str:
        """The model version's source URI, uploading local model files when possible.

        A tracking server accepts a local path only inside the source run's
        artifacts, so local files are uploaded there and the version stands on its
        own. A local path that cannot be uploaded (not on this machine, or no run)
        becomes ``flowrecord://<host>/<path>``: honest about where the files are. A
        version registered without files has source ``flowrecord:///<model>``.
        """
        if not uri:
            return f"flowrecord:///{quote(model, safe='')}"
        scheme = urlparse(uri).scheme
        if scheme and scheme != "file" and len(scheme) > 1:
            return uri  # s3://, gs://, runs:/, models:/ ...: MLflow knows what to do
        local = Path(urlparse(uri).path if scheme == "file" else uri).expanduser().absolute()
        if mlflow_run and local.exists():
            folder = f"flowrecord/models/{mapping.mlflow_key(model)}"
            if local.is_dir():
                self.client.log_artifacts(mlflow_run, str(local), artifact_path=folder)
                return f"runs:/{mlflow_run}/{folder}"
            self.client.log_artifact(mlflow_run, str(local), artifact_path=folder)
            return f"runs:/{mlflow_run}/{folder}/{local.name}"
        # MLflow refuses a bare local path and file://<other host> alike: name the
        # host and path in flowrecord's own scheme (the exact URI is also a tag).
        return f"flowrecord://{socket.gethostname()}{local.as_posix()}"

    @hookimpl
    def flowrecord_registry_register_version(
        self,
        model: str,
        source_run_id: str | None,
        source_task_id: str | None,
        uri: str | None,
        metrics: Mapping[str, float],
        datasets: Sequence[Mapping[str, Any]],
        tags: Mapping[str, str],
    ) -> Mapping[str, Any] | None:
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.create_registered_model(model, tags={"flowrecord.managed": "true"})
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        mlflow_run = self._source_run(source_run_id, source_task_id)
        source = self._model_source(model, uri, mlflow_run)
        version_tags: dict[str, str] = {
            "flowrecord.metrics": json.dumps(dict(metrics), sort_keys=True),
            "flowrecord.datasets": json.dumps(
                [dict(d) for d in datasets], sort_keys=True, default=str
            ),
        }
        if source_run_id:
            version_tags[RUN_TAG] = source_run_id
        if source_task_id:
            version_tags[TASK_TAG] = source_task_id
        if uri:
            version_tags["flowrecord.uri"] = uri
        for d in datasets:
            version_tags[
                mapping.mlflow_key(f"flowrecord.dataset.{d.get('role', 'input')}.{d.get('name')}")
            ] = str(d.get("fingerprint"))
        for key, value in metrics.items():
            version_tags[mapping.mlflow_key(f"flowrecord.metric.{key}")] = repr(float(value))
        version_tags.update({str(k): str(v) for k, v in tags.items()})
        lines = [f"Registered by flowrecord from run {source_run_id} task {source_task_id}."]
        for d in datasets:
            lines.append(
                f"- {d.get('role', 'input')} dataset {d.get('name')}: {d.get('fingerprint')}"
            )
        version = client.create_model_version(
            model,
            source,
            run_id=mlflow_run,
            tags={k: mapping.truncate(v, 100_000) for k, v in version_tags.items()},
            description="\n".join(lines),
        )
        result = self.flowrecord_registry_get_version(model, str(version.version))
        assert result is not None
        return result

    @hookimpl
    def flowrecord_registry_get_version(self, model: str, version: str) -> Mapping[str, Any] | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(model, str(version))
        except MlflowException as exc:
            if _is_permanent(exc):
                return None
            raise
        tags = dict(mv.tags or {})

        def loads(key: str, default: Any) -> Any:
            try:
                return json.loads(tags[key])
            except (KeyError, ValueError):
                return default

        return {
            "model": mv.name,
            "version": str(mv.version),
            "run_id": tags.get(RUN_TAG),
            "task_id": tags.get(TASK_TAG),
            "uri": tags.get("flowrecord.uri", mv.source),
            "metrics": loads("flowrecord.metrics", {}),
            "datasets": loads("flowrecord.datasets", []),
            "tags": {k: v for k, v in tags.items() if not k.startswith("flowrecord.")},
            "created_at": (mv.creation_timestamp or 0) / 1000,
            "aliases": sorted(mv.aliases or []),
            "mlflow_run_id": mv.run_id or None,
            "source": mv.source,
        }

    @hookimpl
    def flowrecord_registry_set_alias(
        self, model: str, alias: str, version: str, reason: str | None
    ) -> Mapping[str, Any] | None:
        if self.flowrecord_registry_get_version(model, version) is None:
            raise KeyError(f"model {model!r} has no version {version!r} in MLflow")
        previous = self.flowrecord_registry_get_alias(model, alias)
        client = self.client
        client.set_registered_model_alias(model, alias, str(version))
        moved = {"alias": alias, "version": str(version), "previous_version": previous}
        entry = {**moved, "reason": reason, "ts": time.time()}
        if reason:
            client.set_model_version_tag(
                model,
                str(version),
                mapping.mlflow_key(f"flowrecord.alias.{alias}.reason"),
                mapping.truncate(reason, 5000),
            )
        history = json.loads(
            client.get_registered_model(model).tags.get("flowrecord.alias_history", "[]")
        )
        history = [*history, entry][-50:]  # MLflow keeps no alias history; keep the last moves
        client.set_registered_model_tag(model, "flowrecord.alias_history", json.dumps(history))
        return {"model": model, **moved}

    @hookimpl
    def flowrecord_registry_alias_history(
        self, model: str, alias: str | None
    ) -> Sequence[Mapping[str, Any]] | None:
        from mlflow.exceptions import MlflowException

        try:
            registered = self.client.get_registered_model(model)
        except MlflowException as exc:
            if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        try:
            history = json.loads(registered.tags.get("flowrecord.alias_history", "[]"))
        except ValueError:
            history = []
        return [
            {
                "alias": h.get("alias"),
                "version": h.get("version"),
                "previous_version": h.get("previous_version"),
                "reason": h.get("reason"),
                "ts": h.get("ts"),
            }
            for h in history
            if isinstance(h, dict) and (alias is None or h.get("alias") == alias)
        ]

    @hookimpl
    def flowrecord_registry_get_alias(self, model: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException as exc:
            if _is_permanent(exc):
                return None
            raise

    @hookimpl
    def flowrecord_registry_list_models(self) -> Sequence[Mapping[str, Any]] | None:
        client = self.client
        models: list[Any] = []
        token = None
        while True:
            page = client.search_registered_models(max_results=1000, page_token=token)
            models.extend(page)
            token = page.token
            if not token:
                break
        out = []
        for rm in sorted(models, key=lambda m: m.name):
            versions: list[str] = []
            token = None
            quoted = rm.name.replace("'", "\\'")
            while True:
                versions_page = client.search_model_versions(
                    f"name = '{quoted}'", max_results=1000, page_token=token
                )
                versions.extend(str(v.version) for v in versions_page)
                token = versions_page.token
                if not token:
                    break
            out.append(
                {
                    "name": rm.name,
                    "created_at": (rm.creation_timestamp or 0) / 1000,
                    "versions": sorted(versions, key=int),
                    "aliases": dict(rm.aliases or {}),
                }
            )
        return out
