"""Branches, a join, a foreach with a flaky task (@retry), a @catch, Arrow tables.

Runs with no flowrecord decorator in it: the tests switch recording on with
``run --with flowrecord``; the ``end`` step's own ``@flowrecord(...)`` wins there.
"""

import time

from metaflow import FlowSpec, Parameter, catch, current, retry, step
from metaflow import flowrecord as record

import flowrecord


class RecordFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.5, help="a model setting")
    api_token = Parameter("api_token", default="tok-do-not-store", help="a secret")

    @step
    def start(self):
        import pyarrow as pa

        self.raw = pa.table({"x": list(range(10)), "y": [float(i) * 1.5 for i in range(10)]})
        self.settings = {"depth": 3}
        self.shards = [0, 1, 2]
        self.next(self.clean, self.stats)

    @step
    def clean(self):
        import pyarrow.compute as pc

        self.clean_table = self.raw.filter(pc.greater(self.raw["x"], 2))
        flowrecord.log_metric("kept_rows", self.clean_table.num_rows)
        self.next(self.join)

    @step
    def stats(self):
        self.mean_x = sum(self.raw["x"].to_pylist()) / self.raw.num_rows
        self.next(self.join)

    @step
    def join(self, inputs):
        self.clean_table = inputs.clean.clean_table
        self.mean_x = inputs.stats.mean_x
        self.merge_artifacts(inputs, exclude=["clean_table", "mean_x"])
        self.next(self.fan_out)

    @step
    def fan_out(self):
        self.next(self.train, foreach="shards")

    @retry(times=1, minutes_between_retries=0)
    @step
    def train(self):
        if self.input == 1 and current.retry_count == 0:
            raise RuntimeError("flaky shard")
        time.sleep(2.0)  # long enough for parallel shards to overlap visibly
        self.score = self.alpha * self.input
        flowrecord.log_metric("score", self.score)
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.scores = [inp.score for inp in inputs]
        self.next(self.risky)

    @catch(var="risky_error", print_exception=False)
    @step
    def risky(self):
        self.partial = "written before the failure"
        raise ValueError("risky step always fails")
        self.next(self.end)  # never reached: the graph needs it, @catch takes the edge

    @record(policy="warn")
    @step
    def end(self):
        flowrecord.log_metric("best", max(self.scores))


if __name__ == "__main__":
    RecordFlow()
