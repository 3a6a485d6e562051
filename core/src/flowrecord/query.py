"""Read-side queries over the local store: what a run was, where data came from, what changed.

The command line renders these; reports and ``flowrecord explain`` reuse them.
Every function takes an open store (anything with ``query(sql, params)`` returning
``sqlite3.Row`` objects, normally :func:`open_store`'s) and returns plain dicts and
lists of JSON-compatible values. Times are seconds since the epoch in fields named
``*_at``; a metric that is NaN or infinite has ``value`` None and its text in
``value_text``.

Reading never writes: :func:`open_store` opens the file read-only, so it works on a
store in a read-only directory and never creates or upgrades one.

A task whose last word was "started" may be running, or its process may have
been killed (SIGKILL, OOM killer, a lost node) before it could say anything else.
Queries report such a task as ``incomplete`` when its process is known to be gone
(same host, pid not alive) or when it has had no end for longer than
``stale_after_s`` (default :data:`STALE_AFTER_S`); the stored state is kept in
``recorded_state`` and the reason in ``incomplete_reason``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from flowrecord.backends.local import (
    APPLICATION_ID,
    STORE_FILE,
    STORE_SCHEMA_VERSION,
    LocalStore,
    StoreError,
)

__all__ = [
    "STALE_AFTER_S",
    "AmbiguousReference",
    "ReadOnlyStore",
    "RecordNotFound",
    "Row",
    "Store",
    "compare_runs",
    "effective_task_state",
    "lineage",
    "list_runs",
    "open_store",
    "resolve_dataset",
    "resolve_run",
    "run_details",
    "short_fingerprint",
]

#: A task still "started" after this long with no end is shown as incomplete (24 hours).
STALE_AFTER_S = 24 * 3600.0

_INCOMPLETE = "incomplete"
_STARTED = "started"


class RecordNotFound(LookupError):
    """No run or dataset in the store matches the reference given."""


class AmbiguousReference(LookupError):
    """The reference matches several runs or datasets; a longer one is needed."""


#: A row as the queries read it: ``sqlite3.Row`` or a dict with the same keys.
Row = sqlite3.Row | Mapping[str, Any]


class Store(Protocol):
    """What the queries need of a store."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...


# ---------------------------------------------------------------------------
# opening the store for reading
# ---------------------------------------------------------------------------


