"""Helpers for testing pipelines and backends against flowrecord.

:class:`RecordingBackend` is a backend that keeps every hook call in order, so a
test can run a real pipeline and assert exactly which events it produced,
without mocking the orchestrator:

>>> from flowrecord.testing import RecordingBackend, isolated
>>> with isolated(tmp_path) as rec:                     # doctest: +SKIP
...     with flowrecord.run("demo"), flowrecord.task("t"):
...         flowrecord.log_metric("auc", 0.9)
>>> [e.key for e in rec.events("metric")]               # doctest: +SKIP
['auc']
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flowrecord import hookspecs
from flowrecord.hookspecs import hookimpl

__all__ = ["RecordingBackend", "isolated"]


class RecordingBackend:
    """Keeps ``(hook_name, events)`` for every event hook call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self._lock = threading.Lock()

    def _keep(self, hook: str, events: Sequence[Any]) -> None:
        with self._lock:
            self.calls.append((hook, list(events)))

    def hooks(self) -> list[str]:
        """Hook names in call order."""
        return [name for name, _ in self.calls]

    def events(self, kind: str | None = None) -> list[Any]:
        """All events received (of one ``kind``: "run", "task", "metric"...), in order."""
        out = [e for _, batch in self.calls for e in batch]
        return [e for e in out if kind is None or e.kind == kind]

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[Any]) -> None:
        self._keep("flowrecord_run_started", runs)

    @hookimpl
    def flowrecord_run_finished(self, runs: Sequence[Any]) -> None:
        self._keep("flowrecord_run_finished", runs)

    @hookimpl
    def flowrecord_task_started(self, tasks: Sequence[Any]) -> None:
        self._keep("flowrecord_task_started", tasks)

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[Any]) -> None:
        self._keep("flowrecord_task_finished", tasks)

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        self._keep("flowrecord_metrics_logged", metrics)

    @hookimpl
    def flowrecord_params_logged(self, params: Sequence[Any]) -> None:
        self._keep("flowrecord_params_logged", params)

    @hookimpl
    def flowrecord_tags_set(self, tags: Sequence[Any]) -> None:
        self._keep("flowrecord_tags_set", tags)

    @hookimpl
    def flowrecord_dataset_logged(self, datasets: Sequence[Any]) -> None:
        self._keep("flowrecord_dataset_logged", datasets)

    @hookimpl
    def flowrecord_artifact_logged(self, artifacts: Sequence[Any]) -> None:
        self._keep("flowrecord_artifact_logged", artifacts)

    @hookimpl
    def flowrecord_validation_recorded(self, validations: Sequence[Any]) -> None:
        self._keep("flowrecord_validation_recorded", validations)

    @hookimpl
    def flowrecord_system_usage_recorded(self, usages: Sequence[Any]) -> None:
        self._keep("flowrecord_system_usage_recorded", usages)

    @hookimpl
    def flowrecord_code_captured(self, snapshots: Sequence[Any]) -> None:
        self._keep("flowrecord_code_captured", snapshots)

    @hookimpl
    def flowrecord_gate_decided(self, decisions: Sequence[Any]) -> None:
        self._keep("flowrecord_gate_decided", decisions)


#: Every event hook the recording backend implements (kept in step with hookspecs).
EVENT_HOOKS = tuple(
    name
    for name in dir(hookspecs)
    if name.startswith("flowrecord_")
    and not name.startswith(("flowrecord_registry_", "flowrecord_backend_"))
)


@contextlib.contextmanager
def isolated(
    home: str | os.PathLike[str], *, backends: str = "local", **env: str
) -> Iterator[RecordingBackend]:
    """Record into a fresh home with a :class:`RecordingBackend` beside *backends*.

    Restores the environment and shuts the runtime down (flushing) on exit.
    """
    from flowrecord import recorder
    from flowrecord.config import reset_config

    saved = {k: os.environ.get(k) for k in ("FLOWRECORD_HOME", "FLOWRECORD_BACKENDS", *env)}
    recorder.shutdown()
    os.environ["FLOWRECORD_HOME"] = str(Path(home))
    os.environ["FLOWRECORD_BACKENDS"] = backends
    os.environ.update(env)
    reset_config()
    rec = RecordingBackend()
    recorder.register_backend("recording", rec)
    try:
        yield rec
    finally:
        recorder.shutdown()
        recorder.unregister_backend("recording")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_config()
