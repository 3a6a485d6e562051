"""What :func:`~flowrecord_dagster.instrument` learns from the user's definitions, once, at load.

A Dagster event names a step by its key (``orders``, ``raw__orders``, ``my_graph.clean``,
``split[eu]``); the record wants to know which assets that step produces, which
assets it depends on, and which of them carry a pandera schema and under what
policy. All of that is fixed when the code location loads, so it is read here
from the public surface of each ``AssetsDefinition`` (``node_def``, ``keys``,
``asset_deps``, ``get_asset_spec``, ``keys_by_output_name``) and kept in a
frozen :class:`Catalog` that every step process rebuilds identically when it
loads the same code.

A schema is attached to an asset in one of two ways:

- metadata ``{"flowrecord/schema": SchemaOrModel}`` (the object itself, or an
  import path ``"package.module:Name"``, which keeps the metadata plain text);
- the output's Dagster type, as made by :func:`~flowrecord_dagster.schema_type`
  (which also lets a ``DataFrameModel`` serve as the return annotation).

``{"flowrecord/validation_policy": "record" | "warn" | "fail"}`` overrides the
default policy for one asset.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from flowrecord.collectors.validation import check_policy

__all__ = [
    "POLICY_KEY",
    "SCHEMA_KEY",
    "AssetFacts",
    "Catalog",
    "NodeFacts",
    "build_catalog",
    "key_name",
    "resolve_schema",
]

SCHEMA_KEY = "flowrecord/schema"
"""Asset metadata key naming the pandera schema (or ``DataFrameModel``) of the asset."""
POLICY_KEY = "flowrecord/validation_policy"
"""Asset metadata key overriding the validation policy: ``record``, ``warn`` or ``fail``."""

# A step key is the node path joined by dots, with a dynamic mapping key in brackets.
_MAPPING_SUFFIX = re.compile(r"\[[^\]]*\]$")


def key_name(key: dg.AssetKey) -> str:
    """The name flowrecord gives an asset: its key as Dagster's UI writes it (``raw/orders``)."""
    return key.to_user_string()


