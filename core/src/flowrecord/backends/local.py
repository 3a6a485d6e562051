"""The embedded default backend: one SQLite file under ``FLOWRECORD_HOME``.

The store is written by many task processes at once (an Airflow worker pool, a
Dagster multiprocess executor, Metaflow's parallel tasks), so it runs in WAL mode
with a generous busy timeout, writes each batch in one ``BEGIN IMMEDIATE``
transaction, and is idempotent on event ids: replaying a spooled batch inserts
nothing twice. Runs and tasks are upserted so that the many processes of one run,
arriving in any order, converge on one record whose final state is never
overwritten by a late "started".

The file is marked with a SQLite ``application_id`` and a ``meta`` table; opening
any other database as a store is refused with :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flowrecord._impl import hookimpl
from flowrecord.events import metric_point

__all__ = ["STORE_FILE", "LocalBackend", "LocalStore", "StoreError"]

STORE_FILE = "flowrecord.db"
#: 'FlRc' — lets us tell our store from any other SQLite file.
APPLICATION_ID = 0x466C5263
STORE_SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, orchestrator TEXT, pipeline TEXT, run_key TEXT,
    state TEXT, started_at REAL, ended_at REAL, error TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, run_id TEXT, name TEXT, try_number INTEGER, map_index INTEGER,
    state TEXT, started_at REAL, ended_at REAL, duration_s REAL, error TEXT,
    host TEXT, pid INTEGER, attributes TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_run ON tasks(run_id);
CREATE TABLE IF NOT EXISTS metric_series (
    series_id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, task_id TEXT NOT NULL, key TEXT NOT NULL,
    UNIQUE (run_id, task_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    series_id INTEGER, event_id TEXT, value REAL, value_text TEXT, step INTEGER, ts REAL,
    PRIMARY KEY (series_id, event_id)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS metric_points AS
    SELECT m.event_id, s.run_id, nullif(s.task_id, '') AS task_id, s.key, m.value,
           m.value_text, m.step, m.ts
    FROM metrics m JOIN metric_series s USING (series_id);
CREATE TABLE IF NOT EXISTS params (
    event_id TEXT PRIMARY KEY, run_id TEXT, task_id TEXT, key TEXT, value TEXT,
    truncated INTEGER, ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS params_run ON params(run_id);
CREATE TABLE IF NOT EXISTS tags (
    event_id TEXT, run_id TEXT, task_id TEXT, key TEXT, value TEXT, ts REAL,
    PRIMARY KEY (event_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_run ON tags(run_id);
CREATE TABLE IF NOT EXISTS datasets (
    event_id TEXT PRIMARY KEY, run_id TEXT, task_id TEXT, name TEXT, role TEXT, uri TEXT,
    data_type TEXT, fingerprint TEXT, schema TEXT, row_count INTEGER, size_bytes INTEGER,
    profile TEXT, warnings TEXT, ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS datasets_fp ON datasets(fingerprint);
CREATE INDEX IF NOT EXISTS datasets_name ON datasets(name, ts);
CREATE INDEX IF NOT EXISTS datasets_task ON datasets(task_id);
CREATE TABLE IF NOT EXISTS validations (
    event_id TEXT PRIMARY KEY, validation_id TEXT, run_id TEXT, task_id TEXT,
    dataset_name TEXT, fingerprint TEXT, validator TEXT, schema_name TEXT, passed INTEGER,
    policy TEXT, checks TEXT, failure_count INTEGER, failure_sample TEXT, error TEXT, ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS validations_run ON validations(run_id);
CREATE INDEX IF NOT EXISTS validations_fp ON validations(fingerprint);
CREATE TABLE IF NOT EXISTS system_usage (
    event_id TEXT PRIMARY KEY, run_id TEXT, task_id TEXT, summary TEXT, ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS system_usage_task ON system_usage(task_id);
CREATE TABLE IF NOT EXISTS system_samples (
    event_id TEXT, seq INTEGER, task_id TEXT, t REAL, cpu_percent REAL, rss_bytes INTEGER,
    gpus TEXT, PRIMARY KEY (event_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS system_samples_task ON system_samples(task_id, t);
CREATE TABLE IF NOT EXISTS code_snapshots (
    run_id TEXT PRIMARY KEY, event_id TEXT, commit_sha TEXT, branch TEXT, dirty INTEGER,
    diff TEXT, diff_truncated INTEGER, repo_root TEXT, python TEXT, platform TEXT,
    packages TEXT, environment TEXT, warnings TEXT, ts REAL, untracked TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    event_id TEXT PRIMARY KEY, run_id TEXT, task_id TEXT, name TEXT, path TEXT,
    size_bytes INTEGER, fingerprint TEXT, ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts(run_id);
CREATE TABLE IF NOT EXISTS gate_decisions (
    event_id TEXT PRIMARY KEY, decision_id TEXT UNIQUE, run_id TEXT, task_id TEXT,
    model TEXT, version TEXT, gate TEXT, passed INTEGER, applied INTEGER,
    reasons TEXT, evidence TEXT, ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gate_decisions_model ON gate_decisions(model, version);
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, created_at REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS model_versions (
    model TEXT, version TEXT, run_id TEXT, task_id TEXT, uri TEXT, metrics TEXT,
    datasets TEXT, tags TEXT, created_at REAL, PRIMARY KEY (model, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT, alias TEXT, version TEXT, updated_at REAL, PRIMARY KEY (model, alias)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT, alias TEXT, version TEXT,
    previous_version TEXT, reason TEXT, ts REAL
);
"""


