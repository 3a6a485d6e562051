"""A DAG recorded by flowrecord with no change: the plugin's listener does it all.

Only the validation helpers are flowrecord's own; everything else is plain Airflow.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from airflow.sdk import Asset, dag, task

import flowrecord
from flowrecord_airflow import ValidateDataOperator, validated

ORDERS = pa.DataFrameSchema({"amount": pa.Column(float, pa.Check.ge(0))}, name="orders")
MODEL = Asset(name="churn_model", uri="s3://models/churn")


@dag(schedule=None, catchup=False, tags=["example"])
def flowrecord_example():
    @task
    @validated(schema=ORDERS, policy="fail")  # the returned frame must pass, or the task fails
    def load_orders(limit: int = 1000) -> pd.DataFrame:
        return pd.DataFrame({"amount": [12.0, 3.5, 40.0]}).head(limit)

    @task(outlets=[MODEL])
    def train(orders: pd.DataFrame, learning_rate: float = 0.05) -> dict:
        flowrecord.log_metric("loss", 0.42, step=1)  # optional: log from inside a task
        return {"auc": 0.91, "rows": len(orders)}  # a dict of numbers becomes metrics

    orders = load_orders(limit=100)  # scalar arguments become params
    ValidateDataOperator(task_id="check_orders", data=orders, schema=ORDERS, policy="record")
    train(orders, learning_rate=0.1)  # the frame is recorded as train's input dataset


dag = flowrecord_example()
