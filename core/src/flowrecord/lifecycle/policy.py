"""Retraining policies: when should a model be trained again?

A :class:`RetrainPolicy` is plain declared data — a ``cron`` schedule, datasets
whose ``new_data`` should trigger a retrain, :class:`DriftTrigger` thresholds and
:class:`MetricDecayTrigger` floors — so that each integration can compile it to
its orchestrator's own form (an Airflow timetable or asset schedule, a Dagster
schedule and sensor, Metaflow ``@schedule``/``@trigger`` arguments). What is
framework-agnostic is deciding: :meth:`RetrainPolicy.check` evaluates every
trigger against the record and the registry and returns a
:class:`RetrainDecision` with each trigger's reason and evidence.

Each evaluated trigger is recorded as a validation whose validator is
``retrain:<trigger>`` (``retrain:cron``, ``retrain:new_data``, ``retrain:drift``,
``retrain:metric_decay``), ``schema_name`` the policy's name, and
``passed = not fired``: a "failing" retrain check means retraining is due. Its one
check entry carries the model, the reason and the evidence; :func:`trigger_history`
reads them back. Promotion gates ignore these validations: they judge a champion,
not data.

The triggers, precisely:

``cron``
    fires when a tick of the schedule (UTC) has passed since the latest version
    of the model was registered (or when it has no version yet).
``new_data``
    fires when the current fingerprint of a named dataset (the latest recorded
    version, or the object passed in ``data=``) is not among the champion's
    training fingerprints — unless some later version was already trained on it
    (that retrain happened; the gate refused it). Fires when there is no champion.
``drift``
    fires when PSI or KS of the current data against the profile of the
    champion's training data exceeds the trigger's thresholds
    (:func:`flowrecord.collectors.checks.check_drift`).
``metric_decay``
    fires when the latest recorded value of a monitored metric is below its
    floor (or above its ceiling), or NaN.

A trigger that cannot be evaluated (registry down, nothing recorded) does not
fire; its reason says why and :attr:`TriggerResult.error` is set.

>>> from flowrecord.lifecycle import RetrainPolicy, DriftTrigger, MetricDecayTrigger
>>> policy = RetrainPolicy(
...     model="churn",
...     cron="0 3 * * 1",
...     new_data=["features"],
...     drift=DriftTrigger("features", psi=0.2, ks=0.1),
...     metric_decay=MetricDecayTrigger("live_auc", floor=0.75),
... )
>>> policy.check().should_retrain  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from flowrecord.lifecycle._cron import CronSchedule
from flowrecord.lifecycle._evidence import (
    TRIGGER_VALIDATOR_PREFIX,
    dataset_by_fingerprint,
    latest_dataset,
    latest_metric,
    loads,
)
from flowrecord.lifecycle.registry import (
    CHAMPION,
    ModelNotFound,
    ModelRegistry,
    ModelVersion,
    RegistryUnavailable,
)

__all__ = [
    "DriftTrigger",
    "MetricDecayTrigger",
    "RetrainDecision",
    "RetrainPolicy",
    "TriggerResult",
    "trigger_history",
]


def _name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{what} must be a non-empty string, not {value!r}")
    return value


def _threshold(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    return float(value)


@dataclass(frozen=True, slots=True)
class DriftTrigger:
    """Retrain when *dataset* drifted from the champion's training data.

    :param dataset: the recorded dataset name to watch.
    :param psi: population stability index above which a column has drifted.
    :param ks: Kolmogorov-Smirnov distance above which a column has drifted.
    :param columns: compare only these columns (default: all numeric ones).
    """

    dataset: str
    psi: float = 0.2
    ks: float = 0.1
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _name("DriftTrigger.dataset", self.dataset)
        object.__setattr__(self, "psi", _threshold("psi", self.psi))
        object.__setattr__(self, "ks", _threshold("ks", self.ks))
        if self.columns is not None:
            if isinstance(self.columns, str):
                raise TypeError("columns must be a sequence of column names, not a string")
            object.__setattr__(self, "columns", tuple(self.columns))


@dataclass(frozen=True, slots=True)
class MetricDecayTrigger:
    """Retrain when the latest value of a monitored *metric* is past its bound.

    :param metric: metric key (as logged with ``flowrecord.log_metric``).
    :param floor: fire below this value (metrics where higher is better).
    :param ceiling: fire above this value (losses, error rates).
    :param pipeline: only values logged by runs of this pipeline.
    """

    metric: str
    floor: float | None = None
    ceiling: float | None = None
    pipeline: str | None = None

    def __post_init__(self) -> None:
        _name("MetricDecayTrigger.metric", self.metric)
        if (self.floor is None) == (self.ceiling is None):
            raise ValueError("MetricDecayTrigger needs exactly one of floor= or ceiling=")
        for attr in ("floor", "ceiling"):
            value = getattr(self, attr)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{attr} must be a finite number, not {value!r}")
        if self.pipeline is not None:
            _name("pipeline", self.pipeline)


@dataclass(frozen=True, slots=True)
class TriggerResult:
    """One trigger, evaluated."""

    trigger: str
    """``cron``, ``new_data``, ``drift`` or ``metric_decay``."""
    subject: str
    """The schedule, dataset or metric it watched."""
    fired: bool
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why the trigger could not be evaluated (it then does not fire)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "subject": self.subject,
            "fired": self.fired,
            "reason": self.reason,
            "evidence": dict(self.evidence),
            "error": self.error,
        }

    @property
    def label(self) -> str:
        """``"drift:churn_features"``: the trigger and what it watched."""
        return f"{self.trigger}:{self.subject}"

    def identity(self) -> dict[str, Any]:
        """What makes this firing the same firing on a later check: the data it saw
        (fingerprint), the champion it compared with, the metric point it read."""
        ev = dict(self.evidence or {})
        seen = ev.get("current")
        current: Mapping[str, Any] = seen if isinstance(seen, Mapping) else {}
        return {
            "trigger": self.trigger,
            "subject": self.subject,
            "fingerprint": current.get("fingerprint"),
            "champion": ev.get("champion"),
            "point": [ev.get("run_id"), ev.get("recorded_at")]
            if self.trigger == "metric_decay"
            else None,
        }


@dataclass(frozen=True, slots=True)
class RetrainDecision:
    """Whether to retrain, and why."""

    model: str
    policy: str
    should_retrain: bool
    reasons: tuple[str, ...]
    """One line per trigger: those that fired first."""
    evidence: Mapping[str, Any]
    """Per trigger (``"drift:features"``...): what it saw."""
    triggers: tuple[TriggerResult, ...]
    checked_at: float

    @property
    def errors(self) -> tuple[str, ...]:
        """Why some triggers could not be evaluated."""
        return tuple(f"{t.trigger} {t.subject}: {t.error}" for t in self.triggers if t.error)

    @property
    def event_triggers(self) -> tuple[TriggerResult, ...]:
        """The data and metric triggers that fired: what an orchestrator's event or
        sensor acts on (a due ``cron`` is the schedule's business)."""
        return tuple(t for t in self.triggers if t.fired and t.trigger != "cron")

    def event_key(self) -> str | None:
        """A stable key of the situation :attr:`event_triggers` describe, or None when
        none fired: the same new data, drift against the same champion or the same
        metric point give the same key on every check, so an orchestrator can ask
        for one run per situation rather than one per check."""
        fired = self.event_triggers
        if not fired:
            return None
        identity = json.dumps(
            {"model": self.model, "policy": self.policy, "fired": [t.identity() for t in fired]},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "policy": self.policy,
            "should_retrain": self.should_retrain,
            "reasons": list(self.reasons),
            "errors": list(self.errors),
            "checked_at": self.checked_at,
            "triggers": [t.as_dict() for t in self.triggers],
        }


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain *model*: any trigger that fires is reason enough.

    After construction ``new_data``, ``drift`` and ``metric_decay`` are always
    tuples (a single trigger may be given bare), so integrations can iterate.

    :param model: the registered model the policy keeps fresh.
    :param cron: a five-field cron expression or macro (``@daily``), UTC.
    :param new_data: dataset names whose new versions call for a retrain.
    :param drift: :class:`DriftTrigger` (or several).
    :param metric_decay: :class:`MetricDecayTrigger` (or several).
    """

    model: str
    name: str = "retrain"
    cron: str | None = None
    new_data: Sequence[str] = ()
    drift: DriftTrigger | Sequence[DriftTrigger] = ()
    metric_decay: MetricDecayTrigger | Sequence[MetricDecayTrigger] = ()
    champion_alias: str = CHAMPION

    def __post_init__(self) -> None:
        _name("model", self.model)
        _name("name", self.name)
        _name("champion_alias", self.champion_alias)
        set_ = object.__setattr__
        if self.cron is not None:
            CronSchedule(self.cron)  # a bad expression fails at declaration
        names = (self.new_data,) if isinstance(self.new_data, str) else tuple(self.new_data)
        for n in names:
            _name("new_data item", n)
        set_(self, "new_data", names)
        set_(self, "drift", _triggers("drift", self.drift, DriftTrigger))
        set_(self, "metric_decay", _triggers("metric_decay", self.metric_decay, MetricDecayTrigger))
        if not (self.cron or self.new_data or self.drift or self.metric_decay):
            raise ValueError(f"retrain policy {self.name!r} declares no trigger")

    @property
    def schedule(self) -> CronSchedule | None:
        """The parsed ``cron`` expression."""
        return CronSchedule(self.cron) if self.cron else None

    def check(
        self,
        *,
        now: datetime | float | None = None,
        data: Mapping[str, Any] | None = None,
        since: datetime | float | None = None,
        record: bool = True,
    ) -> RetrainDecision:
        """Evaluate every trigger and say whether to retrain.

        :param now: the time to evaluate ``cron`` at (default: now).
        :param data: current data by dataset name (a frame or table), used instead
            of the latest recorded version for ``new_data`` and ``drift``.
        :param since: for ``cron``: the last training (default: when the latest
            version of the model was registered).
        :param record: record each trigger's evaluation (``retrain:*`` validations).
        """
        from flowrecord import recorder

        checked_at = time.time()
        now_dt = _as_datetime(now) if now is not None else datetime.now(UTC)
        registry = ModelRegistry()
        recorder.flush()  # datasets and metrics logged moments ago must be readable
        ctx = _Context(self, registry, data or {})
        results: list[TriggerResult] = []
        if self.cron:
            results.append(ctx.cron(self.cron, now_dt, since))
        for name in self.new_data:
            results.append(ctx.new_data(name))
        for d in cast(tuple[DriftTrigger, ...], self.drift):  # a tuple since __post_init__
            results.append(ctx.drift(d))
        for m in cast(tuple[MetricDecayTrigger, ...], self.metric_decay):
            results.append(ctx.metric_decay(m))
        fired = [r for r in results if r.fired]
        decision = RetrainDecision(
            model=self.model,
            policy=self.name,
            should_retrain=bool(fired),
            reasons=tuple(r.reason for r in fired + [r for r in results if not r.fired]),
            evidence={f"{r.trigger}:{r.subject}": dict(r.evidence) for r in results},
            triggers=tuple(results),
            checked_at=checked_at,
        )
        if record:
            _record(self, results, ctx)
        return decision


def _triggers(what: str, value: Any, kind: type) -> tuple[Any, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, kind) else tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"{what} must hold {kind.__name__} objects, not {type(item).__name__}")
    return items


def _as_datetime(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


class _Context:
    """What the triggers of one check share: the champion, the store, given data."""

    def __init__(self, policy: RetrainPolicy, registry: ModelRegistry, data: Mapping[str, Any]):
        self.policy = policy
        self.registry = registry
        self.data = data
        self.store = registry.local_store()
        self.fingerprints: dict[str, str | None] = {}
        self._champion: tuple[ModelVersion | None, str | None] | None = None

    def champion(self) -> tuple[ModelVersion | None, str | None]:
        """(champion, error)."""
        if self._champion is None:
            try:
                self._champion = (
                    self.registry.champion(self.policy.model, self.policy.champion_alias),
                    None,
                )
            except (RegistryUnavailable, ModelNotFound) as exc:
                self._champion = (None, str(exc))
        return self._champion

    def _unavailable(self, trigger: str, subject: str, error: str) -> TriggerResult:
        return TriggerResult(
            trigger,
            subject,
            False,
            f"{trigger} {subject}: could not be evaluated: {error}",
            {},
            error,
        )

    # -- cron -------------------------------------------------------------------

    def cron(self, expression: str, now: datetime, since: Any) -> TriggerResult:
        schedule = CronSchedule(expression)
        tick = schedule.previous(now)
        evidence: dict[str, Any] = {
            "cron": expression,
            "now": now.timestamp(),
            "last_tick": tick.timestamp() if tick else None,
        }
        if since is not None:
            reference: float | None = _as_datetime(since).timestamp()
            basis = "the given time"
        else:
            try:
                versions = self.registry.versions(self.policy.model)
                latest = (
                    self.registry.get_version(self.policy.model, versions[-1]) if versions else None
                )
            except (RegistryUnavailable, ModelNotFound) as exc:
                return self._unavailable("cron", expression, str(exc))
            if latest is None:
                evidence["reference"] = None
                reason = (
                    f"cron {expression}: model {self.policy.model!r} has no version yet, "
                    "so a first training is due"
                )
                return TriggerResult("cron", expression, True, reason, evidence)
            reference = latest.created_at
            basis = f"version {latest.version} was registered"
            evidence["latest_version"] = latest.version
        evidence["reference"] = reference
        if tick is None:
            return TriggerResult(
                "cron", expression, False, f"cron {expression}: no tick in 8 years", evidence
            )
        when = tick.strftime("%Y-%m-%d %H:%M UTC")
        if reference is None or tick.timestamp() > reference:
            reason = f"cron {expression}: a tick at {when} passed since {basis}"
            return TriggerResult("cron", expression, True, reason, evidence)
        reason = f"cron {expression}: no tick since {basis} (last tick {when})"
        return TriggerResult("cron", expression, False, reason, evidence)

    # -- data -------------------------------------------------------------------

    def current(self, name: str) -> tuple[str | None, Any, dict[str, Any]]:
        """(fingerprint, the object or None, where it came from) of dataset *name* now."""
        if name in self.data:
            from flowrecord.collectors.fingerprint import fingerprint

            obj = self.data[name]
            fp = fingerprint(obj)
            self.fingerprints[name] = fp
            return fp, obj, {"source": "given", "fingerprint": fp}
        if self.store is None:
            raise LookupError("the local store is not active: nothing recorded to read")
        row = latest_dataset(self.store, name)
        if row is None:
            raise LookupError(f"dataset {name!r} has never been recorded with a fingerprint")
        self.fingerprints[name] = row["fingerprint"]
        return (
            row["fingerprint"],
            None,
            {
                "source": "recorded",
                "fingerprint": row["fingerprint"],
                "recorded_at": row["recorded_at"],
                "run_id": row["run_id"],
                "task_id": row["task_id"],
            },
        )

    def new_data(self, name: str) -> TriggerResult:
        try:
            fp, _, where = self.current(name)
        except (LookupError, TypeError, OSError) as exc:
            return self._unavailable("new_data", name, str(exc))
        champion, error = self.champion()
        if error:
            return self._unavailable("new_data", name, error)
        evidence: dict[str, Any] = {"current": where}
        if champion is None:
            reason = f"new data {name}: model {self.policy.model!r} has no champion yet"
            return TriggerResult("new_data", name, True, reason, evidence)
        trained = _training_fingerprints(champion)
        evidence.update(champion=champion.version, champion_fingerprints=sorted(trained))
        if fp in trained:
            reason = (
                f"new data {name}: no new data (the champion, version {champion.version}, "
                f"was trained on {_short(fp)})"
            )
            return TriggerResult("new_data", name, False, reason, evidence)
        later = self._trained_on(fp, champion)
        if later is not None:
            evidence["already_trained_by"] = later
            reason = (
                f"new data {name}: {_short(fp)} is new to the champion, but version {later} "
                "was already trained on it"
            )
            return TriggerResult("new_data", name, False, reason, evidence)
        reason = (
            f"new data {name}: {_short(fp)} differs from the champion's training data "
            f"(version {champion.version})"
        )
        return TriggerResult("new_data", name, True, reason, evidence)

    def _trained_on(self, fingerprint: str | None, champion: ModelVersion) -> str | None:
        try:
            versions = self.registry.versions(self.policy.model)
        except (RegistryUnavailable, ModelNotFound):
            return None
        newer = [v for v in versions if _is_later(v, champion.version)]
        for version in reversed(newer[-20:]):  # the few latest are what matter
            try:
                mv = self.registry.get_version(self.policy.model, version)
            except (RegistryUnavailable, ModelNotFound):
                return None
            if mv is not None and fingerprint in _training_fingerprints(mv):
                return mv.version
        return None

    def drift(self, trigger: DriftTrigger) -> TriggerResult:
        name = trigger.dataset
        try:
            fp, obj, where = self.current(name)
        except (LookupError, TypeError, OSError) as exc:
            return self._unavailable("drift", name, str(exc))
        champion, error = self.champion()
        if error:
            return self._unavailable("drift", name, error)
        evidence: dict[str, Any] = {"current": where, "psi": trigger.psi, "ks": trigger.ks}
        if champion is None:
            return TriggerResult(
                "drift",
                name,
                False,
                f"drift {name}: no champion, so no training data to compare with",
                evidence,
            )
        reference = _reference_dataset(champion, name)
        if reference is None or not reference.get("fingerprint"):
            return self._unavailable(
                "drift",
                name,
                f"the champion (version {champion.version}) has no fingerprinted training data",
            )
        ref_fp = str(reference["fingerprint"])
        evidence.update(champion=champion.version, reference_fingerprint=ref_fp)
        if fp == ref_fp:
            reason = f"drift {name}: the current data is the champion's training data"
            return TriggerResult("drift", name, False, reason, evidence)
        if self.store is None:
            return self._unavailable("drift", name, "the local store is not active")
        ref_row = dataset_by_fingerprint(self.store, ref_fp)
        ref_profile = (ref_row or {}).get("profile") or {}
        if not ref_profile.get("columns"):
            return self._unavailable(
                "drift", name, f"no profile was recorded for the training data {_short(ref_fp)}"
            )
        if obj is None:
            cur_row = dataset_by_fingerprint(self.store, str(fp))
            obj = (cur_row or {}).get("profile") or {}
            if not obj.get("columns"):
                return self._unavailable(
                    "drift", name, f"no profile was recorded for the current data {_short(fp)}"
                )
        from flowrecord.collectors.checks import check_drift

        try:
            result = check_drift(
                obj,
                ref_profile,
                psi_threshold=trigger.psi,
                ks_threshold=trigger.ks,
                columns=trigger.columns,
            )
        except (TypeError, ValueError) as exc:
            return self._unavailable("drift", name, f"{type(exc).__name__}: {exc}")
        compared = [c for c in result.checks if c.get("check") in ("psi", "ks")]
        drifted = [c for c in compared if not c.get("passed")]
        evidence["columns"] = [
            {k: c.get(k) for k in ("check", "column", "psi", "ks", "threshold", "passed")}
            for c in compared
        ]
        if not compared:
            return self._unavailable("drift", name, "no numeric column could be compared")
        if drifted:
            worst = ", ".join(
                f"{c['column']} {c['check']}={_fmt(c.get(c['check']))}" for c in drifted[:5]
            )
            reason = (
                f"drift {name}: {len(drifted)} of {len(compared)} column checks above "
                f"threshold (psi {trigger.psi}, ks {trigger.ks}): {worst}"
            )
            return TriggerResult("drift", name, True, reason, evidence)
        reason = f"drift {name}: {len(compared)} column checks within thresholds"
        return TriggerResult("drift", name, False, reason, evidence)

    # -- metrics ----------------------------------------------------------------

    def metric_decay(self, trigger: MetricDecayTrigger) -> TriggerResult:
        key = trigger.metric
        if self.store is None:
            return self._unavailable("metric_decay", key, "the local store is not active")
        point = latest_metric(self.store, key, trigger.pipeline)
        bound = (
            {"floor": trigger.floor} if trigger.floor is not None else {"ceiling": trigger.ceiling}
        )
        if point is None:
            where = f" in pipeline {trigger.pipeline!r}" if trigger.pipeline else ""
            return self._unavailable("metric_decay", key, f"{key!r} was never recorded{where}")
        value = point["value"]
        evidence = {**point, **bound}
        if value is None or not math.isfinite(value):
            reason = f"metric decay {key}: the latest value is {value} (not a finite number)"
            return TriggerResult("metric_decay", key, True, reason, evidence)
        if trigger.floor is not None:
            fired = value < trigger.floor
            rel = "below" if fired else "at or above"
            reason = (
                f"metric decay {key}: latest {_fmt(value)} is {rel} the floor {_fmt(trigger.floor)}"
            )
        else:
            assert trigger.ceiling is not None
            fired = value > trigger.ceiling
            rel = "above" if fired else "at or below"
            reason = f"metric decay {key}: latest {_fmt(value)} is {rel} the ceiling {_fmt(trigger.ceiling)}"
        return TriggerResult("metric_decay", key, fired, reason, evidence)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def _short(fp: str | None) -> str:
    if not fp:
        return "-"
    algo, sep, digest = fp.rpartition(":")
    return f"{algo}{sep}{digest[:12]}"


def _is_later(version: str, than: str) -> bool:
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return version > than


def _training_fingerprints(version: ModelVersion) -> set[str]:
    train = version.datasets_with_role("train") or list(version.datasets)
    return {str(d["fingerprint"]) for d in train if d.get("fingerprint")}


def _reference_dataset(champion: ModelVersion, name: str) -> Mapping[str, Any] | None:
    same = [d for d in champion.datasets if d.get("name") == name and d.get("fingerprint")]
    if same:
        return same[0]
    train = [d for d in champion.datasets_with_role("train") if d.get("fingerprint")]
    return train[0] if train else None


def _record(policy: RetrainPolicy, results: list[TriggerResult], ctx: _Context) -> None:
    from flowrecord import recorder
    from flowrecord.collectors.validation import ValidationResult

    for r in results:
        entry = {
            "check": r.trigger,
            "column": None,
            "failures": int(r.fired),
            "passed": not r.fired,
            "fired": r.fired,
            "model": policy.model,
            "policy": policy.name,
            "subject": r.subject,
            "reason": r.reason,
            "error": r.error,
            "evidence": dict(r.evidence),
        }
        result = ValidationResult(
            validator=TRIGGER_VALIDATOR_PREFIX + r.trigger,
            schema_name=policy.name,
            passed=not r.fired,
            checks=(entry,),
            failure_count=int(r.fired),
            failure_sample=(),
            error=r.error,
        )
        fingerprint = (
            ctx.fingerprints.get(r.subject) if r.trigger in ("new_data", "drift") else None
        )
        recorder.record_validation(result, r.subject, fingerprint=fingerprint)
    recorder.flush()


def trigger_history(
    model: str | None = None, *, policy: str | None = None, store: Any = None
) -> list[dict[str, Any]]:
    """Recorded trigger evaluations (of *model*, of one *policy*), oldest first.

    :param store: read this store; default: this process's local store.
    """
    from flowrecord import recorder

    if store is None:
        recorder.flush()
        store = ModelRegistry().local_store()
        if store is None:
            raise RegistryUnavailable("trigger history is kept by the local store, which is off")
    sql = "SELECT * FROM validations WHERE validator LIKE ?"
    params: list[Any] = [TRIGGER_VALIDATOR_PREFIX + "%"]
    if policy is not None:
        sql += " AND schema_name = ?"
        params.append(policy)
    out = []
    for r in store.query(sql + " ORDER BY ts, event_id", params):
        checks = loads(r["checks"], [])
        entry = checks[0] if checks and isinstance(checks[0], Mapping) else {}
        if model is not None and entry.get("model") != model:
            continue
        out.append(
            {
                "validation_id": r["validation_id"],
                "trigger": str(r["validator"]).removeprefix(TRIGGER_VALIDATOR_PREFIX),
                "policy": r["schema_name"],
                "model": entry.get("model"),
                "subject": r["dataset_name"],
                "fired": not bool(r["passed"]),
                "reason": entry.get("reason"),
                "error": r["error"],
                "evidence": entry.get("evidence", {}),
                "fingerprint": r["fingerprint"],
                "run_id": r["run_id"],
                "task_id": r["task_id"],
                "checked_at": r["ts"],
            }
        )
    return out
