"""A straight line through a blocking gate: ``@flowrecord_gate(block=True)`` fails its step.

For schedulers without Metaflow's switch: a refused candidate stops the run at
``gate``, so ``deploy`` never runs. The gate is named ``"module:NAME"``, from
lifecycle_refs.py beside this file.
"""

from metaflow import FlowSpec, Parameter, flowrecord_base, step

from flowrecord.lifecycle import register_model_version
from flowrecord_metaflow import flowrecord_gate


@flowrecord_base
class BlockingGateFlow(FlowSpec):
    auc = Parameter("auc", default=0.5, type=float)

    @step
    def start(self):
        self.candidate = register_model_version(
            "blocked", uri="memory://blocked", metrics={"auc": self.auc}, datasets=[]
        )
        self.next(self.gate)

    @flowrecord_gate(gate="lifecycle_refs:BLOCKING_GATE", version_from="candidate", block=True)
    @step
    def gate(self):
        self.next(self.deploy)

    @step
    def deploy(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BlockingGateFlow()
