"""How flowrecord's events read in MLflow's vocabulary: keys, statuses, datasets, series.

Pure translation, no network: the MLflow backend calls these to turn an event
into metric points, tags and dataset entities, then sends them. Keeping them
apart makes the mapping easy to read (and to test) in one place. MLflow is
imported inside the functions that build its entities, never at import time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

    from flowrecord.events import DatasetEvent, State, SystemUsageEvent, ValidationEvent

__all__ = [
    "MAX_PARAM_VALUE",
    "MAX_TAG_VALUE",
    "MetricRow",
    "dataset_digest",
    "dataset_input",
    "experiment_name",
    "mlflow_key",
    "run_status",
    "system_metric_rows",
    "timestamp_ms",
    "truncate",
    "validation_metric_rows",
    "validation_tags",
]

#: MLflow's limits on one value (mlflow/utils/validation.py).
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
_MAX_DIGEST = 36
_MAX_INPUT_TAG_VALUE = 500
_MAX_SOURCE = 65535
_MAX_SCHEMA = 1048575
_MAX_PROFILE = 16777215

#: (key, value, timestamp in ms, step) of one metric point.
MetricRow = tuple[str, float, int, int]

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_TEMPLATE_FIELDS = re.compile(r"{([^{}]*)}")


def mlflow_key(name: str) -> str:
    """*name* as MLflow accepts it for a metric, param or tag key.

    MLflow allows letters, digits, ``_ - . : /`` and spaces, and treats keys as
    file paths (no empty, ``.`` or ``..`` segment). Anything else becomes ``_``.
    """
    cleaned = _BAD_KEY_CHARS.sub("_", name)
    parts = [p if p not in (".", "..") else "_" for p in cleaned.split("/") if p]
    key = "/".join(parts) or "_"
    return key[:MAX_KEY]


def experiment_name(template: str, *, orchestrator: str, pipeline: str) -> str:
    """The MLflow experiment of a pipeline: *template* with ``{pipeline}`` and ``{orchestrator}``.

    :raises ValueError: the template names another field.
    """
    check_template(template)
    return template.format(pipeline=pipeline, orchestrator=orchestrator)[:500]


def check_template(template: str) -> None:
    """Refuse an experiment template with fields other than ``{pipeline}``/``{orchestrator}``."""
    unknown = {f for f in _TEMPLATE_FIELDS.findall(template)} - {"pipeline", "orchestrator"}
    if unknown:
        raise ValueError(
            f"experiment template {template!r} uses {sorted(unknown)}; "
            "only {pipeline} and {orchestrator} are known"
        )
    if not template.strip():
        raise ValueError("experiment template must not be empty")


def run_status(state: State | str) -> str:
    """MLflow's terminal status for a flowrecord final state.

    ``succeeded`` is FINISHED; ``failed`` and ``retrying`` (the attempt failed)
    are FAILED; ``skipped`` and ``incomplete`` (never reported an outcome) are
    KILLED.
    """
    value = str(getattr(state, "value", state))
    if value == "succeeded":
        return "FINISHED"
    if value in ("failed", "retrying"):
        return "FAILED"
    return "KILLED"


def timestamp_ms(ts: float) -> int:
    """Seconds since the epoch as MLflow's milliseconds (deterministic for one event)."""
    return round(ts * 1000)


def truncate(text: str, limit: int) -> str:
    """*text* cut to *limit* characters, marked when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 14] + "...[truncated]"


def _json(value: Any) -> str:
    return json.dumps(_finite(value), default=str, separators=(",", ":"), sort_keys=True)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------


def dataset_digest(fingerprint: str | None) -> str:
    """MLflow's dataset digest (at most 36 characters) for a flowrecord fingerprint.

    ``xxh3:<32 hex>`` becomes its 32 hex digits (the whole hash); a dataset that
    could not be fingerprinted has digest ``unknown``.
    """
    if not fingerprint:
        return "unknown"
    if len(fingerprint) <= _MAX_DIGEST:
        return fingerprint
    return fingerprint.rsplit(":", 1)[-1][:_MAX_DIGEST]


def _source(event: DatasetEvent) -> tuple[str, str]:
    """MLflow's (source_type, source JSON) for where a dataset lives."""
    uri = event.uri
    if not uri:
        # An in-memory frame: MLflow calls datasets built in code "code" datasets.
        return "code", _json({"tags": {"flowrecord.task_id": event.task_id or ""}})
    scheme = urlparse(uri).scheme
    if not scheme or scheme == "file" or len(scheme) == 1:  # a path (or a drive letter)
        return "local", _json({"uri": uri})
    return scheme, _json({"uri": uri})


