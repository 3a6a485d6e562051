"""The churn retraining pipeline on Metaflow, recorded by flowrecord end to end.

ingest (``start``) -> ``features`` -> ``train`` -> ``evaluate`` -> ``gate`` ->
``deploy`` (only when promoted) -> ``end``, on the data, schemas, model, gate and
policy of ``examples/churn_common.py`` (shared with the Airflow and Dagster
examples). Run one week of it::

    python examples/metaflow/churn_flow.py run --week 1
    python examples/metaflow/churn_flow.py run --week 2 --shift 1.5   # drifted data

then ``flowrecord explain churn@champion``. What flowrecord adds, in Metaflow's terms:

- ``@flowrecord_base`` records every step (cards off: they cost seconds a task);
  the raw data and the features are validated by ``@flowrecord(validate=...)``
  and recorded as the datasets ``churn_raw`` and ``churn_features`` (their
  artifact names), with fingerprints, schemas and profiles;
- ``@flowrecord_retrain(RETRAIN_POLICY)`` puts ``@schedule(cron=...)`` and
  ``@trigger(event="flowrecord.retrain.churn")`` on the flow: inert in a local
  run, the flow's schedule and trigger once deployed to Argo Workflows;
- ``@flowrecord_gate`` applies the promotion gate before the ``gate`` step, which
  branches with Metaflow's switch: a refused candidate never reaches ``deploy``
  (the record shows that step as skipped), and the run still succeeds.
"""

import shutil
import sys
from pathlib import Path

# churn_common.py sits one directory up, shared by the three examples. Every
# Metaflow task runs this file again in its own process, so each finds it this way.
# (On remote compute, ship it with the flow: Metaflow packages the flow's directory.)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from churn_common import (
    FEATURES_SCHEMA,
    MODEL,
    RAW_SCHEMA,
    RETRAIN_POLICY,
    build_features,
    evaluate,
    generate,
    model_dir,
    promotion_gate,
    save_model,
    split,
    train,
)
from metaflow import FlowSpec, Parameter, current, flowrecord, flowrecord_base, step

from flowrecord import log_metrics
from flowrecord.lifecycle import register_model_version
from flowrecord_metaflow import (
    artifact_datasets,
    check_retrain,
    flowrecord_gate,
    flowrecord_retrain,
)


@flowrecord_retrain(RETRAIN_POLICY)
@flowrecord_base
class ChurnFlow(FlowSpec):
    """Retrain the churn model on one week of customers; promote it only on evidence."""

    week = Parameter("week", default=1, type=int, help="which week of customers to ingest")
    shift = Parameter("shift", default=0.0, type=float, help="income drift, in std devs")

    @flowrecord(validate={"churn_raw": RAW_SCHEMA}, policy="fail")
    @step
    def start(self):
        """Ingest one week of customers; data that breaks RAW_SCHEMA fails the run here."""
        self.churn_raw = generate(self.week, self.shift)
        self.next(self.features)

    @flowrecord(validate={"churn_features": FEATURES_SCHEMA}, policy="fail")
    @step
    def features(self):
        """Model-ready features; and whether the policy calls for this retrain, recorded."""
        self.churn_features = build_features(self.churn_raw)
        # The policy's triggers, judged against the champion's training data: the
        # record keeps why this run was due (drift in week 2). publish=False: the
        # event this would publish is what starts this flow once deployed.
        check = check_retrain(
            RETRAIN_POLICY,
            data={"churn_raw": self.churn_raw, "churn_features": self.churn_features},
            publish=False,
        )
        self.retrain_reasons = list(check.decision.reasons)
        self.next(self.train)

    @step
    def train(self):
        """Fit the candidate on 75% of the features; keep the rest to evaluate on."""
        self.train_df, self.eval_df = split(self.churn_features)
        self.model = train(self.train_df)
        self.model_uri = save_model(self.model, f"{MODEL}-{current.flow_name}-{current.run_id}")
        self.next(self.evaluate)

    @step
    def evaluate(self):
        """Score the candidate and register it, with the exact data it came from."""
        self.metrics = evaluate(self.model, self.eval_df)
        log_metrics(self.metrics)
        version = register_model_version(
            MODEL,
            uri=self.model_uri,
            metrics=self.metrics,
            datasets=artifact_datasets(
                self, train=["churn_raw", "churn_features"], eval=["eval_df"]
            ),
        )
        self.model_version = version.version
        self.next(self.gate)

    @flowrecord_gate(gate=lambda flow: promotion_gate(flow.eval_df), version_from="model_version")
    @step
    def gate(self):
        """The gate ran before this body: self.promotion is "promoted" or "refused".

        A refused candidate goes straight to end: the champion keeps serving.
        """
        self.next({"promoted": self.deploy, "refused": self.end}, condition="promotion")

    @step
    def deploy(self):
        """Put the new champion where serving reads it."""
        serving = model_dir() / f"{MODEL}-serving.pkl"
        shutil.copyfile(Path(self.model_uri.removeprefix("file://")), serving)
        self.serving_uri = serving.as_uri()
        print(f"deployed {MODEL} version {self.model_version} to {self.serving_uri}")
        self.next(self.end)

    @step
    def end(self):
        """What this week decided; a refusal leaves the champion serving."""
        print(f"week {self.week}: {MODEL} version {self.model_version} {self.promotion}")
        for reason in self.gate_decision["failures"]:
            print(f"  {reason}")


if __name__ == "__main__":
    ChurnFlow()
