"""Promotion gates: a candidate model version replaces the champion only on evidence.

A :class:`PromotionGate` is declared once, for one model, and knows nothing of any
orchestrator: absolute bounds on metrics, the largest regression allowed against
the champion (per metric, and per data slice with keys like ``auc/slice=young``),
passing validations of the candidate's training and evaluation data, and an
optional paired bootstrap so that noise never promotes a model.

:meth:`PromotionGate.evaluate` judges and returns a :class:`GateDecision` with
every check, its reason and its evidence; :meth:`PromotionGate.apply` judges and,
only when every check passed, moves the ``champion`` alias to the candidate and
the old champion to ``previous`` (what :func:`rollback` restores). Each decision,
passed or refused, is recorded (``gate_decisions``) and can be read back with
:func:`decisions`.

Gates fail closed. Anything that keeps the gate from seeing the evidence — an
unreachable registry, a metric missing on either side, a champion alias pointing
at a version nobody knows, validations that cannot be read, a bootstrap without
its data — refuses the promotion and says why. One deliberate exception: the
*first* model of a name, with no champion at all, is judged on the absolute
criteria alone (``allow_first=True``, the default), and a gate without absolute
criteria refuses it, since there would be nothing to judge by.

>>> from flowrecord.lifecycle import PromotionGate
>>> gate = PromotionGate(
...     model="churn",
...     minimums={"auc": 0.80},
...     non_regression={"auc": 0.005, "auc/slice=*": 0.02},
...     require_validations=("train", "eval"),
... )
>>> decision = gate.apply("7")          # doctest: +SKIP
>>> decision.applied, decision.failures  # doctest: +SKIP
(False, ('auc/slice=young regressed by 0.031 (allowed 0.02)',))
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowrecord.errors import FlowrecordError
from flowrecord.lifecycle._evidence import validations_for
from flowrecord.lifecycle.bootstrap import BootstrapResult, BootstrapTest, EvaluationSet
from flowrecord.lifecycle.registry import (
    CHAMPION,
    PREVIOUS,
    AliasMove,
    ModelNotFound,
    ModelRegistry,
    ModelVersion,
    RegistryUnavailable,
)

__all__ = [
    "GateCheck",
    "GateDecision",
    "NothingToRollBack",
    "PromotionGate",
    "decisions",
    "rollback",
]


class NothingToRollBack(FlowrecordError):
    """There is no previous champion to roll back to."""


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One criterion of a gate, judged."""

    criterion: str
    """``registry``, ``candidate``, ``champion``, ``minimum``, ``maximum``,
    ``non_regression``, ``validations``, ``bootstrap`` or ``apply``."""
    subject: str | None
    """The metric key, dataset role or alias the check is about."""
    passed: bool
    reason: str
    """One line a person can act on."""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "subject": self.subject,
            "passed": self.passed,
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What a gate concluded about one candidate, with every reason and the evidence."""

    model: str
    version: str
    gate: str
    passed: bool
    """True when every check passed."""
    applied: bool
    """True when the champion alias was moved to the candidate."""
    champion_version: str | None
    """The champion the candidate was judged against (None: there was none)."""
    checks: tuple[GateCheck, ...]
    evidence: Mapping[str, Any]
    decided_at: float
    decision_id: str | None = None
    """Id of the recorded decision (``gate_decisions.decision_id``)."""
    moves: tuple[AliasMove, ...] = ()
    """The alias moves made when the decision was applied."""

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every check's reason, prefixed ``pass:`` or ``FAIL:``, in the order judged."""
        return tuple(f"{'pass' if c.passed else 'FAIL'}: {c.reason}" for c in self.checks)

    @property
    def failures(self) -> tuple[str, ...]:
        """The reasons of the checks that failed (empty when the decision passed)."""
        return tuple(c.reason for c in self.checks if not c.passed)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` form of ``flowrecord promote``)."""
        return {
            "decision_id": self.decision_id,
            "model": self.model,
            "version": self.version,
            "gate": self.gate,
            "passed": self.passed,
            "applied": self.applied,
            "champion_version": self.champion_version,
            "decided_at": self.decided_at,
            "failures": list(self.failures),
            "checks": [c.as_dict() for c in self.checks],
            "moves": [m.as_dict() for m in self.moves],
            "evidence": dict(self.evidence),
        }


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _number_map(name: str, value: Any, *, non_negative: bool = False) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of metric key to number")
    out: dict[str, float] = {}
    for key, bound in value.items():
        if not isinstance(key, str) or not key.strip():
            raise TypeError(f"{name}: metric keys must be non-empty strings, got {key!r}")
        number = _finite(bound)
        if number is None:
            raise ValueError(f"{name}[{key!r}] must be a finite number, not {bound!r}")
        if non_negative and number < 0:
            raise ValueError(f"{name}[{key!r}] is an allowed regression and must be >= 0")
        out[key] = number
    return out


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence | set | frozenset):
        raise TypeError(f"{name} must be a sequence of names")
    out = tuple(value)
    for item in out:
        if not isinstance(item, str) or not item.strip():
            raise TypeError(f"{name} must hold non-empty strings, got {item!r}")
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _has_glob(key: str) -> bool:
    return any(ch in key for ch in "*?[")


@dataclass(frozen=True)
class PromotionGate:
    """The criteria a candidate version of *model* must meet to become champion.

    :param model: the registered model name.
    :param name: the gate's name in decisions and alias history.
    :param candidate: the version judged when none is given: ``"latest"``, a
        version, or ``"@alias"`` (``"@challenger"``).
    :param minimums: metric key -> lowest acceptable value.
    :param maximums: metric key -> highest acceptable value (losses). A metric
        named here is also lower-is-better for ``non_regression``.
    :param non_regression: metric key (or glob over the champion's keys, such as
        ``"auc/slice=*"``) -> the largest worsening against the champion allowed.
    :param lower_is_better: metric keys (or their part before ``/``) where smaller
        is better, for ``non_regression``.
    :param require_validations: dataset roles (``"train"``, ``"eval"``) of the
        candidate version whose data must have recorded validations, all passing.
    :param bootstrap: a :class:`~flowrecord.lifecycle.bootstrap.BootstrapTest` the
        improvement over the champion must pass.
    :param allow_first: with no champion at all, judge on absolute criteria only;
        False refuses any candidate until a champion is set by hand.

    :raises TypeError: / :raises ValueError: a criterion is malformed (caught at
        declaration, not at the first promotion).
    """

    model: str
    name: str = "promotion"
    candidate: str = "latest"
    minimums: Mapping[str, float] = field(default_factory=dict)
    maximums: Mapping[str, float] = field(default_factory=dict)
    non_regression: Mapping[str, float] = field(default_factory=dict)
    lower_is_better: Sequence[str] = ()
    require_validations: Sequence[str] = ()
    bootstrap: BootstrapTest | None = None
    allow_first: bool = True
    champion_alias: str = CHAMPION
    previous_alias: str = PREVIOUS

    def __post_init__(self) -> None:
        for attr in ("model", "name", "candidate", "champion_alias", "previous_alias"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f"{attr} must be a non-empty string, not {value!r}")
        if self.champion_alias == self.previous_alias:
            raise ValueError("champion_alias and previous_alias must differ")
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "minimums", _number_map("minimums", self.minimums))
        set_(self, "maximums", _number_map("maximums", self.maximums))
        set_(
            self,
            "non_regression",
            _number_map("non_regression", self.non_regression, non_negative=True),
        )
        set_(self, "lower_is_better", _names("lower_is_better", self.lower_is_better))
        set_(self, "require_validations", _names("require_validations", self.require_validations))
        if self.bootstrap is not None and not isinstance(self.bootstrap, BootstrapTest):
            raise TypeError("bootstrap must be a BootstrapTest")
        if not isinstance(self.allow_first, bool):
            raise TypeError("allow_first must be a bool")

    # -- declaration as data ----------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The gate's criteria as a JSON-ready dict (kept with every decision)."""
        b = self.bootstrap
        return {
            "name": self.name,
            "model": self.model,
            "minimums": dict(self.minimums),
            "maximums": dict(self.maximums),
            "non_regression": dict(self.non_regression),
            "lower_is_better": list(self.lower_is_better),
            "require_validations": list(self.require_validations),
            "bootstrap": None
            if b is None
            else {
                "metric": b.metric_name,
                "n_resamples": b.n_resamples,
                "confidence": b.confidence,
                "min_difference": b.min_difference,
                "seed": b.seed,
            },
            "allow_first": self.allow_first,
        }

    def is_lower_better(self, key: str) -> bool:
        """Whether a smaller value of metric *key* is better (for non-regression)."""
        base = key.split("/", 1)[0]
        return any(k in self.lower_is_better or k in self.maximums for k in (key, base))

    # -- judging ----------------------------------------------------------------

    def evaluate(
        self,
        version: str | None = None,
        *,
        evaluation: EvaluationSet | Sequence[Any] | Mapping[str, Any] | None = None,
        record: bool = True,
    ) -> GateDecision:
        """Judge candidate *version* (default: the gate's ``candidate``) without moving aliases.

        :param evaluation: per-example arrays for the bootstrap test: an
            :class:`~flowrecord.lifecycle.bootstrap.EvaluationSet`, a
            ``(y_true, candidate, champion)`` tuple or a mapping with those keys.
        :param record: record the decision (``gate_decisions``).
        """
        return self._decide(version, evaluation, apply=False, record=record)

    def apply(
        self,
        version: str | None = None,
        *,
        evaluation: EvaluationSet | Sequence[Any] | Mapping[str, Any] | None = None,
    ) -> GateDecision:
        """Judge candidate *version* and promote it only if every check passed.

        On success the old champion becomes ``previous`` and the candidate
        ``champion``. The decision is recorded either way.
        """
        return self._decide(version, evaluation, apply=True, record=True)

    def _decide(
        self, version: str | None, evaluation: Any, *, apply: bool, record: bool
    ) -> GateDecision:
        from flowrecord._ids import new_event_id, stable_id

        registry = ModelRegistry()
        decision_id = stable_id("gate", new_event_id())
        ref = self.candidate if version is None else str(version)
        checks: list[GateCheck] = []
        evidence: dict[str, Any] = {"gate": self.describe()}
        candidate, champion = self._judge(registry, ref, evaluation, checks, evidence)
        moves: list[AliasMove] = []
        if apply and candidate is not None and all(c.passed for c in checks):
            moves = self._promote(registry, candidate, champion, decision_id, checks)
        applied = any(m.alias == self.champion_alias for m in moves)
        evidence["checks"] = [c.as_dict() for c in checks]
        decision = GateDecision(
            model=self.model,
            version=candidate.version if candidate is not None else ref,
            gate=self.name,
            passed=all(c.passed for c in checks),
            applied=applied,
            champion_version=champion.version if champion is not None else None,
            checks=tuple(checks),
            evidence=evidence,
            decided_at=time.time(),
            decision_id=decision_id,
            moves=tuple(moves),
        )
        if record:
            _record(decision)
        return decision

    def _judge(
        self,
        registry: ModelRegistry,
        ref: str,
        evaluation: Any,
        checks: list[GateCheck],
        evidence: dict[str, Any],
    ) -> tuple[ModelVersion | None, ModelVersion | None]:
        # candidate and champion first: without them there is nothing to judge
        try:
            candidate = registry.resolve(self.model, ref)
        except RegistryUnavailable as exc:
            checks.append(GateCheck("registry", None, False, f"registry unreachable: {exc}"))
            return None, None
        except ModelNotFound as exc:
            checks.append(GateCheck("candidate", ref, False, f"no candidate: {exc}"))
            return None, None
        evidence["candidate"] = _version_evidence(candidate)
        try:
            champion_ref = registry.get_alias(self.model, self.champion_alias)
            champion = (
                registry.get_version(self.model, champion_ref) if champion_ref is not None else None
            )
        except (RegistryUnavailable, ModelNotFound) as exc:
            checks.append(GateCheck("registry", None, False, f"registry unreachable: {exc}"))
            return candidate, None
        evidence["champion"] = _version_evidence(champion) if champion is not None else None
        if champion_ref is not None and champion is None:
            checks.append(
                GateCheck(
                    "champion",
                    self.champion_alias,
                    False,
                    f"the {self.champion_alias!r} alias points at version {champion_ref}, "
                    "which the registry does not know: no champion evidence to compare against",
                    {"alias": self.champion_alias, "version": champion_ref},
                )
            )
            return candidate, None
        if champion is not None and champion.version == candidate.version:
            checks.append(
                GateCheck(
                    "candidate",
                    candidate.version,
                    False,
                    f"version {candidate.version} is already the {self.champion_alias}",
                )
            )
            return candidate, champion
        if champion is None:
            if not self.allow_first:
                checks.append(
                    GateCheck(
                        "champion",
                        self.champion_alias,
                        False,
                        f"model {self.model!r} has no {self.champion_alias} and the gate does "
                        "not allow a first model (allow_first=False)",
                    )
                )
                return candidate, None
            if not (self.minimums or self.maximums):
                checks.append(
                    GateCheck(
                        "champion",
                        self.champion_alias,
                        False,
                        f"model {self.model!r} has no {self.champion_alias} to compare with and "
                        "the gate has no absolute criteria: nothing to judge the first model by",
                    )
                )
                return candidate, None
            checks.append(
                GateCheck(
                    "champion",
                    self.champion_alias,
                    True,
                    f"no {self.champion_alias} yet: the first model is judged on absolute "
                    "criteria only",
                )
            )
        metrics_evidence: dict[str, dict[str, float | None]] = {}
        evidence["metrics"] = metrics_evidence
        self._absolute(candidate, checks, metrics_evidence)
        if champion is not None:
            self._non_regression(candidate, champion, checks, metrics_evidence)
        if self.require_validations:
            evidence["validations"] = self._validations(registry, candidate, checks)
        if self.bootstrap is not None:
            interval = self._bootstrap(candidate, champion, evaluation, checks)
            if interval is not None:
                evidence["intervals"] = {interval.metric: interval.as_dict()}
        return candidate, champion

    def _absolute(
        self,
        candidate: ModelVersion,
        checks: list[GateCheck],
        seen: dict[str, dict[str, float | None]],
    ) -> None:
        for criterion, bounds in (("minimum", self.minimums), ("maximum", self.maximums)):
            for key, bound in bounds.items():
                value = candidate.metric(key)
                seen.setdefault(key, {})["candidate"] = value
                ev = {"metric": key, "candidate": value, criterion: bound}
                if value is None:
                    reason = _missing(candidate, key, "candidate")
                    checks.append(GateCheck(criterion, key, False, reason, ev))
                    continue
                ok = value >= bound if criterion == "minimum" else value <= bound
                op = (">=" if ok else "<") if criterion == "minimum" else ("<=" if ok else ">")
                reason = f"{key} = {_fmt(value)} {op} {criterion} {_fmt(bound)}"
                checks.append(GateCheck(criterion, key, ok, reason, ev))

    def _non_regression(
        self,
        candidate: ModelVersion,
        champion: ModelVersion,
        checks: list[GateCheck],
        seen: dict[str, dict[str, float | None]],
    ) -> None:
        for pattern, allowed in self.non_regression.items():
            if _has_glob(pattern):
                keys = sorted(k for k in champion.metrics if fnmatch.fnmatchcase(k, pattern))
                if not keys:
                    checks.append(
                        GateCheck(
                            "non_regression",
                            pattern,
                            False,
                            f"the champion (version {champion.version}) has no metric matching "
                            f"{pattern!r}: no evidence to compare against",
                            {"pattern": pattern},
                        )
                    )
                    continue
            else:
                keys = [pattern]
            for key in keys:
                checks.append(self._compare(key, allowed, candidate, champion, seen))

    def _compare(
        self,
        key: str,
        allowed: float,
        candidate: ModelVersion,
        champion: ModelVersion,
        seen: dict[str, dict[str, float | None]],
    ) -> GateCheck:
        new, old = candidate.metric(key), champion.metric(key)
        seen.setdefault(key, {}).update(candidate=new, champion=old)
        lower = self.is_lower_better(key)
        ev: dict[str, Any] = {
            "metric": key,
            "candidate": new,
            "champion": old,
            "allowed_regression": allowed,
            "lower_is_better": lower,
        }
        if new is None:
            return GateCheck(
                "non_regression", key, False, _missing(candidate, key, "candidate"), ev
            )
        if old is None:
            return GateCheck(
                "non_regression",
                key,
                False,
                _missing(champion, key, "champion") + ": no evidence to compare against",
                ev,
            )
        worsening = (new - old) if lower else (old - new)
        ev["regression"] = worsening
        # a hair of tolerance: 0.85 - 0.80 must allow exactly 0.05
        ok = worsening <= allowed + 1e-12
        if worsening <= 0:
            reason = (
                f"{key} = {_fmt(new)} vs champion {_fmt(old)}: no regression "
                f"({'down' if lower else 'up'} {_fmt(abs(worsening))})"
            )
        else:
            reason = (
                f"{key} = {_fmt(new)} vs champion {_fmt(old)}: regressed by {_fmt(worsening)} "
                f"(allowed {_fmt(allowed)})"
            )
        return GateCheck("non_regression", key, ok, reason, ev)

    def _validations(
        self, registry: ModelRegistry, candidate: ModelVersion, checks: list[GateCheck]
    ) -> dict[str, list[str]]:
        from flowrecord import recorder

        recorder.flush()  # validations recorded moments ago must be readable
        store = registry.local_store()
        ids: dict[str, list[str]] = {}
        for role in self.require_validations:
            datasets = candidate.datasets_with_role(role)
            if not datasets:
                checks.append(
                    GateCheck(
                        "validations",
                        role,
                        False,
                        f"version {candidate.version} has no {role!r} dataset registered, so "
                        f"its {role} data cannot be shown to be valid",
                    )
                )
                continue
            for d in datasets:
                checks.append(self._dataset_validations(store, role, d, ids))
        return ids

    def _dataset_validations(
        self, store: Any, role: str, dataset: Mapping[str, Any], ids: dict[str, list[str]]
    ) -> GateCheck:
        name = str(dataset.get("name"))
        fingerprint = dataset.get("fingerprint")
        label = f"{role} dataset {name!r}"
        ev: dict[str, Any] = {"dataset": name, "role": role, "fingerprint": fingerprint}
        if not fingerprint:
            reason = f"{label} has no fingerprint, so no validation can be tied to it"
            return GateCheck("validations", role, False, reason, ev)
        if store is None:
            reason = f"validations of {label} cannot be read: the local store is not active"
            return GateCheck("validations", role, False, reason, ev)
        try:
            found = validations_for(store, fingerprint)
        except Exception as exc:
            reason = f"validations of {label} cannot be read: {type(exc).__name__}: {exc}"
            return GateCheck("validations", role, False, reason, ev)
        ev["validations"] = found
        ids[name] = [v["validation_id"] for v in found]
        if not found:
            reason = f"no validation was recorded for {label} ({fingerprint})"
            return GateCheck("validations", role, False, reason, ev)
        failed = [v for v in found if not v["passed"]]
        if failed:
            names = ", ".join(
                f"{v['validator']}{'/' + v['schema_name'] if v['schema_name'] else ''} "
                f"({v['validation_id']})"
                for v in failed
            )
            reason = f"{len(failed)} of {len(found)} validations of {label} failed: {names}"
            return GateCheck("validations", role, False, reason, ev)
        reason = f"{label}: {len(found)} validation(s) recorded, all passed"
        return GateCheck("validations", role, True, reason, ev)

    def _bootstrap(
        self,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        evaluation: Any,
        checks: list[GateCheck],
    ) -> BootstrapResult | None:
        test = self.bootstrap
        assert test is not None
        if champion is None:
            checks.append(
                GateCheck(
                    "bootstrap",
                    test.metric_name,
                    True,
                    "no champion: the bootstrap comparison does not apply to a first model",
                )
            )
            return None
        try:
            if evaluation is None and test.evaluation_data is not None:
                evaluation = test.evaluation_data(candidate, champion)
            if evaluation is None:
                checks.append(
                    GateCheck(
                        "bootstrap",
                        test.metric_name,
                        False,
                        "the bootstrap test needs per-example arrays (y_true, candidate and "
                        "champion scores): pass evaluation= or give the test evaluation_data",
                    )
                )
                return None
            y_true, cand, champ = _arrays(evaluation)
            result = test.run(y_true, cand, champ)
        except Exception as exc:
            checks.append(
                GateCheck(
                    "bootstrap",
                    test.metric_name,
                    False,
                    f"the bootstrap test could not be run: {type(exc).__name__}: {exc}",
                )
            )
            return None
        pct = f"{result.confidence:.0%}"
        interval = f"[{_fmt(result.ci_low)}, {_fmt(result.ci_high)}]"
        if result.passed:
            reason = (
                f"{result.metric} improvement {_fmt(result.difference)}, {pct} interval "
                f"{interval} lies above {_fmt(result.min_difference)}"
            )
        else:
            reason = (
                f"{result.metric} improvement {_fmt(result.difference)} is within noise: "
                f"{pct} interval {interval} does not lie above {_fmt(result.min_difference)}"
            )
        checks.append(
            GateCheck("bootstrap", result.metric, result.passed, reason, result.as_dict())
        )
        return result

    # -- promoting --------------------------------------------------------------

    def _promote(
        self,
        registry: ModelRegistry,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        decision_id: str,
        checks: list[GateCheck],
    ) -> list[AliasMove]:
        moves: list[AliasMove] = []
        judged = champion.version if champion is not None else None
        try:
            current = registry.get_alias(self.model, self.champion_alias)
            if current != judged:
                checks.append(
                    GateCheck(
                        "apply",
                        self.champion_alias,
                        False,
                        f"the {self.champion_alias} moved during evaluation (judged against "
                        f"{judged}, now {current}): evaluate again",
                    )
                )
                return moves
            if current is not None:
                moves.append(
                    registry.set_alias(
                        self.model,
                        self.previous_alias,
                        current,
                        f"replaced by version {candidate.version} "
                        f"(gate {self.name}, decision {decision_id})",
                    )
                )
            moves.append(
                registry.set_alias(
                    self.model,
                    self.champion_alias,
                    candidate.version,
                    f"promoted by gate {self.name} (decision {decision_id})",
                )
            )
        except (RegistryUnavailable, ModelNotFound) as exc:
            checks.append(
                GateCheck("apply", self.champion_alias, False, f"the alias move failed: {exc}")
            )
            return moves
        checks.append(
            GateCheck(
                "apply",
                self.champion_alias,
                True,
                f"version {candidate.version} is now {self.champion_alias}"
                + (f"; version {current} is {self.previous_alias}" if current else ""),
            )
        )
        return moves


def _missing(version: ModelVersion, key: str, side: str) -> str:
    prefix = f"the {side} (version {version.version})"
    if key not in version.metrics:
        return f"{prefix} has no metric {key!r}"
    raw = version.metrics[key]
    if raw is None:
        return f"{prefix} has a null (NaN) value for {key!r}"
    return f"{prefix} has no finite value of {key!r} ({raw!r})"


def _version_evidence(v: ModelVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "run_id": v.run_id,
        "task_id": v.task_id,
        "uri": v.uri,
        "created_at": v.created_at,
        "metrics": dict(v.metrics),
        "datasets": [dict(d) for d in v.datasets],
    }


def _arrays(evaluation: Any) -> tuple[Any, Any, Any]:
    if isinstance(evaluation, EvaluationSet):
        return evaluation.y_true, evaluation.candidate, evaluation.champion
    if isinstance(evaluation, Mapping):
        try:
            return evaluation["y_true"], evaluation["candidate"], evaluation["champion"]
        except KeyError as exc:
            raise ValueError(
                f"evaluation mapping needs 'y_true', 'candidate' and 'champion' (missing {exc})"
            ) from None
    if isinstance(evaluation, Sequence) and len(evaluation) == 3:
        return evaluation[0], evaluation[1], evaluation[2]
    raise TypeError(
        "evaluation must be an EvaluationSet, a (y_true, candidate, champion) tuple or a "
        f"mapping with those keys, not {type(evaluation).__name__}"
    )


def _record(decision: GateDecision) -> None:
    from flowrecord import recorder

    recorder.record_gate_decision(
        model=decision.model,
        version=decision.version,
        gate=decision.gate,
        passed=decision.passed,
        applied=decision.applied,
        reasons=decision.reasons,
        evidence={
            **decision.evidence,
            "champion_version": decision.champion_version,
            "moves": [m.as_dict() for m in decision.moves],
        },
        decision_id=decision.decision_id,
    )
    # a decision is evidence others read at once (explain, the next gate): deliver it
    recorder.flush()


def rollback(
    model: str,
    *,
    reason: str | None = None,
    champion_alias: str = CHAMPION,
    previous_alias: str = PREVIOUS,
) -> GateDecision:
    """Make the previous champion champion again, and the current one ``previous``.

    Rolling back twice therefore restores the state before the first rollback.
    The rollback is recorded as a decision of the gate ``rollback``.

    :raises NothingToRollBack: there is no previous champion (or it is the champion).
    :raises RegistryUnavailable: the registry could not be reached.

    >>> from flowrecord.lifecycle import rollback
    >>> rollback("churn").version  # doctest: +SKIP
    '6'
    """
    from flowrecord._ids import new_event_id, stable_id

    registry = ModelRegistry()
    previous = registry.get_alias(model, previous_alias)
    current = registry.get_alias(model, champion_alias)
    if previous is None:
        raise NothingToRollBack(
            f"model {model!r} has no {previous_alias!r} version to roll back to "
            f"({champion_alias}: {current or 'none'})"
        )
    if previous == current:
        raise NothingToRollBack(
            f"model {model!r}: {previous_alias} and {champion_alias} are both version {current}"
        )
    if registry.get_version(model, previous) is None:
        raise NothingToRollBack(
            f"model {model!r}: {previous_alias} points at version {previous}, which the "
            "registry does not know"
        )
    decision_id = stable_id("gate", new_event_id())
    why = reason or "rollback"
    moves = [
        registry.set_alias(
            model,
            champion_alias,
            previous,
            f"{why}: rolled back from version {current} (decision {decision_id})",
        )
    ]
    if current is not None:
        moves.append(
            registry.set_alias(
                model, previous_alias, current, f"{why}: rolled back (decision {decision_id})"
            )
        )
    text = f"{champion_alias} rolled back from version {current} to version {previous}"
    check = GateCheck("apply", champion_alias, True, text, {"reason": why})
    decision = GateDecision(
        model=model,
        version=previous,
        gate="rollback",
        passed=True,
        applied=True,
        champion_version=current,
        checks=(check,),
        evidence={"reason": why, "rolled_back_from": current, "restored": previous},
        decided_at=time.time(),
        decision_id=decision_id,
        moves=tuple(moves),
    )
    _record(decision)
    return decision


def decisions(
    model: str | None = None, version: str | None = None, *, store: Any = None
) -> list[dict[str, Any]]:
    """Recorded gate decisions (of *model*, of one *version*), oldest first.

    :param store: read this store; default: this process's local store.
    :raises RegistryUnavailable: no local store to read.
    """
    from flowrecord import recorder
    from flowrecord.lifecycle._evidence import loads

    if store is None:
        recorder.flush()
        store = ModelRegistry().local_store()
        if store is None:
            raise RegistryUnavailable("gate decisions are kept by the local store, which is off")
    sql = "SELECT * FROM gate_decisions WHERE 1 = 1"
    params: list[Any] = []
    if model is not None:
        sql += " AND model = ?"
        params.append(model)
    if version is not None:
        sql += " AND version = ?"
        params.append(str(version))
    return [
        {
            "decision_id": r["decision_id"],
            "model": r["model"],
            "version": r["version"],
            "gate": r["gate"],
            "passed": bool(r["passed"]),
            "applied": bool(r["applied"]),
            "reasons": loads(r["reasons"], []),
            "evidence": loads(r["evidence"], {}),
            "run_id": r["run_id"],
            "task_id": r["task_id"],
            "decided_at": r["ts"],
        }
        for r in store.query(sql + " ORDER BY ts, event_id", params)
    ]
