"""Dynamic task mapping and a task group passing a frame inside it."""

from __future__ import annotations

import pandas as pd
from airflow.sdk import TaskGroup, dag, task


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_mapped():
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def square(x: int) -> dict:
        return {"squared": x * x}

    with TaskGroup("prep"):

        @task
        def make_frame():
            return pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "z"]})

        @task
        def clean(df):
            return df.dropna()

        clean(make_frame())

    square.expand(x=numbers())


dag = fr_mapped()