class ReadOnlyStore(LocalStore):
    """A :class:`~flowrecord.backends.local.LocalStore` opened read-only.

    Every read method of the store works; any write fails. The file is opened
    with SQLite's ``mode=ro``, so nothing is created, migrated or switched to WAL.
    In a read-only directory where SQLite cannot create the WAL index (the store
    was closed cleanly, so no ``-shm`` file is there), the file is opened as
    immutable: nobody can be writing to a directory nobody may write to.
    """

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        store_file = path if path.is_file() else path / STORE_FILE
        # The base class only records where the store is; opening is ours (read-only).
        super().__init__(store_file.parent)
        self.path = store_file
        if not store_file.is_file():
            raise StoreError(
                f"no flowrecord store at {store_file} (nothing recorded there yet; "
                "set FLOWRECORD_HOME or pass --home)"
            )
        if store_file.stat().st_size == 0:
            # An empty file is what a store looks like for a moment while it is being
            # created; reading must not turn it into one.
            raise StoreError(f"{store_file} is empty, not a flowrecord store (yet)")

    def _open(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            return self._connect_checked(f"{uri}?mode=ro")
        except sqlite3.OperationalError as exc:
            error: sqlite3.Error = exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a flowrecord store: {exc}") from exc
        # SQLite could not set up the WAL index. In a directory we may not write to,
        # with no write-ahead log holding changes, the file alone is the whole store
        # and can be read as immutable. With a log, immutable would miss its changes.
        wal = self.path.with_name(self.path.name + "-wal")
        has_log = wal.exists() and wal.stat().st_size > 0
        if os.access(self.path.parent, os.W_OK) or has_log:
            hint = (
                f"; {wal.name} holds changes not yet merged and the directory is read-only: "
                "open the store once as a user who may write there"
                if has_log and not os.access(self.path.parent, os.W_OK)
                else ""
            )
            raise StoreError(f"cannot open the flowrecord store at {self.path}: {error}{hint}")
        try:
            return self._connect_checked(f"{uri}?mode=ro&immutable=1")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the flowrecord store at {self.path}: {exc}") from exc

    def _connect_checked(self, uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise StoreError(f"{self.path} exists but is not a flowrecord store")
            # Reading the schema version also proves the WAL index can be opened.
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > STORE_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer flowrecord "
                    f"(store schema {row[0]} > {STORE_SCHEMA_VERSION})"
                )
        except BaseException:
            conn.close()
            raise
        return conn


def open_store(home: Path | str) -> ReadOnlyStore:
    """Open the store under *home* (or the store file *home*) for reading, and check it.

    :raises StoreError: there is no store there, or the file is not a flowrecord store.

    >>> store = open_store(".flowrecord")         # doctest: +SKIP
    >>> list_runs(store, limit=5)                 # doctest: +SKIP
    """
    store = ReadOnlyStore(home)
    store.connect()  # fail now, with the reason, rather than at the first query
    return store


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

_HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but belongs to someone else / not a pid we can judge
    return True


def _load(text: str | None, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def short_fingerprint(fingerprint: str | None, length: int = 12) -> str | None:
    """``algo:0123456789ab`` from a full fingerprint (the algorithm prefix is kept)."""
    if fingerprint is None:
        return None
    algo, sep, digest = fingerprint.rpartition(":")
    return f"{algo}{sep}{digest[:length]}" if sep else fingerprint[:length]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _in_chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    # SQLite caps the number of bound parameters; long id lists go in chunks.
    for start in range(0, len(values), size):
        yield values[start : start + size]


def effective_task_state(
    task: Mapping[str, Any], *, now: float | None = None, stale_after_s: float = STALE_AFTER_S
) -> tuple[str, str | None]:
    """The state to show for a task row, and why it differs from the stored one.

    A final state is shown as stored. A ``started`` attempt is ``incomplete``
    when its process ran on this host and is gone, or when it started more than
    *stale_after_s* ago and never ended.
    """
    state = task["state"]
    if state != _STARTED or task.get("ended_at") is not None:
        return state, None
    pid, host = task.get("pid"), task.get("host")
    if pid and host == _HOST and not _pid_alive(int(pid)):
        return _INCOMPLETE, f"its process {pid} on {host} is gone without reporting an end"
    started = task.get("started_at")
    now = time.time() if now is None else now
    if started is not None and now - float(started) > stale_after_s:
        hours = (now - float(started)) / 3600
        return _INCOMPLETE, f"started {hours:.1f} h ago and never ended"
    return state, None


def _effective_run_state(
    run: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], now: float, stale_after_s: float
) -> tuple[str, str | None]:
    """A run still ``started`` is ``incomplete`` when none of its tasks runs any more and
    one of them is incomplete, or when nothing happened in it for *stale_after_s*."""
    state = run["state"]
    if state != _STARTED or run.get("ended_at") is not None:
        return state, None
    states = {t["state"] for t in tasks}
    if _STARTED in states:
        return state, None
    if _INCOMPLETE in states:
        return _INCOMPLETE, "no task is running and at least one is incomplete"
    times = [run.get("started_at")] + [t.get("ended_at") or t.get("started_at") for t in tasks]
    known = [float(t) for t in times if t is not None]
    if known and now - max(known) > stale_after_s:
        hours = (now - max(known)) / 3600
        return _INCOMPLETE, f"no activity for {hours:.1f} h and never ended"
    return state, None


def _task_dict(row: sqlite3.Row, now: float, stale_after_s: float) -> dict[str, Any]:
    task = dict(row)
    state, reason = effective_task_state(task, now=now, stale_after_s=stale_after_s)
    return {
        "task_id": task["task_id"],
        "name": task["name"],
        "try_number": task["try_number"],
        "map_index": task["map_index"],
        "state": state,
        "recorded_state": task["state"],
        "incomplete_reason": reason,
        "started_at": task["started_at"],
        "ended_at": task["ended_at"],
        "duration_s": task["duration_s"],
        "error": task["error"],
        "host": task["host"],
        "pid": task["pid"],
        "attributes": _load(task["attributes"], {}),
    }


def _run_dict(
    row: sqlite3.Row, tasks: Sequence[Mapping[str, Any]], now: float, stale_after_s: float
) -> dict[str, Any]:
    run = dict(row)
    state, reason = _effective_run_state(run, tasks, now, stale_after_s)
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    ended = run["ended_at"]
    return {
        "run_id": run["run_id"],
        "orchestrator": run["orchestrator"],
        "pipeline": run["pipeline"],
        "run_key": run["run_key"],
        "state": state,
        "recorded_state": run["state"],
        "incomplete_reason": reason,
        "started_at": run["started_at"],
        "ended_at": ended,
        "duration_s": None
        if ended is None or run["started_at"] is None
        else ended - run["started_at"],
        "error": run["error"],
        "task_counts": dict(sorted(counts.items())),
    }


def _tasks_of(store: Store, run_ids: Sequence[str]) -> dict[str, list[sqlite3.Row]]:
    out: dict[str, list[sqlite3.Row]] = {r: [] for r in run_ids}
    for chunk in _in_chunks(list(run_ids)):
        for row in store.query(
            f"SELECT * FROM tasks WHERE run_id IN ({_placeholders(len(chunk))}) "
            "ORDER BY started_at, name, try_number, map_index",
            chunk,
        ):
            out[row["run_id"]].append(row)
    return out


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------


def list_runs(
    store: Store,
    *,
    limit: int = 20,
    pipeline: str | None = None,
    now: float | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> list[dict[str, Any]]:
    """The most recent runs, newest first, with their task counts by (shown) state."""
    now = time.time() if now is None else now
    sql = "SELECT * FROM runs"
    params: list[Any] = []
    if pipeline is not None:
        sql += " WHERE pipeline = ?"
        params.append(pipeline)
    sql += " ORDER BY started_at DESC, run_id LIMIT ?"
    params.append(max(0, int(limit)))
    rows = store.query(sql, params)
    tasks = _tasks_of(store, [r["run_id"] for r in rows])
    out = []
    for row in rows:
        task_dicts = [_task_dict(t, now, stale_after_s) for t in tasks[row["run_id"]]]
        out.append(_run_dict(row, task_dicts, now, stale_after_s))
    return out


def resolve_run(store: Store, ref: str) -> str:
    """The run id that *ref* names: a run id, a unique prefix of one, or a run key.

    :raises RecordNotFound: nothing matches.
    :raises AmbiguousReference: a prefix or run key matches several runs.
    """
    ref = ref.strip()
    if not ref:
        raise RecordNotFound("an empty run reference matches nothing")
    if store.query("SELECT 1 FROM runs WHERE run_id = ?", (ref,)):
        return ref
    by_key = store.query(
        "SELECT run_id, pipeline, orchestrator FROM runs WHERE run_key = ? ORDER BY started_at",
        (ref,),
    )
    if len(by_key) == 1:
        return str(by_key[0]["run_id"])
    if len(by_key) > 1:
        where = ", ".join(f"{r['orchestrator']}/{r['pipeline']}" for r in by_key[:5])
        raise AmbiguousReference(
            f"run key {ref!r} is used by {len(by_key)} runs ({where}); give the run id"
        )
    by_prefix = store.query(
        "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? LIMIT 6", (len(ref), ref.lower())
    )
    if len(by_prefix) == 1:
        return str(by_prefix[0]["run_id"])
    if len(by_prefix) > 1:
        raise AmbiguousReference(
            f"run id prefix {ref!r} matches several runs; give more characters"
        )
    raise RecordNotFound(f"no run with id, id prefix or run key {ref!r}")


def _latest_metrics(store: Store, run_id: str) -> list[dict[str, Any]]:
    rows = store.query(
        """
        WITH series AS (SELECT series_id, task_id, key FROM metric_series WHERE run_id = ?),
        latest AS (
            SELECT series_id, value, value_text, step, max(ts) AS ts
            FROM metrics WHERE series_id IN (SELECT series_id FROM series) GROUP BY series_id
        ),
        stats AS (
            SELECT series_id, count(*) AS points, min(value) AS lo, max(value) AS hi
            FROM metrics WHERE series_id IN (SELECT series_id FROM series) GROUP BY series_id
        )
        SELECT s.task_id, s.key, l.value, l.value_text, l.step, l.ts, st.points, st.lo, st.hi
        FROM series s JOIN latest l USING (series_id) JOIN stats st USING (series_id)
        ORDER BY s.task_id, s.key
        """,
        (run_id,),
    )
    return [
        {
            "task_id": r["task_id"] or None,
            "task": None,
            "key": r["key"],
            "value": _finite(r["value"]),
            "value_text": r["value_text"],
            "step": r["step"],
            "recorded_at": r["ts"],
            "points": r["points"],
            "min": _finite(r["lo"]),
            "max": _finite(r["hi"]),
        }
        for r in rows
    ]


def _latest_per_key(store: Store, table: str, run_id: str) -> list[sqlite3.Row]:
    # SQLite fills bare columns from the row holding max(ts): the latest value per key.
    extra = ", truncated" if table == "params" else ""
    return store.query(
        f"SELECT task_id, key, value{extra}, max(ts) AS ts FROM {table} "
        "WHERE run_id = ? GROUP BY task_id, key ORDER BY task_id IS NOT NULL, task_id, key",
        (run_id,),
    )


def _schema_summary(schema_text: str | None) -> list[dict[str, Any]]:
    columns = _load(schema_text, [])
    return [
        {"name": c.get("name"), "type": c.get("type")} for c in columns if isinstance(c, Mapping)
    ]


def _dataset_dict(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "task_id": r["task_id"],
        "task": None,
        "name": r["name"],
        "role": r["role"],
        "uri": r["uri"],
        "data_type": r["data_type"],
        "fingerprint": r["fingerprint"],
        "row_count": r["row_count"],
        "size_bytes": r["size_bytes"],
        "schema": _schema_summary(r["schema"]),
        "warnings": _load(r["warnings"], []),
        "recorded_at": r["ts"],
    }


def run_details(
    store: Store,
    run_id: str,
    *,
    now: float | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> dict[str, Any]:
    """Everything recorded about one run, grouped the way ``flowrecord show`` prints it.

    :raises RecordNotFound: there is no run *run_id* (resolve references first with
        :func:`resolve_run`).
    """
    now = time.time() if now is None else now
    rows = store.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
    if not rows:
        raise RecordNotFound(f"no run {run_id!r}")
    tasks = [_task_dict(t, now, stale_after_s) for t in _tasks_of(store, [run_id])[run_id]]
    names = {t["task_id"]: t["name"] for t in tasks}

    def task_name(task_id: str | None) -> str | None:
        return names.get(task_id) if task_id else None

    # Run-level entries first, then tasks in the order they started.
    order = {t["task_id"]: i for i, t in enumerate(tasks)}

    def by_task(item: Mapping[str, Any]) -> tuple[int, str]:
        task_id = item["task_id"]
        return (-1 if task_id is None else order.get(task_id, len(order)), item["key"])

    metrics = sorted(_latest_metrics(store, run_id), key=by_task)
    for m in metrics:
        m["task"] = task_name(m["task_id"])
    params = [
        {
            "task_id": r["task_id"],
            "task": task_name(r["task_id"]),
            "key": r["key"],
            "value": r["value"],
            "truncated": bool(r["truncated"]),
        }
        for r in _latest_per_key(store, "params", run_id)
    ]
    params.sort(key=by_task)
    tags = [
        {
            "task_id": r["task_id"],
            "task": task_name(r["task_id"]),
            "key": r["key"],
            "value": r["value"],
        }
        for r in _latest_per_key(store, "tags", run_id)
    ]
    tags.sort(key=by_task)
    datasets = []
    for r in store.query(
        "SELECT * FROM datasets WHERE run_id = ? ORDER BY ts, event_id", (run_id,)
    ):
        d = _dataset_dict(r)
        d["task"] = task_name(d["task_id"])
        datasets.append(d)
    validations = []
    for r in store.query(
        "SELECT * FROM validations WHERE run_id = ? ORDER BY ts, event_id", (run_id,)
    ):
        checks = _load(r["checks"], [])
        validations.append(
            {
                "task_id": r["task_id"],
                "task": task_name(r["task_id"]),
                "dataset": r["dataset_name"],
                "fingerprint": r["fingerprint"],
                "validator": r["validator"],
                "schema_name": r["schema_name"],
                "passed": bool(r["passed"]),
                "policy": r["policy"],
                "checks_total": len(checks),
                "checks_failed": sum(
                    1 for c in checks if isinstance(c, Mapping) and c.get("passed") is False
                ),
                "failure_count": r["failure_count"],
                "error": r["error"],
            }
        )
    system = []
    for r in store.query(
        "SELECT u.task_id, u.summary, (SELECT count(*) FROM system_samples s "
        "WHERE s.event_id = u.event_id) AS samples FROM system_usage u WHERE u.run_id = ? "
        "ORDER BY u.ts",
        (run_id,),
    ):
        system.append(
            {
                "task_id": r["task_id"],
                "task": task_name(r["task_id"]),
                "summary": _load(r["summary"], {}),
                "sample_count": r["samples"],
            }
        )
    code = None
    code_rows = store.query("SELECT * FROM code_snapshots WHERE run_id = ?", (run_id,))
    if code_rows:
        c = code_rows[0]
        diff = c["diff"] or ""
        code = {
            "commit": c["commit_sha"],
            "branch": c["branch"],
            "dirty": None if c["dirty"] is None else bool(c["dirty"]),
            "diff_bytes": len(diff.encode("utf-8", "surrogatepass")),
            "diff_truncated": bool(c["diff_truncated"]),
            "repo_root": c["repo_root"],
            "python": c["python"],
            "platform": c["platform"],
            "package_count": len(_load(c["packages"], {})),
            "warnings": _load(c["warnings"], []),
        }
    artifacts = [
        {
            "task_id": r["task_id"],
            "task": task_name(r["task_id"]),
            "name": r["name"],
            "path": r["path"],
            "size_bytes": r["size_bytes"],
            "fingerprint": r["fingerprint"],
            "recorded_at": r["ts"],
        }
        for r in store.query("SELECT * FROM artifacts WHERE run_id = ? ORDER BY ts", (run_id,))
    ]
    gates = [
        {
            "task_id": r["task_id"],
            "task": task_name(r["task_id"]),
            "model": r["model"],
            "version": r["version"],
            "gate": r["gate"],
            "passed": bool(r["passed"]),
            "applied": bool(r["applied"]),
            "reasons": _load(r["reasons"], []),
            "evidence": _load(r["evidence"], {}),
            "decided_at": r["ts"],
        }
        for r in store.query("SELECT * FROM gate_decisions WHERE run_id = ? ORDER BY ts", (run_id,))
    ]
    models = [
        {
            "model": r["model"],
            "version": r["version"],
            "task_id": r["task_id"],
            "task": task_name(r["task_id"]),
            "uri": r["uri"],
            "aliases": [
                a["alias"]
                for a in store.query(
                    "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
                    (r["model"], r["version"]),
                )
            ],
            "created_at": r["created_at"],
        }
        for r in store.query(
            "SELECT * FROM model_versions WHERE run_id = ? ORDER BY model, created_at", (run_id,)
        )
    ]
    return {
        "run": _run_dict(rows[0], tasks, now, stale_after_s),
        "tasks": tasks,
        "metrics": metrics,
        "params": params,
        "tags": tags,
        "datasets": datasets,
        "validations": validations,
        "system_usage": system,
        "code": code,
        "artifacts": artifacts,
        "gate_decisions": gates,
        "model_versions": models,
    }


# ---------------------------------------------------------------------------
# lineage
# ---------------------------------------------------------------------------


def _dataset_node_id(fingerprint: str | None, name: str, run_id: str) -> str:
    # Without a fingerprint, all we know is a name; it links tasks within one run only.
    if fingerprint:
        return f"dataset:{fingerprint}"
    return f"dataset:{name}@{run_id}"


def resolve_dataset(store: Store, ref: str) -> dict[str, Any]:
    """The dataset version *ref* names: a fingerprint, a unique prefix of one (with or
    without the ``algo:`` part), or a dataset name (its latest recorded version).

    :return: ``{"id", "fingerprint", "name", "run_id"}``.
    :raises RecordNotFound: nothing matches.
    :raises AmbiguousReference: a prefix matches several fingerprints.
    """
    ref = ref.strip()
    if not ref:
        raise RecordNotFound("an empty dataset reference matches nothing")
    rows = store.query(
        "SELECT name, fingerprint, run_id FROM datasets WHERE fingerprint = ? "
        "ORDER BY ts DESC LIMIT 1",
        (ref,),
    )
    if not rows:
        # A name means its latest version: prefer one with a fingerprint, which links.
        rows = store.query(
            "SELECT name, fingerprint, run_id FROM datasets WHERE name = ? "
            "ORDER BY fingerprint IS NULL, ts DESC LIMIT 1",
            (ref,),
        )
    if not rows:
        matches = store.query(
            "SELECT DISTINCT fingerprint FROM datasets WHERE substr(fingerprint, 1, ?) = ? "
            "OR substr(fingerprint, instr(fingerprint, ':') + 1, ?) = ? LIMIT 6",
            (len(ref), ref, len(ref), ref),
        )
        if len(matches) > 1:
            raise AmbiguousReference(
                f"fingerprint prefix {ref!r} matches several datasets; give more characters"
            )
        if matches:
            rows = store.query(
                "SELECT name, fingerprint, run_id FROM datasets WHERE fingerprint = ? "
                "ORDER BY ts DESC LIMIT 1",
                (matches[0]["fingerprint"],),
            )
    if not rows:
        raise RecordNotFound(f"no dataset with name or fingerprint {ref!r}")
    r = rows[0]
    return {
        "id": _dataset_node_id(r["fingerprint"], r["name"], r["run_id"]),
        "fingerprint": r["fingerprint"],
        "name": r["name"],
        "run_id": r["run_id"],
    }


class _Graph:
    """Builds lineage nodes and edges, one query per step, with memoised lookups."""

    def __init__(self, store: Store, now: float, stale_after_s: float) -> None:
        self.store = store
        self.now = now
        self.stale_after_s = stale_after_s
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, str]] = []
        self._edge_keys: set[tuple[str, str]] = set()
        self._runs: dict[str, sqlite3.Row | None] = {}

    def _run(self, run_id: str) -> sqlite3.Row | None:
        if run_id not in self._runs:
            rows = self.store.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            self._runs[run_id] = rows[0] if rows else None
        return self._runs[run_id]

    def edge(self, source: str, target: str, role: str) -> None:
        if (source, target) not in self._edge_keys:
            self._edge_keys.add((source, target))
            self.edges.append({"source": source, "target": target, "role": role})

    def dataset_rows(self, node_id: str, role: str) -> list[sqlite3.Row]:
        """Rows that log dataset *node_id* with *role*."""
        kind_ref = node_id.removeprefix("dataset:")
        fingerprint = self.nodes[node_id]["fingerprint"]
        if fingerprint:
            return self.store.query(
                "SELECT * FROM datasets WHERE fingerprint = ? AND role = ? ORDER BY ts",
                (fingerprint, role),
            )
        name, _, run_id = kind_ref.rpartition("@")
        return self.store.query(
            "SELECT * FROM datasets WHERE fingerprint IS NULL AND name = ? AND run_id = ? "
            "AND role = ? ORDER BY ts",
            (name, run_id, role),
        )

    def task_datasets(self, task_node: str, role: str) -> list[sqlite3.Row]:
        node = self.nodes[task_node]
        if node["task_id"] is None:
            return self.store.query(
                "SELECT * FROM datasets WHERE run_id = ? AND task_id IS NULL AND role = ? "
                "ORDER BY ts",
                (node["run_id"], role),
            )
        return self.store.query(
            "SELECT * FROM datasets WHERE task_id = ? AND role = ? ORDER BY ts",
            (node["task_id"], role),
        )

    def add_dataset(self, row: Row) -> str:
        node_id = _dataset_node_id(row["fingerprint"], row["name"], row["run_id"])
        if node_id in self.nodes:
            return node_id
        names = [row["name"]]
        if row["fingerprint"]:
            # One version, many names (each task may call it its own way): newest first.
            names = [
                r["name"]
                for r in self.store.query(
                    "SELECT name, max(ts) AS ts FROM datasets WHERE fingerprint = ? "
                    "GROUP BY name ORDER BY ts DESC",
                    (row["fingerprint"],),
                )
            ] or names
        self.nodes[node_id] = {
            "id": node_id,
            "kind": "dataset",
            "fingerprint": row["fingerprint"],
            "name": names[0],
            "names": names,
            "data_type": row["data_type"],
            "uri": row["uri"],
            "row_count": row["row_count"],
            "size_bytes": row["size_bytes"],
            "columns": len(_load(row["schema"], [])),
        }
        return node_id

    def add_task(self, run_id: str, task_id: str | None) -> str:
        node_id = f"task:{task_id}" if task_id else f"run:{run_id}"
        if node_id in self.nodes:
            return node_id
        run = self._run(run_id)
        node: dict[str, Any] = {
            "id": node_id,
            "kind": "task",
            "task_id": task_id,
            "name": None,
            "run_id": run_id,
            "orchestrator": run["orchestrator"] if run else None,
            "pipeline": run["pipeline"] if run else None,
            "run_key": run["run_key"] if run else None,
            "try_number": None,
            "map_index": None,
            "state": run["state"] if run else None,
            "started_at": run["started_at"] if run else None,
        }
        if task_id:
            rows = self.store.query("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
            if rows:
                t = _task_dict(rows[0], self.now, self.stale_after_s)
                node.update(
                    name=t["name"],
                    try_number=t["try_number"],
                    map_index=t["map_index"],
                    state=t["state"],
                    started_at=t["started_at"],
                )
        self.nodes[node_id] = node
        return node_id


def lineage(
    store: Store,
    ref: str,
    *,
    direction: str = "upstream",
    depth: int | None = None,
    now: float | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> dict[str, Any]:
    """The lineage graph of a dataset version, through the tasks that wrote and read it.

    A dataset version is one fingerprint, wherever it was logged (any run, any
    orchestrator): one node. ``upstream`` follows the tasks that wrote it (role
    ``output``) and, recursively, what those tasks read; ``downstream`` follows
    the tasks that read it and what they wrote. *depth* limits the number of task
    levels (None: no limit).

    :return: ``{"root", "direction", "depth", "nodes", "edges"}``; edges point the
        way data flows (dataset -> reading task, writing task -> dataset) with a
        ``role``; ``nodes`` are dicts with ``kind`` ``dataset`` or ``task``.
    :raises RecordNotFound: / :raises AmbiguousReference: as :func:`resolve_dataset`.
    """
    if direction not in ("upstream", "downstream"):
        raise ValueError(f"direction must be 'upstream' or 'downstream', not {direction!r}")
    if depth is not None and depth < 0:
        raise ValueError("depth must not be negative")
    now = time.time() if now is None else now
    root = resolve_dataset(store, ref)
    graph = _Graph(store, now, stale_after_s)
    seed_rows = graph.store.query(
        "SELECT * FROM datasets WHERE "
        + (
            "fingerprint = ?"
            if root["fingerprint"]
            else "fingerprint IS NULL AND name = ? AND run_id = ?"
        )
        + " ORDER BY ts DESC LIMIT 1",
        (root["fingerprint"],) if root["fingerprint"] else (root["name"], root["run_id"]),
    )
    root_id = graph.add_dataset(seed_rows[0])
    upstream = direction == "upstream"
    frontier = [root_id]
    seen_datasets = {root_id}
    seen_tasks: set[str] = set()
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        next_frontier: list[str] = []
        for dataset_id in frontier:
            for row in graph.dataset_rows(dataset_id, "output" if upstream else "input"):
                task_node = graph.add_task(row["run_id"], row["task_id"])
                if upstream:
                    graph.edge(task_node, dataset_id, "output")
                else:
                    graph.edge(dataset_id, task_node, "input")
                if task_node in seen_tasks:
                    continue
                seen_tasks.add(task_node)
                for drow in graph.task_datasets(task_node, "input" if upstream else "output"):
                    other = graph.add_dataset(drow)
                    if upstream:
                        graph.edge(other, task_node, "input")
                    else:
                        graph.edge(task_node, other, "output")
                    if other not in seen_datasets:
                        seen_datasets.add(other)
                        next_frontier.append(other)
        frontier = next_frontier
    return {
        "root": root_id,
        "direction": direction,
        "depth": depth,
        "nodes": list(graph.nodes.values()),
        "edges": graph.edges,
    }


# ---------------------------------------------------------------------------
# comparing two runs
# ---------------------------------------------------------------------------


def _by_task_name(store: Store, run_id: str) -> dict[str, str]:
    return {
        r["task_id"]: r["name"]
        for r in store.query("SELECT task_id, name FROM tasks WHERE run_id = ?", (run_id,))
    }


def _scoped(rows: Iterable[Row], names: Mapping[str, str]) -> dict[tuple[str | None, str], Row]:
    # Attempts of one task share its name; the latest value over all of them wins.
    out: dict[tuple[str | None, str], Row] = {}
    for r in rows:
        scope = names.get(r["task_id"]) if r["task_id"] else None
        key = (scope, r["key"])
        prev = out.get(key)
        if prev is None or (r["ts"] or 0) >= (prev["ts"] or 0):
            out[key] = r
    return out


def compare_runs(store: Store, run_a: str, run_b: str) -> dict[str, Any]:
    """What differs between two runs: params, metrics (with deltas), datasets, code.

    Params, metrics and datasets are matched by task name (``None`` for the run
    itself) and key, so attempts and runs of the same pipeline line up.

    :raises RecordNotFound: either run id is unknown.
    """
    runs = {}
    for rid in (run_a, run_b):
        rows = store.query("SELECT * FROM runs WHERE run_id = ?", (rid,))
        if not rows:
            raise RecordNotFound(f"no run {rid!r}")
        runs[rid] = dict(rows[0])
    names = {rid: _by_task_name(store, rid) for rid in (run_a, run_b)}

    params = {
        rid: _scoped(_latest_per_key(store, "params", rid), names[rid]) for rid in (run_a, run_b)
    }
    param_diff = []
    same_params = 0
    for key in sorted(set(params[run_a]) | set(params[run_b]), key=lambda k: (k[0] or "", k[1])):
        a = params[run_a].get(key)
        b = params[run_b].get(key)
        va = a["value"] if a is not None else None
        vb = b["value"] if b is not None else None
        if a is not None and b is not None and va == vb:
            same_params += 1
            continue
        param_diff.append({"task": key[0], "key": key[1], "a": va, "b": vb})

    metrics: dict[str, dict[tuple[str | None, str], Row]] = {}
    for rid in (run_a, run_b):
        latest: list[Row] = [{**m, "ts": m["recorded_at"]} for m in _latest_metrics(store, rid)]
        metrics[rid] = _scoped(latest, names[rid])
    metric_rows = []
    for key in sorted(set(metrics[run_a]) | set(metrics[run_b]), key=lambda k: (k[0] or "", k[1])):
        a = metrics[run_a].get(key)
        b = metrics[run_b].get(key)
        va = a["value"] if a is not None else None
        vb = b["value"] if b is not None else None
        metric_rows.append(
            {
                "task": key[0],
                "key": key[1],
                "a": va,
                "a_text": a["value_text"] if a is not None else None,
                "b": vb,
                "b_text": b["value_text"] if b is not None else None,
                "delta": None if va is None or vb is None else vb - va,
            }
        )

    def datasets_of(rid: str) -> dict[tuple[str | None, str, str], Row]:
        out: dict[tuple[str | None, str, str], Row] = {}
        for r in store.query("SELECT * FROM datasets WHERE run_id = ? ORDER BY ts", (rid,)):
            scope = names[rid].get(r["task_id"]) if r["task_id"] else None
            out[(scope, r["name"], r["role"])] = r  # the last logged wins
        return out

    ds = {rid: datasets_of(rid) for rid in (run_a, run_b)}
    dataset_diff = []
    same_datasets = 0
    for dkey in sorted(set(ds[run_a]) | set(ds[run_b]), key=lambda k: (k[0] or "", k[1], k[2])):
        a = ds[run_a].get(dkey)
        b = ds[run_b].get(dkey)
        fa = a["fingerprint"] if a is not None else None
        fb = b["fingerprint"] if b is not None else None
        if a is not None and b is not None and fa == fb and fa is not None:
            same_datasets += 1
            continue
        dataset_diff.append(
            {
                "task": dkey[0],
                "name": dkey[1],
                "role": dkey[2],
                "a": fa,
                "b": fb,
                "a_rows": a["row_count"] if a is not None else None,
                "b_rows": b["row_count"] if b is not None else None,
            }
        )

    code = {}
    for rid, label in ((run_a, "a"), (run_b, "b")):
        rows = store.query(
            "SELECT commit_sha, branch, dirty FROM code_snapshots WHERE run_id = ?", (rid,)
        )
        code[label] = (
            {
                "commit": rows[0]["commit_sha"],
                "branch": rows[0]["branch"],
                "dirty": None if rows[0]["dirty"] is None else bool(rows[0]["dirty"]),
            }
            if rows
            else None
        )
    code["same_commit"] = (
        None
        if code["a"] is None or code["b"] is None
        else code["a"]["commit"] == code["b"]["commit"]
    )

    def run_summary(rid: str) -> dict[str, Any]:
        r = runs[rid]
        return {
            "run_id": rid,
            "orchestrator": r["orchestrator"],
            "pipeline": r["pipeline"],
            "run_key": r["run_key"],
            "state": r["state"],
            "started_at": r["started_at"],
        }

    return {
        "a": run_summary(run_a),
        "b": run_summary(run_b),
        "params": param_diff,
        "params_same": same_params,
        "metrics": metric_rows,
        "datasets": dataset_diff,
        "datasets_same": same_datasets,
        "code": code,
    }
