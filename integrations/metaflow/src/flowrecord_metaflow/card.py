"""The Metaflow card of a task's record: metrics, datasets, validations and system usage.

``@flowrecord(card=True)`` attaches a ``blank`` Metaflow card with the id
``flowrecord`` to the step. While the task runs, :class:`TaskCardCollector`
listens beside flowrecord's backends (an in-process plugin of the same hooks,
joined to the live recorder and never spooled) and keeps what each task of the
process recorded, whether the decorator or the step body logged it; when the
task ends, :func:`card_components` turns its :class:`TaskCard` into card
components, which Metaflow renders once the task succeeded. Cards are read back
with Metaflow's own API::

    from metaflow.cards import get_cards
    html = get_cards("TrainFlow/1700/train/3", id="flowrecord")[0].get()
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowrecord.hookspecs import hookimpl

__all__ = ["CARD_ID", "TaskCard", "TaskCardCollector", "card_components"]

#: The id of flowrecord's card on a step: ``current.card[CARD_ID]``, ``get_cards(..., id=CARD_ID)``.
CARD_ID = "flowrecord"

_MAX_ROWS = 50  # a card is a summary; the store keeps everything


@dataclass
class MetricSeries:
    """The points of one metric in one task, summarised for the card."""

    last: float
    count: int = 1
    low: float = math.inf
    high: float = -math.inf
    last_step: int | None = None

    def add(self, value: float, step: int | None) -> None:
        self.last, self.last_step = value, step
        self.count += 1
        self.low = min(self.low, value)
        self.high = max(self.high, value)


@dataclass
class TaskCard:
    """What one task recorded, as its card shows it."""

    task_id: str | None = None
    name: str | None = None
    try_number: int | None = None
    state: str | None = None
    duration_s: float | None = None
    error: str | None = None
    metrics: dict[str, MetricSeries] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    datasets: list[Any] = field(default_factory=list)
    validations: list[Any] = field(default_factory=list)
    system: Mapping[str, Any] | None = None


class TaskCardCollector:
    """A flowrecord plugin that keeps, in memory, what each task recorded, for its card.

    Registered beside the backends with
    ``flowrecord.recorder.register_backend(name, collector, spool=False)``, at any
    time before the task opens; :meth:`card` gives one task's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cards: dict[str, TaskCard] = {}

    def card(self, task_id: str) -> TaskCard:
        """What task *task_id* recorded so far (an empty card if nothing)."""
        with self._lock:
            return self._cards.get(task_id) or TaskCard(task_id=task_id)

    def _of(self, event: Any) -> TaskCard | None:
        task_id = getattr(event, "task_id", None)
        if task_id is None:
            return None  # run-level events belong to no task's card
        card = self._cards.get(task_id)
        if card is None:
            card = self._cards[task_id] = TaskCard(task_id=task_id)
        return card

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[Any]) -> None:
        with self._lock:
            for event in tasks:
                card = self._of(event)
                if card is not None:
                    card.name, card.try_number = event.name, event.try_number
                    card.state, card.duration_s = str(event.state), event.duration_s
                    card.error = event.error

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        with self._lock:
            for point in metrics:
                card = self._of(point)
                if card is None:
                    continue
                value = float(point.value)
                series = card.metrics.get(point.key)
                if series is None:
                    card.metrics[point.key] = MetricSeries(
                        last=value, low=value, high=value, last_step=point.step
                    )
                else:
                    series.add(value, point.step)

    @hookimpl
    def flowrecord_params_logged(self, params: Sequence[Any]) -> None:
        with self._lock:
            for event in params:
                card = self._of(event)
                if card is not None:
                    card.params[event.key] = event.value

    @hookimpl
    def flowrecord_dataset_logged(self, datasets: Sequence[Any]) -> None:
        with self._lock:
            for event in datasets:
                card = self._of(event)
                if card is not None:
                    card.datasets.append(event)

    @hookimpl
    def flowrecord_validation_recorded(self, validations: Sequence[Any]) -> None:
        with self._lock:
            for event in validations:
                card = self._of(event)
                if card is not None:
                    card.validations.append(event)

    @hookimpl
    def flowrecord_system_usage_recorded(self, usages: Sequence[Any]) -> None:
        with self._lock:
            for event in usages:
                card = self._of(event)
                if card is not None:
                    card.system = dict(event.summary)


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _number(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(value)


def _short(text: Any, limit: int = 80) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _system_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for key, value in summary.items():
        if key == "gpus" and isinstance(value, Sequence) and not isinstance(value, str):
            for i, gpu in enumerate(value):
                if isinstance(gpu, Mapping):
                    for gkey, gvalue in gpu.items():
                        rows.append([f"gpu{i}.{gkey}", _render_usage(gkey, gvalue)])
                else:
                    rows.append([f"gpu{i}", _short(gpu)])
            continue
        if isinstance(value, Mapping | list | tuple):
            rows.append([key, _short(json.dumps(value, default=str))])
        else:
            rows.append([key, _render_usage(key, value)])
    return rows


def _render_usage(key: str, value: Any) -> str:
    return _bytes(value) if ("bytes" in key or key.endswith("_mem")) else _number(value)


def card_components(card: TaskCard) -> list[Any]:
    """Metaflow card components (Markdown, Table) showing one task's record."""
    from metaflow.cards import Markdown, Table

    parts: list[Any] = []
    title = card.name or "task"
    state = card.state or "unknown"
    parts.append(Markdown(f"# flowrecord: {title}"))
    summary = [f"**state** {state}"]
    if card.try_number is not None:
        summary.append(f"**attempt** {card.try_number}")
    if card.duration_s is not None:
        summary.append(f"**duration** {card.duration_s:.3f} s")
    parts.append(Markdown(" · ".join(summary)))
    if card.error:
        parts.append(Markdown(f"**error** `{_short(card.error, 300)}`"))

    parts.append(Markdown("## Metrics"))
    if card.metrics:
        rows: list[list[Any]] = [
            [
                key,
                _number(s.last),
                str(s.count),
                _number(s.low),
                _number(s.high),
                _number(s.last_step),
            ]
            for key, s in sorted(card.metrics.items())[:_MAX_ROWS]
        ]
        parts.append(Table(rows, headers=["metric", "last", "points", "min", "max", "step"]))
    else:
        parts.append(Markdown("_no metrics logged_"))

    parts.append(Markdown("## Datasets"))
    if card.datasets:
        rows = [
            [
                d.role,
                d.name,
                d.data_type,
                _number(d.row_count),
                _short(d.fingerprint or "", 48),
                _short(d.uri or "", 80),
            ]
            for d in card.datasets[:_MAX_ROWS]
        ]
        parts.append(Table(rows, headers=["role", "name", "type", "rows", "fingerprint", "uri"]))
    else:
        parts.append(Markdown("_no datasets read or written_"))

    parts.append(Markdown("## Validations"))
    if card.validations:
        rows = [
            [
                v.dataset_name,
                v.validator,
                v.schema_name or "",
                "passed" if v.passed else "FAILED",
                str(v.failure_count),
                v.policy,
            ]
            for v in card.validations[:_MAX_ROWS]
        ]
        parts.append(
            Table(rows, headers=["dataset", "validator", "schema", "result", "failures", "policy"])
        )
    else:
        parts.append(Markdown("_no validations_"))

    parts.append(Markdown("## System usage"))
    if card.system:
        parts.append(Table(_system_rows(card.system), headers=["measure", "value"]))
    else:
        parts.append(Markdown("_no system usage sampled_"))

    if card.params:
        parts.append(Markdown("## Parameters"))
        rows = [[k, _short(v)] for k, v in sorted(card.params.items())[:_MAX_ROWS]]
        parts.append(Table(rows, headers=["parameter", "value"]))
    return parts
