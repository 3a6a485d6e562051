"""Shared helpers of the reliability suite: writing straight into one local store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def local_callers(home: Path) -> Callable[[str], Any]:
    """Hook callers that reach only a local store in *home* (no runtime, no dispatcher)."""
    from flowrecord.backends.local import LocalBackend
    from flowrecord.dispatcher import subset_callers
    from flowrecord.plugins import make_plugin_manager

    pm = make_plugin_manager([("local", LocalBackend(home))])
    return subset_callers(pm, "local")


@pytest.fixture
def callers_for() -> Callable[[Path], Callable[[str], Any]]:
    """A function giving hook callers into the local store of a home."""
    return local_callers
