"""The flowrecord pages inside the Airflow UI: a FastAPI app the API server mounts.

Three read-only pages over the local store (``FLOWRECORD_HOME`` of the API
server's process): recent Airflow runs, one DAG run with its task attempts,
and one task instance with its params, metrics, datasets, validations, system
usage and tags. Every page checks the caller's access to the DAG through
Airflow's own auth manager (the session cookie of the UI, or a bearer token),
because Airflow does not authenticate plugin apps on their behalf.

Building the app imports FastAPI; :class:`LazyApp` defers that to the first
request, so task processes that load the plugin never pay for it.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations
# (Request, Query) at definition time, from create_app's local imports.

import datetime as dt
import html
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from flowrecord_airflow.adapter import ORCHESTRATOR
from flowrecord_airflow.links import URL_PREFIX

__all__ = ["LazyApp", "create_app", "task_record"]


# ---------------------------------------------------------------------------
# reading the store
# ---------------------------------------------------------------------------

_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()


def _store() -> Any:
    """The local store of this process's flowrecord home, or None when there is none yet."""
    from flowrecord.backends.local import LocalStore, StoreError
    from flowrecord.config import load_config

    home = str(load_config().home)
    with _stores_lock:
        store = _stores.get(home)
        if store is None:
            try:
                store = LocalStore(home, create=False)
            except StoreError:
                return None
            _stores[home] = store
        return store


