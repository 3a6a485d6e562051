"""Watch the churn data hourly; publish ``flowrecord.retrain.churn`` when it calls for a retrain.

ChurnFlow (churn_flow.py) waits for that event with the ``@trigger`` that
``@flowrecord_retrain(RETRAIN_POLICY)`` gave it. This flow evaluates the same
policy against what flowrecord recorded (new raw data, drifted features) and,
deployed on Argo Workflows, publishes the event when a data trigger fired::

    python examples/metaflow/retrain_watch_flow.py argo-workflows create

A local ``run`` evaluates and records the policy (``retrain:*`` validations of
its ``start`` task) and publishes nothing.
"""

import sys
from pathlib import Path

# churn_common.py sits one directory up (see churn_flow.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from churn_common import RETRAIN_POLICY
from metaflow import FlowSpec, flowrecord_base, schedule, step

from flowrecord_metaflow import check_retrain


@schedule(hourly=True)
@flowrecord_base
class ChurnRetrainWatchFlow(FlowSpec):
    """Is a retrain of the churn model due? Say so to ChurnFlow's @trigger."""

    @step
    def start(self):
        """Evaluate the policy; publish its event when new data or drift fired."""
        check = check_retrain(RETRAIN_POLICY)
        self.retrain_due = check.decision.should_retrain
        self.fired = list(check.fired)
        self.event_id = check.event_id
        for reason in check.decision.reasons:
            print(reason)
        print(f"event {check.event}: {'published' if check.published else 'not published'}")
        self.next(self.end)

    @step
    def end(self):
        """Nothing to do: the event, if any, has gone."""


if __name__ == "__main__":
    ChurnRetrainWatchFlow()
