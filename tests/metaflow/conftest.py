"""Real Metaflow runs in a throwaway local world: datastore, metadata and flowrecord home.

Metaflow runs each task in its own process, so everything travels by environment:
the local datastore and metadata root, a user name, an empty Metaflow config
home and ``FLOWRECORD_HOME``. Flows run with their working directory at the
datastore root, where Metaflow's local cards are written and read back.

Runs are session-scoped: one run of a flow serves every test that reads it. A
flow run is mostly a chain of task processes waiting on each other, so the
runs the selected tests need start together, in threads, the first time any
of them is asked for (:func:`flow_runs`); they also write to one flowrecord
store at once, as concurrent pipelines do.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowrecord.backends.local import LocalStore

FLOWS = Path(__file__).parent / "flows"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "metaflow" / "train_flow.py"


@dataclass(frozen=True)
class RunResult:
    """How one ``python flow.py ...`` ended."""

    returncode: int
    run_id: str | None
    output: str


@dataclass(frozen=True)
class MetaflowWorld:
    """Where a test's Metaflow runs keep their data, and the environment to reach it."""

    root: Path
    """Datastore root (holds ``.metaflow``); also the runs' working directory."""
    home: Path
    """FLOWRECORD_HOME of the runs."""
    env: Mapping[str, str]

    def store(self) -> LocalStore:
        return LocalStore(self.home)

    def tasks(self, run_key: str) -> list[dict[str, Any]]:
        """The task rows of the flowrecord run whose Metaflow run id is *run_key*."""
        rows = self.store().query(
            "SELECT t.* FROM tasks t JOIN runs r USING (run_id) WHERE r.run_key = ? "
            "ORDER BY t.name, t.map_index, t.try_number",
            (run_key,),
        )
        out = []
        for row in rows:
            item = dict(row)
            item["attributes"] = json.loads(item["attributes"] or "{}")
            out.append(item)
        return out

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.store().query(sql, params)]

    def run(self, flow: Path, *args: str, env: Mapping[str, str] | None = None) -> RunResult:
        """``python flow.py --no-pylint <args>`` in this world; never raises on failure."""
        proc = subprocess.run(
            [sys.executable, str(flow), "--no-pylint", *args],
            cwd=self.root,
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=800,
        )
        output = proc.stdout + proc.stderr
        match = re.search(r"run-id (\S+?)\)?:", output)
        return RunResult(proc.returncode, match.group(1) if match else None, output)


def make_world(root: Path) -> MetaflowWorld:
    # .metaflow made up front: the client's local metadata wants it to exist, and
    # Metaflow's local cards are written under the first .metaflow above the cwd.
    (root / ".metaflow").mkdir(parents=True, exist_ok=True)
    home = root / "flowrecord-home"
    env = {
        "METAFLOW_HOME": str(root / "metaflow-config"),  # no user config leaks in
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root),
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DEFAULT_METADATA": "local",
        "USERNAME": "tester",
        "USER": "tester",
        "FLOWRECORD_HOME": str(home),
        "FLOWRECORD_BACKENDS": "local",
        "FLOWRECORD_CAPTURE_CODE": "0",
        "FLOWRECORD_SAMPLE_INTERVAL": "0.2",
        "FLOWRECORD_FLUSH_TIMEOUT": "10",
    }
    return MetaflowWorld(root=root, home=home, env=env)


@pytest.fixture(scope="session")
def metaflow_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaflowWorld]:
    """One local Metaflow world for the session; the Metaflow client reads from it."""
    import metaflow

    world = make_world(tmp_path_factory.mktemp("metaflow"))
    metaflow.metadata(f"local@{world.root}")
    metaflow.namespace(None)
    yield world


# ---------------------------------------------------------------------------
# the session's flow runs, started together
# ---------------------------------------------------------------------------


def _record_flow(world: MetaflowWorld) -> RunResult:
    # The zero-code switch, as a user types it.
    return world.run(FLOWS / "record_flow.py", "run", "--with", "flowrecord", "--max-workers", "4")


def _resume_flow(world: MetaflowWorld) -> tuple[RunResult, RunResult]:
    flow = FLOWS / "resume_flow.py"
    first = world.run(flow, "run")
    if first.run_id is None:
        return first, first
    heal = {"RESUME_FLOW_HEAL": "1"}
    second = world.run(flow, "resume", "--origin-run-id", first.run_id, env=heal)
    return first, second


