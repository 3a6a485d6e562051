"""The "flowrecord" button on every task instance in the Airflow UI.

A global operator extra link (registered by the plugin for all operators) that
opens the task's record on the plugin's page, served by the Airflow API server
under :data:`URL_PREFIX`. When the MLflow backend is active the page also says
how to find the same attempt in MLflow: the API server does not know MLflow's
run ids, so the link does not pretend to point at one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["URL_PREFIX", "FlowrecordLink", "task_page_path"]

#: Where the plugin's FastAPI app is mounted in the API server.
URL_PREFIX = "/flowrecord"


def task_page_path(
    dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int | None = None
) -> str:
    """Path (under the API server's root) of the record page of one task instance."""
    path = f"{URL_PREFIX}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    query: dict[str, Any] = {}
    if map_index is not None and int(map_index) >= 0:
        query["map_index"] = int(map_index)
    if try_number:
        query["try_number"] = int(try_number)
    return f"{path}?{urlencode(query)}" if query else path


def _base_url() -> str:
    try:
        from airflow.configuration import conf

        return (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:
        return ""


class FlowrecordLink(BaseOperatorLink):
    """Opens the flowrecord record of a task instance (metrics, datasets, validations, usage)."""

    name = "flowrecord"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """The record page of *ti_key*, absolute when ``[api] base_url`` is set."""
        path = task_page_path(
            ti_key.dag_id,
            ti_key.run_id,
            ti_key.task_id,
            map_index=getattr(ti_key, "map_index", -1),
            try_number=getattr(ti_key, "try_number", None),
        )
        return f"{_base_url()}{path}"
