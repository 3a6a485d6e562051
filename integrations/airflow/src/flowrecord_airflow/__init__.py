"""flowrecord for Apache Airflow: every task of every DAG recorded, with no code change.

Installing ``flowrecord-airflow`` registers :class:`~flowrecord_airflow.plugin.FlowrecordPlugin`
through the ``airflow.plugins`` entry point; its listener records each task
instance (state, duration, system usage, inputs and outputs) into the
configured flowrecord backends. For data validation inside DAGs:

>>> from flowrecord_airflow import ValidateDataOperator, validated  # doctest: +SKIP

and for the model lifecycle, a promotion gate and a retraining schedule:

>>> from flowrecord_airflow import PromotionGateOperator, retrain_schedule  # doctest: +SKIP

Names are resolved lazily, so importing this package (which Airflow does in
every task process) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowrecord_airflow.lifecycle import (
        PromotionGateOperator,
        PromotionRefused,
        RetrainCheckOperator,
        retrain_asset,
        retrain_check_dag,
        retrain_schedule,
    )
    from flowrecord_airflow.links import FlowrecordLink
    from flowrecord_airflow.listener import FlowrecordListener
    from flowrecord_airflow.operators import ValidateDataOperator, validated
    from flowrecord_airflow.plugin import FlowrecordPlugin
    from flowrecord_airflow.views import create_app

__all__ = [
    "FlowrecordLink",
    "FlowrecordListener",
    "FlowrecordPlugin",
    "PromotionGateOperator",
    "PromotionRefused",
    "RetrainCheckOperator",
    "ValidateDataOperator",
    "create_app",
    "retrain_asset",
    "retrain_check_dag",
    "retrain_schedule",
    "validated",
]

_WHERE = {
    "FlowrecordLink": "flowrecord_airflow.links",
    "FlowrecordListener": "flowrecord_airflow.listener",
    "FlowrecordPlugin": "flowrecord_airflow.plugin",
    "PromotionGateOperator": "flowrecord_airflow.lifecycle",
    "PromotionRefused": "flowrecord_airflow.lifecycle",
    "RetrainCheckOperator": "flowrecord_airflow.lifecycle",
    "ValidateDataOperator": "flowrecord_airflow.operators",
    "create_app": "flowrecord_airflow.views",
    "retrain_asset": "flowrecord_airflow.lifecycle",
    "retrain_check_dag": "flowrecord_airflow.lifecycle",
    "retrain_schedule": "flowrecord_airflow.lifecycle",
    "validated": "flowrecord_airflow.operators",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowrecord_airflow' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
