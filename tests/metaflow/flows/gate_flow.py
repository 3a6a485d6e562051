"""A promotion gate the Metaflow way: ``@flowrecord_gate`` before a step that switches on it.

``start`` registers a candidate whose ``auc`` is the ``--auc`` Parameter; the gate
(an auc of at least 0.8) promotes or refuses it, and ``gate`` branches to
``deploy`` or ``hold``. No flowrecord decorator in the code: the tests record it
with ``run --with flowrecord``. ``--model`` keeps runs sharing a store apart.
"""

from metaflow import FlowSpec, Parameter, step

from flowrecord.lifecycle import PromotionGate, register_model_version
from flowrecord_metaflow import flowrecord_gate


def auc_gate(flow):
    return PromotionGate(model=flow.model, minimums={"auc": 0.8})


class GateFlow(FlowSpec):
    model = Parameter("model", default="gated")
    auc = Parameter("auc", default=0.9, type=float)

    @step
    def start(self):
        version = register_model_version(
            self.model, uri=f"memory://{self.model}", metrics={"auc": self.auc}, datasets=[]
        )
        self.candidate = version.version
        self.next(self.gate)

    @flowrecord_gate(gate=auc_gate, version_from="candidate")
    @step
    def gate(self):
        self.next({"promoted": self.deploy, "refused": self.hold}, condition="promotion")

    @step
    def deploy(self):
        self.deployed = self.candidate
        self.next(self.end)

    @step
    def hold(self):
        self.held = self.gate_decision["failures"]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GateFlow()
