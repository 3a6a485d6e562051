"""A real Airflow deployment: API server, DAG processor and scheduler as processes, on PostgreSQL.

Tasks run in task processes supervised by the LocalExecutor (forked workers)
or by Celery workers (separate processes, Redis broker). The record must be
the same as under ``dag.test()``: the task processes open the run and their
attempts, and the scheduler's DAG-run hook closes the run.

Every wait is bounded; every process started here is stopped by its id
(process group) when the module ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

# Starting a deployment takes minutes on a small machine: the first test pays for it.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

DEPLOY_DAGS = Path(__file__).parent / "deploy_dags"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Deployment:
    """A running Airflow deployment and its flowrecord home."""

    home: Path
    env: dict[str, str]
    port: int
    queue: str
    celery_problem: str | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [AIRFLOW, *args],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)  # the group of the process we started, by its id
            except ProcessLookupError:
                break
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        # Children that outlived their leader (task processes) go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        out = []
        for path in sorted(self.home.glob("*.log")):
            out.append(
                f"----- {path.name} (tail) -----\n{path.read_text(errors='replace')[-3000:]}"
            )
        return "\n".join(out)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        response = requests.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def trigger(self, dag_id: str) -> str:
        _wait(
            f"DAG {dag_id} to be parsed",
            lambda: self.api("GET", f"/api/v2/dags/{dag_id}"),
            timeout=180,
            every=2,
        )
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

        def finished() -> str | None:
            state = self.api("GET", path)["state"]
            return state if state in ("success", "failed") else None

        try:
            return str(_wait(f"DAG run {run_id} of {dag_id}", finished, timeout, every=2))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


def _celery_problem() -> str | None:
    """Why the CeleryExecutor cannot load here, or None when it can."""
    try:
        import airflow.providers.celery.executors.celery_executor_utils  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _drop(admin_url: str, name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(f"{admin_url}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def deployment(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """API server, DAG processor and scheduler (LocalExecutor and CeleryExecutor) on PostgreSQL."""
    import psycopg2

    name = f"fr_airflow_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{postgres_server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    db_url = f"{postgres_server}/{name}".replace("postgresql://", "postgresql+psycopg2://", 1)

    home = tmp_path_factory.mktemp("airflow-deploy")
    dags = home / "dags"
    dags.mkdir()
    celery_problem = _celery_problem()
    for dag_file in DEPLOY_DAGS.glob("*.py"):
        if celery_problem and "celery" in dag_file.name:
            continue
        shutil.copy(dag_file, dags / dag_file.name)
    port = _free_port()
    queue = f"fr_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FLOWRECORD_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"
            + ("" if celery_problem else ",CeleryExecutor"),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": "flowrecord-deploy-" + uuid.uuid4().hex * 2,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "FLOWRECORD_HOME": str(home / "flowrecord"),
            "FLOWRECORD_CAPTURE_CODE": "0",
            "FLOWRECORD_SAMPLE_INTERVAL": "0.2",
        }
    )
    deployment = Deployment(
        home=home, env=env, port=port, queue=queue, celery_problem=celery_problem
    )
    try:
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        deployment.start("api-server", "api-server", "--port", str(port))
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler")
        try:
            _wait(
                "the API server",
                lambda: deployment.api("GET", "/api/v2/monitor/health"),
                timeout=180,
                every=2,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{deployment.logs()}") from None
        yield deployment
    finally:
        for proc_name in list(deployment.processes):
            deployment.stop(proc_name)
        _drop(postgres_server, name)


def _store(deployment: Deployment) -> Any:
    from flowrecord.backends.local import LocalStore

    return LocalStore(deployment.home / "flowrecord", create=False)


def _closed_run(deployment: Deployment, dag_id: str, run_id: str) -> dict[str, Any]:
    """The run record once the scheduler's DAG-run hook has closed it (bounded wait)."""

    def closed() -> dict[str, Any] | None:
        rows = _store(deployment).query(
            "SELECT * FROM runs WHERE pipeline = ? AND run_key = ?", (dag_id, run_id)
        )
        return dict(rows[0]) if rows and rows[0]["ended_at"] is not None else None

    return _wait(f"the run record of {run_id} to be closed", closed, timeout=60)


