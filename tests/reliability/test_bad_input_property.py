"""Arbitrary input thrown at the public API gets only the documented errors, and the
store stays consistent."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowrecord
from flowrecord.backends.local import LocalStore
from flowrecord.testing import isolated

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

DOCUMENTED = (TypeError, ValueError)

keys = st.one_of(
    st.text(max_size=300),
    st.integers(),
    st.none(),
    st.binary(max_size=10),
    st.tuples(st.text(max_size=3)),
)
scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=50),
    st.none(),
    st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)


def _call(fn, *args, **kwargs) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", flowrecord.FlowrecordWarning)
            fn(*args, **kwargs)
    except DOCUMENTED:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["metric", "param", "tags", "metrics", "params", "dataset"]),
            keys,
            values,
        ),
        min_size=1,
        max_size=15,
    )
)
def test_public_api_accepts_or_refuses_cleanly(tmp_path_factory, calls):
    """Each call either records or raises TypeError/ValueError; the store passes its
    integrity check and holds only finite-or-marked metric values afterwards."""
    home = tmp_path_factory.mktemp("home")
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0", FLOWRECORD_SYSTEM_SAMPLING="0"):
        with flowrecord.run("prop"), flowrecord.task("t"):
            for kind, key, value in calls:
                if kind == "metric":
                    _call(flowrecord.log_metric, key, value)
                elif kind == "metrics":
                    _call(flowrecord.log_metrics, {key: value} if _hashable(key) else value)
                elif kind == "param":
                    _call(flowrecord.log_param, key, value)
                elif kind == "params":
                    _call(flowrecord.log_params, {key: value} if _hashable(key) else value)
                elif kind == "tags":
                    _call(flowrecord.set_tags, {key: value} if _hashable(key) else value)
                else:
                    _call(flowrecord.log_dataset, value, name=key if isinstance(key, str) else None)
        assert flowrecord.flush(10)
    store = LocalStore(home)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    for row in store.query("SELECT value, value_text FROM metric_points"):
        if row["value"] is None:
            assert row["value_text"] in ("nan", "inf", "-inf")
        else:
            assert math.isfinite(row["value"])
    (state,) = store.query("SELECT state FROM tasks")
    assert state[0] == "succeeded"


def _hashable(key: object) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    columns=st.dictionaries(
        st.text(min_size=1, max_size=6),
        st.lists(
            st.one_of(
                st.integers(-5, 5),
                st.floats(allow_nan=True),
                st.text(max_size=3),
                st.none(),
                st.lists(st.integers(), max_size=2),
            ),
            min_size=0,
            max_size=6,
        ),
        max_size=4,
    )
)
def test_malformed_frames_are_described_never_crash(tmp_path_factory, columns):
    """Frames with mixed, nested and ragged columns are linked without an exception."""
    import pandas as pd

    length = min((len(v) for v in columns.values()), default=0)
    frame = pd.DataFrame({k: pd.Series(v[:length], dtype=object) for k, v in columns.items()})
    home = tmp_path_factory.mktemp("home")
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0", FLOWRECORD_SYSTEM_SAMPLING="0"):
        with flowrecord.run("frames"), flowrecord.task("t"):
            event = flowrecord.log_dataset(frame, name="odd", role="output")
        assert event.name == "odd"
        assert event.row_count in (None, length)
        assert flowrecord.flush(10)
    rows = LocalStore(home).query("SELECT name FROM datasets")
    assert [r[0] for r in rows] == ["odd"]


def test_non_frame_objects_are_linked_by_name_and_type(tmp_path: Path):
    """A model object passed to log_dataset is linked by name and type, not fingerprinted."""
    with isolated(tmp_path / "home", FLOWRECORD_CAPTURE_CODE="0"):
        with flowrecord.run("p"), flowrecord.task("t"):
            event = flowrecord.log_dataset(object(), name="model", role="output")
        assert event.fingerprint is None
        assert event.data_type == "object"
        assert event.warnings
