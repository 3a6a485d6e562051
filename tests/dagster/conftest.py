"""Shared Dagster test setup: reading the store back, and one multiprocess run for the session.

The multiprocess run is the expensive part (each step is a process that loads
the code location), so it runs once, on a persistent Dagster instance in a
temporary ``DAGSTER_HOME``, and the tests that read it (store, instance,
webserver) share it. Its forkserver preloads the code location, so only the
first step pays for the imports.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowrecord.backends.local import LocalStore
from flowrecord.testing import isolated

HERE = Path(__file__).resolve().parent

# The code location module must be importable by name in step processes too.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@dataclass(frozen=True)
class ShopRun:
    """Where the session's multiprocess run of ``shop_job`` left its records."""

    dagster_home: Path
    flowrecord_home: Path
    dagster_run_id: str
    success: bool
    test_pid: int

    def store(self) -> LocalStore:
        return LocalStore(self.flowrecord_home)


MULTIPROCESS_CONFIG = {
    "execution": {
        "config": {
            "multiprocess": {
                "max_concurrent": 2,
                "start_method": {
                    "forkserver": {
                        "preload_modules": ["pandas", "pandera.pandas", "fr_dagster_defs"]
                    }
                },
            }
        }
    }
}


@pytest.fixture(scope="session")
def shop_run() -> Iterator[ShopRun]:
    """``shop_job`` run once with the multiprocess executor on a persistent instance."""
    import dagster as dg

    root = Path(tempfile.mkdtemp(prefix="fr-dagster-"))
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    flowrecord_home = root / "flowrecord"
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "PYTHONPATH")}
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    # Step processes import the code location by module name, from their own sys.path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), saved["PYTHONPATH"]]))
    try:
        with isolated(flowrecord_home, FLOWRECORD_CAPTURE_CODE="0"):
            import fr_dagster_defs

            with dg.DagsterInstance.get() as instance:
                result = dg.execute_job(
                    dg.reconstructable(fr_dagster_defs.get_shop_job),
                    instance=instance,
                    run_config=MULTIPROCESS_CONFIG,
                )
                run = ShopRun(
                    dagster_home=dagster_home,
                    flowrecord_home=flowrecord_home,
                    dagster_run_id=result.run_id,
                    success=result.success,
                    test_pid=os.getpid(),
                )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield run
    shutil.rmtree(root, ignore_errors=True)
