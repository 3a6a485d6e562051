"""A gate and a policy named by reference (``"lifecycle_refs:NAME"``) in the lifecycle tests."""

from flowrecord.lifecycle import DriftTrigger, PromotionGate, RetrainPolicy

BLOCKING_GATE = PromotionGate(model="blocked", minimums={"auc": 0.8})

WEEKLY_POLICY = RetrainPolicy(
    model="weekly-churn", cron="0 3 * * 1", drift=DriftTrigger("features", psi=0.2, ks=0.1)
)