@dataclass(frozen=True, slots=True)
class AssetFacts:
    """One asset, as the record needs it."""

    key: dg.AssetKey
    deps: frozenset[dg.AssetKey]
    """Upstream assets (data and non-data dependencies alike)."""
    schema: Any = None
    """The pandera schema or ``DataFrameModel`` to validate the asset with, if any."""
    policy: str = "record"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """One top-level node of the asset graph: an asset op, a graph asset, or a check op."""

    node: str
    kind: str
    """``asset``, ``graph_asset`` or ``asset_check``."""
    keys: tuple[dg.AssetKey, ...] = ()
    """Assets the node produces (for a check node: the assets it checks)."""
    checks: tuple[str, ...] = ()
    """Check names, ``asset/key:check``, for a check node."""


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything the recording side needs to know about the definitions."""

    nodes: Mapping[str, NodeFacts] = field(default_factory=dict)
    assets: Mapping[dg.AssetKey, AssetFacts] = field(default_factory=dict)
    default_policy: str = "record"

    def node_for_step(self, step_key: str) -> NodeFacts | None:
        """The top-level node a step belongs to (None for a plain op of a job)."""
        return self.nodes.get(_MAPPING_SUFFIX.sub("", step_key).split(".", 1)[0])

    def task_name(self, step_key: str) -> str:
        """The task name of a step: the asset key for a one-asset op, else the step key."""
        node = self.node_for_step(step_key)
        if node is None or step_key != node.node:
            return step_key
        if node.kind == "asset" and len(node.keys) == 1:
            return key_name(node.keys[0])
        if node.kind == "asset_check" and len(node.checks) == 1:
            return node.checks[0]
        return step_key

    def upstream_of(self, keys: Iterable[dg.AssetKey]) -> list[dg.AssetKey]:
        """Upstream assets of *keys*, outside *keys* themselves, in a stable order."""
        own = set(keys)
        found: set[dg.AssetKey] = set()
        for key in own:
            facts = self.assets.get(key)
            if facts is not None:
                found |= facts.deps
        return sorted(found - own, key=key_name)

    @property
    def schema_assets(self) -> list[AssetFacts]:
        """Assets that carry a schema, in key order."""
        return sorted(
            (a for a in self.assets.values() if a.schema is not None),
            key=lambda a: key_name(a.key),
        )


def resolve_schema(value: object, where: str) -> Any:
    """The pandera schema or model that *value* names (the object, or ``"module:Name"``).

    :raises ValueError: an import path that does not resolve.
    :raises TypeError: anything that is not a pandera schema or ``DataFrameModel``.
    """
    if isinstance(value, str):
        module_name, sep, attr = value.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(
                f"{where}: {SCHEMA_KEY} {value!r} is not an import path like 'package.module:Name'"
            )
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{where}: cannot import {SCHEMA_KEY} {value!r}: {exc}") from exc
        value = target
    if not _is_pandera_schema(value):
        raise TypeError(
            f"{where}: {SCHEMA_KEY} must be a pandera DataFrameSchema or DataFrameModel "
            f"(or an import path to one), not {type(value).__name__}"
        )
    return value


def _is_pandera_schema(value: object) -> bool:
    # pandera is only ever loaded by the user's own code; no schema exists before that.
    if "pandera" not in sys.modules:
        return False
    from pandera.api.base.schema import BaseSchema
    from pandera.api.dataframe.model import DataFrameModel

    if isinstance(value, BaseSchema):
        return True
    return isinstance(value, type) and issubclass(value, DataFrameModel)


def _schema_of_type(dagster_type: dg.DagsterType) -> Any:
    """The schema a Dagster output type stands for, if it stands for one."""
    schema = getattr(dagster_type, "flowrecord_schema", None)
    if schema is not None:
        return schema
    typing_type = getattr(dagster_type, "typing_type", None)
    if typing_type is not None and _is_pandera_schema(typing_type):
        return typing_type
    # pandera.typing.DataFrame[Model] and its polars cousin, from types made elsewhere.
    import typing

    origin = typing.get_origin(typing_type)
    if origin is not None and getattr(origin, "__module__", "").startswith("pandera.typing"):
        args = typing.get_args(typing_type)
        if args and _is_pandera_schema(args[0]):
            return args[0]
    return None


def _output_schemas(assets_def: dg.AssetsDefinition) -> dict[dg.AssetKey, Any]:
    node = assets_def.node_def
    if not isinstance(node, dg.OpDefinition):
        return {}
    found = {}
    outs = node.outs
    for output_name, key in assets_def.keys_by_output_name.items():
        out = outs.get(output_name)
        if out is None or not isinstance(out.dagster_type, dg.DagsterType):
            continue
        schema = _schema_of_type(out.dagster_type)
        if schema is not None:
            found[key] = schema
    return found


def _policy(metadata: Mapping[str, Any], default: str, where: str) -> str:
    raw = metadata.get(POLICY_KEY)
    if raw is None:
        return default
    value = getattr(raw, "value", raw)  # a TextMetadataValue once Dagster normalised it
    try:
        return check_policy(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def build_catalog(items: Iterable[object], default_policy: str) -> Catalog:
    """Read the assets and checks among *items* (what ``Definitions`` holds) into a :class:`Catalog`.

    :raises ValueError: / :raises TypeError: a schema or policy in metadata is invalid.
    """
    nodes: dict[str, NodeFacts] = {}
    assets: dict[dg.AssetKey, AssetFacts] = {}
    for assets_def in _executable(items):
        node_name = assets_def.node_def.name
        if isinstance(assets_def, dg.AssetChecksDefinition) or not assets_def.keys:
            specs = list(assets_def.check_specs)
            nodes[node_name] = NodeFacts(
                node=node_name,
                kind="asset_check",
                keys=tuple(dict.fromkeys(s.asset_key for s in specs)),
                checks=tuple(f"{key_name(s.asset_key)}:{s.name}" for s in specs),
            )
            continue
        keys = tuple(sorted(assets_def.keys, key=key_name))
        graph_backed = not isinstance(assets_def.node_def, dg.OpDefinition)
        nodes[node_name] = NodeFacts(
            node=node_name, kind="graph_asset" if graph_backed else "asset", keys=keys
        )
        typed = _output_schemas(assets_def)
        deps = assets_def.asset_deps
        for key in keys:
            spec = assets_def.get_asset_spec(key)
            where = f"asset {key_name(key)!r}"
            metadata = spec.metadata or {}
            raw_schema = metadata.get(SCHEMA_KEY)
            if raw_schema is not None:
                raw_schema = getattr(raw_schema, "value", raw_schema)
                schema = resolve_schema(raw_schema, where)
            else:
                schema = typed.get(key)
            assets[key] = AssetFacts(
                key=key,
                deps=frozenset(deps.get(key, ())),
                schema=schema,
                policy=_policy(metadata, default_policy, where),
            )
    return Catalog(nodes=nodes, assets=assets, default_policy=default_policy)


def _executable(items: Iterable[object]) -> Iterable[dg.AssetsDefinition]:
    for item in items:
        if isinstance(item, dg.AssetsDefinition) and item.is_executable:
            yield item
