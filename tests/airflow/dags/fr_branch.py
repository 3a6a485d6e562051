"""Branching (the scheduler skips the branch not taken) and a task that skips itself."""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException


@dag(schedule=None, catchup=False, tags=["flowrecord-test"])
def fr_branch():
    @task.branch
    def choose():
        return "left"

    @task
    def left():
        return 1

    @task
    def right():
        return 2

    @task
    def maybe():
        raise AirflowSkipException("nothing new to process")

    join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
    choose() >> [left(), right()] >> join
    maybe()


dag = fr_branch()
