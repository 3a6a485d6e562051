"""A task process killed with SIGKILL in the middle of writing leaves a consistent store,
and its task is not shown as running forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowrecord.backends.local import LocalStore
from flowrecord.query import open_store, resolve_run, run_details

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

_WRITER = textwrap.dedent(
    """
    import sys
    import flowrecord
    run = flowrecord.start_run("killed", "run-1", orchestrator="test")
    task = flowrecord.start_task("writer", run=run)
    flowrecord.flush(10)
    print("ready", flush=True)
    i = 0
    while True:  # write until killed
        flowrecord.log_metric("i", float(i), step=i)
        i += 1
        if i % 20000 == 0:
            flowrecord.flush(10)
    """
)


def test_sigkill_mid_write_keeps_store_consistent(tmp_path: Path):
    """Killing a writer mid-transaction leaves an intact store that a new writer can use."""
    home = tmp_path / "home"
    env = {**os.environ, "FLOWRECORD_HOME": str(home), "FLOWRECORD_CAPTURE_CODE": "0"}
    for attempt in range(3):  # kill at different moments
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5 + attempt * 0.37)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        store = LocalStore(home)
        assert store.query("PRAGMA integrity_check")[0][0] == "ok"
        store.close()

    # A later process writes into the same store without trouble.
    script = (
        "import flowrecord\n"
        "with flowrecord.run('after', 'r'), flowrecord.task('t'):\n"
        "    flowrecord.log_metric('ok', 1)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    store = LocalStore(home)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    assert store.query("SELECT state FROM runs WHERE pipeline = 'after'")[0][0] == "succeeded"
    points = store.query("SELECT count(*) FROM metric_points WHERE key = 'i'")[0][0]
    assert points > 0
    # The killed attempt is reported as incomplete, not running.
    reader = open_store(home)
    detail = run_details(reader, resolve_run(reader, "run-1"))
    (task,) = detail["tasks"]
    assert task["state"] == "incomplete"
