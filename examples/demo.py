"""The flowrecord demo: a small training pipeline recorded in the embedded store.

Runs a plain-Python pipeline (ingest -> validate -> features -> train -> evaluate)
through flowrecord's public API, twice (the second time on shifted data), and
prints what the store knows about the last run. No orchestrator, no server, no
download: the data is generated.

    make demo          # or: uv run python examples/demo.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

import flowrecord

HOME = Path(os.environ.setdefault("FLOWRECORD_HOME", str(Path.cwd() / ".flowrecord")))

RawSchema = pa.DataFrameSchema(
    {
        "age": pa.Column(int, pa.Check.in_range(18, 100)),
        "income": pa.Column(float, pa.Check.ge(0)),
        "plan": pa.Column(str, pa.Check.isin(["basic", "plus", "pro"])),
        "churned": pa.Column(int, pa.Check.isin([0, 1])),
    },
    name="customers",
)


def ingest(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 5000
    age = rng.integers(18, 90, n)
    income = np.abs(rng.normal(50_000 + shift * 20_000, 15_000, n))
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    logit = -2 + 0.02 * (age - 50) - (income - 50_000) / 40_000 + (plan == "basic") * 0.8
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"age": age, "income": income, "plan": plan, "churned": churned})


def pipeline(run_key: str, seed: int, shift: float) -> None:
    with flowrecord.run("churn-training", run_key, tags={"owner": "demo"}):
        with flowrecord.task("ingest"):
            raw = ingest(seed, shift)
            flowrecord.log_dataset(raw, name="customers_raw", role="output")
        with flowrecord.task("validate"):
            flowrecord.log_dataset(raw, name="customers_raw", role="input")
            flowrecord.validate(raw, RawSchema, name="customers_raw", policy="fail")
        with flowrecord.task("features"):
            features = pd.get_dummies(raw, columns=["plan"], dtype=float)
            features["income_k"] = features.pop("income") / 1000
            flowrecord.log_dataset(features, name="churn_features", role="output")
        with flowrecord.task("train"):
            from sklearn.linear_model import LogisticRegression
            from sklearn.metrics import roc_auc_score
            from sklearn.model_selection import train_test_split

            params = {"C": 0.5, "max_iter": 500}
            flowrecord.log_params(params)
            x = features.drop(columns="churned")
            y = features["churned"]
            x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=seed)
            model = LogisticRegression(**params).fit(x_train, y_train)
            auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
            flowrecord.log_metrics({"auc": auc, "train_rows": len(x_train)})
        print(f"run {run_key}: auc={auc:.3f}")


def main() -> None:
    pipeline("week-1", seed=1, shift=0.0)
    pipeline("week-2", seed=2, shift=1.5)
    flowrecord.shutdown()
    cli = [sys.executable, "-m", "flowrecord.cli"]
    if (Path(flowrecord.__file__).parent / "cli.py").exists():
        subprocess.run([*cli, "--home", str(HOME), "runs"], check=False)
    print(f"\nrecorded in {HOME / 'flowrecord.db'}")


if __name__ == "__main__":
    main()
