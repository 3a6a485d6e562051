"""Promotion gates and retraining policies in Metaflow's own terms.

flowrecord's :class:`~flowrecord.lifecycle.PromotionGate` and
:class:`~flowrecord.lifecycle.RetrainPolicy` decide; this module only puts them
where a Metaflow user looks for them:

- **the gate is a step decorator**, ``@flowrecord_gate(gate=..., version_from=...)``
  (or the :func:`promote` call inside a step body). Before the step body runs it
  applies the gate to the candidate version, keeps the decision as the artifact
  ``self.gate_decision`` (and in flowrecord's record) and sets
  ``self.promotion`` to ``"promoted"`` or ``"refused"``, which the body hands to
  Metaflow's switch: ``self.next({"promoted": self.deploy, "refused":
  self.keep_champion}, condition="promotion")``. A refused candidate never
  reaches the deploy step, and the record shows that step as skipped. Where a
  switch cannot be deployed (AWS Step Functions), ``block=True`` fails the gate
  step instead with :class:`PromotionRefused`, so nothing after it runs.
- **the retraining policy is a schedule and a trigger**: :func:`retrain_decorators`
  compiles the policy's ``cron`` into ``@schedule(cron=...)`` (in the six-field
  dialect of AWS EventBridge, which Argo Workflows reads the first five fields
  of) and its new-data, drift and metric-decay triggers into
  ``@trigger(event="flowrecord.retrain.<model>")``; ``@flowrecord_retrain(policy)``
  puts both on a flow. :func:`check_retrain`, run wherever new data lands (or in
  a small scheduled watcher flow), evaluates the policy against the record and
  publishes that event when a data trigger fired. Both decorators are inert in a
  local ``run``.

:func:`artifact_datasets` names the recorded versions of a step's input
artifacts, for :func:`flowrecord.lifecycle.register_model_version`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metaflow import UserStepDecorator
from metaflow.exception import MetaflowException

if TYPE_CHECKING:
    from flowrecord.events import DatasetEvent
    from flowrecord.lifecycle import GateDecision, PromotionGate, RetrainDecision, RetrainPolicy

__all__ = [
    "PROMOTED",
    "REFUSED",
    "PromotionRefused",
    "RetrainCheck",
    "RetrainDecorators",
    "artifact_datasets",
    "check_retrain",
    "eventbridge_cron",
    "flowrecord_gate",
    "flowrecord_retrain",
    "promote",
    "retrain_decorators",
    "retrain_event_name",
]

log = logging.getLogger("flowrecord")

#: The value of ``self.promotion`` after a gate moved ``champion`` to the candidate.
PROMOTED = "promoted"
#: The value of ``self.promotion`` after a gate refused the candidate.
REFUSED = "refused"

# ---------------------------------------------------------------------------
# promotion gate
# ---------------------------------------------------------------------------


class PromotionRefused(MetaflowException):
    """A ``@flowrecord_gate(block=True)`` refused the candidate: the step fails here."""

    headline = "Promotion refused"

    def __init__(self, decision: GateDecision) -> None:
        self.decision = decision
        lines = "\n".join(f"  {reason}" for reason in decision.failures)
        super().__init__(
            f"gate {decision.gate!r} refused {decision.model} version {decision.version}:\n{lines}"
        )


def _resolve(reference: str) -> object:
    from flowrecord_metaflow.recording import resolve_schema

    return resolve_schema(reference)


def _gate(gate: Any, flow: Any) -> PromotionGate:
    from flowrecord.lifecycle import PromotionGate

    obj = _resolve(gate) if isinstance(gate, str) else gate
    if not isinstance(obj, PromotionGate) and callable(obj):
        obj = obj(flow)  # a factory: the gate needs something the flow holds
    if not isinstance(obj, PromotionGate):
        raise TypeError(
            f"gate must be a PromotionGate, a 'module:NAME' naming one, or a function of the "
            f"flow returning one; got {type(obj).__name__}"
        )
    return obj


def _version(version: Any) -> str | None:
    if version is None:
        return None
    if isinstance(version, bool):
        raise TypeError(f"a model version is a str or int, not {version!r}")
    if isinstance(version, int | str):
        return str(version)
    inner = getattr(version, "version", None)  # a ModelVersion
    if isinstance(inner, str):
        return inner
    raise TypeError(f"a model version is a str, int or ModelVersion, not {type(version).__name__}")


def promote(
    flow: Any,
    gate: PromotionGate | str | Callable[[Any], PromotionGate],
    version: Any = None,
    *,
    evaluation: Any = None,
    artifact: str = "gate_decision",
    outcome: str = "promotion",
) -> GateDecision:
    """Apply *gate* to candidate *version* from inside a step; keep the decision on the flow.

    The gate judges and, only when every check passed, moves ``champion`` to the
    candidate; the decision is recorded by flowrecord (``gate_decisions``, under
    this task) either way. On the flow, ``self.<artifact>`` becomes the decision
    as a dict (``passed``, ``applied``, ``failures``, ``checks``...) and
    ``self.<outcome>`` becomes :data:`PROMOTED` or :data:`REFUSED`, ready for
    Metaflow's switch::

        @step
        def gate(self):
            promote(self, CHURN_GATE, self.model_version)
            self.next({"promoted": self.deploy, "refused": self.keep_champion},
                      condition="promotion")

    :param gate: a :class:`~flowrecord.lifecycle.PromotionGate`, ``"module:NAME"``
        naming one, or a function of the flow returning one (a gate whose
        bootstrap needs evaluation data the flow holds).
    :param version: the candidate: a version string or int, a ``ModelVersion``, or
        None for the gate's own ``candidate`` (``"latest"`` by default).
    :param evaluation: per-example arrays for the gate's bootstrap, as
        :meth:`PromotionGate.apply` takes them.
    :raises TypeError: *gate* or *version* is not one of those (the step fails:
        a gate that cannot be applied promotes nothing).
    """
    decision = _gate(gate, flow).apply(_version(version), evaluation=evaluation)
    setattr(flow, artifact, decision.as_dict())
    setattr(flow, outcome, PROMOTED if decision.applied else REFUSED)
    return decision


def _artifact_name(what: str, value: Any, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.isidentifier():
        raise MetaflowException(f"@flowrecord_gate: {what} must name an artifact, not {value!r}")
    return value


class flowrecord_gate(UserStepDecorator):  # lower case: used as @flowrecord_gate, like Metaflow's
    """Apply a promotion gate before this step's body; the body branches on its outcome.

    Example::

        from flowrecord_metaflow import flowrecord_gate

        @flowrecord_gate(gate="gates:CHURN_GATE", version_from="model_version")
        @step
        def gate(self):
            self.next({"promoted": self.deploy, "refused": self.keep_champion},
                      condition="promotion")

    Parameters
    ----------
    gate : PromotionGate, str or callable
        The gate, ``"module:NAME"`` naming it, or a function of the flow returning
        it (``lambda flow: churn_gate(flow.eval_df)``).
    version_from : str, optional
        The artifact holding the candidate version (what ``register_model_version``
        returned, or its ``.version``). Default: the gate's ``candidate`` ("latest").
    evaluation_from : str, optional
        The artifact holding per-example arrays for the gate's bootstrap.
    block : bool, default False
        Fail the step with ``PromotionRefused`` when the gate refuses (for
        schedulers without Metaflow's switch, such as AWS Step Functions).
    artifact : str, default "gate_decision"
        Where the decision is kept on the flow, as a dict.
    outcome : str, default "promotion"
        Where ``"promoted"`` or ``"refused"`` is kept on the flow.

    The flowrecord task must be open when the gate runs (``@flowrecord`` on the
    step, ``@flowrecord_base`` or ``--with flowrecord``), so that the decision is
    recorded under it; Metaflow runs this decorator after every ``@flowrecord``.
    """

    def init(
        self,
        gate: Any = None,
        version_from: str | None = None,
        evaluation_from: str | None = None,
        block: Any = False,
        artifact: str = "gate_decision",
        outcome: str = "promotion",
    ) -> None:
        from flowrecord_metaflow.recording import _as_bool, _is_reference

        if gate is None:
            raise MetaflowException(
                "@flowrecord_gate needs gate=: a PromotionGate or 'module:NAME'"
            )
        if isinstance(gate, str) and not _is_reference(gate):
            raise MetaflowException(
                f"@flowrecord_gate: gate={gate!r} must be written 'module:NAME'"
            )
        self.gate = gate
        self.version_from = _artifact_name("version_from", version_from)
        self.evaluation_from = _artifact_name("evaluation_from", evaluation_from)
        self.artifact = _artifact_name("artifact", artifact, optional=False)
        self.outcome = _artifact_name("outcome", outcome, optional=False)
        try:
            self.block = _as_bool("block", block)
        except ValueError as exc:
            raise MetaflowException(f"@flowrecord_gate: {exc}") from exc

    def pre_step(self, step_name: str, flow: Any, inputs: Any = None) -> None:
        from flowrecord_metaflow.recording import current_recording

        if current_recording() is None:
            log.warning(
                "flowrecord: @flowrecord_gate on step %s: the step is not recorded (add "
                "@flowrecord_base or --with flowrecord); its decision is kept outside any task",
                step_name,
            )
        version = evaluation = None
        try:
            if self.version_from:
                version = getattr(flow, self.version_from)
            if self.evaluation_from:
                evaluation = getattr(flow, self.evaluation_from)
        except AttributeError as exc:
            raise MetaflowException(
                f"@flowrecord_gate on step *{step_name}*: no artifact to read: {exc}"
            ) from exc
        decision = promote(
            flow,
            self.gate,
            version,
            evaluation=evaluation,
            artifact=str(self.artifact),
            outcome=str(self.outcome),
        )
        verdict = PROMOTED if decision.applied else REFUSED
        print(
            f"flowrecord gate {decision.gate!r}: {decision.model} version {decision.version} {verdict}"
        )
        for reason in decision.reasons:
            print(f"  {reason}")
        if self.block and not decision.applied:
            raise PromotionRefused(decision)
        return None


def artifact_datasets(flow: Any, **roles: str | Sequence[str]) -> dict[str, list[DatasetEvent]]:
    """The recorded versions of this step's input artifacts, by role, for the registry.

    ``artifact_datasets(self, train=["churn_raw", "churn_features"], eval="eval_df")``
    loads each named artifact (if the step has not yet) and returns the dataset
    events flowrecord recorded for those reads: fingerprints of the exact data, to
    pass as ``register_model_version(..., datasets=...)``. Only artifacts of
    earlier steps qualify; one the step sets itself has no recorded version yet.

    :raises RuntimeError: the step is not recorded (no ``@flowrecord``).
    :raises ValueError: an artifact was set in this step, or does not exist.

    An artifact whose read could not be recorded (a backend failure) is left out
    with a warning; a promotion gate that requires its validations then refuses.
    """
    from flowrecord_metaflow.recording import current_recording

    recording = current_recording()
    tracker = getattr(recording, "tracker", None)
    if tracker is None:
        raise RuntimeError(
            "artifact_datasets needs the step to be recorded: add @flowrecord to it, "
            "@flowrecord_base to the flow, or run with --with flowrecord"
        )
    own = _own_vars(flow)
    out: dict[str, list[DatasetEvent]] = {}
    for role, names in roles.items():
        items = [names] if isinstance(names, str) else list(names)
        events = out.setdefault(role, [])
        for name in items:
            if name not in tracker.read_events:
                if name in own:
                    raise ValueError(
                        f"artifact {name!r} was set in this step: only artifacts of earlier "
                        "steps have a recorded version to register"
                    )
                try:
                    getattr(flow, name)  # the load is what records the read
                except AttributeError as exc:
                    raise ValueError(f"no artifact {name!r} to register: {exc}") from exc
            event = tracker.read_events.get(name)
            if event is None:
                log.warning("flowrecord: no recorded version of artifact %r to register", name)
                continue
            events.append(event)
    return out


def _own_vars(flow: Any) -> set[str]:
    try:
        return set(vars(flow))
    except TypeError:
        return set()


# ---------------------------------------------------------------------------
# retraining policy
# ---------------------------------------------------------------------------

_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _field_text(values: frozenset[int], lo: int, hi: int, names: Sequence[str] = ()) -> str:
    """One cron field: ``*``, or its values as ascending runs (``1-5,7``), named if *names*."""
    if values == frozenset(range(lo, hi + 1)):
        return "*"

    def label(value: int) -> str:
        return names[value] if names else str(value)

    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(label(a) if a == b else f"{label(a)}-{label(b)}" for a, b in runs)


def eventbridge_cron(expression: str) -> str:
    """A five-field cron expression (UTC) in the six-field dialect Metaflow's ``@schedule`` takes.

    ``@schedule(cron=...)`` hands the expression to AWS EventBridge (Step
    Functions) as it is and to Argo Workflows as its first five fields. Both read
    day names, and exactly one of day-of-month and day-of-week must be ``?``; a
    year field ends it. Weekdays are written as names, since EventBridge counts
    them from 1 (Sunday) where cron counts from 0.

    >>> eventbridge_cron("0 3 * * 1")
    '0 3 ? * MON *'
    >>> eventbridge_cron("*/30 6-18 1,15 * *")
    '0,30 6-18 1,15 * ? *'

    :raises ValueError: the expression is malformed, or restricts both the day of
        the month and the day of the week, which neither scheduler can express.
    """
    from flowrecord.lifecycle import RetrainPolicy

    schedule = RetrainPolicy(model="-", cron=expression).schedule
    assert schedule is not None
    minutes = _field_text(schedule.minutes, 0, 59)
    hours = _field_text(schedule.hours, 0, 23)
    months = _field_text(schedule.months, 1, 12)
    days = _field_text(schedule.days, 1, 31)
    weekdays = _field_text(schedule.weekdays, 0, 6, _DAY_NAMES)
    if days == "*" or weekdays == "*":
        if schedule.day_restricted and schedule.weekday_restricted:
            # cron's "either matches": with one side every day, every day matches
            dom, dow = "*", "?"
        elif weekdays == "*":
            dom, dow = days, "?"
        else:
            dom, dow = "?", weekdays
    else:
        raise ValueError(
            f"cron {expression!r} restricts both the day of the month and the day of the week; "
            "Metaflow's @schedule (EventBridge, Argo) takes one of them: split the policy in two"
        )
    return f"{minutes} {hours} {dom} {months} {dow} *"


def retrain_event_name(policy: RetrainPolicy | str) -> str:
    """The event a flow retraining *policy*'s model waits for: ``flowrecord.retrain.<model>``.

    >>> from flowrecord.lifecycle import RetrainPolicy
    >>> retrain_event_name(RetrainPolicy(model="churn", new_data=["features"]))
    'flowrecord.retrain.churn'
    """
    model = _policy(policy).model
    return "flowrecord.retrain." + re.sub(r"[^A-Za-z0-9_.-]", "_", model)


@dataclass(frozen=True, slots=True)
class RetrainDecorators:
    """The arguments of Metaflow's ``@schedule`` and ``@trigger`` for one retraining policy."""

    schedule: Mapping[str, Any] | None
    """``@schedule(**schedule)``: the policy's cron; None when it has none."""
    trigger: Mapping[str, Any] | None
    """``@trigger(**trigger)``: the event :func:`check_retrain` publishes; None when the
    policy has no data or metric trigger."""

    def apply(self, flow_class: type) -> type:
        """Put ``@schedule`` and ``@trigger`` on *flow_class*, as if written above it."""
        # Metaflow puts its decorators on the package while loading plugins.
        from metaflow import schedule, trigger  # type: ignore[attr-defined]

        if self.schedule is not None:
            flow_class = schedule(**self.schedule)(flow_class)
        if self.trigger is not None:
            flow_class = trigger(**self.trigger)(flow_class)
        return flow_class


def _policy(policy: Any) -> RetrainPolicy:
    from flowrecord.lifecycle.references import as_retrain_policy

    return as_retrain_policy(policy, _resolve)


def retrain_decorators(
    policy: RetrainPolicy | str, *, event: Any = None, timezone: str | None = None
) -> RetrainDecorators:
    """Compile *policy* into the arguments of Metaflow's ``@schedule`` and ``@trigger``.

    - ``cron`` -> ``@schedule(cron=eventbridge_cron(policy.cron))``;
    - ``new_data``, ``drift``, ``metric_decay`` -> ``@trigger(event=...)``, the
      event :func:`check_retrain` publishes when one of them fires.

    >>> from flowrecord.lifecycle import DriftTrigger, RetrainPolicy
    >>> p = RetrainPolicy(model="churn", cron="0 3 * * 1", drift=DriftTrigger("features"))
    >>> d = retrain_decorators(p)
    >>> dict(d.schedule), dict(d.trigger)
    ({'cron': '0 3 ? * MON *'}, {'event': 'flowrecord.retrain.churn'})

    :param policy: a :class:`~flowrecord.lifecycle.RetrainPolicy` or ``"module:NAME"``.
    :param event: the event name instead of :func:`retrain_event_name` (a string, or
        Metaflow's ``namespaced_event_name(...)`` for ``@project`` namespacing).
    :param timezone: ``@schedule``'s timezone (Argo only; Step Functions refuses
        one). The policy's cron is UTC: give ``"Etc/UTC"`` on an Argo whose
        controller runs in another zone.
    :raises ValueError: the cron cannot be expressed for Metaflow's schedulers.
    """
    p = _policy(policy)
    schedule: dict[str, Any] | None = None
    if p.cron:
        schedule = {"cron": eventbridge_cron(p.cron)}
        if timezone is not None:
            schedule["timezone"] = timezone
    trigger: dict[str, Any] | None = None
    if p.new_data or p.drift or p.metric_decay:
        trigger = {"event": event if event is not None else retrain_event_name(p)}
    return RetrainDecorators(schedule=schedule, trigger=trigger)


def flowrecord_retrain(
    policy: RetrainPolicy | str, *, event: Any = None, timezone: str | None = None
) -> Callable[[type], type]:
    """A flow decorator: the ``@schedule`` and ``@trigger`` that *policy* compiles to.

    Example::

        from flowrecord_metaflow import flowrecord_retrain

        @flowrecord_retrain("policies:CHURN_POLICY")   # @schedule + @trigger
        @flowrecord_base
        class ChurnFlow(FlowSpec):
            ...

    Same arguments as :func:`retrain_decorators`. The policy is read when the flow
    module is imported; a flow that already has ``@schedule`` or ``@trigger``
    gets Metaflow's duplicate-decorator error.
    """
    decorators = retrain_decorators(policy, event=event, timezone=timezone)
    return decorators.apply


@dataclass(frozen=True, slots=True)
class RetrainCheck:
    """A retraining policy, evaluated, and whether its event went out."""

    decision: RetrainDecision
    event: str
    """The event name (what the retraining flow's ``@trigger`` waits for)."""
    fired: tuple[str, ...] = field(default_factory=tuple)
    """The data and metric triggers that fired (``"drift:churn_features"``...): the
    event's reason. A cron that fired is ``@schedule``'s business, not the event's."""
    event_id: str | None = None
    """The id of the published event; None when nothing was published."""

    @property
    def published(self) -> bool:
        return self.event_id is not None


def check_retrain(
    policy: RetrainPolicy | str,
    *,
    data: Mapping[str, Any] | None = None,
    publish: bool = True,
    force: bool = False,
    event: str | None = None,
    url: str | None = None,
) -> RetrainCheck:
    """Evaluate *policy* against the record; publish its retrain event when a data trigger fired.

    The decision (every trigger with its reason) is recorded by flowrecord as
    ``retrain:*`` validations of the current task. The event is published with
    Metaflow's ``ArgoEvent`` inside a deployed Argo workflow, or anywhere with
    ``force=True`` (and ``url`` or ``METAFLOW_ARGO_EVENTS_WEBHOOK_URL``); its
    payload carries ``model``, ``policy``, ``triggers`` and ``reasons``. Locally
    it publishes nothing. Never run it with ``publish=True`` inside the flow the
    event triggers: every run would start the next.

    :param data: current data by dataset name, instead of the latest recorded
        versions (see :meth:`RetrainPolicy.check`).
    :raises metaflow.plugins.argo.argo_events.ArgoEventException: the event was due
        and could not be published (a watcher should fail loudly, not drop it).
    """
    p = _policy(policy)
    decision = p.check(data=data)
    name = event or retrain_event_name(p)
    fired = tuple(t.label for t in decision.event_triggers)
    event_id = None
    if publish and fired:
        if force or os.environ.get("ARGO_WORKFLOW_TEMPLATE"):
            from metaflow.integrations import ArgoEvent  # type: ignore[attr-defined]

            payload = {
                "model": p.model,
                "policy": p.name,
                "triggers": ",".join(fired),
                "reasons": " | ".join(decision.reasons)[:2000],
            }
            kwargs = {"url": url} if url else {}
            event_id = ArgoEvent(name, **kwargs).publish(payload, force=True, ignore_errors=False)
        else:
            log.info(
                "flowrecord: retrain due (%s); event %s not published outside a deployed "
                "Argo workflow (force=True publishes from here)",
                ", ".join(fired),
                name,
            )
    return RetrainCheck(decision=decision, event=name, fired=fired, event_id=event_id)
