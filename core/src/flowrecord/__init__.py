"""flowrecord: a passive system of record for ML pipelines.

Installed beside an Airflow, Dagster or Metaflow pipeline, flowrecord records every
task: status, duration, parameters, metrics, datasets (fingerprint, schema, row
count, profile), validation results, system and GPU usage, code and environment.
Inside a task, user code can add to the record:

>>> import flowrecord
>>> flowrecord.log_param("learning_rate", 0.01)
>>> flowrecord.log_metric("auc", 0.91)

Outside any orchestrator, the first call opens an implicit run for the script.
"""

from __future__ import annotations

from flowrecord.errors import FlowrecordError, FlowrecordWarning, NoActiveTask
from flowrecord.events import State
from flowrecord.recorder import (
    RunHandle,
    TaskHandle,
    check_drift,
    current_run,
    current_task,
    end_run,
    end_task,
    flush,
    log_artifact,
    log_dataset,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    record_validation,
    run,
    set_tags,
    shutdown,
    start_run,
    start_task,
    task,
    validate,
)

__version__ = "0.1.0"

__all__ = [
    "FlowrecordError",
    "FlowrecordWarning",
    "NoActiveTask",
    "RunHandle",
    "State",
    "TaskHandle",
    "__version__",
    "check_drift",
    "current_run",
    "current_task",
    "end_run",
    "end_task",
    "flush",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "record_validation",
    "run",
    "set_tags",
    "shutdown",
    "start_run",
    "start_task",
    "task",
    "validate",
]