@functools.cache
def _points_sql(rows: int) -> str:
    return "INSERT OR IGNORE INTO metrics (series_id, event_id, value, step, ts) VALUES " + (
        ",".join(["(?,?,?,?,?)"] * rows)
    )


class StoreError(RuntimeError):
    """The store cannot be opened or written (not a flowrecord store, read-only, full)."""


def _schema_version(path: Path, value: object) -> int:
    # A damaged meta row must not surface as a ValueError: the dispatcher would
    # take that for a refused event and set every event aside as a dead letter.
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise StoreError(f"{path} has a damaged schema version ({value!r})") from None


# One encoder for every write: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(default=str, allow_nan=False, separators=(",", ":")).encode


def _json(value: Any) -> str:
    return _encode(value)


def _safe_json(value: Any) -> str:
    if not value and type(value) in (dict, list):  # most events' warnings, samples, gpus
        return "{}" if type(value) is dict else "[]"
    try:
        return _encode(value)
    except ValueError:  # NaN somewhere inside a profile or evidence: store as null
        return json.dumps(_denan(value), default=str, separators=(",", ":"))


def _denan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _denan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_denan(v) for v in value]
    return value


def _load(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)


class LocalStore:
    """Connections to one store file; safe to share between threads.

    >>> store = LocalStore(Path(".flowrecord"))  # doctest: +SKIP
    >>> store.runs()                             # doctest: +SKIP
    """

    def __init__(self, home: Path | str, *, create: bool = True) -> None:
        self.home = Path(home)
        self.path = self.home / STORE_FILE
        self._local = threading.local()
        # Every thread's connection, so that close() ends them all: a connection
        # left to the garbage collector checkpoints the WAL whenever it goes.
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._create = create
        if not create and not self.path.exists():
            raise StoreError(f"no flowrecord store at {self.path}")

    # -- connections ----------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """This thread's connection, opening (and if needed creating) the store."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            if self._create:
                self.home.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the flowrecord store at {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            ready = self._check_identity(conn)
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints are where WAL mode pays for fsync: one every 16 MiB of WAL
            # rather than every 4 MiB writes metrics a quarter faster here. The
            # file is cut back after a checkpoint, so a burst does not leave it big.
            conn.execute("PRAGMA wal_autocheckpoint = 4000")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            if not ready:
                self._retry(lambda: self._init_schema(conn))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path} is not a usable flowrecord store: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        return conn

    @staticmethod
    def _retry(fn: Any, attempts: int = 50) -> Any:
        # Opening a brand-new file from many processes at once can report "locked"
        # even with a busy timeout (WAL switch, schema creation): wait and retry.
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or i == attempts - 1:
                    raise
                time.sleep(0.02 * (i + 1))
        return None

    def _check_identity(self, conn: sqlite3.Connection) -> bool:
        """Raise if the file is not a flowrecord store; True if it is one, schema made.

        A store of this schema version or older needs no write transaction to
        open (:meth:`_init_schema` takes the write lock): every short task
        process of a parallel run opens the store once.
        """
        # The reads in one read transaction: another process creating the store
        # between them must not make a fresh store look foreign.
        conn.execute("BEGIN")
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            version = None
            if app_id == APPLICATION_ID:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = None if row is None else _schema_version(self.path, row[0])
        finally:
            conn.execute("COMMIT")
        if app_id != APPLICATION_ID and (app_id != 0 or tables):
            raise StoreError(f"{self.path} exists but is not a flowrecord store")
        if version is not None and version > STORE_SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer flowrecord "
                f"(store schema {version} > {STORE_SCHEMA_VERSION})"
            )
        return version is not None

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                ).fetchone()[0]
                if app_id != 0 or tables:
                    raise StoreError(f"{self.path} exists but is not a flowrecord store")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(STORE_SCHEMA_VERSION),),
                )
            else:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is not None and _schema_version(self.path, row[0]) > STORE_SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} was written by a newer flowrecord "
                        f"(store schema {row[0]} > {STORE_SCHEMA_VERSION})"
                    )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def begin_batch(self) -> None:
        """Open one write transaction that this thread's next writes join, until :meth:`end_batch`."""
        conn = self.connect()
        if getattr(self._local, "batch", False):
            return  # already in one: the outer batch decides
        self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        self._local.batch = True

    def end_batch(self, ok: bool) -> None:
        """Commit (*ok*) or roll back the batch transaction of this thread, if one is open."""
        if not getattr(self._local, "batch", False):
            return
        self._local.batch = False
        conn = self.connect()
        try:
            if ok:
                conn.execute("COMMIT")
                return
        except BaseException:
            self._rolled_back(conn)
            raise
        self._rolled_back(conn)

    def _rolled_back(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        # Series ids made inside the batch are gone with it: a cached id could
        # otherwise be handed out again to another series, and points of one
        # key would land under another.
        self._local.series = {}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so concurrent writers queue cleanly.

        Inside a batch (:meth:`begin_batch`) the writes join the batch's
        transaction; an error still propagates, and the batch is rolled back.
        """
        conn = self.connect()
        if getattr(self._local, "batch", False):
            yield conn
            return
        self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection to the store."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query, as ``sqlite3.Row`` objects."""
        conn = self.connect()
        cur = conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params).fetchall()

    # -- writes ---------------------------------------------------------------

    def write_runs(self, runs: Sequence[Any], finished: bool) -> None:
        if finished:
            sql = """INSERT INTO runs VALUES (?,?,?,?,?,?,?,?)
                ON CONFLICT(run_id) DO UPDATE SET state = excluded.state,
                  ended_at = excluded.ended_at, error = excluded.error
                WHERE runs.ended_at IS NULL OR excluded.ended_at >= runs.ended_at"""
            rows = [
                (
                    r.run_id,
                    r.orchestrator,
                    r.pipeline,
                    r.run_key,
                    r.state.value,
                    r.ts,
                    r.ts,
                    r.error,
                )
                for r in runs
            ]
        else:
            sql = """INSERT INTO runs VALUES (?,?,?,?,?,?,NULL,NULL)
                ON CONFLICT(run_id) DO UPDATE SET
                  started_at = min(coalesce(runs.started_at, excluded.started_at),
                                   excluded.started_at)"""
            rows = [
                (r.run_id, r.orchestrator, r.pipeline, r.run_key, r.state.value, r.ts) for r in runs
            ]
        tags = [(r.event_id, r.run_id, None, k, v, r.ts) for r in runs for k, v in r.tags.items()]
        with self.transaction() as conn:
            # executemany applies the rows in order: a run's later event wins as before.
            conn.executemany(sql, rows)
            if tags:
                conn.executemany("INSERT OR IGNORE INTO tags VALUES (?,?,?,?,?,?)", tags)

    def write_tasks(self, tasks: Sequence[Any], finished: bool) -> None:
        rows = [
            (
                t.task_id,
                t.run_id,
                t.name,
                t.try_number,
                t.map_index,
                t.state.value,
                t.started_at if t.started_at is not None else t.ts,
                t.ts if finished else None,
                t.duration_s,
                t.error,
                t.host,
                t.pid,
                _safe_json(dict(t.attributes)),
            )
            for t in tasks
        ]
        if finished:
            sql = """INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT(task_id) DO UPDATE SET state = excluded.state,
                  ended_at = excluded.ended_at, duration_s = excluded.duration_s,
                  error = excluded.error"""
        else:
            # A late "started" never reopens a finished attempt, and of two starts
            # of one attempt the earlier counts, whichever is written first.
            sql = """INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT(task_id) DO UPDATE SET
                  started_at = min(coalesce(tasks.started_at, excluded.started_at),
                                   excluded.started_at),
                  host = excluded.host, pid = excluded.pid
                WHERE tasks.ended_at IS NULL"""
        with self.transaction() as conn:
            conn.executemany(sql, rows)

    def write_metrics(self, metrics: Sequence[Any]) -> None:
        # Metrics are the high-volume path: (run, task, key) is stored once as a
        # series and each point is a narrow row keyed by (series, event id).
        points = getattr(metrics, "points", None)
        if points is None:
            points = [metric_point(m) for m in metrics]
        conn = self.connect()
        cache = self._series_cache()
        isfinite = math.isfinite
        values: list[Any] = []  # (series_id, event_id, value, step, ts) for every point, flat
        extend = values.extend
        odd = []
        # Points of one series come in runs, sharing the very same strings: an
        # identity test skips building the cache key for all but the first.
        last_run = last_task = last_key = None
        sid = 0
        for event_id, ts, run_id, task_id, key, value, step in points:
            if key is not last_key or task_id is not last_task or run_id is not last_run:
                found = cache.get((run_id, task_id, key))
                if found is None:
                    found = self._series_id(conn, cache, run_id, task_id, key)
                sid, last_run, last_task, last_key = found, run_id, task_id, key
            if isfinite(value):
                extend((sid, event_id, value, step, ts))
            else:  # SQLite turns NaN into NULL: keep the text so it reads back
                odd.append((sid, event_id, None, repr(value), step, ts))
        statements = self._point_statements(conn, len(values) // 5)
        if not statements and not odd:
            return
        if len(statements) == 1 and not odd:
            # One statement is its own transaction. It matters beyond saving a
            # commit: each call into SQLite lets go of the GIL, and taking it
            # back from a thread busy logging can take a whole switch interval.
            sql, start, stop = statements[0]
            self._retry(lambda: conn.execute(sql, values[start:stop]))
            return
        with self.transaction() as conn:
            for sql, start, stop in statements:
                conn.execute(sql, values[start:stop])
            if odd:
                conn.executemany("INSERT OR IGNORE INTO metrics VALUES (?,?,?,?,?,?)", odd)

    def _point_statements(self, conn: sqlite3.Connection, rows: int) -> list[tuple[str, int, int]]:
        """(SQL, start, stop) in the flat values for inserting *rows* points.

        Many rows per statement cost SQLite about half of what ``executemany``
        does; the statements come in power-of-two sizes so that a handful of
        prepared statements serve every batch size.
        """
        most = getattr(self._local, "most_points", None)
        if most is None:
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 5
            most = self._local.most_points = 1 << min(12, max(0, limit.bit_length() - 1))
        out = []
        done = 0
        while done < rows:
            size = min(most, 1 << ((rows - done).bit_length() - 1))
            out.append((_points_sql(size), 5 * done, 5 * (done + size)))
            done += size
        return out

    def _series_cache(self) -> dict[tuple[str, str | None, str], int]:
        cache = getattr(self._local, "series", None)
        if cache is None:
            cache = self._local.series = {}
        return cache

    @staticmethod
    def _series_id(
        conn: sqlite3.Connection,
        cache: dict[tuple[str, str | None, str], int],
        run_id: str,
        task_id: str | None,
        key: str,
    ) -> int:
        # Its own transaction: a series is worth keeping even if its points fail.
        LocalStore._retry(
            lambda: conn.execute(
                "INSERT OR IGNORE INTO metric_series (run_id, task_id, key) VALUES (?,?,?)",
                (run_id, task_id or "", key),
            )
        )
        sid = int(
            conn.execute(
                "SELECT series_id FROM metric_series WHERE run_id = ? AND task_id = ? AND key = ?",
                (run_id, task_id or "", key),
            ).fetchone()[0]
        )
        cache[(run_id, task_id, key)] = sid
        return sid

    def write_params(self, params: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO params VALUES (?,?,?,?,?,?,?)",
                [
                    (p.event_id, p.run_id, p.task_id, p.key, p.value, int(p.truncated), p.ts)
                    for p in params
                ],
            )

    def write_tags(self, tags: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO tags VALUES (?,?,?,?,?,?)",
                [
                    (t.event_id, t.run_id, t.task_id, k, v, t.ts)
                    for t in tags
                    for k, v in t.tags.items()
                ],
            )

    def write_datasets(self, datasets: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO datasets VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        d.event_id,
                        d.run_id,
                        d.task_id,
                        d.name,
                        d.role,
                        d.uri,
                        d.data_type,
                        d.fingerprint,
                        _safe_json([dict(c) for c in d.schema]),
                        d.row_count,
                        d.size_bytes,
                        _safe_json(dict(d.profile)),
                        _safe_json(list(d.warnings)),
                        d.ts,
                    )
                    for d in datasets
                ],
            )

    def write_validations(self, validations: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO validations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        v.event_id,
                        v.validation_id or v.event_id,
                        v.run_id,
                        v.task_id,
                        v.dataset_name,
                        v.fingerprint,
                        v.validator,
                        v.schema_name,
                        int(v.passed),
                        v.policy,
                        _safe_json([dict(c) for c in v.checks]),
                        v.failure_count,
                        _safe_json([dict(s) for s in v.failure_sample]),
                        v.error,
                        v.ts,
                    )
                    for v in validations
                ],
            )

    def write_system_usage(self, usages: Sequence[Any]) -> None:
        # Both keys are the event's own (the samples' with their sequence number),
        # so a replayed event is ignored whole.
        usage_rows = [
            (u.event_id, u.run_id, u.task_id, _safe_json(dict(u.summary)), u.ts) for u in usages
        ]
        sample_rows = [
            (
                u.event_id,
                i,
                u.task_id,
                s.get("t"),
                s.get("cpu_percent"),
                s.get("rss_bytes"),
                _safe_json(s.get("gpus") or []),
            )
            for u in usages
            for i, s in enumerate(u.samples)
        ]
        with self.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO system_usage VALUES (?,?,?,?,?)", usage_rows)
            if sample_rows:
                conn.executemany(
                    "INSERT OR IGNORE INTO system_samples VALUES (?,?,?,?,?,?,?)", sample_rows
                )

    def write_code(self, snapshots: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO code_snapshots VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        c.run_id,
                        c.event_id,
                        c.commit,
                        c.branch,
                        None if c.dirty is None else int(c.dirty),
                        c.diff,
                        int(c.diff_truncated),
                        c.repo_root,
                        c.python,
                        c.platform,
                        _safe_json(dict(c.packages)),
                        _safe_json(dict(c.environment)),
                        _safe_json(list(c.warnings)),
                        c.ts,
                        _safe_json(list(getattr(c, "untracked", ()))),
                    )
                    for c in snapshots
                ],
            )

    def write_artifacts(self, artifacts: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO artifacts VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        a.event_id,
                        a.run_id,
                        a.task_id,
                        a.name,
                        a.path,
                        a.size_bytes,
                        a.fingerprint,
                        a.ts,
                    )
                    for a in artifacts
                ],
            )

    def write_gate_decisions(self, decisions: Sequence[Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO gate_decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        d.event_id,
                        d.decision_id,
                        d.run_id,
                        d.task_id,
                        d.model,
                        d.version,
                        d.gate,
                        int(d.passed),
                        int(d.applied),
                        _safe_json(list(d.reasons)),
                        _safe_json(dict(d.evidence)),
                        d.ts,
                    )
                    for d in decisions
                ],
            )

    # -- registry -------------------------------------------------------------

    def register_version(
        self,
        model: str,
        source_run_id: str | None,
        source_task_id: str | None,
        uri: str | None,
        metrics: Mapping[str, float],
        datasets: Sequence[Mapping[str, Any]],
        tags: Mapping[str, str],
    ) -> dict[str, Any]:
        now = time.time()
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO models VALUES (?, ?)", (model, now))
            row = conn.execute(
                "SELECT max(CAST(version AS INTEGER)) FROM model_versions WHERE model = ?",
                (model,),
            ).fetchone()
            version = str((row[0] or 0) + 1)
            conn.execute(
                "INSERT INTO model_versions VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    model,
                    version,
                    source_run_id,
                    source_task_id,
                    uri,
                    _safe_json(dict(metrics)),
                    _safe_json([dict(d) for d in datasets]),
                    _safe_json(dict(tags)),
                    now,
                ),
            )
        result = self.get_version(model, version)
        assert result is not None
        return result

    def get_version(self, model: str, version: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM model_versions WHERE model = ? AND version = ?", (model, version)
        )
        if not rows:
            return None
        r = rows[0]
        aliases = [
            a["alias"]
            for a in self.query(
                "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
                (model, version),
            )
        ]
        return {
            "model": r["model"],
            "version": r["version"],
            "run_id": r["run_id"],
            "task_id": r["task_id"],
            "uri": r["uri"],
            "metrics": _load(r["metrics"], {}),
            "datasets": _load(r["datasets"], []),
            "tags": _load(r["tags"], {}),
            "created_at": r["created_at"],
            "aliases": aliases,
        }

    def set_alias(self, model: str, alias: str, version: str, reason: str | None) -> dict[str, Any]:
        now = time.time()
        with self.transaction() as conn:
            exists = conn.execute(
                "SELECT 1 FROM model_versions WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
            if not exists:
                raise KeyError(f"model {model!r} has no version {version!r}")
            row = conn.execute(
                "SELECT version FROM aliases WHERE model = ? AND alias = ?", (model, alias)
            ).fetchone()
            previous = row[0] if row else None
            conn.execute(
                "INSERT INTO aliases VALUES (?,?,?,?) ON CONFLICT(model, alias) DO UPDATE "
                "SET version = excluded.version, updated_at = excluded.updated_at",
                (model, alias, version, now),
            )
            conn.execute(
                "INSERT INTO alias_history (model, alias, version, previous_version, reason, ts) "
                "VALUES (?,?,?,?,?,?)",
                (model, alias, version, previous, reason, now),
            )
        return {"model": model, "alias": alias, "version": version, "previous_version": previous}

    def get_alias(self, model: str, alias: str) -> str | None:
        rows = self.query(
            "SELECT version FROM aliases WHERE model = ? AND alias = ?", (model, alias)
        )
        return rows[0]["version"] if rows else None

    def alias_history(self, model: str, alias: str | None = None) -> list[dict[str, Any]] | None:
        """Every alias move of *model* (or of one *alias*), oldest first; None: no such model."""
        if not self.query("SELECT 1 FROM models WHERE name = ?", (model,)):
            return None
        sql = (
            "SELECT alias, version, previous_version, reason, ts FROM alias_history WHERE model = ?"
        )
        params: list[Any] = [model]
        if alias is not None:
            sql += " AND alias = ?"
            params.append(alias)
        return [dict(r) for r in self.query(sql + " ORDER BY id", params)]

    def list_models(self) -> list[dict[str, Any]]:
        out = []
        for m in self.query("SELECT name, created_at FROM models ORDER BY name"):
            versions = [
                r["version"]
                for r in self.query(
                    "SELECT version FROM model_versions WHERE model = ? "
                    "ORDER BY CAST(version AS INTEGER)",
                    (m["name"],),
                )
            ]
            aliases = {
                r["alias"]: r["version"]
                for r in self.query(
                    "SELECT alias, version FROM aliases WHERE model = ?", (m["name"],)
                )
            }
            out.append(
                {
                    "name": m["name"],
                    "created_at": m["created_at"],
                    "versions": versions,
                    "aliases": aliases,
                }
            )
        return out

    # -- reads the recorder needs --------------------------------------------

    def dataset_row_history(
        self, name: str, limit: int = 10, before: float | None = None
    ) -> list[int]:
        """Row counts of the latest versions of dataset *name* (newest first)."""
        rows = self.query(
            "SELECT row_count FROM datasets WHERE name = ? AND row_count IS NOT NULL "
            "AND role = 'output' AND ts < ? ORDER BY ts DESC LIMIT ?",
            (name, before if before is not None else float("inf"), limit),
        )
        return [int(r["row_count"]) for r in rows]


class LocalBackend:
    """The ``local`` backend plugin: writes every event to a :class:`LocalStore`."""

    def __init__(self, home: Path | str | None = None) -> None:
        self._home = Path(home) if home is not None else None
        self.store: LocalStore | None = None

    def _store(self) -> LocalStore:
        if self.store is None:
            if self._home is None:
                from flowrecord.config import load_config

                self._home = load_config().home
            self.store = LocalStore(self._home)
        return self.store

    @hookimpl
    def flowrecord_backend_configure(self, config: Mapping[str, Any]) -> None:
        if self._home is None:
            self._home = Path(config["home"])

    @hookimpl
    def flowrecord_backend_close(self) -> None:
        if self.store is not None:
            self.store.close()

    @hookimpl
    def flowrecord_batch_begin(self) -> bool:
        self._store().begin_batch()
        # Every write here is an idempotent upsert of its own table (a late start
        # never reopens a finished task or run): hooks commute, so take the
        # batch grouped by hook, one statement per hook rather than per event.
        return True

    @hookimpl
    def flowrecord_batch_end(self, ok: bool) -> None:
        if self.store is not None:
            self.store.end_batch(ok)

    @hookimpl
    def flowrecord_run_started(self, runs: Sequence[Any]) -> None:
        self._store().write_runs(runs, finished=False)

    @hookimpl
    def flowrecord_run_finished(self, runs: Sequence[Any]) -> None:
        self._store().write_runs(runs, finished=True)

    @hookimpl
    def flowrecord_task_started(self, tasks: Sequence[Any]) -> None:
        self._store().write_tasks(tasks, finished=False)

    @hookimpl
    def flowrecord_task_finished(self, tasks: Sequence[Any]) -> None:
        self._store().write_tasks(tasks, finished=True)

    @hookimpl
    def flowrecord_metrics_logged(self, metrics: Sequence[Any]) -> None:
        self._store().write_metrics(metrics)

    @hookimpl
    def flowrecord_params_logged(self, params: Sequence[Any]) -> None:
        self._store().write_params(params)

    @hookimpl
    def flowrecord_tags_set(self, tags: Sequence[Any]) -> None:
        self._store().write_tags(tags)

    @hookimpl
    def flowrecord_dataset_logged(self, datasets: Sequence[Any]) -> None:
        self._store().write_datasets(datasets)

    @hookimpl
    def flowrecord_artifact_logged(self, artifacts: Sequence[Any]) -> None:
        self._store().write_artifacts(artifacts)

    @hookimpl
    def flowrecord_validation_recorded(self, validations: Sequence[Any]) -> None:
        self._store().write_validations(validations)

    @hookimpl
    def flowrecord_system_usage_recorded(self, usages: Sequence[Any]) -> None:
        self._store().write_system_usage(usages)

    @hookimpl
    def flowrecord_code_captured(self, snapshots: Sequence[Any]) -> None:
        self._store().write_code(snapshots)

    @hookimpl
    def flowrecord_gate_decided(self, decisions: Sequence[Any]) -> None:
        self._store().write_gate_decisions(decisions)

    @hookimpl
    def flowrecord_registry_register_version(
        self,
        model: str,
        source_run_id: str | None,
        source_task_id: str | None,
        uri: str | None,
        metrics: Mapping[str, float],
        datasets: Sequence[Mapping[str, Any]],
        tags: Mapping[str, str],
    ) -> Mapping[str, Any] | None:
        return self._store().register_version(
            model, source_run_id, source_task_id, uri, metrics, datasets, tags
        )

    @hookimpl
    def flowrecord_registry_get_version(self, model: str, version: str) -> Mapping[str, Any] | None:
        return self._store().get_version(model, version)

    @hookimpl
    def flowrecord_registry_set_alias(
        self, model: str, alias: str, version: str, reason: str | None
    ) -> Mapping[str, Any] | None:
        return self._store().set_alias(model, alias, version, reason)

    @hookimpl
    def flowrecord_registry_get_alias(self, model: str, alias: str) -> str | None:
        return self._store().get_alias(model, alias)

    @hookimpl
    def flowrecord_registry_alias_history(
        self, model: str, alias: str | None
    ) -> Sequence[Mapping[str, Any]] | None:
        return self._store().alias_history(model, alias)

    @hookimpl
    def flowrecord_registry_list_models(self) -> Sequence[Mapping[str, Any]] | None:
        return self._store().list_models()