def _rows(store: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return [dict(r) for r in store.query(sql, params)]


def _run_row(store: Any, dag_id: str, run_id: str) -> dict[str, Any] | None:
    rows = _rows(
        store,
        "SELECT * FROM runs WHERE orchestrator = ? AND pipeline = ? AND run_key = ?",
        (ORCHESTRATOR, dag_id, run_id),
    )
    return rows[0] if rows else None


def task_record(
    dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int | None = None
) -> dict[str, Any] | None:
    """Everything recorded about one task instance, as plain data (None when unknown).

    ``attempts`` lists every try; the other keys describe *try_number* (default:
    the latest try).
    """
    store = _store()
    if store is None:
        return None
    run = _run_row(store, dag_id, run_id)
    if run is None:
        return None
    mapped = None if map_index is None or map_index < 0 else map_index
    attempts = _rows(
        store,
        "SELECT * FROM tasks WHERE run_id = ? AND name = ? AND "
        "coalesce(map_index, -1) = ? ORDER BY try_number",
        (run["run_id"], task_id, -1 if mapped is None else mapped),
    )
    if not attempts:
        return {"run": run, "attempts": [], "attempt": None}
    chosen = attempts[-1]
    if try_number is not None:
        chosen = next((a for a in attempts if a["try_number"] == try_number), chosen)
    tid = chosen["task_id"]
    metrics = _rows(
        store,
        "SELECT key, value, value_text, step, ts FROM metric_points WHERE task_id = ? "
        "ORDER BY key, ts",
        (tid,),
    )
    usage = _rows(store, "SELECT summary FROM system_usage WHERE task_id = ?", (tid,))
    return {
        "run": run,
        "attempts": attempts,
        "attempt": {**chosen, "attributes": _json(chosen.get("attributes"), {})},
        "params": _rows(
            store, "SELECT key, value, truncated FROM params WHERE task_id = ? ORDER BY key", (tid,)
        ),
        "metrics": _latest_metrics(metrics),
        "datasets": [
            {**d, "schema": _json(d.pop("schema", None), []), "profile": None}
            for d in _rows(
                store,
                "SELECT name, role, uri, data_type, fingerprint, schema, row_count, size_bytes, ts "
                "FROM datasets WHERE task_id = ? ORDER BY role, name",
                (tid,),
            )
        ],
        "validations": [
            {**v, "checks": _json(v.get("checks"), [])}
            for v in _rows(
                store,
                "SELECT dataset_name, validator, schema_name, passed, policy, failure_count, "
                "checks, error, ts FROM validations WHERE task_id = ? ORDER BY ts",
                (tid,),
            )
        ],
        "system_usage": _json(usage[0]["summary"], {}) if usage else None,
        "tags": _rows(store, "SELECT key, value FROM tags WHERE task_id = ? ORDER BY key", (tid,)),
    }


def _latest_metrics(points: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in points:
        value = p["value"] if p["value"] is not None else p["value_text"]
        entry = out.setdefault(p["key"], {"key": p["key"], "points": 0})
        entry["points"] += 1
        entry["value"] = value
        entry["step"] = p["step"]
    return list(out.values())


def _json(text: Any, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1d2330;background:#fff}
h1{font-size:1.25rem;margin:0 0 .6rem}h2{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;font-size:.85rem;margin-bottom:.4rem}
td,th{border:1px solid #d8dce4;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}.muted{color:#6b7280}code{font-size:.8rem}
.state-succeeded{color:#15803d}.state-failed{color:#b91c1c}.state-retrying{color:#b45309}
.state-skipped{color:#6b7280}.state-started{color:#1d4ed8}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(ts: Any) -> str:
    if ts is None:
        return ""
    try:
        return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return _e(ts)


def _state(state: Any) -> str:
    return f'<span class="state-{_e(state)}">{_e(state)}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _run_href(prefix: str, dag_id: str, run_id: str) -> str:
    return f"{prefix}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _task_href(
    prefix: str, dag_id: str, run_id: str, name: str, map_index: Any, try_number: Any
) -> str:
    href = f"{prefix}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(name, safe='')}"
    query = []
    if map_index is not None and int(map_index) >= 0:
        query.append(f"map_index={int(map_index)}")
    if try_number is not None:
        query.append(f"try_number={int(try_number)}")
    return href + ("?" + "&".join(query) if query else "")


def _mlflow_note(task_id: str) -> str:
    """Where the same attempt is in MLflow, when the MLflow backend is active.

    The MLflow backend finds its runs by the tag ``flowrecord.task_id``; the
    API server does not ask MLflow for the run's id, so the page gives the
    search filter that finds it rather than a link that might be wrong.
    """
    import os

    from flowrecord.config import load_config

    if "mlflow" not in load_config().backends:
        return ""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return ""
    where = (
        f'<a href="{_e(uri)}" target="_blank" rel="noopener">{_e(uri)}</a>'
        if uri.startswith(("http://", "https://"))
        else _e(uri)
    )
    return (
        f"<p>Also in MLflow at {where}: search the runs with "
        f"<code>tags.\"flowrecord.task_id\" = '{_e(task_id)}'</code>.</p>"
    )


def render_index(store: Any, prefix: str = URL_PREFIX) -> str:
    """The list of the most recent Airflow runs."""
    if store is None:
        return _page("flowrecord", "<h1>flowrecord</h1><p>Nothing recorded yet.</p>")
    runs = _rows(
        store,
        "SELECT * FROM runs WHERE orchestrator = ? ORDER BY started_at DESC LIMIT 100",
        (ORCHESTRATOR,),
    )
    rows = [
        (
            f'<a href="{_run_href(prefix, r["pipeline"], r["run_key"])}">{_e(r["pipeline"])}</a>',
            _e(r["run_key"]),
            _state(r["state"]),
            _when(r["started_at"]),
            _when(r["ended_at"]),
        )
        for r in runs
    ]
    table = _table(("DAG", "run", "state", "started", "ended"), rows, "No Airflow runs recorded.")
    return _page("flowrecord", f"<h1>flowrecord: recent DAG runs</h1>{table}")


def render_run(store: Any, dag_id: str, run_id: str, prefix: str = URL_PREFIX) -> str | None:
    """One DAG run and all its task attempts; None when the run is not recorded."""
    run = _run_row(store, dag_id, run_id) if store is not None else None
    if run is None:
        return None
    tasks = _rows(
        store,
        "SELECT * FROM tasks WHERE run_id = ? ORDER BY started_at, name, map_index, try_number",
        (run["run_id"],),
    )
    rows = [
        (
            f'<a href="{_task_href(prefix, dag_id, run_id, t["name"], t["map_index"], t["try_number"])}">'
            f"{_e(t['name'])}</a>",
            _e("" if t["map_index"] is None else t["map_index"]),
            _e(t["try_number"]),
            _state(t["state"]),
            _e(f"{t['duration_s']:.3f} s" if t["duration_s"] is not None else ""),
            _e(t["error"]),
        )
        for t in tasks
    ]
    body = (
        f"<h1>DAG run {_e(run_id)} of {_e(dag_id)}</h1>"
        f"<p>{_state(run['state'])} · started {_when(run['started_at'])}"
        f" · ended {_when(run['ended_at'])}</p>"
        + (f"<p>{_e(run['error'])}</p>" if run["error"] else "")
        + "<h2>Tasks</h2>"
        + _table(
            ("task", "map index", "try", "state", "duration", "error"), rows, "No task recorded."
        )
    )
    return _page(f"{dag_id} {run_id}", body)


def render_task(
    record: Mapping[str, Any], dag_id: str, run_id: str, task_id: str, prefix: str = URL_PREFIX
) -> str:
    """The record page of one task instance."""
    attempt = record.get("attempt")
    title = f"{dag_id}.{task_id}"
    head = (
        f"<h1>{_e(task_id)} <span class='muted'>in {_e(dag_id)} · {_e(run_id)}</span></h1>"
        f'<p><a href="{_run_href(prefix, dag_id, run_id)}">the whole DAG run</a></p>'
    )
    if attempt is None:
        return _page(title, head + "<p>This task has not been recorded.</p>")
    attempts = _table(
        ("try", "state", "started", "duration", "error"),
        (
            (
                _e(a["try_number"]),
                _state(a["state"]),
                _when(a["started_at"]),
                _e(f"{a['duration_s']:.3f} s" if a["duration_s"] is not None else ""),
                _e(a["error"]),
            )
            for a in record["attempts"]
        ),
        "No attempt recorded.",
    )
    params = _table(
        ("param", "value"),
        ((_e(p["key"]), f"<code>{_e(p['value'])}</code>") for p in record["params"]),
        "No params.",
    )
    metrics = _table(
        ("metric", "latest value", "step", "points"),
        ((_e(m["key"]), _e(m["value"]), _e(m["step"]), _e(m["points"])) for m in record["metrics"]),
        "No metrics.",
    )
    datasets = _table(
        ("role", "name", "fingerprint", "rows", "columns", "uri"),
        (
            (
                _e(d["role"]),
                _e(d["name"]),
                f"<code>{_e(d['fingerprint'])}</code>",
                _e(d["row_count"]),
                _e(", ".join(str(c.get("name")) for c in d["schema"] if isinstance(c, Mapping))),
                _e(d["uri"]),
            )
            for d in record["datasets"]
        ),
        "No datasets.",
    )
    validations = _table(
        ("dataset", "validator", "schema", "passed", "policy", "failures", "error"),
        (
            (
                _e(v["dataset_name"]),
                _e(v["validator"]),
                _e(v["schema_name"]),
                "yes" if v["passed"] else "<b>no</b>",
                _e(v["policy"]),
                _e(v["failure_count"]),
                _e(v["error"]),
            )
            for v in record["validations"]
        ),
        "No validations.",
    )
    usage = record.get("system_usage") or {}
    system = _table(
        ("measure", "value"),
        ((_e(k), _e(v)) for k, v in sorted(usage.items()) if not isinstance(v, list | dict)),
        "No system usage sampled.",
    )
    tags = _table(
        ("tag", "value"),
        ((_e(t["key"]), f"<code>{_e(t['value'])}</code>") for t in record["tags"]),
        "No tags.",
    )
    a = attempt
    body = (
        head
        + f"<p>try {_e(a['try_number'])}: {_state(a['state'])} · started {_when(a['started_at'])}"
        + (f" · {a['duration_s']:.3f} s" if a["duration_s"] is not None else "")
        + f" · host {_e(a['host'])} pid {_e(a['pid'])}</p>"
        + _mlflow_note(a["task_id"])
        + "<h2>Attempts</h2>"
        + attempts
        + "<h2>Params</h2>"
        + params
        + "<h2>Metrics</h2>"
        + metrics
        + "<h2>Datasets</h2>"
        + datasets
        + "<h2>Validations</h2>"
        + validations
        + "<h2>System usage</h2>"
        + system
        + "<h2>Tags</h2>"
        + tags
    )
    return _page(title, body)


# ---------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------


def _dag_access() -> list[Any]:
    """Airflow's own check of read access to the DAG named in the path."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends

    return [Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))]


def create_app(*, authenticate: bool = True) -> Any:
    """The FastAPI app of the flowrecord pages (mount it under :data:`URL_PREFIX`).

    :param authenticate: check the caller's DAG access through Airflow's auth
        manager (only tests of the pages alone turn it off).
    """
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    dependencies = _dag_access() if authenticate else []
    app = FastAPI(title="flowrecord", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, dependencies=dependencies)
    def index(request: Request) -> str:
        return render_index(_store(), _prefix(request))

    @app.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=dependencies)
    def run_page(request: Request, dag_id: str, run_id: str) -> str:
        page = render_run(_store(), dag_id, run_id, _prefix(request))
        if page is None:
            raise HTTPException(
                404, f"flowrecord has no record of DAG run {run_id!r} of {dag_id!r}"
            )
        return page

    @app.get(
        "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
        response_class=HTMLResponse,
        dependencies=dependencies,
    )
    def task_page(
        request: Request,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: str = Query("-1"),
        try_number: int | None = Query(None),
        format: str = Query("html"),
    ) -> Any:
        # The UI substitutes {MAP_INDEX} only for mapped tasks; anything else is -1.
        index = int(map_index) if map_index.lstrip("-").isdigit() else -1
        record = task_record(dag_id, run_id, task_id, index, try_number)
        if record is None:
            raise HTTPException(
                404, f"flowrecord has no record of DAG run {run_id!r} of {dag_id!r}"
            )
        if format == "json":
            return JSONResponse(json.loads(json.dumps(record, default=str)))
        return HTMLResponse(render_task(record, dag_id, run_id, task_id, _prefix(request)))

    return app


def _prefix(request: Any) -> str:
    # Where this app is mounted, as the browser sees it (API root path + mount prefix).
    return str(request.scope.get("root_path") or URL_PREFIX).rstrip("/")


class LazyApp:
    """An ASGI app that builds :func:`create_app` on its first request."""

    def __init__(self, factory: Callable[[], Any] = create_app) -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        """The built app (built now if needed)."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
