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
