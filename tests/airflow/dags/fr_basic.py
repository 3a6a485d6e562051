"""Classic and TaskFlow tasks, Assets with event extras, params, a returned frame and metrics."""

from __future__ import annotations

import os

import pandas as pd
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Asset, dag, task

import flowrecord

DATA = os.environ.get("FR_TEST_DATA_DIR", "/tmp")
RAW = Asset(name="raw_orders", uri=f"file://{DATA}/orders.csv")
REPORT = Asset(name="orders_report", uri="s3://reports/orders")


def _classic(**context):
    return "classic done"


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_basic():
    write_raw = BashOperator(
        task_id="write_raw",
        bash_command=f"printf 'id,amount\\n1,10\\n2,20\\n3,30\\n' > {DATA}/orders.csv",
        outlets=[RAW],
    )

    @task(inlets=[RAW])
    def load(limit: int = 100, api_token: str = "s3cr3t-token-value", ti=None, params=None):
        assert ti is not None and params is not None
        return pd.read_csv(f"{DATA}/orders.csv").head(limit)

    @task(outlets=[REPORT])
    def train(frame, learning_rate: float = 0.1, tags: list | None = None, *, outlet_events=None):
        flowrecord.log_metric("epochs", 3)
        outlet_events[REPORT].extra = {"rows": len(frame), "format": "parquet"}
        return {"auc": 0.91, "rows": len(frame)}

    classic = PythonOperator(task_id="classic_python", python_callable=_classic)

    frame = load(limit=2)
    write_raw >> frame
    train(frame, learning_rate=0.5, tags=["a", "b"]) >> classic


dag = fr_basic()
