"""What the three example retraining pipelines share: data, schemas, model, gate, policy.

The Airflow, Dagster and Metaflow examples run the same churn model through the
same steps — ingest -> validate -> features -> train -> evaluate -> promotion gate
-> register/deploy — so that their records can be compared. Nothing here is
orchestrator-specific and nothing is downloaded: the data is generated, and
``shift`` moves the customers' income so that a later week drifts.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from flowrecord.lifecycle import BootstrapTest, DriftTrigger, PromotionGate, RetrainPolicy

MODEL = "churn"
PLANS = ("basic", "plus", "pro")

RAW_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(int, unique=True),
        "age": pa.Column(int, pa.Check.in_range(18, 100)),
        "income": pa.Column(float, pa.Check.ge(0)),
        "plan": pa.Column(str, pa.Check.isin(list(PLANS))),
        "tenure_months": pa.Column(int, pa.Check.ge(0)),
        "churned": pa.Column(int, pa.Check.isin([0, 1])),
    },
    name="churn_raw",
)

FEATURES_SCHEMA = pa.DataFrameSchema(
    {
        "age": pa.Column(float, pa.Check.in_range(18, 100)),
        "income_k": pa.Column(float, pa.Check.ge(0)),
        "tenure_months": pa.Column(float, pa.Check.ge(0)),
        "plan_basic": pa.Column(float, pa.Check.isin([0.0, 1.0])),
        "plan_plus": pa.Column(float, pa.Check.isin([0.0, 1.0])),
        "plan_pro": pa.Column(float, pa.Check.isin([0.0, 1.0])),
        "churned": pa.Column(int, pa.Check.isin([0, 1])),
    },
    name="churn_features",
    strict=True,
)


def generate(week: int, shift: float = 0.0, n: int = 4000) -> pd.DataFrame:
    """One week of customers; *shift* moves incomes up by that many standard deviations."""
    rng = np.random.default_rng(1000 + week)
    age = rng.integers(18, 90, n)
    income = np.abs(rng.normal(52_000 + shift * 18_000, 18_000, n))
    plan = rng.choice(PLANS, n, p=[0.5, 0.3, 0.2])
    tenure = rng.integers(0, 120, n)
    logit = (
        -1.2
        + 0.025 * (age - 50)
        - (income - 52_000) / 30_000
        + (plan == "basic") * 0.9
        - tenure / 60
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "customer_id": np.arange(week * 1_000_000, week * 1_000_000 + n),
            "age": age,
            "income": income,
            "plan": plan,
            "tenure_months": tenure,
            "churned": churned,
        }
    )


def build_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Model-ready columns: numeric, one-hot plan, income in thousands."""
    out = pd.DataFrame(
        {
            "age": raw["age"].astype(float),
            "income_k": raw["income"] / 1000.0,
            "tenure_months": raw["tenure_months"].astype(float),
        }
    )
    for plan in PLANS:
        out[f"plan_{plan}"] = (raw["plan"] == plan).astype(float)
    out["churned"] = raw["churned"].astype(int)
    return out


def split(features: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reproducible 75/25 train/evaluation split."""
    rng = np.random.default_rng(seed)
    mask = rng.random(len(features)) < 0.75
    return features[mask].reset_index(drop=True), features[~mask].reset_index(drop=True)


def train(train_df: pd.DataFrame, *, C: float = 1.0, max_iter: int = 500) -> Any:
    """A scaled logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return model.fit(train_df.drop(columns="churned"), train_df["churned"])


def scores(model: Any, eval_df: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(eval_df.drop(columns="churned"))[:, 1]


def evaluate(model: Any, eval_df: pd.DataFrame) -> dict[str, float]:
    """AUC overall and per age slice, and log loss."""
    from sklearn.metrics import log_loss, roc_auc_score

    y = eval_df["churned"].to_numpy()
    p = scores(model, eval_df)
    young = eval_df["age"].to_numpy() < 40
    return {
        "auc": float(roc_auc_score(y, p)),
        "auc/slice=young": float(roc_auc_score(y[young], p[young])),
        "auc/slice=older": float(roc_auc_score(y[~young], p[~young])),
        "log_loss": float(log_loss(y, p)),
    }


def model_dir() -> Path:
    """Where the examples keep model files (beside the flowrecord store)."""
    home = Path(os.environ.get("FLOWRECORD_HOME", ".flowrecord"))
    path = home / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_model(model: Any, name: str) -> str:
    path = model_dir() / f"{name}.pkl"
    with path.open("wb") as fh:
        pickle.dump(model, fh)
    return path.resolve().as_uri()


def load_model(uri: str) -> Any:
    path = Path(uri.removeprefix("file://"))
    with path.open("rb") as fh:
        return pickle.load(fh)


def evaluation_arrays(eval_df: pd.DataFrame):
    """``evaluation_data`` for the gate's bootstrap: both models scored on *eval_df*."""

    def data(candidate: Any, champion: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = eval_df["churned"].to_numpy()
        return (
            y,
            scores(load_model(candidate.uri), eval_df),
            scores(load_model(champion.uri), eval_df),
        )

    return data


def promotion_gate(eval_df: pd.DataFrame | None = None) -> PromotionGate:
    """The churn gate: an AUC floor, no regression overall or on any age slice,
    validated training data, and — when evaluation data is at hand — an improvement
    beyond noise on it."""
    bootstrap = None
    if eval_df is not None:
        bootstrap = BootstrapTest(
            metric="roc_auc",
            n_resamples=400,
            confidence=0.95,
            min_difference=-0.01,
            seed=0,
            evaluation_data=evaluation_arrays(eval_df),
        )
    return PromotionGate(
        model=MODEL,
        minimums={"auc": 0.70},
        non_regression={"auc": 0.02, "auc/slice=*": 0.04},
        require_validations=["train"],
        bootstrap=bootstrap,
    )


RETRAIN_POLICY = RetrainPolicy(
    model=MODEL,
    cron="0 3 * * 1",
    new_data=["churn_raw"],
    drift=DriftTrigger("churn_features", psi=0.2, ks=0.1),
)
