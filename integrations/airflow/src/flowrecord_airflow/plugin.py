"""The Airflow plugin: installing ``flowrecord-airflow`` is enough to record every task.

Airflow finds :class:`FlowrecordPlugin` through the ``airflow.plugins`` entry
point in every process that loads plugins. It carries:

- the listener that records every task instance of every DAG
  (:mod:`flowrecord_airflow.listener`);
- a "flowrecord" operator extra link on every task, to its record;
- the flowrecord pages, a FastAPI app mounted by the API server under
  ``/flowrecord``, shown as a tab of the DAG run and task instance views.

Importing this module is cheap (no FastAPI, no data libraries): task processes
import it too.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from flowrecord_airflow.links import URL_PREFIX, FlowrecordLink
from flowrecord_airflow.listener import listener
from flowrecord_airflow.views import LazyApp

__all__ = ["FlowrecordPlugin"]

_ROUTE = URL_PREFIX.lstrip("/")


class FlowrecordPlugin(AirflowPlugin):
    """Records every task of every DAG with flowrecord, and shows the records in the UI."""

    name = "flowrecord"
    listeners = [listener]
    global_operator_extra_links = [FlowrecordLink()]
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "flowrecord"}]
    external_views = [
        {
            "name": "flowrecord",
            "href": f"{_ROUTE}/dags/{{DAG_ID}}/runs/{{RUN_ID}}/tasks/{{TASK_ID}}?map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "flowrecord-task",
        },
        {
            "name": "flowrecord",
            "href": f"{_ROUTE}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "flowrecord-run",
        },
        {
            "name": "flowrecord",
            "href": f"{_ROUTE}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "flowrecord",
        },
    ]
