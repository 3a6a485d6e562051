"""Dynamic task mapping with a reduce step (a generator task), and a task group."""

from __future__ import annotations

import pandas as pd
from airflow.sdk import Asset, Metadata, TaskGroup, dag, task

COUNTS = Asset(name="square_counts", uri="s3://reports/square_counts")


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

    @task(outlets=[COUNTS])
    def count_squares(values):
        # A generator task: Airflow's runner drives it, so flowrecord reads its
        # return value back from XCom instead of wrapping the function.
        yield Metadata(COUNTS, {"count": len(values)})
        return {"count": float(len(values))}

    count_squares(square.expand(x=numbers()))


dag = fr_mapped()
