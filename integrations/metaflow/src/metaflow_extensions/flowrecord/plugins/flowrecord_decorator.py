"""``@flowrecord`` and ``@flowrecord_base``: Metaflow's entry point into flowrecord.

The step decorator follows Metaflow's task hooks and hands each to
:class:`flowrecord_metaflow.recording.TaskRecording`; the flow decorator puts a
``@flowrecord`` on every step that has none, the way ``--with flowrecord`` does
from the command line. Metaflow imports this module while it loads its plugins,
so it imports nothing heavy and keeps every hook from failing the user's step.

Example::

    from metaflow import FlowSpec, step, flowrecord, flowrecord_base

    @flowrecord_base
    class TrainFlow(FlowSpec):
        @flowrecord(card=True)
        @step
        def start(self):
            ...
"""

from __future__ import annotations

import logging
from typing import Any

from metaflow.decorators import FlowDecorator, StepDecorator
from metaflow.exception import MetaflowException

log = logging.getLogger("flowrecord")

_DEFAULTS = {"card": False, "validate": None, "policy": None}


class FlowrecordStepDecorator(StepDecorator):
    """Record every task of this step in flowrecord (and, with ``card=True``, as a card).

    Parameters
    ----------
    card : bool, default False
        Attach a Metaflow card (id ``flowrecord``) with the task's metrics,
        datasets, validations and system usage. Rendering costs seconds per task.
    validate : Dict[str, schema], optional
        Artifacts to validate after the step body, e.g. ``{"train_df": TrainSchema}``;
        a schema is a pandera schema or model, or ``"module:Name"`` naming one.
    policy : str, optional
        What a failed validation does: ``record`` (default), ``warn`` or ``fail``
        (the step fails, also when the validation cannot run).
    """

    name = "flowrecord"
    defaults = dict(_DEFAULTS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings: Any = None
        self._recording: Any = None

    # -- in every process: the flow is loaded --------------------------------

    def step_init(
        self,
        flow: Any,
        graph: Any,
        step_name: str,
        decorators: list[Any],
        environment: Any,
        flow_datastore: Any,
        logger: Any,
    ) -> None:
        from flowrecord_metaflow.recording import StepSettings

        try:
            self._settings = StepSettings.from_attributes(
                self.attributes, validate_inherited=bool(self.statically_defined)
            )
        except ValueError as exc:
            raise MetaflowException(f"@flowrecord on step *{step_name}*: {exc}") from exc
        node = graph[step_name]
        self._is_start = node.type == "start" or step_name == "start"
        self._is_end = node.type == "end"
        if self._settings.card:
            _attach_card(decorators)

    # -- in the launching process: the run ------------------------------------

    def runtime_init(self, flow: Any, graph: Any, package: Any, run_id: str) -> None:
        try:
            from flowrecord_metaflow.recording import open_run

            open_run(flow.name, str(run_id), tags=_run_tags(flow))
        except Exception as exc:
            log.warning("flowrecord: could not open the run: %s", exc)

    def runtime_finished(self, exception: BaseException | None) -> None:
        try:
            from flowrecord_metaflow.recording import close_run

            metadata = None
            try:
                metadata = self.system_ctx.metadata
            except Exception:
                metadata = None
            close_run(exception, metadata=metadata)
        except Exception as exc:
            log.warning("flowrecord: could not close the run: %s", exc)

    # -- in the task process: one task ----------------------------------------

    def task_pre_step(
        self,
        step_name: str,
        task_datastore: Any,
        metadata: Any,
        run_id: str,
        task_id: str,
        flow: Any,
        graph: Any,
        retry_count: int,
        max_user_code_retries: int,
        ubf_context: Any,
        inputs: Any,
    ) -> None:
        try:
            from flowrecord_metaflow.recording import StepSettings, TaskRecording

            settings = self._settings or StepSettings.from_attributes(
                self.attributes, validate_inherited=bool(self.statically_defined)
            )
            self._recording = TaskRecording(settings)
            self._recording.start(
                flow=flow,
                step=step_name,
                run_id=run_id,
                task_id=task_id,
                retry_count=retry_count,
                inputs=list(inputs or []),
                output=task_datastore,
                is_start_step=getattr(self, "_is_start", step_name == "start"),
                is_end_step=getattr(self, "_is_end", step_name == "end"),
            )
        except Exception as exc:
            log.warning("flowrecord: could not start recording step %s: %s", step_name, exc)

    def task_post_step(
        self,
        step_name: str,
        flow: Any,
        graph: Any,
        retry_count: int,
        max_user_code_retries: int,
    ) -> None:
        if self._recording is None:
            return
        try:
            self._recording.step_completed(flow, graph)
        except Exception as exc:
            # Imported only here: a step that passes pays no import for them.
            from flowrecord.collectors.validation import ValidationFailed
            from flowrecord_metaflow.recording import ValidationNotRun

            if isinstance(exc, ValidationFailed | ValidationNotRun):
                raise  # the errors flowrecord raises on purpose: policy "fail"
            log.warning("flowrecord: after step %s: %s", step_name, exc)

    def task_exception(
        self,
        exception: BaseException,
        step_name: str,
        flow: Any,
        graph: Any,
        retry_count: int,
        max_user_code_retries: int,
    ) -> None:
        if self._recording is None:
            return None
        try:
            self._recording.step_failed(flow, exception)
        except Exception as exc:
            log.warning("flowrecord: on failure of step %s: %s", step_name, exc)
        return None  # never claim the exception: @catch and Metaflow decide

    def task_finished(
        self,
        step_name: str,
        flow: Any,
        graph: Any,
        is_task_ok: bool,
        retry_count: int,
        max_user_code_retries: int,
    ) -> None:
        recording, self._recording = self._recording, None
        if recording is None:
            return
        try:
            recording.finish(
                is_task_ok=bool(is_task_ok),
                retry_count=int(retry_count),
                max_user_code_retries=int(max_user_code_retries or 0),
            )
        except Exception as exc:
            log.warning("flowrecord: could not finish recording step %s: %s", step_name, exc)
        if recording.card is not None and is_task_ok:
            _fill_card(recording)


class FlowrecordFlowDecorator(FlowDecorator):
    """Record every step of this flow: ``@flowrecord`` on each step that has none.

    Takes the same arguments as ``@flowrecord`` (``card``, ``validate``,
    ``policy``), applied to every step; a step's own ``@flowrecord(...)`` wins.
    """

    name = "flowrecord_base"
    defaults = dict(_DEFAULTS)

    def flow_init(
        self,
        flow: Any,
        graph: Any,
        environment: Any,
        flow_datastore: Any,
        metadata: Any,
        logger: Any,
        echo: Any,
        options: Any,
    ) -> None:
        from flowrecord_metaflow.recording import StepSettings

        try:
            StepSettings.from_attributes(self.attributes)
        except ValueError as exc:
            raise MetaflowException(f"@flowrecord_base: {exc}") from exc
        for step in flow:
            if any(deco.name == FlowrecordStepDecorator.name for deco in step.decorators):
                continue
            # inserted_by: Metaflow does not pass such a decorator on to task
            # processes with --with; each process's flow_init attaches it again.
            step.decorators.append(
                FlowrecordStepDecorator(
                    attributes=dict(self.attributes),
                    statically_defined=False,
                    inserted_by=[self.name],
                )
            )


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _run_tags(flow: Any) -> dict[str, str]:
    tags = {"metaflow.flow": flow.name}
    try:
        from metaflow.util import get_username

        user = get_username()
        if user:
            tags["metaflow.user"] = str(user)
    except Exception:
        pass
    return tags


def _attach_card(decorators: list[Any]) -> None:
    """Put a blank ``@card(id="flowrecord")`` after this decorator, once."""
    from metaflow.plugins import STEP_DECORATORS

    from flowrecord_metaflow.card import CARD_ID

    if any(d.name == "card" and d.attributes.get("id") == CARD_ID for d in decorators):
        return
    card_cls = next(d for d in STEP_DECORATORS if d.name == "card")
    card = card_cls(
        attributes={"type": "blank", "id": CARD_ID},
        statically_defined=False,
        inserted_by=[FlowrecordStepDecorator.name],
    )
    card.external_init()
    # Metaflow is iterating over this very list to call step_init: the card,
    # appended after us, gets its own step_init next, and its task_finished
    # (which renders) runs after ours (which fills it).
    decorators.append(card)


def _fill_card(recording: Any) -> None:
    try:
        from metaflow import current

        from flowrecord_metaflow.card import CARD_ID, card_components

        task_id = recording.task.task_id if recording.task is not None else ""
        current.card[CARD_ID].extend(card_components(recording.card.card(task_id)))  # type: ignore[attr-defined]
    except Exception as exc:
        log.warning("flowrecord: could not fill the card: %s", exc)
