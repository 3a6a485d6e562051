"""Shared helpers of the lifecycle tests: recorded training runs and a broken registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

import flowrecord
from flowrecord.hookspecs import hookimpl
from flowrecord.lifecycle.registry import ModelVersion, register_model_version


def frame(seed: int = 0, n: int = 400, shift: float = 0.0) -> pd.DataFrame:
    """A small feature table; *shift* moves the distribution of ``x``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"x": rng.normal(loc=shift, size=n), "z": rng.uniform(size=n), "y": rng.integers(0, 2, n)}
    )


def train(
    model: str,
    metrics: Mapping[str, float],
    data: pd.DataFrame | None = None,
    *,
    eval_data: pd.DataFrame | None = None,
    pipeline: str = "train",
    orchestrator: str = "python",
    run_key: str | None = None,
    validate: Any = None,
) -> ModelVersion:
    """Record a training task that reads *data* (and *eval_data*) and registers a version."""
    data = frame() if data is None else data
    with flowrecord.run(pipeline, run_key, orchestrator=orchestrator), flowrecord.task("fit"):
        train_ev = flowrecord.log_dataset(data, name="train", role="input")
        datasets: dict[str, Any] = {"train": train_ev}
        if eval_data is not None:
            datasets["eval"] = flowrecord.log_dataset(eval_data, name="eval", role="input")
        if validate is not None:
            flowrecord.validate(data, validate, name="train")
        return register_model_version(model, metrics=dict(metrics), datasets=datasets)


class BrokenRegistry:
    """A backend whose registry is down: every registry hook raises."""

    def _down(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("registry at 10.0.0.1:5000 refused the connection")

    flowrecord_registry_get_version = hookimpl(_down)
    flowrecord_registry_get_alias = hookimpl(_down)
    flowrecord_registry_set_alias = hookimpl(_down)
    flowrecord_registry_list_models = hookimpl(_down)
    flowrecord_registry_register_version = hookimpl(_down)
