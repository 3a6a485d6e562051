"""Translate a Metaflow task's life into flowrecord calls: the adapter behind ``@flowrecord``.

Metaflow runs every task in its own process and calls its step decorators'
hooks there: before the step (``task_pre_step``), after it succeeded
(``task_post_step``) or raised (``task_exception``), and once the task's
artifacts are persisted (``task_finished``). :class:`TaskRecording` follows
those hooks for one task: it opens the flowrecord run (Metaflow's run id is the
run key, so every task process joins the same run) and the task, records the
flow's Parameters, the step's artifact lineage and declared validations, and
closes the task with Metaflow's verdict, flushing before the process exits.
The launching process (``python flow.py run``) opens and closes the run itself
(:func:`open_run`, :func:`close_run`), and on a ``resume`` it also records the
tasks Metaflow cloned from the original run.

A step that chooses a branch (Metaflow's switch, ``self.next({...}, condition=...)``)
also records the branches it did not take, as ``skipped`` tasks: a deploy step
that a refused promotion gate kept from running shows in the record as skipped,
the way Airflow and Dagster report theirs.

Recording fails open: every step here logs and carries on when flowrecord or a
backend misbehaves; the one error that reaches the user's step is a validation
whose policy is ``fail``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from flowrecord import recorder
from flowrecord._frozen import FACTORY, frozen, set_field
from flowrecord.events import State
from flowrecord_metaflow.lineage import ArtifactTracker

__all__ = [
    "ORCHESTRATOR",
    "StepSettings",
    "TaskRecording",
    "ValidationNotRun",
    "close_run",
    "current_recording",
    "open_run",
    "skipped_branches",
    "task_name",
]

log = logging.getLogger("flowrecord")

ORCHESTRATOR = "metaflow"
POLICIES = ("record", "warn", "fail")


@frozen
class StepSettings:
    """What ``@flowrecord(...)`` asks of a step, checked once when the flow loads."""

    __slots__ = ("card", "policy", "validate", "validate_inherited")

    card: bool
    """Render a Metaflow card with the task's record (costs seconds per task)."""
    validate: Mapping[str, object]
    """Artifact name -> pandera schema, DataFrameModel, or ``"module:Name"`` naming one
    (imported only when the step validates: pandera stays out of the other tasks,
    and ``--with flowrecord:validate=...`` can name schemas from the command line)."""
    policy: str | None
    """``record``, ``warn`` or ``fail``; None: flowrecord's configured default."""
    validate_inherited: bool
    """Validate an artifact the step only inherited. True for a ``@flowrecord`` written
    on the step; False when it is on every step (``@flowrecord_base``, ``--with``),
    where only the steps that set or read the artifact validate it."""

    # Written out rather than made by @dataclass(frozen=True, slots=True), which cost
    # every task process ~1 ms at import; @frozen gives it that dataclass's behaviour.
    def __init__(
        self,
        card: bool = False,
        validate: Mapping[str, object] = FACTORY,
        policy: str | None = None,
        validate_inherited: bool = True,
    ) -> None:
        set_field(self, "card", card)
        set_field(self, "validate", {} if validate is FACTORY else validate)
        set_field(self, "policy", policy)
        set_field(self, "validate_inherited", validate_inherited)

    @classmethod
    def from_attributes(
        cls, attributes: Mapping[str, Any], *, validate_inherited: bool = True
    ) -> StepSettings:
        """Settings from decorator attributes (as written in code or passed by ``--with``).

        :raises ValueError: an attribute has a value flowrecord cannot use.
        """
        card = _as_bool("card", attributes.get("card", False))
        validate = attributes.get("validate") or {}
        if not isinstance(validate, Mapping):
            raise ValueError(
                "validate must map artifact names to pandera schemas, "
                f"not {type(validate).__name__}"
            )
        for name, schema in validate.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"validate: {name!r} is not an artifact name")
            if isinstance(schema, str) and not _is_reference(schema):
                raise ValueError(
                    f"validate: {name!r} names its schema as {schema!r}; "
                    "a schema given by name is written 'module:Name'"
                )
        policy = attributes.get("policy")
        if policy is not None:
            normalised = str(policy).strip().lower()
            if normalised not in POLICIES:
                raise ValueError(
                    f"unknown validation policy {policy!r}; expected one of {', '.join(POLICIES)}"
                )
            policy = normalised
        return cls(
            card=card,
            validate=dict(validate),
            policy=policy,
            validate_inherited=validate_inherited,
        )

    def effective_policy(self) -> str:
        """The policy validations of this step run under."""
        if self.policy is not None:
            return self.policy
        from flowrecord.config import load_config

        return load_config().validation_policy


