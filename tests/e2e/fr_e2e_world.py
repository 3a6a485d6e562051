"""What the examples' end-to-end tests share: a fresh store, the CLI on it, its rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowrecord.backends.local import LocalStore


class StoreWorld:
    """A scratch directory whose ``flowrecord-home`` holds one example's record.

    Subclasses set ``env`` (the environment the example runs in, pointing
    ``FLOWRECORD_HOME`` at :attr:`home`) and ``pipeline`` (the recorded name).
    """

    pipeline = ""
    env: dict[str, str]

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "flowrecord-home"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``flowrecord <args>`` against this world's store."""
        main = "import sys; from flowrecord.cli import main; sys.exit(main())"
        return subprocess.run(
            [sys.executable, "-c", main, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of the store, as plain dicts."""
        return [dict(r) for r in LocalStore(self.home).query(sql, params)]

    def tasks(self, run_key: str) -> dict[str, dict[str, Any]]:
        """The tasks of the pipeline's run *run_key*, by name, with the run's state."""
        rows = self.rows(
            "SELECT t.*, r.state AS run_state FROM tasks t JOIN runs r USING (run_id) "
            "WHERE r.pipeline = ? AND r.run_key = ?",
            (self.pipeline, run_key),
        )
        return {r["name"]: r for r in rows}

    def gate_decision(self, run_key: str, gate_task: str) -> dict[str, Any]:
        """The one gate decision recorded under *gate_task* in run *run_key*."""
        task = self.tasks(run_key)[gate_task]
        (row,) = self.rows("SELECT * FROM gate_decisions WHERE task_id = ?", (task["task_id"],))
        return row

    def explain_champion(self, training_run_key: str, training_task: str) -> dict[str, Any]:
        """``flowrecord explain churn@champion --json``, checked to name version 1,
        promoted, trained by *training_task* in run *training_run_key*, on validated
        ``churn_raw``; the text form is checked to name it too."""
        out = self.cli("explain", "churn@champion", "--json")
        assert out.returncode == 0, out.stderr[-2000:]
        x = json.loads(out.stdout)
        assert (x["model"], x["version"]) == ("churn", "1")
        assert x["promotion"]["applied"] and x["training"]["run"]["run_key"] == training_run_key
        assert x["training"]["task"]["name"] == training_task
        text = self.cli("explain", "churn@champion")
        assert text.returncode == 0 and "churn version 1 (champion)" in text.stdout
        return x
