"""Written-out frozen classes (configuration, step settings) behave as the frozen
dataclasses they replace: positional construction, dataclasses.replace, pickling."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from flowrecord.config import Config

pytestmark = pytest.mark.unit


def test_config_takes_positional_and_keyword_arguments_with_defaults() -> None:
    """Config(home, ...) fills the defaults it always had, and each instance gets its own extra."""
    a, b = Config(Path("/h")), Config(Path("/h"), ("local", "mlflow"), trace=True)
    assert a.backends == ("local",) and a.flush_timeout_s == 2.0 and a.extra == {}
    assert b.backends == ("local", "mlflow") and b.trace and a.extra is not Config(Path("/h")).extra
    assert Config.__match_args__ == tuple(f.name for f in dataclasses.fields(Config))
    with pytest.raises(TypeError):
        Config()  # type: ignore[call-arg]


def test_config_replace_keeps_the_other_fields() -> None:
    """dataclasses.replace (as the CLI does for --home) changes one field and keeps the rest."""
    config = Config(Path("/h"), ("mlflow",), max_param_bytes=10, extra={"mlflow": {"uri": "x"}})
    moved = dataclasses.replace(config, home=Path("/elsewhere"))
    assert type(moved) is Config and moved.home == Path("/elsewhere")
    assert dataclasses.replace(moved, home=Path("/h")) == config != moved


def test_config_is_frozen_and_pickles() -> None:
    """A Config cannot change after it is made and survives a pickle round trip."""
    config = Config(Path("/h"), extra={"k": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.home = Path("/x")  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(config))
    assert again == config and repr(again) == repr(config)
    assert repr(config).startswith("Config(home=PosixPath('/h'), backends=('local',), enabled=True")
