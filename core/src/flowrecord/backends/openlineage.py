"""The ``openlineage`` backend: flowrecord's record as OpenLineage run events.

A pipeline run is an OpenLineage job run (job name: the pipeline), each task
attempt a job run of its own (job name ``<pipeline>.<task>``) linked to it by a
``parent`` run facet. Runs emit START when they start and COMPLETE, FAIL or
ABORT when they end. The datasets a task read and wrote travel on its terminal
event as inputs and outputs, with facets: ``schema``, ``version`` (flowrecord's
content fingerprint), ``dataQualityMetrics`` (row count and per-column null
counts, distinct counts, min, max, quantiles), ``dataQualityAssertions`` (the
validation results), ``outputStatistics`` and, when the dataset's OpenLineage
name comes from its URI, a ``symlinks`` facet with flowrecord's name for it.

Events go out through the official ``openlineage-python`` client and its
transports, configured the standard way (``OPENLINEAGE_URL``,
``OPENLINEAGE_CONFIG`` / ``openlineage.yml``, ``OPENLINEAGE__...`` variables),
or by a ``transport`` table in ``[tool.flowrecord.openlineage]``.

Datasets arrive as separate events while a task runs, so the backend keeps them
per task, in memory and in a small SQLite file under
``FLOWRECORD_HOME/openlineage``, until the task ends. When a process ends, or
is found dead, before the task it saw datasets for has ended (its end may be
reported by another process, in another home), those datasets go out at once
in a RUNNING event of the task, so they are never lost; a dataset that arrives
after its task's terminal event goes out in an OTHER event. Emission is at
least once and, within one home, at most once per event: what was emitted is
recorded after the transport returned. A transport that fails makes the hook
raise, so the dispatcher spools the batch and replays it; an endpoint that
refuses an event for good (a 4xx answer other than 408 or 429) raises
:class:`~flowrecord.errors.EventRefused`, and that event becomes a dead letter
while the rest are delivered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from flowrecord._impl import hookimpl
from flowrecord.errors import EventRefused
from flowrecord.events import (
    DatasetEvent,
    RunEvent,
    TaskEvent,
    ValidationEvent,
    event_from_dict,
    event_to_dict,
)

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient

__all__ = [
    "OpenLineageBackend",
    "OpenLineageSettings",
    "dataset_identity",
    "resolve_settings",
]

log = logging.getLogger("flowrecord")

#: Default producer URI of the events (``[tool.flowrecord.openlineage] producer``).
PRODUCER = "https://pypi.org/project/flowrecord/"
#: An event whose run this home never saw is emitted with fallback names after this
#: long; until then it waits (the run's start is replayed first from the spool).
ORPHAN_AFTER_S = 86400.0

_JOB_TYPES = {"airflow": "DAG", "dagster": "JOB", "metaflow": "FLOW"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS emitted (key TEXT PRIMARY KEY, ts REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, orchestrator TEXT, pipeline TEXT, run_key TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, run_id TEXT, name TEXT, finished INTEGER DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    owner TEXT, event_id TEXT, body TEXT, host TEXT, pid INTEGER, running_sent INTEGER DEFAULT 0,
    PRIMARY KEY (owner, event_id)
) WITHOUT ROWID;
"""


class RunNotKnownYet(RuntimeError):
    """A task event whose pipeline run this home has not seen start (yet)."""


@dataclass(frozen=True, slots=True)
class OpenLineageSettings:
    """Names and transport of the events (``[tool.flowrecord.openlineage]`` and environment)."""

    home: Path
    """flowrecord's home; pending datasets live in ``<home>/openlineage/state.db``."""
    namespace: str | None = None
    """Job namespace (``OPENLINEAGE_NAMESPACE``, ``namespace``); None: the orchestrator's name."""
    dataset_namespace: str = "flowrecord"
    """Namespace of datasets that have no URI (in-memory frames)."""
    producer: str = PRODUCER
    client_config: Mapping[str, Any] | None = None
    """Passed to ``OpenLineageClient(config=...)`` (e.g. a ``transport`` table)."""