def _is_reference(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return (
        bool(sep)
        and all(p.isidentifier() for p in module.split("."))
        and all(p.isidentifier() for p in attr.split("."))
    )


def resolve_schema(schema: object) -> object:
    """The schema itself, or the object a ``"module:Name"`` reference names."""
    if not isinstance(schema, str):
        return schema
    import importlib

    module_name, _, attr = schema.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _as_bool(name: str, value: object) -> bool:
    # ``--with flowrecord:card=true`` arrives as JSON (True); Metaflow passes a
    # decorator on to task processes as ``card=True``, which arrives as a string.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", ""):
        return False
    raise ValueError(f"{name} must be True or False, not {value!r}")


def task_name(step: str, foreach_indices: Sequence[int]) -> tuple[str, int | None]:
    """The flowrecord task name and map index of a Metaflow task.

    A task of a (single) foreach is the step with its index as map index; in a
    nested foreach the outer indices join the name, so that every task of a
    run keeps its own identity.

    >>> task_name("train", [])
    ('train', None)
    >>> task_name("train", [3])
    ('train', 3)
    >>> task_name("inner", [1, 4])
    ('inner[1]', 4)
    """
    if not foreach_indices:
        return step, None
    outer = "".join(f"[{i}]" for i in foreach_indices[:-1])
    return f"{step}{outer}", int(foreach_indices[-1])


def _foreach_indices(flow: Any) -> list[int]:
    # The indices of every enclosing foreach. ``flow.foreach_stack()`` would also
    # load each level's foreach list to find the value; the frames' indices are
    # enough, and ``flow.index`` (public) is the innermost one when frames are absent.
    try:
        frames = getattr(flow, "_foreach_stack", None) or []
        indices = [int(frame.index) for frame in frames]
        if indices:
            return indices
    except Exception:
        pass
    try:
        index = flow.index
    except Exception:
        index = None
    return [] if index is None else [int(index)]


def _parameters(flow: Any) -> tuple[list[str], dict[str, object]]:
    """Names and values of the flow's Parameters (and Configs), as the task sees them."""
    from metaflow import current

    names = list(getattr(current, "parameter_names", None) or [])
    kinds: dict[str, object] = {}
    with contextlib.suppress(Exception):
        # Which parameters are IncludeFiles: their value is a whole file, which
        # is data, not a setting; the record says it was included, not what.
        kinds = {name: param for name, param in flow._get_parameters()}
    values: dict[str, object] = {}
    for name in names:
        param = kinds.get(name)
        if type(param).__name__ == "IncludeFile":
            values[name] = "<IncludeFile>"
            continue
        try:
            values[name] = getattr(flow, name)
        except Exception as exc:
            values[name] = f"<unreadable: {type(exc).__name__}>"
    return names, values


# ---------------------------------------------------------------------------
# the launching process: the run
# ---------------------------------------------------------------------------

_runs: dict[str, recorder.RunHandle] = {}
_runs_lock = threading.Lock()


def open_run(flow_name: str, run_id: str, tags: Mapping[str, Any] | None = None) -> None:
    """Open the run in the launching process (once, however many steps call it)."""
    with _runs_lock:
        if run_id in _runs:
            return
        try:
            _runs[run_id] = recorder.start_run(
                flow_name, str(run_id), orchestrator=ORCHESTRATOR, tags=tags, activate=False
            )
        except Exception as exc:
            log.warning("flowrecord: could not open run %s/%s: %s", flow_name, run_id, exc)


def close_run(exception: BaseException | None, *, metadata: Any = None) -> None:
    """Close the runs this launching process opened: failed if Metaflow reports an exception."""
    with _runs_lock:
        handles = list(_runs.values())
        _runs.clear()
    for handle in handles:
        try:
            if _is_resume():
                record_cloned_tasks(handle, metadata=metadata)
            state = State.SUCCEEDED if exception is None else State.FAILED
            recorder.end_run(handle, state=state, error=exception)
            recorder.flush()
        except Exception as exc:
            log.warning("flowrecord: could not close run %s: %s", handle.run_key, exc)


def _is_resume() -> bool:
    # Metaflow's launch hooks do not say which command runs; the command line does.
    return "resume" in sys.argv[1:]


def record_cloned_tasks(run: recorder.RunHandle, *, metadata: Any = None) -> int:
    """Record the tasks a ``resume`` cloned from the original run; returns how many.

    They did not execute in this run, so they get no lineage or usage of their
    own: each is a succeeded task whose ``cloned_from`` attribute names the
    original task, whose record holds the rest.
    """
    import metaflow

    if metadata is not None:
        with contextlib.suppress(Exception):
            metaflow.metadata(metadata.metadata_str())
    pathspec = f"{run.pipeline}/{run.run_key}"
    flow_run = metaflow.Run(pathspec, _namespace_check=False)
    count = 0
    origin_runs: set[str] = set()
    for step in flow_run:
        for task in step:
            meta = task.metadata_dict
            origin_task = meta.get("origin-task-id")
            if not origin_task:
                continue
            origin_run = meta.get("origin-run-id")
            if origin_run:
                origin_runs.add(origin_run)
            try:
                stack = task["_foreach_stack"].data or []
                indices = [int(frame.index) for frame in stack]
            except Exception:
                indices = [] if task.index is None else [int(task.index)]
            name, map_index = task_name(step.id, indices)
            handle = recorder.start_task(
                name,
                run=run,
                map_index=map_index,
                attributes={
                    "flow": run.pipeline,
                    "run_id": run.run_key,
                    "step": step.id,
                    "task_id": task.id,
                    "pathspec": task.pathspec,
                    "cloned_from": f"{run.pipeline}/{origin_run}/{step.id}/{origin_task}",
                    "origin_run_id": origin_run,
                },
                sample_system=False,
                activate=False,
            )
            recorder.end_task(handle, state=State.SUCCEEDED)
            count += 1
    if origin_runs:
        # Joining the run again is how a tag reaches it from outside any task.
        recorder.start_run(
            run.pipeline,
            run.run_key,
            orchestrator=ORCHESTRATOR,
            tags={"metaflow.origin_run_id": ",".join(sorted(origin_runs))},
            activate=False,
        )
    return count


# ---------------------------------------------------------------------------
# a task process: one task
# ---------------------------------------------------------------------------

#: The name the card listener is registered under, beside the backends.
CARD_LISTENER = "metaflow-card"

# A task process runs one task; user code in the step body (artifact_datasets)
# reaches its recording through this.
_current: TaskRecording | None = None


def current_recording() -> TaskRecording | None:
    """The recording of the task this process is running, if ``@flowrecord`` records it."""
    return _current


class TaskRecording:
    """The record of one Metaflow task attempt, fed by the step decorator's hooks."""

    def __init__(self, settings: StepSettings) -> None:
        self.settings = settings
        self.run: recorder.RunHandle | None = None
        self.task: recorder.TaskHandle | None = None
        self.tracker: ArtifactTracker | None = None
        self.exception: BaseException | None = None
        self.state: State | None = None
        self.is_end_step = False
        self.card: Any = None
        """The :class:`~flowrecord_metaflow.card.TaskCardCollector` listening, with ``card=True``."""
        self.skipped: list[str] = []
        """Steps a switch step did not branch to (recorded as skipped if the task succeeds)."""
        self._condition: str | None = None
        self._indices: list[int] = []

    def start(
        self,
        *,
        flow: Any,
        step: str,
        run_id: str,
        task_id: str,
        retry_count: int,
        inputs: Sequence[Any],
        output: Any,
        is_start_step: bool,
        is_end_step: bool,
    ) -> None:
        """Open run and task, record Parameters, start watching artifact loads."""
        from metaflow import current

        global _current
        _current = self
        self.is_end_step = is_end_step
        flow_name = flow.name
        self.run = recorder.start_run(flow_name, str(run_id), orchestrator=ORCHESTRATOR)
        if self.settings.card:
            # Joins the live runtime before the task opens, so the card sees all of
            # it; never spooled: nothing could replay into a card once rendered.
            from flowrecord_metaflow.card import TaskCardCollector

            self.card = TaskCardCollector()
            _quietly(_listen, self.card)
        names, values = _parameters(flow)
        if is_start_step and values:
            # Parameters are the run's settings: recorded once on the run, by the
            # start step, and again on every task so each task's record stands alone.
            recorder.log_params(values)
        indices = _foreach_indices(flow)
        name, map_index = task_name(step, indices)
        attributes: dict[str, Any] = {
            "flow": flow_name,
            "run_id": str(run_id),
            "step": step,
            "task_id": str(task_id),
            "pathspec": f"{flow_name}/{run_id}/{step}/{task_id}",
            "retry_count": int(retry_count),
        }
        if indices:
            attributes["foreach_index"] = indices[-1]
        if len(indices) > 1:
            attributes["foreach_indices"] = indices
        origin = getattr(current, "origin_run_id", None)
        if origin:
            attributes["origin_run_id"] = str(origin)
        user = getattr(current, "username", None)
        if user:
            attributes["username"] = str(user)
        self.task = recorder.start_task(
            name,
            run=self.run,
            try_number=int(retry_count) + 1,
            map_index=map_index,
            attributes=attributes,
        )
        if values:
            recorder.log_params(values)
        self.tracker = ArtifactTracker(flow_name, str(run_id), step, str(task_id), exclude=names)
        self.tracker.watch(inputs, output)

    def step_completed(self, flow: Any, graph: Any = None) -> None:
        """The step body returned: run declared validations, note what it left on ``self``.

        With *graph*, a switch step also notes the branches it did not take (the
        condition's value is on ``self`` only until Metaflow persists it).

        :raises flowrecord.collectors.validation.ValidationFailed: a validation
            failed under the ``fail`` policy (this fails the step, as asked).
        """
        if self.tracker is not None:
            _quietly(self.tracker.keep_candidates, flow)
        if graph is not None and self.task is not None:
            step = str(self.task.attributes.get("step", self.task.name))
            self.skipped = _quietly(skipped_branches, graph, step, flow) or []
            self._condition = getattr(graph[step], "condition", None) if self.skipped else None
            self._indices = _foreach_indices(flow)
        self._validate(flow)

    def step_failed(self, flow: Any, exception: BaseException) -> None:
        """The step body (or a validation) raised: keep the error for the verdict."""
        self.exception = exception
        if self.tracker is not None:
            _quietly(self.tracker.keep_candidates, flow)

    def _validate(self, flow: Any) -> None:
        if not self.settings.validate:
            return
        from flowrecord.collectors.validation import ValidationFailed

        policy = self.settings.effective_policy()
        touched = set(_vars(flow))
        for name, schema in self.settings.validate.items():
            if not self.settings.validate_inherited and name not in touched:
                continue  # on every step: only where the step set or read it
            try:
                obj = getattr(flow, name)
            except AttributeError:
                if self.settings.validate_inherited:
                    self._cannot_validate(name, policy, LookupError("no such artifact"))
                continue
            try:
                recorder.validate(obj, resolve_schema(schema), name=name, policy=policy)
            except ValidationFailed:
                raise
            except Exception as exc:
                self._cannot_validate(name, policy, exc)

    def _cannot_validate(self, name: str, policy: str, exc: BaseException) -> None:
        # Under "fail" the user asked that bad data stop here: a check that cannot
        # run stops it too (fail closed). Otherwise recording fails open.
        step = self.task.name if self.task else "?"
        message = f"@flowrecord could not validate {name!r} in step {step}: {exc}"
        if policy == "fail":
            raise ValidationNotRun(message) from exc
        log.warning("flowrecord: %s", message)

    def finish(self, *, is_task_ok: bool, retry_count: int, max_user_code_retries: int) -> State:
        """Record what the step wrote and close the task with Metaflow's verdict; flush.

        A switch step that succeeded also records the branches it did not take.
        """
        if self.tracker is not None:
            _quietly(self.tracker.record_writes)
        if is_task_ok and self.skipped:
            _quietly(self._record_skipped)
        if is_task_ok:
            state = State.SUCCEEDED
        elif retry_count < max_user_code_retries:
            state = State.RETRYING
        else:
            state = State.FAILED
        self.state = state
        if self.task is not None:
            if is_task_ok and self.exception is not None:
                # @catch handled it: the flow goes on, the record keeps the error.
                _quietly(recorder.set_tags, {"metaflow.caught_exception": "true"})
            recorder.end_task(self.task, state=state, error=self.exception, flush=False)
        if self.is_end_step and is_task_ok and self.run is not None:
            # Schedulers without a launching process of ours (Argo, Step Functions)
            # still close the run; locally the launcher closes it again, later.
            recorder.end_run(self.run, state=State.SUCCEEDED)
        recorder.flush()
        return state

    def _record_skipped(self) -> None:
        assert self.task is not None and self.run is not None
        for step in self.skipped:
            name, map_index = task_name(step, self._indices)
            handle = recorder.start_task(
                name,
                run=self.run,
                map_index=map_index,
                attributes={
                    "flow": self.task.attributes.get("flow"),
                    "run_id": self.task.attributes.get("run_id"),
                    "step": step,
                    "skipped_by": self.task.attributes.get("pathspec"),
                    "condition": self._condition,
                },
                sample_system=False,
                activate=False,
            )
            recorder.end_task(handle, state=State.SKIPPED, flush=False)


def skipped_branches(graph: Any, step: str, flow: Any) -> list[str]:
    """The steps a switch step *step* did not branch to (empty for any other step).

    Metaflow's switch (``self.next({"a": self.x, "b": self.y}, condition="var")``)
    runs the step named by the value of ``self.var``; the others never start. A
    switch inside a loop (one of its branches leads back to it) may choose
    differently next time round, so nothing is said to be skipped there.
    """
    node = graph[step]
    if getattr(node, "type", None) != "split-switch":
        return []
    cases: Mapping[Any, str] = getattr(node, "switch_cases", None) or {}
    condition = getattr(node, "condition", None)
    if not cases or not condition:
        return []
    chosen = cases.get(getattr(flow, condition, None))
    if chosen is None:
        return []
    targets = list(dict.fromkeys(cases.values()))
    if any(_reaches(graph, target, step) for target in targets):
        return []
    return [target for target in targets if target != chosen]


def _reaches(graph: Any, start: str, goal: str) -> bool:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(graph[name].out_funcs)
        except Exception:
            return True  # cannot tell: do not claim the branch was skipped
    return False


def _listen(collector: Any) -> None:
    recorder.register_backend(CARD_LISTENER, collector, spool=False)


class ValidationNotRun(RuntimeError):
    """A validation under policy ``fail`` could not run (no such artifact, a bad schema)."""


def _vars(obj: object) -> dict[str, Any]:
    try:
        return vars(obj)
    except TypeError:
        return {}


def _quietly(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        log.warning("flowrecord: %s failed: %s", getattr(fn, "__name__", fn), exc)
        return None