def _attempts(deployment: Deployment, run: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    store = _store(deployment)
    out = {}
    for row in store.query("SELECT * FROM tasks WHERE run_id = ?", (run["run_id"],)):
        row = dict(row)
        out[(row["name"], row["map_index"], row["try_number"])] = row
    return out


def _of(deployment: Deployment, table: str, task: dict[str, Any]) -> list[dict[str, Any]]:
    store = _store(deployment)
    return [
        dict(r) for r in store.query(f"SELECT * FROM {table} WHERE task_id = ?", (task["task_id"],))
    ]


def test_local_executor_records_every_task_process(deployment: Deployment):
    """Scheduler + LocalExecutor on PostgreSQL: every attempt, its data and usage; run closed."""
    import requests

    run_id = deployment.trigger("fr_deploy_local")
    assert deployment.wait_for_run("fr_deploy_local", run_id) == "success"
    run = _closed_run(deployment, "fr_deploy_local", run_id)
    assert run["state"] == "succeeded" and run["orchestrator"] == "airflow"

    tasks = _attempts(deployment, run)
    assert set(tasks) == {
        ("make", None, 1),
        ("train", None, 1),
        ("square", 0, 1),
        ("square", 1, 1),
        ("flaky", None, 1),
        ("flaky", None, 2),
    }
    assert tasks[("flaky", None, 1)]["state"] == "retrying"
    assert tasks[("flaky", None, 1)]["error"] == "ConnectionError: first try always fails"
    others = [row for key, row in tasks.items() if key != ("flaky", None, 1)]
    assert all(row["state"] == "succeeded" for row in others)
    # Each attempt ran in its own task process, sampled there.
    scheduler_pid = deployment.processes["scheduler"].pid
    assert all(row["pid"] not in (None, scheduler_pid, os.getpid()) for row in tasks.values())
    for row in tasks.values():
        assert len(_of(deployment, "system_usage", row)) == 1, row["name"]

    made = _of(deployment, "datasets", tasks[("make", None, 1)])
    read = [
        d for d in _of(deployment, "datasets", tasks[("train", None, 1)]) if d["role"] == "input"
    ]
    assert [d["name"] for d in made] == ["fr_deploy_local.make"] and made[0]["row_count"] == 3
    assert [(d["name"], d["fingerprint"]) for d in read] == [
        ("fr_deploy_local.make", made[0]["fingerprint"])
    ]
    metrics = {
        m["key"]: m["value"] for m in _of(deployment, "metric_points", tasks[("train", None, 1)])
    }
    assert metrics == {"auc": 0.87, "rows": 3.0}
    params = {p["key"]: p["value"] for p in _of(deployment, "params", tasks[("train", None, 1)])}
    assert params == {"learning_rate": "0.5"}
    squared = {
        key[1]: {m["key"]: m["value"] for m in _of(deployment, "metric_points", row)}
        for key, row in tasks.items()
        if key[0] == "square"
    }
    assert squared == {0: {"squared": 4.0}, 1: {"squared": 9.0}}

    # The UI: the extra link of a task instance, and the page it opens, over HTTP.
    quoted = quote(run_id, safe="")
    links = deployment.api(
        "GET", f"/api/v2/dags/fr_deploy_local/dagRuns/{quoted}/taskInstances/train/links"
    )["extra_links"]
    assert links["flowrecord"] == (
        f"{deployment.url}/flowrecord/dags/fr_deploy_local/runs/{quoted}/tasks/train?try_number=1"
    )
    page = requests.get(links["flowrecord"], timeout=30)
    assert page.status_code == 200
    for expected in (
        "auc",
        "0.87",
        "learning_rate",
        "fr_deploy_local.make",
        made[0]["fingerprint"],
    ):
        assert expected in page.text, expected
    record = requests.get(
        f"{deployment.url}/flowrecord/dags/fr_deploy_local/runs/{quoted}/tasks/square",
        params={"map_index": 1, "format": "json"},
        timeout=30,
    ).json()
    assert record["attempt"]["map_index"] == 1
    assert [m["key"] for m in record["metrics"]] == ["squared"]


def test_celery_workers_record_every_task_process(deployment: Deployment):
    """Scheduler + CeleryExecutor: tasks run on a Celery worker process and are recorded alike."""
    if deployment.celery_problem:
        pytest.skip(
            f"the CeleryExecutor cannot load in this environment: {deployment.celery_problem}"
        )
    worker = deployment.start(
        "celery-worker", "celery", "worker", "--queues", deployment.queue, "--concurrency", "2"
    )
    try:
        run_id = deployment.trigger("fr_deploy_celery")
        assert deployment.wait_for_run("fr_deploy_celery", run_id, timeout=300) == "success"
        run = _closed_run(deployment, "fr_deploy_celery", run_id)
        assert run["state"] == "succeeded"
        tasks = _attempts(deployment, run)
        assert set(tasks) == {("make", None, 1), ("train", None, 1)}
        assert all(row["state"] == "succeeded" for row in tasks.values())
        for row in tasks.values():
            attributes = json.loads(row["attributes"])
            assert attributes["queue"] == deployment.queue
            assert len(_of(deployment, "system_usage", row)) == 1
        made = _of(deployment, "datasets", tasks[("make", None, 1)])
        read = [
            d
            for d in _of(deployment, "datasets", tasks[("train", None, 1)])
            if d["role"] == "input"
        ]
        assert read[0]["fingerprint"] == made[0]["fingerprint"]
        assert worker.poll() is None, deployment.logs()
    finally:
        deployment.stop("celery-worker")
