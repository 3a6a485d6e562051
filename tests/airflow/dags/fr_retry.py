"""A task that fails on its first try and succeeds on its second."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_retry():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def flaky(ti=None):
        if ti.try_number == 1:
            raise ConnectionError("first try always fails")
        return {"tries": float(ti.try_number)}

    flaky()


dag = fr_retry()
