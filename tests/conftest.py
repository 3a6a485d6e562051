"""Shared fixtures: an isolated flowrecord home per test, a recording backend, the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowrecord.backends.local import LocalStore
from flowrecord.testing import RecordingBackend, isolated


@pytest.fixture
def flowrecord_home(tmp_path: Path) -> Iterator[Path]:
    """A fresh FLOWRECORD_HOME; the runtime is shut down (flushed) after the test."""
    home = tmp_path / "home"
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0"):
        yield home


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[RecordingBackend]:
    """A RecordingBackend beside the local store, in a fresh home."""
    home = tmp_path / "home"
    with isolated(home, FLOWRECORD_CAPTURE_CODE="0") as rec:
        rec.home = home  # type: ignore[attr-defined]
        yield rec


@pytest.fixture
def store(flowrecord_home: Path) -> LocalStore:
    """The local store of the test's home (open it after flushing)."""
    return LocalStore(flowrecord_home)
