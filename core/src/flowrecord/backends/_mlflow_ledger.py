"""The MLflow backend's memory: what it already sent, and which MLflow run is which.

MLflow does not deduplicate what a client sends twice (a file store keeps every
metric point; a SQL store only drops points identical in every column), and the
dispatcher replays a spooled batch whenever it is unsure it was delivered. So
the backend keeps a small SQLite ledger under ``FLOWRECORD_HOME/mlflow``:

* ``applied``: units of work (a metric point's event id, a chunk of system
  samples, a dataset event...) already accepted by one tracking server. A unit
  is written only after the call that carried it returned, so a server dying in
  the middle of a batch leaves exactly the delivered units marked, and a replay
  sends the rest.
* ``runs``: which MLflow run holds a flowrecord run or task, so that another
  process on this host (the next Airflow task of the same DAG run) needs no
  search to find it.

Both are keyed by the tracking URI: the same home pointed at another server
starts afresh there. The ledger is a cache of facts the server also knows; if
it is deleted, the worst case is a replay that the SQL store's own primary key
deduplicates (flowrecord sends deterministic timestamps for that reason).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["Ledger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (id INTEGER PRIMARY KEY, uri TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    target INTEGER NOT NULL, unit TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (target, unit)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    target INTEGER NOT NULL, key TEXT NOT NULL, mlflow_run_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL, PRIMARY KEY (target, key)
) WITHOUT ROWID;
"""

#: SQLite caps the number of host parameters of one statement; stay well below.
_IN_CHUNK = 500
#: Units older than this are forgotten; a spool file replayed later than that is
#: deduplicated by the SQL store's primary key alone.
RETENTION_S = 30 * 86400.0


class Ledger:
    """Applied units and run ids of one tracking server, in a SQLite file.

    Safe to share between threads; many processes may use the same file.

    >>> ledger = Ledger(Path(".flowrecord/mlflow/ledger.db"), "http://mlflow:5000")  # doctest: +SKIP
    >>> ledger.mark_applied(["0192..."])                                              # doctest: +SKIP
    """

    def __init__(self, path: Path, target_uri: str) -> None:
        self.path = path
        self.target_uri = target_uri
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._target: int | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO targets (uri) VALUES (?)", (self.target_uri,))
            row = conn.execute(
                "SELECT id FROM targets WHERE uri = ?", (self.target_uri,)
            ).fetchone()
            self._target = int(row[0])
            conn.execute("DELETE FROM applied WHERE ts < ?", (time.time() - RETENTION_S,))
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection (the next call reopens it)."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    # -- applied units ---------------------------------------------------------

    def applied(self, units: Sequence[str]) -> set[str]:
        """The subset of *units* already applied to this server."""
        if not units:
            return set()
        found: set[str] = set()
        with self._lock:
            conn = self._connect()
            for start in range(0, len(units), _IN_CHUNK):
                chunk = units[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT unit FROM applied WHERE target = ? AND unit IN ({marks})",
                    (self._target, *chunk),
                )
                found.update(r[0] for r in rows)
        return found

    def mark_applied(self, units: Iterable[str]) -> None:
        """Remember that *units* reached the server (call only after the call returned)."""
        now = time.time()
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO applied VALUES (?, ?, ?)",
                    ((self._target, u, now) for u in units),
                )
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- run ids ---------------------------------------------------------------

    def run_for(self, key: str) -> tuple[str, str] | None:
        """``(mlflow_run_id, experiment_id)`` remembered for *key*, or None."""
        with self._lock:
            row = (
                self._connect()
                .execute(
                    "SELECT mlflow_run_id, experiment_id FROM runs WHERE target = ? AND key = ?",
                    (self._target, key),
                )
                .fetchone()
            )
        return (row[0], row[1]) if row else None

    def remember_run(self, key: str, mlflow_run_id: str, experiment_id: str) -> None:
        """Remember which MLflow run holds *key* (``run:<id>`` or ``task:<id>``)."""
        with self._lock:
            self._connect().execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                (self._target, key, mlflow_run_id, experiment_id),
            )

    def forget_run(self, key: str) -> None:
        """Drop a remembered run id that the server no longer knows."""
        with self._lock:
            self._connect().execute(
                "DELETE FROM runs WHERE target = ? AND key = ?", (self._target, key)
            )
