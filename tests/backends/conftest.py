"""Fixtures of the backend tests: a real MLflow tracking server, an OpenLineage receiver.

The MLflow server is the real ``mlflow server`` on a fresh PostgreSQL database
with a served artifacts directory, started once per session (it takes tens of
seconds on a small machine) and restartable on the same database and port, so
a test can kill it in the middle of a pipeline and bring it back.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SPEC_DIR = REPO_ROOT.parent / "shared" / "spec" / "openlineage"


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Backends set MLflow's HTTP variables with setdefault: undo that after each test."""
    saved = dict(os.environ)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MlflowServer:
    """A running ``mlflow server`` subprocess (its own process group)."""

    backend_store_uri: str
    artifacts: Path
    log_path: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240.0) -> None:
        """Start the server and wait until ``/health`` answers."""
        self.launch()
        self.wait(timeout)

    def launch(self) -> None:
        """Start the server process without waiting for it."""
        env = {
            **os.environ,
            # The job runner starts a dozen worker processes this test has no use for.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                self.backend_store_uri,
                "--artifacts-destination",
                str(self.artifacts),
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait(self, timeout: float = 240.0) -> None:
        """Wait until the launched server answers ``/health``."""
        import requests

        assert self.proc is not None, "the server was not launched"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer in {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """Kill the server and its workers at once (SIGKILL to the process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None
        # The listening socket is gone once the group is dead; wait until it is.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this directory's tests that need the MLflow server last, so it boots meanwhile."""
    mine = [i for i, item in enumerate(items) if Path(str(item.path)).is_relative_to(HERE)]
    ordered = sorted(
        (items[i] for i in mine), key=lambda item: "mlflow_server" in item.fixturenames
    )
    for i, item in zip(mine, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session", autouse=True)
def _boot_mlflow_server_early(request: pytest.FixtureRequest) -> None:
    """Launch the MLflow server at the first test here when any collected test needs it."""
    if any("mlflow_server" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("_mlflow_server_process")


@pytest.fixture(scope="session")
def mlflow_server(_mlflow_server_process: MlflowServer) -> MlflowServer:
    """A real MLflow tracking server: PostgreSQL backend store, served artifacts directory."""
    if _mlflow_server_process.proc is None:
        _mlflow_server_process.launch()
    _mlflow_server_process.wait()
    return _mlflow_server_process


@pytest.fixture(scope="session")
def _mlflow_server_process(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """The server's process on a fresh PostgreSQL database, launched (not yet waited for)."""
    import psycopg2

    name = f"fr_mlflow_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{postgres_server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    root = tmp_path_factory.mktemp("mlflow_server")
    base = postgres_server.replace("postgresql://", "postgresql+psycopg2://", 1)
    server = MlflowServer(
        backend_store_uri=f"{base}/{name}",
        artifacts=root / "artifacts",
        log_path=root / "server.log",
    )
    try:
        server.launch()
        yield server
    finally:
        server.kill()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# ---------------------------------------------------------------------------
# OpenLineage: a receiver of events over HTTP, and the vendored spec
# ---------------------------------------------------------------------------


@dataclass
class LineageReceiver:
    """Collects the OpenLineage events POSTed to it; answers *status*."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    #: Events this says yes to are answered 400 (a permanent refusal) and not kept.
    refuse: Callable[[dict[str, Any]], bool] | None = None

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("eventType") == event_type]


@pytest.fixture
def lineage_receiver() -> Iterator[LineageReceiver]:
    """A small HTTP server on 127.0.0.1 that keeps every event it receives."""
    receiver = LineageReceiver(url="")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            event = json.loads(body)
            status = receiver.status
            if status == 200 and receiver.refuse is not None and receiver.refuse(event):
                status = 400
            if status == 200:
                with lock:
                    receiver.events.append(event)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def openlineage_spec() -> Any:
    """A validator of events and facets against the vendored OpenLineage JSON schemas."""
    if not (SPEC_DIR / "OpenLineage.json").is_file():
        pytest.fail(f"the OpenLineage spec is expected at {SPEC_DIR} (../shared beside the repo)")
    from _ol_spec import SpecValidator

    return SpecValidator(SPEC_DIR)
