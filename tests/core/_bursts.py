"""Events as a task burst makes them, shared by the dispatcher and dead-letter tests."""

from __future__ import annotations

from typing import Any

from flowrecord._ids import new_event_id
from flowrecord.events import MetricEvent, RunEvent, State, TaskEvent


def task_burst(run_id: str, n: int, metrics: int = 2) -> list[Any]:
    """A run start, then *n* tasks each with a start, *metrics* metric points and an end."""
    events: list[Any] = [
        RunEvent(
            event_id=new_event_id(),
            ts=1.0,
            run_id=run_id,
            state=State.STARTED,
            orchestrator="o",
            pipeline="p",
            run_key=run_id,
        )
    ]
    for i in range(n):
        task = f"{run_id}-t{i}"
        start, end = (
            TaskEvent(
                event_id=new_event_id(),
                ts=ts,
                run_id=run_id,
                task_id=task,
                state=state,
                name=f"t{i}",
            )
            for ts, state in ((2.0, State.STARTED), (3.0, State.SUCCEEDED))
        )
        points = [
            MetricEvent(
                event_id=new_event_id(),
                ts=2.5,
                run_id=run_id,
                task_id=task,
                key="loss",
                value=float(i + j),
                step=i + j,
            )
            for j in range(metrics)
        ]
        events += [start, *points, end]
    return events
