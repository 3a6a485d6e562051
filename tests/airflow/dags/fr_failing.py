"""A failing task, a downstream task that never runs, setup and teardown around them."""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_failing():
    @task
    def create_cluster():
        return "cluster-1"

    @task
    def delete_cluster():
        return None

    @task
    def crunch():
        raise ValueError("bad input: column 'amount' is negative")

    @task
    def publish():
        return None

    setup = create_cluster().as_setup()
    teardown = delete_cluster().as_teardown(setups=setup)
    crunched = crunch()
    setup >> crunched >> publish()
    crunched >> teardown


dag = fr_failing()
