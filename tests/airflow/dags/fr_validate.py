"""Validation: ValidateDataOperator on an upstream output and on a callable, and @validated."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from airflow.sdk import dag, task

from flowrecord_airflow import ValidateDataOperator, validated

ORDERS = pa.DataFrameSchema({"amount": pa.Column(float, pa.Check.ge(0))}, name="orders")


def _bad_orders():
    return pd.DataFrame({"amount": [10.0, -5.0, -1.0]})


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_validate():
    @task
    @validated(schema=ORDERS, policy="fail")
    def load_orders():
        return pd.DataFrame({"amount": [1.0, 2.5, 4.0]})

    @task
    @validated(schema=ORDERS, policy="fail")
    def load_bad_orders():
        return _bad_orders()

    orders = load_orders()
    ValidateDataOperator(task_id="check_orders", data=orders, schema=ORDERS)
    ValidateDataOperator(
        task_id="check_bad_orders_record", data=_bad_orders, schema=ORDERS, policy="record"
    )
    ValidateDataOperator(task_id="check_bad_orders_fail", data=_bad_orders, schema=ORDERS)
    load_bad_orders()


dag = fr_validate()
