"""The model registry as lifecycle code sees it: versions with their lineage, and aliases.

A thin facade over the ``flowrecord_registry_*`` hooks. Those hooks are
``firstresult``: when the MLflow backend is active it answers first and holds the
registry; otherwise the local store does. Calls go straight to the plugin
manager of this process's runtime (synchronously, not through the event
dispatcher), because a registry answer is needed *now* — "who is champion?" has
no use arriving later.

A backend that raises, or a registry that answers nothing, becomes
:class:`RegistryUnavailable`, never a silent ``None``: promotion gates fail closed
on it. A version or alias the registry does not know is ``None`` (or
:class:`ModelNotFound` where an answer is required).

>>> from flowrecord.lifecycle import registry
>>> v = registry.register_model_version("churn", uri="s3://models/churn/7")  # doctest: +SKIP
>>> registry.set_alias("churn", "champion", v.version)                       # doctest: +SKIP
>>> registry.champion("churn").version                                       # doctest: +SKIP
'1'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowrecord.errors import FlowrecordError, FlowrecordWarning

if TYPE_CHECKING:
    from flowrecord.backends.local import LocalStore
    from flowrecord.recorder import RunHandle, TaskHandle

__all__ = [
    "CHAMPION",
    "PREVIOUS",
    "AliasMove",
    "ModelNotFound",
    "ModelRegistry",
    "ModelVersion",
    "RegistryUnavailable",
    "alias_history",
    "champion",
    "get_alias",
    "get_version",
    "list_models",
    "normalize_datasets",
    "register_model_version",
    "resolve_version",
    "set_alias",
]

#: The alias of the version in production.
CHAMPION = "champion"
#: The alias of the champion before the last promotion: what ``rollback`` restores.
PREVIOUS = "previous"


class RegistryUnavailable(FlowrecordError):
    """No registry could answer: recording is disabled, or a registry backend failed."""


class ModelNotFound(FlowrecordError, LookupError):
    """The registry answered, and it does not know this model, version or alias."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model, with the lineage it was registered with."""

    model: str
    version: str
    run_id: str | None = None
    """flowrecord run that produced the version."""
    task_id: str | None = None
    """flowrecord task that produced the version."""
    uri: str | None = None
    """Where the model files are."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Evaluation metrics known at registration; a NaN became ``None`` in the store."""
    datasets: tuple[Mapping[str, Any], ...] = ()
    """Training and evaluation data as ``{"name", "fingerprint", "role"}``."""
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelVersion:
        """Build one from the mapping a registry hook returns."""
        created = record.get("created_at")
        return cls(
            model=str(record["model"]),
            version=str(record["version"]),
            run_id=record.get("run_id"),
            task_id=record.get("task_id"),
            uri=record.get("uri"),
            metrics=dict(record.get("metrics") or {}),
            datasets=tuple(dict(d) for d in record.get("datasets") or ()),
            tags=dict(record.get("tags") or {}),
            created_at=float(created) if created is not None else None,
            aliases=tuple(record.get("aliases") or ()),
        )

    def metric(self, key: str) -> float | None:
        """The metric *key* as a finite float, or None when missing, null or not finite."""
        value = self.metrics.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None

    def datasets_with_role(self, role: str) -> list[Mapping[str, Any]]:
        """The version's datasets registered with *role* (``train``, ``eval``...)."""
        return [d for d in self.datasets if d.get("role") == role]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the version."""
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "uri": self.uri,
            "metrics": dict(self.metrics),
            "datasets": [dict(d) for d in self.datasets],
            "tags": dict(self.tags),
            "created_at": self.created_at,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True, slots=True)
class AliasMove:
    """An alias moved from one version to another."""

    model: str
    alias: str
    version: str
    previous_version: str | None
    reason: str | None = None
    moved_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "reason": self.reason,
            "moved_at": self.moved_at,
        }


class _StoreRelay:
    """The registry hooks, answered by one store (a read-only store for the CLI)."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def flowrecord_registry_get_version(self, *, model: str, version: str) -> Any:
        return self.store.get_version(model, version)

    def flowrecord_registry_get_alias(self, *, model: str, alias: str) -> Any:
        return self.store.get_alias(model, alias)

    def flowrecord_registry_list_models(self) -> Any:
        return self.store.list_models()

    def flowrecord_registry_alias_history(self, *, model: str, alias: str | None) -> Any:
        return self.store.alias_history(model, alias)

    def flowrecord_registry_set_alias(self, **kwargs: Any) -> Any:
        return self.store.set_alias(**kwargs)

    def flowrecord_registry_register_version(self, **kwargs: Any) -> Any:
        return self.store.register_version(**kwargs)


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


