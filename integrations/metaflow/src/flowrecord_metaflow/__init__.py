"""flowrecord for Metaflow: every step recorded, results as cards, gates and retraining native.

Installing ``flowrecord-metaflow`` adds two decorators to Metaflow through its
extension mechanism (``metaflow_extensions.flowrecord``)::

    from metaflow import FlowSpec, step, flowrecord, flowrecord_base

    @flowrecord_base                      # every step of the flow
    class TrainFlow(FlowSpec):
        @flowrecord(card=True)            # this step also gets a card
        @step
        def start(self):
            ...

or, with no change to the flow at all: ``python flow.py run --with flowrecord``.
For every task flowrecord records run and task identity, status, duration,
system/GPU usage, the flow's Parameters (secrets redacted), metrics logged in
the body with ``flowrecord.log_metric``, declared validations and the lineage
of the artifacts the step read and wrote (see :mod:`flowrecord_metaflow.lineage`).

The model lifecycle comes as Metaflow constructs (:mod:`flowrecord_metaflow.lifecycle`):
``@flowrecord_gate`` applies a promotion gate before a step that branches on it
with Metaflow's switch, and ``@flowrecord_retrain(policy)`` compiles a retraining
policy into ``@schedule`` and ``@trigger``::

    from flowrecord_metaflow import flowrecord_gate, flowrecord_retrain

This package holds the adapter (:mod:`~flowrecord_metaflow.recording`), the
lineage of artifacts, the card and the lifecycle constructs; the decorator
classes live in the extension module Metaflow loads.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CARD_ID",
    "PROMOTED",
    "REFUSED",
    "FlowrecordFlowDecorator",
    "FlowrecordStepDecorator",
    "MetaflowArtifact",
    "PromotionRefused",
    "RetrainCheck",
    "RetrainDecorators",
    "StepSettings",
    "artifact_datasets",
    "artifact_uri",
    "check_retrain",
    "eventbridge_cron",
    "flowrecord_gate",
    "flowrecord_retrain",
    "promote",
    "retrain_decorators",
    "retrain_event_name",
    "task_name",
]

# Names of flowrecord_metaflow.lifecycle, which imports Metaflow.
_LIFECYCLE = frozenset(
    {
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
    }
)


# Every other public name, by the module that defines it. Metaflow imports this
# package in every task process, so nothing is imported before it is asked for:
# the card (and the plugin machinery it pulls in) costs a task nothing unless it
# renders one.
_MODULES = {
    "CARD_ID": "card",
    "MetaflowArtifact": "lineage",
    "artifact_uri": "lineage",
    "StepSettings": "recording",
    "task_name": "recording",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    # The decorator classes subclass Metaflow's and Metaflow imports them while
    # it loads its plugins; importing them here eagerly would import Metaflow
    # from inside its own import when a user imports this package first.
    if name in ("FlowrecordStepDecorator", "FlowrecordFlowDecorator"):
        import metaflow  # noqa: F401 - loads the extension the classes live in
        from metaflow_extensions.flowrecord.plugins import flowrecord_decorator

        return getattr(flowrecord_decorator, name)
    if name in _LIFECYCLE:
        # Same reason: the lifecycle constructs subclass Metaflow's and import it.
        from flowrecord_metaflow import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