def resolve_settings(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> OpenLineageSettings:
    """Settings from the flowrecord *config* mapping and the environment (which wins).

    :raises ValueError: the ``transport`` entry is not a table.
    """
    env = os.environ if environ is None else environ
    table = config.get("openlineage") or {}
    if not isinstance(table, Mapping):
        raise ValueError("[tool.flowrecord.openlineage] must be a table")
    transport = table.get("transport")
    if transport is not None and not isinstance(transport, Mapping):
        raise ValueError("[tool.flowrecord.openlineage] transport must be a table")
    return OpenLineageSettings(
        home=Path(str(config.get("home") or ".flowrecord")),
        namespace=env.get("OPENLINEAGE_NAMESPACE") or table.get("namespace") or None,
        dataset_namespace=str(table.get("dataset_namespace") or "flowrecord"),
        producer=str(table.get("producer") or PRODUCER),
        client_config={"transport": dict(transport)} if transport else None,
    )


def dataset_identity(name: str, uri: str | None, default_namespace: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a dataset, following OpenLineage's naming.

    A local path is namespace ``file`` with the absolute path as name; a URI
    ``scheme://authority/path`` is namespace ``scheme://authority`` with the path;
    a dataset without a URI keeps flowrecord's name in *default_namespace*.
    """
    if not uri:
        return default_namespace, name
    parsed = urlparse(uri)
    if not parsed.scheme or len(parsed.scheme) == 1:  # a plain path, or a drive letter
        return "file", str(Path(uri).expanduser().absolute())
    if parsed.scheme == "file":
        return "file", parsed.path or "/"
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip("/") or "/"


def _event_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _task_id(task: TaskEvent) -> str:
    if task.task_id is None:  # a task event always names its task; say so if one does not
        raise ValueError(f"task event {task.event_id} has no task_id")
    return task.task_id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _State:
    """The backend's durable memory: what was emitted, who is who, pending datasets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self.conn().execute(sql, params).fetchall()

    def emitted(self, key: str) -> bool:
        return bool(self.execute("SELECT 1 FROM emitted WHERE key = ?", (key,)))

    def mark(self, keys: Iterable[str]) -> None:
        now = time.time()
        with self._lock:
            self.conn().executemany(
                "INSERT OR IGNORE INTO emitted VALUES (?, ?)", [(k, now) for k in keys]
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None


class OpenLineageBackend:
    """The ``openlineage`` backend plugin (entry point ``flowrecord.backends: openlineage``).

    ::

        FLOWRECORD_BACKENDS=local,openlineage OPENLINEAGE_URL=http://marquez:5000 python train.py
    """

    def __init__(
        self, settings: OpenLineageSettings | None = None, client: OpenLineageClient | None = None
    ) -> None:
        self.settings = settings
        self._client = client
        self._state: _State | None = None
        self._lock = threading.RLock()
        # Datasets and validations this process saw, per owner (task id, or run id
        # for run-level ones): the in-memory side of the pending buffer.
        self._pending: dict[str, dict[str, Any]] = {}
        self._recovered = False

    # ------------------------------------------------------------------ lifecycle

    @hookimpl
    def flowrecord_backend_configure(self, config: Mapping[str, Any]) -> None:
        if self.settings is None:
            self.settings = resolve_settings(config)

    @hookimpl
    def flowrecord_backend_close(self) -> None:
        try:
            self._flush_open_tasks()
        except Exception as exc:  # at exit nothing may raise; the rows stay pending
            log.warning("flowrecord: could not send open tasks' datasets to OpenLineage: %s", exc)
        with self._lock:
            if self._state is not None:
                self._state.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close(1.0)

    def _settings(self) -> OpenLineageSettings:
        if self.settings is None:
            from flowrecord.config import load_config

            self.settings = resolve_settings(load_config().as_mapping())
        return self.settings

    @property
    def client(self) -> OpenLineageClient:
        """The OpenLineage client (imported and configured on first use)."""
        with self._lock:
            if self._client is None:
                from openlineage.client import OpenLineageClient

                config = self._settings().client_config
                self._client = OpenLineageClient(config=dict(config) if config else None)
            return self._client

    @property
    def state(self) -> _State:
        with self._lock:
            if self._state is None:
                self._state = _State(self._settings().home / "openlineage" / "state.db")
            return self._state

    # ------------------------------------------------------------------ building events

    def _namespace(self, orchestrator: str) -> str:
        return self._settings().namespace or orchestrator

    def _run_identity(self, run_id: str) -> tuple[str, str] | None:
        rows = self.state.execute(
            "SELECT orchestrator, pipeline FROM runs WHERE run_id = ?", (run_id,)
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def _identity_or_wait(self, run_id: str, ts: float) -> tuple[str, str]:
        identity = self._run_identity(run_id)
        if identity is not None:
            return identity
        if time.time() - ts < ORPHAN_AFTER_S:
            raise RunNotKnownYet(f"this home has not seen pipeline run {run_id} start")
        log.error("flowrecord: OpenLineage names for run %s are unknown; using fallbacks", run_id)
        return "flowrecord", run_id

    def _job(self, namespace: str, name: str, orchestrator: str, job_type: str) -> Any:
        from openlineage.client.event_v2 import Job
        from openlineage.client.facet_v2 import job_type_job

        facet = job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration=orchestrator.upper(),
            jobType=job_type,
            producer=self._settings().producer,
        )
        return Job(namespace=namespace, name=name, facets={"jobType": facet})

    def _emit(
        self,
        event_type: str,
        ts: float,
        run_id: str,
        job: Any,
        *,
        run_facets: Mapping[str, Any] | None = None,
        inputs: Sequence[Any] = (),
        outputs: Sequence[Any] = (),
    ) -> None:
        from openlineage.client.event_v2 import Run, RunEvent, RunState

        event = RunEvent(
            eventType=RunState[event_type],
            eventTime=_event_time(ts),
            run=Run(runId=run_id, facets=dict(run_facets or {})),
            job=job,
            inputs=list(inputs),
            outputs=list(outputs),
            producer=self._settings().producer,
        )
        try:
            self.client.emit(event)
        except Exception as exc:
            # An endpoint that answers 4xx will answer the same to a replay: a
            # permanent refusal (a dead letter), not an outage to wait out.
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
                raise EventRefused(
                    f"the OpenLineage endpoint refused the {event_type} event of run "
                    f"{run_id} ({status}): {exc}"
                ) from exc
            raise

    def _error_facets(self, state: str, error: str | None) -> dict[str, Any]:
        if state != "failed" and state != "retrying":
            return {}
        from openlineage.client.facet_v2 import error_message_run

        return {
            "errorMessage": error_message_run.ErrorMessageRunFacet(
                message=error or state,
                programmingLanguage="python",
                producer=self._settings().producer,
            )
        }

    @staticmethod
    def _terminal(state: str) -> str:
        if state == "succeeded":
            return "COMPLETE"
        if state in ("failed", "retrying"):
            return "FAIL"
        return "ABORT"  # skipped, or the process ended without an outcome

    def _task_job_and_facets(self, task_id: str, ts: float) -> tuple[Any, dict[str, Any]]:
        rows = self.state.execute("SELECT run_id, name FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise RunNotKnownYet(f"this home has not seen task {task_id} start")
        run_id, name = rows[0]
        orchestrator, pipeline = self._identity_or_wait(run_id, ts)
        namespace = self._namespace(orchestrator)
        job = self._job(namespace, f"{pipeline}.{name}", orchestrator, "TASK")
        return job, self._parent_facets(namespace, pipeline, run_id)

    def _parent_facets(self, namespace: str, pipeline: str, run_id: str) -> dict[str, Any]:
        from openlineage.client.facet_v2 import parent_run

        producer = self._settings().producer
        return {
            "parent": parent_run.ParentRunFacet(
                run=parent_run.Run(runId=run_id),
                job=parent_run.Job(namespace=namespace, name=pipeline),
                root=parent_run.Root(
                    run=parent_run.RootRun(runId=run_id),
                    job=parent_run.RootJob(namespace=namespace, name=pipeline),
                ),
                producer=producer,
            )
        }

    # ------------------------------------------------------------------ datasets

    def _datasets(self, items: Iterable[Any]) -> tuple[list[Any], list[Any]]:
        """OpenLineage inputs and outputs for dataset and validation events of one task."""
        from openlineage.client.event_v2 import InputDataset, OutputDataset

        datasets = [e for e in items if isinstance(e, DatasetEvent)]
        validations = [e for e in items if isinstance(e, ValidationEvent)]
        settings = self._settings()
        by_name: dict[tuple[str, str], DatasetEvent] = {}
        for d in sorted(datasets, key=lambda e: e.ts):
            by_name[(d.name, d.role)] = d  # the latest description of a dataset wins
        assertions: dict[str, list[Any]] = {}
        for v in validations:
            assertions.setdefault(v.dataset_name, []).extend(self._assertions(v))
        inputs: list[Any] = []
        outputs: list[Any] = []
        for (name, role), d in by_name.items():
            namespace, ol_name = dataset_identity(name, d.uri, settings.dataset_namespace)
            facets = self._dataset_facets(d, namespace, ol_name)
            found = assertions.get(name)
            extra: dict[str, Any] = {}
            if found:
                extra["dataQualityAssertions"] = self._assertions_facet(found)
            if role == "input":
                extra["dataQualityMetrics"] = self._metrics_facet(d, input_facet=True)
                inputs.append(
                    InputDataset(
                        namespace=namespace, name=ol_name, facets=facets, inputFacets=extra
                    )
                )
            else:
                facets["dataQualityMetrics"] = self._metrics_facet(d, input_facet=False)
                extra["outputStatistics"] = self._output_statistics(d)
                outputs.append(
                    OutputDataset(
                        namespace=namespace, name=ol_name, facets=facets, outputFacets=extra
                    )
                )
        logged = {n for (n, _) in by_name}
        for name, found in assertions.items():
            if name in logged:
                continue
            # Validated but never logged as a dataset: an input known by its checks.
            inputs.append(
                InputDataset(
                    namespace=settings.dataset_namespace,
                    name=name,
                    inputFacets={"dataQualityAssertions": self._assertions_facet(found)},
                )
            )
        return inputs, outputs

    def _dataset_facets(self, d: DatasetEvent, namespace: str, ol_name: str) -> dict[str, Any]:
        from openlineage.client.facet_v2 import (
            dataset_version_dataset,
            schema_dataset,
            symlinks_dataset,
        )

        producer = self._settings().producer
        facets: dict[str, Any] = {}
        if d.schema:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(
                        name=str(c.get("name")), type=str(c.get("type")), ordinal_position=i + 1
                    )
                    for i, c in enumerate(d.schema)
                ],
                producer=producer,
            )
        if d.fingerprint:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=d.fingerprint, producer=producer
            )
        if (namespace, ol_name) != (self._settings().dataset_namespace, d.name):
            facets["symlinks"] = symlinks_dataset.SymlinksDatasetFacet(
                identifiers=[
                    symlinks_dataset.Identifier(
                        namespace=self._settings().dataset_namespace, name=d.name, type="DATASET"
                    )
                ],
                producer=producer,
            )
        return facets

    def _metrics_facet(self, d: DatasetEvent, *, input_facet: bool) -> Any:
        from openlineage.client.facet_v2 import (
            data_quality_metrics_dataset,
            data_quality_metrics_input_dataset,
        )

        module = data_quality_metrics_input_dataset if input_facet else data_quality_metrics_dataset
        columns: dict[str, Any] = {}
        for name, stats in (d.profile.get("columns") or {}).items() if d.profile else ():
            low, high = _finite(stats.get("min")), _finite(stats.get("max"))
            count = _finite(stats.get("count"))
            mean = _finite(stats.get("mean"))
            quantiles = stats.get("quantiles") or []
            q = {}
            if len(quantiles) > 1 and all(_finite(v) is not None for v in quantiles):
                q = {f"{i / (len(quantiles) - 1):g}": float(v) for i, v in enumerate(quantiles)}
            distinct = stats.get("distinct_estimate")
            nulls = stats.get("nulls")
            columns[str(name)] = module.ColumnMetrics(
                nullCount=int(nulls) if isinstance(nulls, int) else None,
                distinctCount=int(distinct) if isinstance(distinct, int) else None,
                count=count,
                min=low,
                max=high,
                sum=mean * count
                if mean is not None and count is not None and low is not None
                else None,
                quantiles=q,
            )
        facet_class = (
            module.DataQualityMetricsInputDatasetFacet
            if input_facet
            else module.DataQualityMetricsDatasetFacet
        )
        return facet_class(
            columnMetrics=columns,
            rowCount=d.row_count,
            bytes=d.size_bytes,
            producer=self._settings().producer,
        )

    def _output_statistics(self, d: DatasetEvent) -> Any:
        from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

        return stats.OutputStatisticsOutputDatasetFacet(
            rowCount=d.row_count, size=d.size_bytes, producer=self._settings().producer
        )

    @staticmethod
    def _assertions(v: ValidationEvent) -> list[Any]:
        from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa

        severity = "error" if v.policy == "fail" else "warn"
        found = [
            dqa.Assertion(
                assertion=v.validator,
                success=bool(v.passed),
                severity=severity,
                name=v.schema_name or v.validator,
                actual=f"{v.failure_count} failures",
                description=v.error,
            )
        ]
        for check in v.checks:
            column = check.get("column")
            failures = check.get("failures")
            passed = check.get("passed")
            if passed is None:
                passed = not failures
            found.append(
                dqa.Assertion(
                    assertion=str(check.get("check", "check")),
                    success=bool(passed),
                    column=str(column) if column is not None else None,
                    severity=severity,
                    actual=None if failures is None else f"{failures} failures",
                )
            )
        return found

    def _assertions_facet(self, assertions: list[Any]) -> Any:
        from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa

        return dqa.DataQualityAssertionsDatasetFacet(
            assertions=assertions, producer=self._settings().producer
        )

    # ------------------------------------------------------------------ pending buffer

    def _hold(self, owner: str, event: DatasetEvent | ValidationEvent) -> None:
        with self._lock:
            self._pending.setdefault(owner, {})[event.event_id] = event
        self.state.execute(
            "INSERT OR IGNORE INTO pending (owner, event_id, body, host, pid) VALUES (?,?,?,?,?)",
            (
                owner,
                event.event_id,
                json.dumps(event_to_dict(event), default=str),
                socket.gethostname(),
                os.getpid(),
            ),
        )

    def _held(self, owner: str) -> dict[str, Any]:
        """Every dataset and validation held for *owner*, from this process and the file."""
        held: dict[str, Any] = {}
        for event_id, body in self.state.execute(
            "SELECT event_id, body FROM pending WHERE owner = ?", (owner,)
        ):
            held[event_id] = event_from_dict(json.loads(body))
        with self._lock:
            held.update(self._pending.get(owner, {}))
        return held

    def _release(self, owner: str, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        self.state.mark(f"ds:{i}" for i in ids)
        with self._lock:
            held = self._pending.get(owner, {})
            for i in ids:
                held.pop(i, None)
            if not held:
                self._pending.pop(owner, None)
        for i in ids:
            self.state.execute("DELETE FROM pending WHERE owner = ? AND event_id = ?", (owner, i))

    def _finished(self, owner: str) -> bool:
        rows = self.state.execute("SELECT finished FROM tasks WHERE task_id = ?", (owner,))
        return bool(rows and rows[0][0])

    def _flush_open_tasks(self) -> None:
        """RUNNING events for open tasks this process saw datasets for (at process end)."""
        with self._lock:
            owners = list(self._pending)
        for owner in owners:
            rows = self.state.execute(
                "SELECT event_id FROM pending WHERE owner = ? AND running_sent = 0", (owner,)
            )
            if rows:
                self._send_running(owner, [r[0] for r in rows])

    def _recover(self) -> None:
        """RUNNING events for datasets held by processes of this host that died."""
        if self._recovered:
            return
        self._recovered = True
        host = socket.gethostname()
        rows = self.state.execute(
            "SELECT owner, event_id, pid FROM pending WHERE running_sent = 0 AND host = ?",
            (host,),
        )
        dead: dict[str, list[str]] = {}
        for owner, event_id, pid in rows:
            if pid != os.getpid() and not _pid_alive(int(pid)):
                dead.setdefault(owner, []).append(event_id)
        for owner, ids in dead.items():
            try:
                self._send_running(owner, ids)
            except RunNotKnownYet:
                continue

    def _send_running(self, owner: str, event_ids: Sequence[str]) -> None:
        held = self._held(owner)
        items = [held[i] for i in event_ids if i in held]
        if not items:
            return
        ts = max(e.ts for e in items)
        if self.state.execute("SELECT 1 FROM tasks WHERE task_id = ?", (owner,)):
            job, facets = self._task_job_and_facets(owner, ts)
        else:
            return  # a run-level dataset: the run's own end carries it
        inputs, outputs = self._datasets(items)
        self._emit("RUNNING", ts, owner, job, run_facets=facets, inputs=inputs, outputs=outputs)
        marks = ",".join("?" * len(event_ids))
        self.state.execute(
            f"UPDATE pending SET running_sent = 1 WHERE owner = ? AND event_id IN ({marks})",
            (owner, *event_ids),
        )

    # ------------------------------------------------------------------ run hooks

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[RunEvent]) -> None:
        self._recover()
        for run in runs:
            self.state.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?)",
                (run.run_id, run.orchestrator, run.pipeline, run.run_key),
            )
            key = f"start:{run.run_id}"
            if self.state.emitted(key):
                continue  # one START per run, however many processes opened it
            job = self._job(
                self._namespace(run.orchestrator),
                run.pipeline,
                run.orchestrator,
                _JOB_TYPES.get(run.orchestrator, "PIPELINE"),
            )
            facets: dict[str, Any] = {}
            if run.tags:
                from openlineage.client.facet_v2 import tags_run

                facets["tags"] = tags_run.TagsRunFacet(
                    tags=[
                        tags_run.TagsRunFacetFields(key=k, value=v, source="flowrecord")
                        for k, v in run.tags.items()
                    ],
                    producer=self._settings().producer,
                )
            self._emit("START", run.ts, run.run_id, job, run_facets=facets)
            self.state.mark([key])

    @hookimpl
    def flowrecord_run_finished(self, runs: Sequence[RunEvent]) -> None:
        for run in runs:
            self.state.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?)",
                (run.run_id, run.orchestrator, run.pipeline, run.run_key),
            )
            key = f"end:{run.event_id}"
            if self.state.emitted(key):
                continue
            if not self.state.emitted(f"start:{run.run_id}"):
                self.flowrecord_run_started([run])  # OpenLineage wants a START first
            held = self._held(run.run_id)
            inputs, outputs = self._datasets(held.values())
            job = self._job(
                self._namespace(run.orchestrator),
                run.pipeline,
                run.orchestrator,
                _JOB_TYPES.get(run.orchestrator, "PIPELINE"),
            )
            self._emit(
                self._terminal(run.state.value),
                run.ts,
                run.run_id,
                job,
                run_facets=self._error_facets(run.state.value, run.error),
                inputs=inputs,
                outputs=outputs,
            )
            self.state.mark([key])
            self._release(run.run_id, held)

    # ------------------------------------------------------------------ task hooks

    @hookimpl
    def flowrecord_task_started(self, tasks: Sequence[TaskEvent]) -> None:
        self._recover()
        for task in tasks:
            task_id = _task_id(task)
            self.state.execute(
                "INSERT OR IGNORE INTO tasks (task_id, run_id, name) VALUES (?, ?, ?)",
                (task_id, task.run_id, task.name),
            )
            key = f"start:{task_id}"
            if self.state.emitted(key):
                continue
            job, facets = self._task_job_and_facets(task_id, task.ts)
            self._emit("START", task.started_at or task.ts, task_id, job, run_facets=facets)
            self.state.mark([key])

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[TaskEvent]) -> None:
        for task in tasks:
            task_id = _task_id(task)
            self.state.execute(
                "INSERT OR IGNORE INTO tasks (task_id, run_id, name) VALUES (?, ?, ?)",
                (task_id, task.run_id, task.name),
            )
            key = f"end:{task_id}"
            if self.state.emitted(key):
                continue
            if not self.state.emitted(f"start:{task_id}"):
                self.flowrecord_task_started([task])  # OpenLineage wants a START first
            job, facets = self._task_job_and_facets(task_id, task.ts)
            facets.update(self._error_facets(task.state.value, task.error))
            held = self._held(task_id)
            inputs, outputs = self._datasets(held.values())
            self._emit(
                self._terminal(task.state.value),
                task.ts,
                task_id,
                job,
                run_facets=facets,
                inputs=inputs,
                outputs=outputs,
            )
            self.state.mark([key])
            self.state.execute("UPDATE tasks SET finished = 1 WHERE task_id = ?", (task_id,))
            self._release(task_id, held)

    # ------------------------------------------------------------------ dataset hooks

    def _collect(self, events: Sequence[DatasetEvent | ValidationEvent]) -> None:
        late: dict[str, list[Any]] = {}
        for event in events:
            if self.state.emitted(f"ds:{event.event_id}"):
                continue  # already sent with its task (a replayed batch)
            owner = event.task_id or event.run_id
            if event.task_id is not None and self._finished(owner):
                late.setdefault(owner, []).append(event)
            else:
                self._hold(owner, event)
        for owner, items in late.items():
            # The task already ended: send what came late in an OTHER event of its run.
            ts = max(e.ts for e in items)
            job, facets = self._task_job_and_facets(owner, ts)
            inputs, outputs = self._datasets(items)
            self._emit("OTHER", ts, owner, job, run_facets=facets, inputs=inputs, outputs=outputs)
            self.state.mark(f"ds:{e.event_id}" for e in items)

    @hookimpl
    def flowrecord_dataset_logged(self, datasets: Sequence[DatasetEvent]) -> None:
        self._collect(datasets)

    @hookimpl
    def flowrecord_validation_recorded(self, validations: Sequence[ValidationEvent]) -> None:
        self._collect(validations)
