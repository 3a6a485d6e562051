"""A small training flow recorded by flowrecord: the example of docs/metaflow.md.

``@flowrecord_base`` records every step; ``start`` validates the data it
loads (and fails on bad data); ``train`` logs metrics and renders a card.
Run it with ``python train_flow.py run``, then ``flowrecord runs`` or
``python train_flow.py card view train``.
"""

import pandera.pandas as pa
from metaflow import FlowSpec, Parameter, flowrecord, flowrecord_base, step

from flowrecord import log_metric, validate

TrainSchema = pa.DataFrameSchema(
    {"x": pa.Column(float), "label": pa.Column(int, pa.Check.isin([0, 1]))},
    name="train_data",
)


@flowrecord_base
class TrainFlow(FlowSpec):
    learning_rate = Parameter("learning_rate", default=0.5)
    epochs = Parameter("epochs", default=25)
    api_key = Parameter("api_key", default="sk-example-not-a-key")  # recorded as ***

    @flowrecord(validate={"data": TrainSchema}, policy="fail")
    @step
    def start(self):
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(0)
        x = rng.normal(size=500)
        noise = rng.normal(scale=0.5, size=500)
        self.data = pd.DataFrame({"x": x, "label": (x + noise > 0).astype(int)})
        self.next(self.train)

    @flowrecord(card=True)
    @step
    def train(self):
        import numpy as np

        holdout = self.data.sample(frac=0.2, random_state=0)
        validate(holdout, TrainSchema, name="holdout", policy="warn")  # on the card too
        x, y = self.data["x"].to_numpy(), self.data["label"].to_numpy()
        w = b = 0.0
        for epoch in range(self.epochs):
            p = 1.0 / (1.0 + np.exp(-(w * x + b)))
            loss = -np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9))
            log_metric("loss", loss, step=epoch)
            w -= self.learning_rate * float(np.mean((p - y) * x))
            b -= self.learning_rate * float(np.mean(p - y))
        self.model = {"w": w, "b": b}
        self.accuracy = float(np.mean(((w * x + b) > 0) == y))
        log_metric("accuracy", self.accuracy)
        self.next(self.end)

    @step
    def end(self):
        print(f"accuracy {self.accuracy:.3f} with w={self.model['w']:.3f}")


if __name__ == "__main__":
    TrainFlow()