class ModelRegistry:
    """The registry of this process (through the registry hooks), or of one *store*.

    :param store: answer from this store instead of the runtime's hooks; the
        command line reads a store this way without starting a recorder.
    """

    def __init__(self, store: LocalStore | None = None) -> None:
        self._store = store

    # -- plumbing --------------------------------------------------------------

    def _relay(self) -> Any:
        if self._store is not None:
            return _StoreRelay(self._store)
        from flowrecord.recorder import flush, get_runtime

        rt = get_runtime()
        if rt is None:
            raise RegistryUnavailable(
                "the model registry is unreachable: recording is disabled in this process "
                "(FLOWRECORD_DISABLED is set, or the recorder failed to start)"
            )
        # Let the dispatcher deliver (and so open the store) first: the local store's
        # first open from two threads at once can misjudge a store being created.
        flush()
        return rt.pm.hook

    def _call(self, hook: str, **kwargs: Any) -> Any:
        relay = self._relay()
        try:
            return getattr(relay, hook)(**kwargs)
        except KeyError as exc:  # both registries say "unknown version" this way
            raise ModelNotFound(str(exc.args[0]) if exc.args else str(exc)) from exc
        except Exception as exc:
            raise RegistryUnavailable(
                f"the model registry failed ({hook}): {type(exc).__name__}: {exc}"
            ) from exc

    def local_store(self) -> LocalStore | None:
        """The store holding lineage, validations and alias history, when there is one."""
        if self._store is not None:
            return self._store
        from flowrecord.recorder import get_runtime

        rt = get_runtime()
        return rt.local_store() if rt is not None else None

    # -- reads -----------------------------------------------------------------

    def get_version(self, model: str, version: str) -> ModelVersion | None:
        """Version *version* of *model*, or None when the registry does not know it.

        :raises RegistryUnavailable: no registry could answer.
        """
        _check_name("model", model)
        record = self._call("flowrecord_registry_get_version", model=model, version=str(version))
        return ModelVersion.from_record(record) if record is not None else None

    def get_alias(self, model: str, alias: str) -> str | None:
        """The version *alias* points at, or None when it is not set."""
        _check_name("model", model)
        _check_name("alias", alias)
        answer = self._call("flowrecord_registry_get_alias", model=model, alias=alias)
        return None if answer is None else str(answer)

    def list_models(self) -> list[dict[str, Any]]:
        """Every registered model: ``{"name", "created_at", "versions", "aliases"}``.

        :raises RegistryUnavailable: no registry backend answered at all.
        """
        answer = self._call("flowrecord_registry_list_models")
        if answer is None:
            raise RegistryUnavailable("no registry backend answered (none is active)")
        out = []
        for m in answer:
            entry = dict(m)
            # registries differ in how they spell versions (MLflow: ints); ours are text
            entry["versions"] = [str(v) for v in entry.get("versions") or ()]
            entry["aliases"] = {str(a): str(v) for a, v in (entry.get("aliases") or {}).items()}
            out.append(entry)
        return out

    def versions(self, model: str) -> list[str]:
        """The versions of *model*, oldest first (empty when the model is unknown)."""
        _check_name("model", model)
        for m in self.list_models():
            if m.get("name") == model:
                return sorted((str(v) for v in m.get("versions") or ()), key=_version_key)
        return []

    def champion(self, model: str, alias: str = CHAMPION) -> ModelVersion | None:
        """The version in production, or None when no champion is set."""
        version = self.get_alias(model, alias)
        return self.get_version(model, version) if version is not None else None

    def resolve(self, model: str, ref: str | None = None) -> ModelVersion:
        """The version *ref* names: ``"3"``, ``"@champion"`` (an alias) or ``"latest"``.

        :raises ModelNotFound: nothing of that name.
        :raises RegistryUnavailable: no registry could answer.
        """
        ref = "latest" if ref is None else str(ref).strip()
        if ref == "latest":
            known = self.versions(model)
            if not known:
                raise ModelNotFound(f"model {model!r} has no registered version")
            ref = known[-1]
        elif ref.startswith("@"):
            alias = ref[1:]
            target = self.get_alias(model, alias)
            if target is None:
                raise ModelNotFound(f"model {model!r} has no alias {alias!r}")
            ref = target
        found = self.get_version(model, ref)
        if found is None:
            self.list_models()  # "unknown version" only if some registry is there to say so
            raise ModelNotFound(f"model {model!r} has no version {ref!r}")
        return found

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of *model*'s aliases (or of one *alias*), oldest first.

        From the registry that holds the model: the local store's history table,
        or MLflow's (kept by flowrecord in a registered-model tag, MLflow having
        none; the last 50 moves). Empty for a model no registry knows.

        :raises RegistryUnavailable: no registry could answer.
        """
        _check_name("model", model)
        if alias is not None:
            _check_name("alias", alias)
        rows = self._call("flowrecord_registry_alias_history", model=model, alias=alias) or ()
        return [
            AliasMove(
                model=model,
                alias=str(r.get("alias")),
                version=str(r.get("version")),
                previous_version=(
                    None if r.get("previous_version") is None else str(r["previous_version"])
                ),
                reason=r.get("reason"),
                moved_at=float(r.get("ts") or 0.0),
            )
            for r in rows
        ]

    # -- writes ----------------------------------------------------------------

    def set_alias(
        self, model: str, alias: str, version: str, reason: str | None = None
    ) -> AliasMove:
        """Point *alias* at *version* and return the move.

        :raises ModelNotFound: the registry has no such version.
        :raises RegistryUnavailable: the registry failed or nobody answered.
        """
        _check_name("model", model)
        _check_name("alias", alias)
        answer = self._call(
            "flowrecord_registry_set_alias",
            model=model,
            alias=alias,
            version=str(version),
            reason=reason,
        )
        if answer is None:
            raise RegistryUnavailable(f"no registry backend moved alias {alias!r} of {model!r}")
        import time

        return AliasMove(
            model=model,
            alias=alias,
            version=str(answer.get("version", version)),
            previous_version=answer.get("previous_version"),
            reason=reason,
            moved_at=time.time(),
        )

    def register_version(
        self,
        model: str,
        *,
        uri: str | None = None,
        metrics: Mapping[str, float] | None = None,
        datasets: Any = None,
        task: TaskHandle | str | None = None,
        run: RunHandle | str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Register a new version of *model* with its lineage; see :func:`register_model_version`."""
        _check_name("model", model)
        from flowrecord import recorder

        task_handle = recorder.current_task() if task is None and run is None else None
        task_id = _task_id(task) if task is not None else getattr(task_handle, "task_id", None)
        if run is not None:
            run_id: str | None = _run_id(run)
        elif task is not None and not isinstance(task, str):
            run_id = task.run_id
        elif task_handle is not None:
            run_id = task_handle.run_id
        else:
            current = recorder.current_run()
            run_id = current.run_id if current is not None else None
        if task is not None and isinstance(task, str) and run_id is None:
            run_id = self._run_of_task(task)
        needs_store = metrics is None or datasets is None
        store = self.local_store() if needs_store else None
        if needs_store:
            recorder.flush()  # what the task logged so far must be in the store to be read
        if metrics is None:
            resolved_metrics = _task_metrics(store, run_id, task_id)
        else:
            resolved_metrics = _checked_metrics(metrics)
        if datasets is None:
            resolved_datasets = _task_inputs(store, run_id, task_id)
        else:
            resolved_datasets = normalize_datasets(datasets)
        record = self._call(
            "flowrecord_registry_register_version",
            model=model,
            source_run_id=run_id,
            source_task_id=task_id,
            uri=uri,
            metrics=resolved_metrics,
            datasets=resolved_datasets,
            tags={str(k): str(v) for k, v in (tags or {}).items()},
        )
        if record is None:
            raise RegistryUnavailable(f"no registry backend registered a version of {model!r}")
        return ModelVersion.from_record(record)

    def _run_of_task(self, task_id: str) -> str | None:
        store = self.local_store()
        if store is None:
            return None
        rows = store.query("SELECT run_id FROM tasks WHERE task_id = ?", (task_id,))
        return rows[0]["run_id"] if rows else None


