"""Why is this model in production, and what exactly was it trained on?

:func:`explain` answers from the record, in one document: the model version and
its aliases, the gate decision that promoted it with its evidence, the alias
moves, the evaluation metrics, the training run and task (orchestrator, code
commit and a summary of the uncommitted diff, parameters), the exact datasets
(fingerprints, schemas, validations) and every upstream task that produced them.

The upstream walk goes through the ``datasets`` table: a dataset version is a
fingerprint, written by tasks with role ``output`` and read by tasks with role
``input``, whatever orchestrator ran them. A table written by an Airflow task
and read by a Dagster asset is therefore one node, and the chain crosses from
one orchestrator to the other without anyone declaring it
(:func:`flowrecord.query.lineage` does the walk).

The registry part (versions, aliases) comes from a
:class:`~flowrecord.lifecycle.registry.ModelRegistry`; everything else from the
local store.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flowrecord.lifecycle._evidence import dataset_by_fingerprint, loads, validations_for
from flowrecord.lifecycle.registry import (
    CHAMPION,
    ModelNotFound,
    ModelRegistry,
    ModelVersion,
    RegistryUnavailable,
)

__all__ = ["diff_summary", "explain", "models_overview", "parse_model_ref", "resolve_model_ref"]


def parse_model_ref(ref: str, known_models: set[str] | None = None) -> tuple[str, str | None]:
    """Split ``MODEL``, ``MODEL@ALIAS`` or ``MODEL:VERSION`` into (model, version ref).

    The version ref is ``"@alias"``, a version, or None (the champion). A name that
    is itself a known model is taken whole, so models named ``team:churn`` work.

    >>> parse_model_ref("churn@champion"), parse_model_ref("churn:3"), parse_model_ref("churn")
    (('churn', '@champion'), ('churn', '3'), ('churn', None))
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("a model reference must be a non-empty string")
    ref = ref.strip()
    if known_models and ref in known_models:
        return ref, None
    model, at, alias = ref.rpartition("@")
    if at and model and alias:
        return model, "@" + alias
    model, colon, version = ref.rpartition(":")
    if colon and model and version:
        return model, version
    return ref, None


def resolve_model_ref(registry: ModelRegistry, ref: str) -> ModelVersion:
    """The model version *ref* names (a bare model name means its champion).

    :raises ModelNotFound: no such model, version or alias, or no champion.
    """
    known = {m["name"] for m in registry.list_models()}
    model, version = parse_model_ref(ref, known)
    if model not in known:
        names = ", ".join(sorted(known)) or "none"
        raise ModelNotFound(f"no registered model {model!r} (registered: {names})")
    if version is None:
        champion = registry.get_alias(model, CHAMPION)
        if champion is None:
            versions = ", ".join(registry.versions(model)) or "none"
            raise ModelNotFound(
                f"model {model!r} has no champion; name a version as {model}:VERSION "
                f"(versions: {versions})"
            )
        version = champion
    return registry.resolve(model, version)


def models_overview(registry: ModelRegistry) -> list[dict[str, Any]]:
    """Every registered model with its versions, aliases and latest version."""
    out = []
    for m in registry.list_models():
        versions = [str(v) for v in m.get("versions") or ()]
        out.append(
            {
                "name": m.get("name"),
                "created_at": m.get("created_at"),
                "versions": versions,
                "latest": versions[-1] if versions else None,
                "aliases": dict(m.get("aliases") or {}),
            }
        )
    return out


def diff_summary(diff: str | None) -> dict[str, Any]:
    """Files changed, lines added and removed, of a unified diff (``git diff``).

    >>> diff_summary("diff --git a/x.py b/x.py\\n--- a/x.py\\n+++ b/x.py\\n@@\\n-a\\n+b\\n+c\\n")
    {'files_changed': 1, 'insertions': 2, 'deletions': 1, 'files': ['x.py']}
    """
    files: list[str] = []
    plus = minus = 0
    for line in (diff or "").splitlines():
        if line.startswith("diff --git "):
            _, _, target = line.rpartition(" b/")
            files.append(target or line[11:])
        elif line.startswith("+") and not line.startswith("+++"):
            plus += 1
        elif line.startswith("-") and not line.startswith("---"):
            minus += 1
    return {
        "files_changed": len(files),
        "insertions": plus,
        "deletions": minus,
        "files": files[:50],
    }


