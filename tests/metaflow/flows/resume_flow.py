"""A flow recorded by ``@flowrecord_base`` whose ``check`` step fails until healed.

``check`` validates ``frame`` with policy ``fail`` (against a schema named by
reference, so that pandera is imported by that task alone): the frame has a negative
value unless RESUME_FLOW_HEAL=1, so the first run fails there and a ``resume``
with the variable set re-runs ``check`` and ``end`` and clones the rest.
"""

import os

from metaflow import FlowSpec, flowrecord, flowrecord_base, step


@flowrecord_base
class ResumeFlow(FlowSpec):
    @step
    def start(self):
        self.items = ["a", "b"]
        self.next(self.prepare)

    @step
    def prepare(self):
        import pandas as pd

        healed = os.environ.get("RESUME_FLOW_HEAL") == "1"
        self.frame = pd.DataFrame({"v": [1, 2, 3] if healed else [1, -2, 3]})
        self.next(self.check)

    @flowrecord(validate={"frame": "resume_schemas:PositiveSchema"}, policy="fail")
    @step
    def check(self):
        if os.environ.get("RESUME_FLOW_HEAL") == "1":
            import pandas as pd

            self.frame = pd.DataFrame({"v": [1, 2, 3]})
        self.checked = True
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ResumeFlow()