def _version_key(version: str) -> tuple[int, int | str]:
    # Registries number versions 1, 2, ...; anything else sorts after, by text.
    return (0, int(version)) if version.isdigit() else (1, version)


def _task_id(task: Any) -> str:
    return task if isinstance(task, str) else str(task.task_id)


def _run_id(run: Any) -> str:
    return run if isinstance(run, str) else str(run.run_id)


def _checked_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, not {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        _check_name("metric key", key)
        if isinstance(value, str | bytes) or not hasattr(value, "__float__"):
            raise TypeError(f"metric {key!r} must be a number, not {type(value).__name__}")
        out[key] = float(value)
    return out


def _task_metrics(
    store: LocalStore | None, run_id: str | None, task_id: str | None
) -> dict[str, float]:
    """The latest value of every metric the task (or, outside a task, the run) logged."""
    if store is None or run_id is None:
        return {}
    if task_id is not None:
        where, params = "task_id = ?", (task_id,)
    else:
        where, params = "run_id = ? AND task_id IS NULL", (run_id,)
    rows = store.query(
        f"SELECT key, value FROM metric_points WHERE {where} ORDER BY ts, event_id", params
    )
    latest: dict[str, float] = {}
    for r in rows:
        if r["value"] is not None:
            latest[r["key"]] = float(r["value"])
    return latest


def _task_inputs(
    store: LocalStore | None, run_id: str | None, task_id: str | None
) -> list[dict[str, Any]]:
    """The datasets the task read, each with role ``train``."""
    if store is None:
        warnings.warn(
            "no local store is active: the version is registered without its datasets "
            "(pass datasets= explicitly)",
            FlowrecordWarning,
            stacklevel=4,
        )
        return []
    if run_id is None:
        return []
    if task_id is not None:
        where, params = "task_id = ?", (task_id,)
    else:
        where, params = "run_id = ? AND task_id IS NULL", (run_id,)
    rows = store.query(
        f"SELECT name, fingerprint, uri FROM datasets WHERE {where} AND role = 'input' "
        "ORDER BY ts, event_id",
        params,
    )
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    for r in rows:
        key = (r["name"], r["fingerprint"])
        if key in seen:
            continue
        seen.add(key)
        out.append({"name": r["name"], "fingerprint": r["fingerprint"], "role": "train"})
    return out


def normalize_datasets(datasets: Any) -> list[dict[str, Any]]:
    """Datasets as the registry stores them: ``[{"name", "fingerprint", "role"}]``.

    Accepts a mapping from role to a dataset or a list of them
    (``{"train": train_event, "eval": eval_event}``), or a sequence of datasets,
    each a :class:`~flowrecord.events.DatasetEvent` (as ``log_dataset`` returns;
    role ``train``) or a mapping with ``name``, ``fingerprint`` and optional ``role``.

    :raises TypeError: anything else.
    """
    if isinstance(datasets, Mapping):
        out: list[dict[str, Any]] = []
        for role, items in datasets.items():
            _check_name("dataset role", role)
            many = isinstance(items, Sequence) and not isinstance(items, str | bytes)
            for item in items if many else (items,):
                out.append(_one_dataset(item, str(role)))
        return out
    if isinstance(datasets, str | bytes) or not isinstance(datasets, Iterable):
        raise TypeError(
            "datasets must be a mapping of role to datasets or a sequence of datasets, "
            f"not {type(datasets).__name__}"
        )
    return [_one_dataset(item, None) for item in datasets]


def _one_dataset(item: Any, role: str | None) -> dict[str, Any]:
    from flowrecord.events import DatasetEvent

    if isinstance(item, DatasetEvent):
        return {"name": item.name, "fingerprint": item.fingerprint, "role": role or "train"}
    if isinstance(item, Mapping):
        if "name" not in item:
            raise TypeError(f"a dataset mapping needs a 'name': {dict(item)!r:.120}")
        out = {
            "name": str(item["name"]),
            "fingerprint": item.get("fingerprint"),
            "role": role or str(item.get("role") or "train"),
        }
        return out
    raise TypeError(
        "a dataset must be a DatasetEvent (what flowrecord.log_dataset returns) or a mapping "
        f"with 'name' and 'fingerprint', not {type(item).__name__}"
    )


# ---------------------------------------------------------------------------
# module-level shortcuts on this process's registry
# ---------------------------------------------------------------------------


def register_model_version(
    model: str,
    *,
    uri: str | None = None,
    metrics: Mapping[str, float] | None = None,
    datasets: Any = None,
    task: TaskHandle | str | None = None,
    run: RunHandle | str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Register a new version of *model*, with its lineage, in the active registry.

    :param uri: where the model files are.
    :param metrics: evaluation metrics; default: the latest value of every metric
        the current task logged so far.
    :param datasets: training and evaluation data (see :func:`normalize_datasets`);
        default: the datasets the current task read, each with role ``train``.
    :param task: the task that produced the version (a handle or a task id);
        default: the current task.
    :param run: the run that produced it; default: the task's run, or the current run.
    :raises RegistryUnavailable: recording is disabled or the registry failed.

    >>> import flowrecord, pandas as pd
    >>> from flowrecord.lifecycle import register_model_version
    >>> with flowrecord.run("train"), flowrecord.task("fit"):          # doctest: +SKIP
    ...     train = flowrecord.log_dataset(pd.DataFrame({"x": [1]}), name="train")
    ...     v = register_model_version("churn", metrics={"auc": 0.91},
    ...                                datasets={"train": train})
    """
    return ModelRegistry().register_version(
        model, uri=uri, metrics=metrics, datasets=datasets, task=task, run=run, tags=tags
    )


def get_version(model: str, version: str) -> ModelVersion | None:
    """Version *version* of *model*, or None; see :meth:`ModelRegistry.get_version`."""
    return ModelRegistry().get_version(model, version)


def get_alias(model: str, alias: str) -> str | None:
    """The version *alias* of *model* points at, or None."""
    return ModelRegistry().get_alias(model, alias)


def set_alias(model: str, alias: str, version: str, reason: str | None = None) -> AliasMove:
    """Point *alias* of *model* at *version*; see :meth:`ModelRegistry.set_alias`."""
    return ModelRegistry().set_alias(model, alias, version, reason)


def champion(model: str) -> ModelVersion | None:
    """The champion version of *model*, or None when none is set."""
    return ModelRegistry().champion(model)


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its versions and aliases."""
    return ModelRegistry().list_models()


def resolve_version(model: str, ref: str | None = None) -> ModelVersion:
    """The version *ref* (``"3"``, ``"@champion"``, ``"latest"``) of *model*."""
    return ModelRegistry().resolve(model, ref)


def alias_history(model: str, alias: str | None = None) -> list[AliasMove]:
    """Every recorded move of *model*'s aliases, oldest first."""
    return ModelRegistry().alias_history(model, alias)
