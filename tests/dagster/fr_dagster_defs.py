"""A small Dagster code location for the tests that need one on disk.

The multiprocess executor runs each step in a process that imports this module
again (through ``reconstructable``), and the webserver loads it as its code
location, so it builds its ``Definitions`` at import time, as users do.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pandera.pandas as pa

import flowrecord
import flowrecord_dagster


class Orders(pa.DataFrameModel):
    """Orders have a positive amount and a known region."""

    amount: float = pa.Field(ge=0)
    region: str = pa.Field(isin=["eu", "us"])


# The schema by import path: plain text in metadata, as Dagster 2 will require.
@dg.asset(metadata={flowrecord_dagster.SCHEMA_KEY: "fr_dagster_defs:Orders"}, group_name="shop")
def orders() -> pd.DataFrame:
    """Raw orders; one of them has a negative amount."""
    flowrecord.log_metric("orders_seen", 4)
    return pd.DataFrame({"amount": [10.0, 20.0, -5.0, 7.5], "region": ["eu", "us", "eu", "us"]})


@dg.asset(group_name="shop")
def clean_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders with a non-negative amount."""
    kept = orders[orders.amount >= 0].reset_index(drop=True)
    flowrecord.log_metric("kept", len(kept))
    return kept


@dg.asset(deps=[clean_orders], group_name="shop")
def order_report() -> dg.MaterializeResult:
    """A report written elsewhere: no value, only metadata."""
    return dg.MaterializeResult(metadata={"pages": 1})


shop_job = dg.define_asset_job("shop_job", selection=dg.AssetSelection.groups("shop"))

defs = flowrecord_dagster.instrument(
    dg.Definitions(assets=[orders, clean_orders, order_report], jobs=[shop_job])
)


def get_shop_job() -> dg.JobDefinition:
    """The shop job, resolved, for ``reconstructable``."""
    return defs.resolve_job_def("shop_job")
