"""Run by a real scheduler on Celery workers (separate processes, Redis broker)."""

from __future__ import annotations

import pandas as pd
from airflow.sdk import dag, task


@dag(
    schedule=None,
    catchup=False,
    tags=["flowrecord-test"],
    default_args={"executor": "CeleryExecutor"},
)
def fr_deploy_celery():
    @task
    def make():
        return pd.DataFrame({"x": [1, 2, 3]})

    @task
    def train(frame, learning_rate: float = 0.1):
        return {"auc": 0.8, "rows": len(frame)}

    train(make(), learning_rate=0.2)


dag = fr_deploy_celery()
