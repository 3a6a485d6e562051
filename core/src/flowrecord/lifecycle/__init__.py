"""Model lifecycle: promotion gates, retraining policies and the model registry.

Framework-agnostic logic, declared once and compiled by each integration to its
orchestrator's own form:

- :class:`PromotionGate` judges a candidate model version against absolute
  bounds, the champion (per metric and per data slice), the validations of its
  data and an optional paired bootstrap; it moves the ``champion`` alias only on
  evidence, and fails closed.
- :class:`RetrainPolicy` says when to retrain: on a ``cron`` schedule, on new
  data, on drift, on metric decay.
- :mod:`flowrecord.lifecycle.registry` registers model versions with their
  lineage and moves aliases, through whichever registry backend is active.
- :func:`explain` answers "why is this model in production, and what exactly was
  it trained on?"; :func:`render_report` draws the same as a static HTML page.

Importing this package is cheap: numpy, pandas and rich load only when used.

>>> from flowrecord.lifecycle import PromotionGate, RetrainPolicy, DriftTrigger
>>> gate = PromotionGate(model="churn", minimums={"auc": 0.8}, non_regression={"auc": 0.01})
>>> policy = RetrainPolicy(model="churn", cron="@weekly", drift=DriftTrigger("features"))
"""

from __future__ import annotations

from flowrecord.lifecycle.bootstrap import BootstrapResult, BootstrapTest, EvaluationSet
from flowrecord.lifecycle.explain import explain, models_overview
from flowrecord.lifecycle.gate import (
    GateCheck,
    GateDecision,
    NothingToRollBack,
    PromotionGate,
    decisions,
    rollback,
)
from flowrecord.lifecycle.policy import (
    DriftTrigger,
    MetricDecayTrigger,
    RetrainDecision,
    RetrainPolicy,
    TriggerResult,
    trigger_history,
)
from flowrecord.lifecycle.registry import (
    AliasMove,
    ModelNotFound,
    ModelRegistry,
    ModelVersion,
    RegistryUnavailable,
    register_model_version,
)
from flowrecord.lifecycle.report import render_report, write_report

__all__ = [
    "AliasMove",
    "BootstrapResult",
    "BootstrapTest",
    "DriftTrigger",
    "EvaluationSet",
    "GateCheck",
    "GateDecision",
    "MetricDecayTrigger",
    "ModelNotFound",
    "ModelRegistry",
    "ModelVersion",
    "NothingToRollBack",
    "PromotionGate",
    "RegistryUnavailable",
    "RetrainDecision",
    "RetrainPolicy",
    "TriggerResult",
    "decisions",
    "explain",
    "models_overview",
    "register_model_version",
    "render_report",
    "rollback",
    "trigger_history",
    "write_report",
]