def _example_flow(world: MetaflowWorld) -> tuple[str, str, str]:
    # Through Metaflow's Runner API, as a notebook or a test would. The Runner
    # reloads Metaflow's CLI modules and sets signal handlers: main thread only.
    from metaflow import Runner

    with Runner(
        str(EXAMPLE), show_output=False, env=dict(world.env), cwd=str(world.root), pylint=False
    ) as runner:
        result = runner.run()
        return result.status, result.run.id, result.stdout + result.stderr


def _gate_flow(world: MetaflowWorld) -> tuple[RunResult, RunResult]:
    # One model, two candidates in turn: the first promoted, the second refused.
    flow = FLOWS / "gate_flow.py"
    promoted = world.run(flow, "run", "--with", "flowrecord", "--model", "gated", "--auc", "0.9")
    refused = world.run(flow, "run", "--with", "flowrecord", "--model", "gated", "--auc", "0.7")
    return promoted, refused


def _blocking_gate_flow(world: MetaflowWorld) -> RunResult:
    flow = FLOWS / "blocking_gate_flow.py"
    return world.run(flow, "run", "--auc", "0.5")


def _default_decospecs(world: MetaflowWorld) -> RunResult:
    env = {"METAFLOW_DEFAULT_DECOSPECS": "flowrecord"}
    return world.run(FLOWS / "tiny_flow.py", "run", env=env)


def _broken_store(world: MetaflowWorld) -> RunResult:
    # A world of its own whose FLOWRECORD_HOME lies under a regular file.
    broken = make_world(world.root.parent / f"{world.root.name}-broken")
    blocker = broken.root / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    env = {"FLOWRECORD_HOME": os.fspath(blocker / "home")}
    return broken.run(FLOWS / "tiny_flow.py", "run", "--with", "flowrecord:card=true", env=env)


#: Fixture name (in the test modules) -> the run it stands for.
FLOW_RUNS: dict[str, Callable[[MetaflowWorld], Any]] = {
    "record_run": _record_flow,
    "resumed": _resume_flow,
    "example_run": _example_flow,
    "decospec_run": _default_decospecs,
    "broken_store_run": _broken_store,
    "gate_runs": _gate_flow,
    "blocked_gate_run": _blocking_gate_flow,
}
#: Runs made in the main thread, when their fixture asks (the others run beside them).
MAIN_THREAD = frozenset({"example_run"})


class FlowRuns:
    """The session's flow runs, in flight or done."""

    def __init__(self, futures: Mapping[str, Future[Any]], world: MetaflowWorld) -> None:
        self._futures = dict(futures)
        self._world = world

    def get(self, name: str) -> Any:
        """The result of run *name*, waiting for it (starting it now if nobody did)."""
        if name not in self._futures:
            self._futures[name] = _done(FLOW_RUNS[name](self._world))
        return self._futures[name].result()


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


@pytest.fixture(scope="session")
def flow_runs(request: pytest.FixtureRequest, metaflow_world: MetaflowWorld) -> Iterator[FlowRuns]:
    """Start, together, every flow run that a selected test asks for."""
    wanted = sorted(
        {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
        & set(FLOW_RUNS) - MAIN_THREAD
    )
    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        futures = {name: pool.submit(FLOW_RUNS[name], metaflow_world) for name in wanted}
        yield FlowRuns(futures, metaflow_world)


# ---------------------------------------------------------------------------
# cards
# ---------------------------------------------------------------------------


def card_payload(html: str) -> dict[str, Any]:
    """The component data a Metaflow card embeds in its HTML (base64 JSON)."""
    match = re.search(r'window\.__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', html)
    assert match, "no card data in the card's HTML"
    return json.loads(base64.b64decode(match.group(1)))


@pytest.fixture(scope="session")
def read_card_tables() -> Any:
    """A function: card HTML -> each table of a flowrecord card, by its heading."""
    return card_tables


def card_tables(html: str) -> dict[str, list[list[str]]]:
    """Each table of a flowrecord card, by the heading above it."""
    tables: dict[str, list[list[str]]] = {}
    heading = None

    def walk(node: Any) -> None:
        nonlocal heading
        if isinstance(node, dict):
            if node.get("type") == "markdown" and str(node.get("source", "")).startswith("## "):
                heading = node["source"][3:].strip()
            elif node.get("type") == "table" and heading:
                tables[heading] = node["data"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card_payload(html))
    return tables