def explain(
    ref: str,
    *,
    store: Any = None,
    registry: ModelRegistry | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The whole provenance chain of the model version *ref* (``MODEL``, ``MODEL@ALIAS``,
    ``MODEL:VERSION``) as one JSON-ready document.

    :param store: the local store to read lineage, runs and validations from
        (anything with ``query(sql, params)``); default: this process's.
    :param registry: where versions and aliases come from; default: *store* when
        one is given, else the active registry backend.
    :raises ModelNotFound: *ref* names nothing registered.
    :raises RegistryUnavailable: no store to read (the local backend is off).

    >>> from flowrecord.lifecycle import explain
    >>> explain("churn@champion")["training"]["run"]["orchestrator"]  # doctest: +SKIP
    'dagster'
    """
    from flowrecord.lifecycle.gate import decisions

    if store is None:
        from flowrecord import recorder

        recorder.flush()
        registry = registry or ModelRegistry()
        store = registry.local_store()
        if store is None:
            raise RegistryUnavailable("explain reads the local store, which is not active")
    registry = registry or ModelRegistry(store)
    version = resolve_model_ref(registry, ref)
    now = time.time() if now is None else now
    made = decisions(version.model, version.version, store=store)
    applied = [d for d in made if d["applied"]]
    moves = [
        m.as_dict()
        for m in registry.alias_history(version.model)
        if version.version in (m.version, m.previous_version)
    ]
    datasets = [_dataset_detail(store, d) for d in version.datasets]
    lineage = _lineage(store, version, datasets)
    training_id = _training_node_id(version)
    upstream = [
        n
        for n in lineage["nodes"]
        if n["kind"] == "task" and n["id"] != training_id and n.get("upstream", True)
    ]
    return {
        "ref": ref,
        "model": version.model,
        "version": version.version,
        "aliases": list(version.aliases),
        "uri": version.uri,
        "created_at": version.created_at,
        "tags": dict(version.tags),
        "metrics": dict(version.metrics),
        "promotion": applied[-1] if applied else None,
        "decisions": made,
        "alias_history": moves,
        "training": _training(store, version, now),
        "datasets": datasets,
        "upstream_tasks": upstream,
        "orchestrators": sorted(
            {n["orchestrator"] for n in lineage["nodes"] if n.get("orchestrator")}
        ),
        "lineage": lineage,
    }


def _training(store: Any, version: ModelVersion, now: float) -> dict[str, Any]:
    from flowrecord.query import RecordNotFound, run_details

    out: dict[str, Any] = {
        "run_id": version.run_id,
        "task_id": version.task_id,
        "recorded": False,
        "run": None,
        "task": None,
        "code": None,
        "params": [],
        "metrics": [],
    }
    if not version.run_id:
        return out
    try:
        details = run_details(store, version.run_id, now=now)
    except RecordNotFound:
        return out
    out["recorded"] = True
    out["run"] = details["run"]
    task_id = version.task_id
    out["task"] = next((t for t in details["tasks"] if t["task_id"] == task_id), None)
    # the run's own params apply to every task; the task's are the model's own
    out["params"] = [p for p in details["params"] if p["task_id"] in (task_id, None)]
    out["metrics"] = [m for m in details["metrics"] if m["task_id"] in (task_id, None)]
    code = details.get("code")
    if code is not None:
        rows = store.query("SELECT diff FROM code_snapshots WHERE run_id = ?", (version.run_id,))
        code = {**code, "diff_summary": diff_summary(rows[0]["diff"] if rows else None)}
    out["code"] = code
    return out


def _dataset_detail(store: Any, d: Mapping[str, Any]) -> dict[str, Any]:
    fp = d.get("fingerprint")
    out: dict[str, Any] = {
        "name": d.get("name"),
        "role": d.get("role"),
        "fingerprint": fp,
        "recorded": False,
        "data_type": None,
        "uri": None,
        "row_count": None,
        "schema": [],
        "validations": [],
        "written_by": [],
        "read_by": [],
    }
    if not fp:
        return out
    row = dataset_by_fingerprint(store, str(fp))
    if row is None:
        return out
    out.update(
        recorded=True,
        data_type=row["data_type"],
        uri=row["uri"],
        row_count=row["row_count"],
        schema=[
            {"name": c.get("name"), "type": c.get("type"), "nullable": c.get("nullable")}
            for c in row["schema"]
            if isinstance(c, Mapping)
        ],
    )
    out["validations"] = validations_for(store, str(fp))
    for r in store.query(
        "SELECT d.role, d.name, d.run_id, d.task_id, d.ts, t.name AS task, r.pipeline, "
        "r.orchestrator FROM datasets d LEFT JOIN tasks t ON t.task_id = d.task_id "
        "LEFT JOIN runs r ON r.run_id = d.run_id WHERE d.fingerprint = ? ORDER BY d.ts",
        (fp,),
    ):
        entry = {
            "name": r["name"],
            "run_id": r["run_id"],
            "task_id": r["task_id"],
            "task": r["task"],
            "pipeline": r["pipeline"],
            "orchestrator": r["orchestrator"],
            "recorded_at": r["ts"],
        }
        out["written_by" if r["role"] == "output" else "read_by"].append(entry)
    return out


def _training_node_id(version: ModelVersion) -> str | None:
    if version.task_id:
        return f"task:{version.task_id}"
    if version.run_id:
        return f"run:{version.run_id}"
    return None


def _lineage(store: Any, version: ModelVersion, datasets: list[dict[str, Any]]) -> dict[str, Any]:
    from flowrecord.query import AmbiguousReference, RecordNotFound, lineage

    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []
    seen_edges: set[tuple[str, str]] = set()

    def edge(source: str, target: str, role: str) -> None:
        if (source, target) not in seen_edges:
            seen_edges.add((source, target))
            edges.append({"source": source, "target": target, "role": role})

    model_id = f"model:{version.model}:{version.version}"
    nodes[model_id] = {
        "id": model_id,
        "kind": "model",
        "name": f"{version.model} v{version.version}",
        "model": version.model,
        "version": version.version,
        "aliases": list(version.aliases),
        "uri": version.uri,
    }
    training_id = _training_node_id(version)
    if training_id is not None:
        nodes[training_id] = _task_node(store, version.run_id, version.task_id, training_id)
        nodes[training_id]["upstream"] = False
        edge(training_id, model_id, "trained")
    read_by_training = set()
    if version.task_id:
        read_by_training = {
            r["fingerprint"]
            for r in store.query(
                "SELECT DISTINCT fingerprint FROM datasets WHERE task_id = ? AND role = 'input'",
                (version.task_id,),
            )
        }
    for d in datasets:
        fp = d.get("fingerprint")
        if not fp:
            continue
        node_id = f"dataset:{fp}"
        try:
            graph = lineage(store, str(fp), direction="upstream")
        except (RecordNotFound, AmbiguousReference):
            graph = {"nodes": [], "edges": []}
        for n in graph["nodes"]:
            if n["id"] not in nodes:
                nodes[n["id"]] = dict(n)
        for e in graph["edges"]:
            edge(e["source"], e["target"], e["role"])
        if node_id not in nodes:
            nodes[node_id] = {
                "id": node_id,
                "kind": "dataset",
                "name": d.get("name"),
                "fingerprint": fp,
                "recorded": False,
            }
        nodes[node_id]["model_role"] = d.get("role")
        if training_id is not None and fp in read_by_training:
            edge(node_id, training_id, "input")
        else:
            edge(node_id, model_id, str(d.get("role") or "input"))
    return {"root": model_id, "nodes": list(nodes.values()), "edges": edges}


def _task_node(store: Any, run_id: str | None, task_id: str | None, node_id: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "kind": "task",
        "task_id": task_id,
        "run_id": run_id,
        "name": None,
        "orchestrator": None,
        "pipeline": None,
        "run_key": None,
        "state": None,
        "started_at": None,
    }
    if run_id:
        rows = store.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if rows:
            r = rows[0]
            node.update(
                orchestrator=r["orchestrator"],
                pipeline=r["pipeline"],
                run_key=r["run_key"],
                state=r["state"],
                started_at=r["started_at"],
            )
    if task_id:
        rows = store.query("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        if rows:
            t = rows[0]
            node.update(
                name=t["name"],
                state=t["state"],
                started_at=t["started_at"],
                attributes=loads(t["attributes"], {}),
            )
    return node
