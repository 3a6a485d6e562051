"""Promotion gates and retraining policies in Airflow's own terms.

flowrecord's :class:`~flowrecord.lifecycle.PromotionGate` and
:class:`~flowrecord.lifecycle.RetrainPolicy` decide; this module only puts them
where an Airflow user looks for them:

- **the gate is a branching operator**, :class:`PromotionGateOperator`. It applies
  the gate to the candidate version (moving ``champion`` only when every check
  passed), pushes the decision to XCom and, like any branch operator, skips the
  deployment tasks downstream of it when the candidate is refused: the DAG run
  still succeeds, and the record shows why (the decision is recorded under the
  gate task) and what did not run (the deploy task, skipped). A gate that cannot
  be loaded, or a missing version, fails the task before anything moves.
  ``block=True`` fails the task on refusal instead of branching.
- **the retraining policy is the training DAG's schedule**: :func:`retrain_schedule`
  compiles the policy's ``cron`` into a ``CronTriggerTimetable`` (UTC) and its
  new-data, drift and metric-decay triggers into the Asset
  ``flowrecord://retrain/<model>`` (:func:`retrain_asset`); with both, an
  ``AssetOrTimeSchedule``. :class:`RetrainCheckOperator`, in a small watcher DAG
  (:func:`retrain_check_dag`), evaluates the policy against the record and emits
  an event of that Asset, its ``extra`` carrying the reasons, only when a data
  or metric trigger fired; otherwise it skips itself and emits nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, BaseBranchOperator, BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable

    from flowrecord.lifecycle import GateDecision, PromotionGate, RetrainDecision, RetrainPolicy

__all__ = [
    "PromotionGateOperator",
    "PromotionRefused",
    "RetrainCheckOperator",
    "retrain_asset",
    "retrain_check_dag",
    "retrain_schedule",
]

_RETURN_KEY = "return_value"  # Airflow's XCom key for what a task returns
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _resolve(reference: str) -> Any:
    """The object ``"package.module:NAME"`` names (``NAME`` may be dotted)."""
    from flowrecord.lifecycle.references import resolve_reference

    return resolve_reference(reference)


def _check_reference(what: str, value: str) -> None:
    if not _REFERENCE.match(value):
        raise ValueError(f"{what}={value!r} must be written 'package.module:NAME'")


# ---------------------------------------------------------------------------
# promotion gate
# ---------------------------------------------------------------------------


class PromotionRefused(AirflowFailException):
    """A ``PromotionGateOperator(block=True)`` refused the candidate: the task fails, no retry."""

    def __init__(self, decision: GateDecision) -> None:
        self.decision = decision
        lines = "\n".join(f"  {reason}" for reason in decision.failures)
        super().__init__(
            f"gate {decision.gate!r} refused {decision.model} version {decision.version}:\n{lines}"
        )


def _candidate(value: Any) -> str | None:
    """The rendered ``version``: a version string, or None when there is none."""
    if isinstance(value, Mapping):  # the whole output of the task that registered it
        value = value.get("version")
    elif value is not None and not isinstance(value, str | int):
        value = getattr(value, "version", value)  # a ModelVersion
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        # Jinja renders a missing XCom as "None"
        return None if text in ("", "None") else text
    return None


class PromotionGateOperator(BaseBranchOperator):
    """Apply a promotion gate to a candidate model version; deploy only if it passed.

    The gate judges the candidate and, only when every check passed, moves the
    ``champion`` alias to it (the old champion becomes ``previous``). The
    decision is recorded by flowrecord under this task, pushed to XCom as the
    task's return value (a dict: ``passed``, ``applied``, ``failures``,
    ``checks``...), and decides the branch: a refused candidate skips the
    deployment tasks, and the DAG run still succeeds.

    .. code-block:: python

        version = register()  # a task returning {"version": "7", ...}
        gate = PromotionGateOperator(
            task_id="gate", gate="gates:CHURN_GATE", version=version, deploy_task_ids=["deploy"]
        )
        gate >> [deploy(), notify()]  # notify runs either way

    :param gate: a :class:`~flowrecord.lifecycle.PromotionGate`, ``"module:NAME"``
        naming one (imported when the task runs), or a function of the task's
        context returning one (a gate whose bootstrap needs evaluation data that
        an upstream task pushed: ``lambda context: churn_gate(context["ti"].xcom_pull(...))``).
    :param version: the candidate (templated): a version string or int, an
        upstream output holding one (an XComArg, or a dict with ``"version"``),
        or a Jinja expression such as ``"{{ ti.xcom_pull('register')['version'] }}"``.
        ``"latest"`` or ``"@challenger"`` name one through the registry.
    :param deploy_task_ids: the tasks directly downstream that run only when the
        candidate is promoted. Default: every task directly downstream (except
        ``refused_task_ids``).
    :param refused_task_ids: tasks directly downstream that run only when the
        candidate is refused (a notification, say).
    :param block: fail this task with :class:`PromotionRefused` on refusal
        instead of branching (nothing downstream runs; the run fails).

    Fails closed: a gate that cannot be imported or built, a missing version, a
    branch that names no direct downstream task, all fail the task (no retry)
    before the gate runs, and a refusal never moves an alias.
    """

    template_fields: Sequence[str] = ("version",)
    ui_color = "#fde9c9"

    def __init__(
        self,
        *,
        gate: PromotionGate | str | Callable[[Any], PromotionGate],
        version: Any,
        deploy_task_ids: str | Iterable[str] | None = None,
        refused_task_ids: str | Iterable[str] = (),
        block: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from flowrecord.lifecycle import PromotionGate

        if isinstance(gate, str):
            _check_reference("gate", gate)
        elif not isinstance(gate, PromotionGate) and not callable(gate):
            raise TypeError(
                "gate must be a PromotionGate, 'module:NAME' naming one, or a function of the "
                f"task context returning one; got {type(gate).__name__}"
            )
        if not isinstance(block, bool):
            raise TypeError(f"block must be True or False, not {block!r}")
        self.gate = gate
        self.version = version
        self.deploy_task_ids = None if deploy_task_ids is None else _ids(deploy_task_ids)
        self.refused_task_ids = _ids(refused_task_ids)
        both = set(self.deploy_task_ids or ()) & set(self.refused_task_ids)
        if both:
            raise ValueError(f"tasks both in deploy_task_ids and refused_task_ids: {sorted(both)}")
        self.block = block

    def _load_gate(self, context: Any) -> PromotionGate:
        from flowrecord.lifecycle import PromotionGate

        try:
            obj = _resolve(self.gate) if isinstance(self.gate, str) else self.gate
            if not isinstance(obj, PromotionGate) and callable(obj):
                obj = obj(context)
        except Exception as exc:
            raise AirflowFailException(
                f"the promotion gate could not be loaded, so nothing is promoted: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(obj, PromotionGate):
            raise AirflowFailException(
                f"gate {self.gate!r} gave a {type(obj).__name__}, not a PromotionGate: "
                "nothing is promoted"
            )
        return obj

    def _followed(self, promoted: bool) -> list[str]:
        """The direct downstream tasks that run after this decision."""
        downstream = set(self.downstream_task_ids)
        refused = set(self.refused_task_ids)
        deploy = downstream - refused if self.deploy_task_ids is None else set(self.deploy_task_ids)
        return sorted(downstream - (refused if promoted else deploy))

    def _check_branches(self) -> None:
        named = set(self.deploy_task_ids or ()) | set(self.refused_task_ids)
        unknown = named - set(self.downstream_task_ids)
        if unknown:
            raise AirflowFailException(
                f"{sorted(unknown)} must be directly downstream of {self.task_id} to be "
                "deployed or skipped by its decision: nothing is promoted"
            )

    def choose_branch(self, context: Any) -> list[str]:
        """Apply the gate; the tasks to follow (the rest directly downstream is skipped)."""
        return self._followed(self.decide(context).applied)

    def decide(self, context: Any) -> GateDecision:
        """Apply the gate to the candidate and push the decision to XCom; raise if blocked."""
        self._check_branches()  # a misnamed branch must fail before any alias moves
        version = _candidate(self.version)
        if version is None:
            raise AirflowFailException(
                f"no candidate version to judge (version rendered as {self.version!r}): "
                "nothing is promoted"
            )
        gate = self._load_gate(context)
        decision = gate.apply(version)
        verdict = "promoted" if decision.applied else "refused"
        self.log.info(
            "flowrecord gate %r: %s version %s %s",
            decision.gate,
            decision.model,
            decision.version,
            verdict,
        )
        for reason in decision.reasons:
            self.log.info("  %s", reason)
        if self.do_xcom_push:
            # A branch that skips tasks ends execute() with an exception, which
            # Airflow turns into skips; what execute returns is then never pushed.
            context["ti"].xcom_push(key=_RETURN_KEY, value=decision.as_dict())
        if self.block and not decision.applied:
            raise PromotionRefused(decision)
        return decision

    def execute(self, context: Any) -> None:
        """Decide, then skip the tasks this decision does not follow."""
        self.do_branch(context, self.choose_branch(context))
        # the decision is in XCom already; returning nothing avoids pushing it twice


def _ids(value: str | Iterable[str]) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise TypeError(f"task ids must be non-empty strings, not {item!r}")
    return items


# ---------------------------------------------------------------------------
# retraining policy
# ---------------------------------------------------------------------------

#: flowrecord's cron macros that Airflow spells differently.
_MACROS = {"@annually": "@yearly", "@midnight": "@daily"}


def _policy(policy: Any) -> RetrainPolicy:
    from flowrecord.lifecycle.references import as_retrain_policy

    if isinstance(policy, str):
        _check_reference("policy", policy)
    return as_retrain_policy(policy, _resolve)


def retrain_asset(policy: RetrainPolicy | str) -> Asset:
    """The Asset whose events start a retrain of *policy*'s model: ``flowrecord://retrain/<model>``.

    >>> from flowrecord.lifecycle import RetrainPolicy
    >>> retrain_asset(RetrainPolicy(model="churn", new_data=["features"])).uri
    'flowrecord://retrain/churn'
    """
    model = _policy(policy).model
    return Asset(
        name=f"flowrecord.retrain.{model}",
        uri=f"flowrecord://retrain/{quote(model, safe='')}",
        group="flowrecord",
    )


def _has_data_triggers(policy: RetrainPolicy) -> bool:
    return bool(policy.new_data or policy.drift or policy.metric_decay)


def retrain_schedule(
    policy: RetrainPolicy | str, *, asset: Asset | None = None
) -> Asset | CronTriggerTimetable | AssetOrTimeSchedule:
    """Compile *policy* into the ``schedule=`` of the DAG that trains its model.

    - ``cron`` alone -> ``CronTriggerTimetable(cron, timezone="UTC")``;
    - ``new_data``, ``drift`` or ``metric_decay`` alone -> the Asset of
      :func:`retrain_asset`, whose events :class:`RetrainCheckOperator` emits;
    - both -> ``AssetOrTimeSchedule``: a run at each tick, and one for each event.

    >>> from flowrecord.lifecycle import DriftTrigger, RetrainPolicy
    >>> s = retrain_schedule(RetrainPolicy(model="churn", cron="0 3 * * 1", drift=DriftTrigger("f")))
    >>> type(s).__name__, s.timetable.expression, s.asset_condition.uri
    ('AssetOrTimeSchedule', '0 3 * * 1', 'flowrecord://retrain/churn')

    :param asset: the Asset to wait for instead of :func:`retrain_asset`.
    """
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    p = _policy(policy)
    timetable = None
    if p.cron:
        timetable = CronTriggerTimetable(_MACROS.get(p.cron, p.cron), timezone="UTC")
    if not _has_data_triggers(p):
        assert timetable is not None  # a policy declares at least one trigger
        return timetable
    event = asset if asset is not None else retrain_asset(p)
    if timetable is None:
        return event
    return AssetOrTimeSchedule(timetable=timetable, assets=event)


class RetrainCheckOperator(BaseOperator):
    """Evaluate a retraining policy; emit its Asset event when a data or metric trigger fired.

    Every trigger's evaluation is recorded by flowrecord under this task
    (``retrain:*`` validations, with their evidence). When a ``new_data``,
    ``drift`` or ``metric_decay`` trigger fired, the task succeeds and emits an
    event of :func:`retrain_asset` (its outlet), whose ``extra`` holds the
    ``model``, ``policy``, the fired ``triggers`` and their ``reasons``: the
    training DAG, scheduled with :func:`retrain_schedule`, runs on it. When none
    fired the task skips itself, and no event is emitted. A due ``cron`` tick
    emits nothing: the training DAG's timetable runs it.

    .. code-block:: python

        RetrainCheckOperator(task_id="check_retrain", policy="policies:CHURN_POLICY")

    :param policy: a :class:`~flowrecord.lifecycle.RetrainPolicy` or ``"module:NAME"``.
    :param data: current data by dataset name (templated: upstream outputs), judged
        instead of the latest recorded versions.
    :param asset: the Asset to emit instead of :func:`retrain_asset`.
    :raises ValueError: the policy has only a ``cron``: there is nothing to watch.

    Never put it with an event to emit inside the DAG its Asset schedules: every
    run would start the next. The decision (``RetrainDecision.as_dict()``) is
    pushed to XCom either way.
    """

    template_fields: Sequence[str] = ("data",)
    ui_color = "#dbe9f6"

    def __init__(
        self,
        *,
        policy: RetrainPolicy | str,
        data: Mapping[str, Any] | None = None,
        asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.policy = _policy(policy)
        if not _has_data_triggers(self.policy):
            raise ValueError(
                f"retrain policy {self.policy.name!r} has no new_data, drift or metric_decay "
                "trigger: nothing to watch (its cron is the training DAG's timetable)"
            )
        self.data = data
        self.asset = asset if asset is not None else retrain_asset(self.policy)
        if not any(_same_asset(self.asset, o) for o in self.outlets):
            self.add_outlets([self.asset])

    def execute(self, context: Any) -> dict[str, Any]:
        """Check the policy; emit the event (return the decision) or skip."""
        if self.data is not None and not isinstance(self.data, Mapping):
            raise AirflowFailException(
                f"data must render to a mapping of dataset name to data, not {type(self.data).__name__}"
            )
        decision = self.policy.check(data=dict(self.data) if self.data else None)
        fired = _fired(decision)
        for reason in decision.reasons:
            self.log.info("flowrecord retrain %s: %s", self.policy.model, reason)
        for error in decision.errors:
            self.log.warning("flowrecord retrain %s: not evaluated: %s", self.policy.model, error)
        value = decision.as_dict()
        if not fired:
            if self.do_xcom_push:
                context["ti"].xcom_push(key=_RETURN_KEY, value=value)
            raise AirflowSkipException(
                f"no retrain of {self.policy.model} due: no data or metric trigger fired"
            )
        reasons = [t.reason for t in decision.event_triggers]
        context["outlet_events"][self.asset].extra = {
            "model": self.policy.model,
            "policy": self.policy.name,
            "triggers": list(fired),
            "reasons": reasons,
            "checked_at": decision.checked_at,
        }
        self.log.info(
            "flowrecord retrain %s due (%s): event of %s",
            self.policy.model,
            ", ".join(fired),
            self.asset.uri,
        )
        return value


def _fired(decision: RetrainDecision) -> tuple[str, ...]:
    """The data and metric triggers that fired, as ``"drift:churn_features"``."""
    return tuple(t.label for t in decision.event_triggers)


def _same_asset(a: Any, b: Any) -> bool:
    return isinstance(b, Asset) and (a.name, a.uri) == (b.name, b.uri)


def retrain_check_dag(
    policy: RetrainPolicy | str,
    *,
    dag_id: str | None = None,
    schedule: Any = "@hourly",
    data: Mapping[str, Any] | None = None,
    start_date: datetime | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """A small DAG that watches *policy*: one :class:`RetrainCheckOperator` task, ``check_retrain``.

    Assign it in a DAG file, beside the training DAG scheduled with
    :func:`retrain_schedule`::

        churn_retrain_check = retrain_check_dag(CHURN_POLICY, schedule="@hourly")

    :param dag_id: default ``<model>_retrain_check``.
    :param schedule: how often to evaluate the policy (any Airflow schedule).
    :param data: passed to the operator.
    :param dag_kwargs: any other argument of ``DAG`` (``tags``, ``default_args``...).
    """
    from airflow.sdk import DAG

    p = _policy(policy)
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("tags", ["flowrecord", "retrain"])
    dag_kwargs.setdefault(
        "doc_md",
        f"Evaluates the retraining policy {p.name!r} of model {p.model!r} and emits "
        f"`{retrain_asset(p).uri}` when new data, drift or metric decay calls for a retrain.",
    )
    with DAG(
        dag_id=dag_id or f"{re.sub(r'[^A-Za-z0-9_.-]', '_', p.model)}_retrain_check",
        schedule=schedule,
        start_date=start_date or datetime(2024, 1, 1, tzinfo=UTC),
        **dag_kwargs,
    ) as dag:
        RetrainCheckOperator(task_id="check_retrain", policy=p, data=data)
    return dag
