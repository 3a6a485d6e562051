"""Gates and policies named by reference, as every integration reads them."""

from __future__ import annotations

import pytest

from flowrecord.lifecycle import RetrainPolicy
from flowrecord.lifecycle._cron import CronSchedule, expand_macro
from flowrecord.lifecycle.references import as_retrain_policy, resolve_reference

pytestmark = pytest.mark.unit

POLICY = RetrainPolicy(model="churn", cron="@weekly")


class Holder:
    policy = POLICY


def test_a_reference_names_an_object_with_a_dotted_attribute():
    """'module:NAME' and 'module:A.B' resolve to the object itself."""
    assert resolve_reference(f"{__name__}:POLICY") is POLICY
    assert resolve_reference(f"{__name__}:Holder.policy") is POLICY
    assert resolve_reference("os.path:join").__name__ == "join"


@pytest.mark.parametrize("bad", ["no_colon", "mod:", ":NAME", "a b:c", "mod:1x", ""])
def test_a_malformed_reference_is_a_clear_value_error(bad):
    """Anything not written 'module:NAME' is refused before any import."""
    with pytest.raises(ValueError, match=r"package\.module:NAME"):
        resolve_reference(bad)


def test_missing_module_or_name_raise_what_import_raises():
    """An unknown module or attribute fails as Python says, not with a crash elsewhere."""
    with pytest.raises(ImportError):
        resolve_reference("flowrecord_no_such_module:X")
    with pytest.raises(AttributeError):
        resolve_reference(f"{__name__}:NOPE")


def test_policy_given_or_named_and_anything_else_refused():
    """as_retrain_policy passes a policy through, resolves a name, refuses other types."""
    assert as_retrain_policy(POLICY) is POLICY
    assert as_retrain_policy(f"{__name__}:POLICY") is POLICY
    assert as_retrain_policy("x", resolve=lambda ref: POLICY) is POLICY
    with pytest.raises(TypeError, match="not Holder"):
        as_retrain_policy(Holder())
    with pytest.raises(TypeError, match="not function"):
        as_retrain_policy("os.path:join")


def test_cron_macros_expand_as_the_schedule_reads_them():
    """expand_macro gives the five fields; CronSchedule reads both forms alike."""
    assert expand_macro(" @Weekly ") == "0 0 * * 0"
    assert expand_macro("@midnight") == "0 0 * * *"
    assert expand_macro("5 4 * * 1") == "5 4 * * 1"
    assert CronSchedule("@hourly").minutes == CronSchedule("0 * * * *").minutes


def _decision(*triggers):
    import time

    from flowrecord.lifecycle import RetrainDecision

    return RetrainDecision(
        model="churn",
        policy="retrain",
        should_retrain=any(t.fired for t in triggers),
        reasons=tuple(t.reason for t in triggers),
        evidence={},
        triggers=tuple(triggers),
        checked_at=time.time(),
    )


def test_event_triggers_leave_out_cron_and_the_key_follows_what_was_seen():
    """A due cron is not an event; the key is stable for the same data and moves with new data."""
    from flowrecord.lifecycle import TriggerResult

    def drift(fp: str, fired: bool = True) -> TriggerResult:
        ev = {"current": {"fingerprint": fp}, "champion": "1"}
        return TriggerResult("drift", "features", fired, "psi high", ev)

    cron = TriggerResult("cron", "0 3 * * 1", True, "tick")
    assert _decision(cron).event_triggers == () and _decision(cron).event_key() is None
    a = _decision(cron, drift("xxh3:a"))
    assert [t.label for t in a.event_triggers] == ["drift:features"]
    assert a.event_key() == _decision(drift("xxh3:a")).event_key()  # cron plays no part
    assert a.event_key() != _decision(drift("xxh3:b")).event_key()
    assert _decision(drift("xxh3:a", fired=False)).event_key() is None
