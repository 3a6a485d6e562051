"""The Airflow listener that records every task instance of every DAG.

Airflow calls the task-instance hooks in the task's own process (the task
runner, or the test process under ``dag.test()``) and the DAG-run hooks where
the DAG run changes state (the scheduler, or the ``dag.test()`` loop). So the
first task of a DAG run opens the run record — ids are deterministic, every
process opens the same run — and the DAG-run hooks close it. Each hook hands
its arguments to :mod:`flowrecord_airflow.adapter` and swallows every error:
recording never fails or changes a task. Before a component stops (a task
process, the scheduler) what it recorded is flushed, bounded in time.

``FLOWRECORD_DISABLED=1`` turns every hook into a no-op before any work.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.listeners import hookimpl

__all__ = ["FlowrecordListener", "listener"]

log = logging.getLogger("flowrecord")


def _disabled() -> bool:
    value = os.environ.get("FLOWRECORD_DISABLED", "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


class FlowrecordListener:
    """Pluggy listener: Airflow task-instance and DAG-run hooks to flowrecord records."""

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        """Open the run and the attempt; record inlets and TaskFlow arguments."""
        if _disabled():
            return
        try:
            from flowrecord_airflow import adapter

            adapter.start_task(task_instance)
        except Exception as exc:
            log.warning("flowrecord: on_task_instance_running failed: %s", exc)

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        """Record outlets and the return value; close the attempt as succeeded."""
        self._finish(task_instance, "success", None)

    @hookimpl
    def on_task_instance_failed(
        self, previous_state: Any, task_instance: Any, error: str | BaseException | None
    ) -> None:
        """Close the attempt as failed, or as retrying when Airflow will try again."""
        self._finish(task_instance, "failed", error)

    @hookimpl
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        """Close the attempt as skipped (the task skipped itself)."""
        self._finish(task_instance, "skipped", None)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        """Close the run as succeeded; record the tasks that never started."""
        self._close(dag_run, True, msg)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        """Close the run as failed; record the tasks that never started."""
        self._close(dag_run, False, msg)

    @hookimpl
    def before_stopping(self, component: Any) -> None:
        """Deliver what this process recorded before the Airflow component exits (bounded)."""
        if _disabled():
            return
        try:
            from flowrecord_airflow import adapter

            adapter.flush_before_stop(type(component).__name__)
        except Exception as exc:
            log.warning("flowrecord: flushing before %s stops failed: %s", component, exc)

    @staticmethod
    def _finish(task_instance: Any, hook_state: str, error: object) -> None:
        if _disabled():
            return
        try:
            from flowrecord_airflow import adapter

            adapter.finish_task(task_instance, hook_state, error)
        except Exception as exc:
            log.warning("flowrecord: on_task_instance_%s failed: %s", hook_state, exc)

    @staticmethod
    def _close(dag_run: Any, succeeded: bool, msg: str) -> None:
        if _disabled():
            return
        try:
            from flowrecord_airflow import adapter

            adapter.close_run(dag_run, succeeded, msg)
        except Exception as exc:
            log.warning("flowrecord: closing the DAG run record failed: %s", exc)


#: The one listener instance the plugin registers.
listener = FlowrecordListener()