def dataset_input(event: DatasetEvent) -> DatasetInput:
    """A dataset event as an MLflow dataset input of the task's run.

    Schema is MLflow's ``mlflow_colspec`` JSON (types as flowrecord names them),
    the profile holds row count, size, the full fingerprint and the column
    statistics. MLflow has no dataset outputs, so outputs are inputs with
    context ``output`` (tag ``mlflow.data.context``).
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source_type, source = _source(event)
    schema = _json(
        {
            "mlflow_colspec": [
                {
                    "name": str(c.get("name")),
                    "type": str(c.get("type")),
                    "required": not c.get("nullable", True),
                }
                for c in event.schema
            ]
        }
    )
    if len(schema) > _MAX_SCHEMA:
        schema = _json({"mlflow_colspec": [], "truncated": True, "columns": len(event.schema)})
    profile_body: dict[str, Any] = {
        "num_rows": event.row_count,
        "size_bytes": event.size_bytes,
        "fingerprint": event.fingerprint,
        "data_type": event.data_type,
        "columns": dict(event.profile.get("columns", {})) if event.profile else {},
        "warnings": list(event.warnings),
    }
    profile = _json(profile_body)
    if len(profile) > _MAX_PROFILE:
        profile_body["columns"] = {}
        profile_body["warnings"] = [*event.warnings, "column profile too large for MLflow"]
        profile = _json(profile_body)
    tags = [
        InputTag(key="mlflow.data.context", value=event.role),
        InputTag(key="flowrecord.role", value=event.role),
    ]
    if event.fingerprint:
        tags.append(
            InputTag(
                key="flowrecord.fingerprint",
                value=truncate(event.fingerprint, _MAX_INPUT_TAG_VALUE),
            )
        )
    dataset = Dataset(
        name=event.name[:500],
        digest=dataset_digest(event.fingerprint),
        source_type=source_type,
        source=source[:_MAX_SOURCE],
        schema=schema,
        profile=profile,
    )
    return DatasetInput(dataset=dataset, tags=tags)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _validation_prefix(event: ValidationEvent) -> str:
    return mlflow_key(f"validation/{event.dataset_name}/{event.validator}")


def validation_tags(event: ValidationEvent) -> dict[str, str]:
    """Tags a validation result sets on its run: outcome per dataset and validator."""
    base = mlflow_key(f"flowrecord.validation.{event.dataset_name}.{event.validator}")
    tags = {base: "passed" if event.passed else "failed"}
    if event.schema_name:
        tags[mlflow_key(f"{base}.schema")] = truncate(event.schema_name, MAX_TAG_VALUE)
    if event.error:
        tags[mlflow_key(f"{base}.error")] = truncate(event.error, MAX_TAG_VALUE)
    return tags


def validation_metric_rows(event: ValidationEvent) -> list[MetricRow]:
    """``validation/<dataset>/<validator>/passed`` (1 or 0) and ``.../failure_count``."""
    prefix = _validation_prefix(event)
    ts = timestamp_ms(event.ts)
    return [
        (mlflow_key(f"{prefix}/passed"), 1.0 if event.passed else 0.0, ts, 0),
        (mlflow_key(f"{prefix}/failure_count"), float(event.failure_count), ts, 0),
    ]


# ---------------------------------------------------------------------------
# system usage
# ---------------------------------------------------------------------------


def _numbers(record: Mapping[str, Any], skip: tuple[str, ...]) -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            yield str(key), float(value)


def system_metric_rows(event: SystemUsageEvent) -> list[MetricRow]:
    """System usage as MLflow system metrics (MLflow's own ``system/`` prefix).

    The time series becomes ``system/cpu_percent``, ``system/rss_bytes`` and
    ``system/gpu_<i>_<field>`` with the sample index as step and the sample
    time as timestamp; the summary (peaks, means) becomes ``system/<key>`` and
    ``system/gpu_<i>_<key>`` at the time the task ended.
    """
    rows: list[MetricRow] = []
    for step, sample in enumerate(event.samples):
        t = sample.get("t")
        ts = timestamp_ms(float(t)) if isinstance(t, int | float) else timestamp_ms(event.ts)
        for key, value in _numbers(sample, ("t",)):
            rows.append((mlflow_key(f"system/{key}"), value, ts, step))
        for j, gpu in enumerate(sample.get("gpus") or ()):
            index = gpu.get("index", j)
            for key, value in _numbers(gpu, ("index",)):
                rows.append((mlflow_key(f"system/gpu_{index}_{key}"), value, ts, step))
    ts = timestamp_ms(event.ts)
    summary = event.summary
    for key, value in _numbers(summary, ("samples_kept", "interval_s")):
        rows.append((mlflow_key(f"system/{key}"), value, ts, 0))
    for j, gpu in enumerate(summary.get("gpus") or ()):
        index = gpu.get("index", j)
        for key, value in _numbers(gpu, ("index",)):
            rows.append((mlflow_key(f"system/gpu_{index}_{key}"), value, ts, 0))
    return rows
