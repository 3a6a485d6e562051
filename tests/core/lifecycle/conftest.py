"""Fixtures of the lifecycle tests: a broken registry, the store, the CLI in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lifecycle_support import BrokenRegistry

from flowrecord import recorder
from flowrecord.backends.local import LocalStore


@pytest.fixture
def broken_registry(flowrecord_home: Path) -> Iterator[None]:
    """Restart the runtime with a registry backend that raises, answering before the store."""
    recorder.shutdown()
    recorder.register_backend("broken-registry", BrokenRegistry())
    try:
        yield
    finally:
        recorder.shutdown()
        recorder.unregister_backend("broken-registry")


@pytest.fixture
def read_store(flowrecord_home: Path) -> Callable[[], LocalStore]:
    """Flush, then the test home's store."""

    def get() -> LocalStore:
        recorder.flush()
        return LocalStore(flowrecord_home)

    return get


@pytest.fixture
def run_cli(
    flowrecord_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """Run ``flowrecord ...`` in-process against the test home; (status, stdout, stderr)."""
    from flowrecord import cli

    if "flowrecord.lifecycle.cli" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "flowrecord.lifecycle.cli")
        )
    monkeypatch.setenv("COLUMNS", "200")

    def run(*argv: str) -> tuple[int, str, str]:
        recorder.flush()
        capsys.readouterr()
        code = cli.main(["--home", str(flowrecord_home), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
