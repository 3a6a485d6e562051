"""Shared Airflow setup: one AIRFLOW_HOME per session, a migrated SQLite DB, the test DAGs.

Airflow reads its configuration when first imported, so the environment is set
here, at import time, before any test module imports ``airflow``. The DAG files
of ``tests/airflow/dags`` and ``examples/airflow`` are copied into the session's
DAGs folder: ``dag.test()`` only runs DAGs that live in a DAG bundle.

``AIRFLOW__CORE__UNIT_TEST_MODE`` stays off: that switch loads Airflow's own
test-suite configuration, and these tests are meant to see a plain install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_SOURCES = (Path(__file__).parent / "dags", REPO / "examples" / "airflow")

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="fr-airflow-"))
AIRFLOW_HOME = _SESSION_DIR / "airflow"
DAGS_FOLDER = _SESSION_DIR / "dags"
DATA_DIR = _SESSION_DIR / "data"

AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(_SESSION_DIR / "plugins"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    "AIRFLOW__API_AUTH__JWT_SECRET": "flowrecord-test-secret-" + "0123456789abcdef" * 4,
    "FR_TEST_DATA_DIR": str(DATA_DIR),
}

for _key, _value in AIRFLOW_ENV.items():
    os.environ[_key] = _value
for _path in (AIRFLOW_HOME, DAGS_FOLDER, DATA_DIR, _SESSION_DIR / "plugins"):
    _path.mkdir(parents=True, exist_ok=True)
for _source in DAG_SOURCES:
    for _file in sorted(_source.glob("*.py")):
        shutil.copy(_file, DAGS_FOLDER / _file.name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's Airflow metadata DB (SQLite), created once, as ``airflow db migrate`` does."""
    from airflow.utils import db

    db.upgradedb()
    return AIRFLOW_HOME / "airflow.db"


_loaded: dict[str, ModuleType] = {}


def load_dag_module(name: str) -> ModuleType:
    """Import a DAG file of the session's DAGs folder (once) and return the module."""
    if name in _loaded:
        return _loaded[name]
    path = DAGS_FOLDER / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fr_test_dags_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    _loaded[name] = module
    return module


@pytest.fixture(scope="session")
def load_dag(airflow_db: Path) -> Any:
    """Import a test DAG module by file name (the DB is ready); use ``.dag.test()`` on it."""
    return load_dag_module


@pytest.fixture
def run_dag(airflow_db: Path, flowrecord_home: Path) -> Any:
    """Run a test DAG with ``dag.test()`` in this process; returns the DagRun.

    The flowrecord runtime records into the test's fresh home and is flushed
    before the DagRun is returned, so the store can be read at once.
    """
    import flowrecord

    def _run(name: str, **kwargs: Any) -> Any:
        module = load_dag_module(name)
        dag_run = module.dag.test(**kwargs)
        assert flowrecord.flush(10), "flowrecord did not deliver the events in time"
        return dag_run

    return _run


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The directory the test DAGs write their files to (emptied after the test)."""
    yield DATA_DIR
    for child in DATA_DIR.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


class Record:
    """Read what flowrecord stored about Airflow runs (rows as dicts)."""

    def __init__(self, home: Path) -> None:
        from flowrecord.backends.local import LocalStore

        self.store = LocalStore(home)

    def rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.store.query(sql, params)]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        rows = self.rows(
            "SELECT * FROM runs WHERE orchestrator = 'airflow' AND pipeline = ? AND run_key = ?",
            (dag_id, run_id),
        )
        assert len(rows) == 1, f"expected one run record of {dag_id} {run_id}, got {rows}"
        return rows[0]

    def tasks(self, run: dict[str, Any]) -> dict[tuple[str, int | None, int], dict[str, Any]]:
        """Task attempts of *run* by (name, map_index, try_number)."""
        import json

        out = {}
        for row in self.rows("SELECT * FROM tasks WHERE run_id = ?", (run["run_id"],)):
            row["attributes"] = json.loads(row["attributes"] or "{}")
            out[(row["name"], row["map_index"], row["try_number"])] = row
        return out

    def of_task(self, table: str, task_row: dict[str, Any]) -> list[dict[str, Any]]:
        return self.rows(f"SELECT * FROM {table} WHERE task_id = ?", (task_row["task_id"],))


@pytest.fixture
def record(flowrecord_home: Path) -> Record:
    """Reader of the test's flowrecord store."""
    return Record(flowrecord_home)
