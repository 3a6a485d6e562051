"""Native Airflow constructs for data validation: an operator and a TaskFlow decorator.

Both hand the frame and the pandera schema to :func:`flowrecord.validate`, which
records the result (checks, failure count, a sample of failing rows, the
frame's fingerprint) against the current task. With policy ``fail`` a failed
validation fails the task with :class:`~airflow.sdk.exceptions.AirflowFailException`
(no retry: the same data would fail again), its message naming the failing
checks.

Promotion gates and retraining schedules will live in ``flowrecord_airflow.lifecycle``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from airflow.sdk import BaseOperator

from flowrecord_airflow.adapter import dataset_name

__all__ = ["ValidateDataOperator", "validated"]

F = TypeVar("F", bound=Callable[..., Any])


def _validate(frame: object, schema: object, name: str, policy: str) -> Any:
    from airflow.sdk.exceptions import AirflowFailException

    from flowrecord import recorder
    from flowrecord.collectors.validation import ValidationFailed

    try:
        return recorder.validate(frame, schema, name=name, policy=policy)
    except ValidationFailed as exc:
        raise AirflowFailException(f"data validation failed: {exc}") from exc


class ValidateDataOperator(BaseOperator):
    """Validate a data frame against a pandera schema, and record the result.

    :param data: the frame to validate: an upstream task's output (an XCom
        reference such as ``make_frame()`` or ``op.output``) or a callable
        taking no argument that returns the frame.
    :param schema: a pandera ``DataFrameSchema`` or ``DataFrameModel``.
    :param policy: ``fail`` (default: a failed validation fails this task),
        ``warn`` or ``record``.
    :param dataset: the name the result is recorded under; by default the
        name of the upstream output (``<dag_id>.<task_id>``) or, for a
        callable, of this task.

    .. code-block:: python

        frame = make_frame()
        ValidateDataOperator(task_id="check_frame", data=frame, schema=schema)
    """

    template_fields: Sequence[str] = ("data",)
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        data: Any,
        schema: Any,
        policy: str = "fail",
        dataset: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from flowrecord.collectors.validation import check_policy

        # A callable stays out of the template field: Airflow's templater would call
        # it with (context, jinja_env); ours is called with no argument at execute.
        self._producer = data if callable(data) and not hasattr(data, "operator") else None
        self.data = None if self._producer is not None else data
        self.schema = schema
        self.policy = check_policy(policy)
        self.dataset = dataset
        # The upstream task's id, kept before rendering replaces the reference by its value.
        upstream = getattr(getattr(data, "operator", None), "task_id", None)
        self._source = (upstream, getattr(data, "key", None)) if upstream else None

    def execute(self, context: Any) -> dict[str, Any]:
        """Validate the frame; return ``{"passed": ..., "failure_count": ...}``."""
        from flowrecord import recorder

        frame = self._producer() if self._producer is not None else self.data
        dag_id = context["dag"].dag_id
        if self.dataset:
            name = self.dataset
        elif self._source is not None:
            name = dataset_name(dag_id, self._source[0], self._source[1])
        else:
            name = dataset_name(dag_id, self.task_id)
        try:
            recorder.log_dataset(frame, name=name, role="input")
        except Exception as exc:  # recording fails open; the validation below still runs
            self.log.warning("flowrecord: could not record the input dataset: %s", exc)
        result = _validate(frame, self.schema, name, self.policy)
        return {"passed": bool(result.passed), "failure_count": int(result.failure_count)}


def validated(schema: Any, *, policy: str = "fail", dataset: str | None = None) -> Callable[[F], F]:
    """Validate what a TaskFlow task returns against a pandera *schema*, and record it.

    Put it under ``@task``, next to the function::

        @task
        @validated(schema=orders_schema, policy="fail")
        def load_orders() -> pd.DataFrame: ...

    :param policy: ``fail`` (default: a failed validation fails the task),
        ``warn`` or ``record``.
    :param dataset: the name the result is recorded under; by default the
        task's output dataset, ``<dag_id>.<task_id>``.
    :raises TypeError: applied above ``@task`` instead of below it.
    """
    from flowrecord.collectors.validation import check_policy

    checked_policy = check_policy(policy)

    def decorate(fn: F) -> F:
        if hasattr(fn, "override") and hasattr(fn, "expand"):
            raise TypeError(
                "@validated wraps the task's function: put it below @task, "
                "as in @task / @validated(schema=...) / def fn(): ..."
            )
        if not callable(fn):
            raise TypeError(f"@validated needs a function, not {type(fn).__name__}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            _validate(result, schema, dataset or _own_dataset_name(), checked_policy)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _own_dataset_name() -> str:
    from airflow.sdk import get_current_context

    context = get_current_context()
    return dataset_name(context["dag"].dag_id, context["ti"].task_id)
