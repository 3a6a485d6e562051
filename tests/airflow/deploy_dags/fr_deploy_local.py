"""Run by a real scheduler with the LocalExecutor: frames, metrics, mapping and a retry."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from airflow.sdk import dag, task


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_deploy_local():
    @task
    def make(rows: int = 4):
        return pd.DataFrame({"x": list(range(rows)), "y": [float(i) / 2 for i in range(rows)]})

    @task
    def train(frame, learning_rate: float = 0.1):
        return {"auc": 0.87, "rows": len(frame)}

    @task
    def square(x: int) -> dict:
        return {"squared": x * x}

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def flaky(ti=None):
        if ti.try_number == 1:
            raise ConnectionError("first try always fails")

    train(make(rows=3), learning_rate=0.5)
    square.expand(x=[2, 3])
    flaky()


dag = fr_deploy_local()
