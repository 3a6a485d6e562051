"""A small plain-Python pipeline through the recorder API, shared by the backend tests.

Three tasks that exercise every kind of event a backend receives: datasets
(frames without a URI, files with one), a pandera validation with a failing
check, params, a long metric series, tags, an artifact, and a failing task.
"""

from __future__ import annotations

from pathlib import Path

import flowrecord

PIPELINE = "churn"
LOSS_POINTS = 1500


def churn_pipeline(workdir: Path, run_key: str = "2026-11-22") -> flowrecord.RunHandle:
    """Run the pipeline; the ``evaluate`` task fails, the run itself succeeds."""
    import pandas as pd
    import pandera.pandas as pa

    workdir.mkdir(parents=True, exist_ok=True)
    customers = pd.DataFrame({"age": [31.0, 45.0, None, 22.0], "city": ["a", "b", "c", "a"]})
    schema = pa.DataFrameSchema(
        {"age": pa.Column(float, pa.Check.ge(25), nullable=True), "city": pa.Column(str)},
        name="customers_schema",
    )
    features = workdir / "features.csv"
    model = workdir / "model.pkl"
    with flowrecord.run(PIPELINE, run_key, tags={"owner": "ana"}) as run:
        with flowrecord.task("extract", attributes={"dag_id": PIPELINE}):
            flowrecord.log_dataset(customers, name="customers", role="output")
            customers.dropna().to_csv(features, index=False)
            flowrecord.log_dataset(str(features), name="features", role="output")
        with flowrecord.task("train"):
            flowrecord.log_dataset(customers, name="customers", role="input")
            flowrecord.validate(customers, schema, name="customers")
            flowrecord.log_dataset(str(features), name="features", role="input")
            flowrecord.log_params({"max_depth": 6, "learning_rate": 0.1})
            for step in range(LOSS_POINTS):
                flowrecord.log_metric("loss", 1.0 / (step + 1), step=step)
            flowrecord.log_metrics({"auc": 0.91, "f1": 0.8})
            flowrecord.set_tags(team="fraud")
            model.write_bytes(b"weights")
            flowrecord.log_artifact(model)
            flowrecord.log_dataset(str(model), name="model", role="output")
        try:
            with flowrecord.task("evaluate"):
                flowrecord.log_metric("accuracy", 0.5)
                raise ValueError("holdout set is empty")
        except ValueError:
            pass
    return run
