"""flowrecord for Metaflow: every step recorded, results as cards.

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

This package holds the adapter (:mod:`~flowrecord_metaflow.recording`), the
lineage of artifacts and the card; the decorator classes live in the extension
module Metaflow loads. Promotion gates and retraining policies will come as
``flowrecord_metaflow.lifecycle``.
"""

from __future__ import annotations

from typing import Any

from flowrecord_metaflow.card import CARD_ID
from flowrecord_metaflow.lineage import MetaflowArtifact, artifact_uri
from flowrecord_metaflow.recording import StepSettings, task_name

__all__ = [
    "CARD_ID",
    "FlowrecordFlowDecorator",
    "FlowrecordStepDecorator",
    "MetaflowArtifact",
    "StepSettings",
    "artifact_uri",
    "task_name",
]


def __getattr__(name: str) -> Any:
    # The decorator classes subclass Metaflow's and Metaflow imports them while
    # it loads its plugins; importing them here eagerly would import Metaflow
    # from inside its own import when a user imports this package first.
    if name in ("FlowrecordStepDecorator", "FlowrecordFlowDecorator"):
        import metaflow  # noqa: F401 - loads the extension the classes live in
        from metaflow_extensions.flowrecord.plugins import flowrecord_decorator

        return getattr(flowrecord_decorator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
