"""Small helpers the Dagster tests share."""

from __future__ import annotations

from typing import Any

import dagster as dg

import flowrecord
from flowrecord.backends.local import LocalStore


def rows(store: LocalStore, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Flush, then run *sql* on the store and return plain dicts."""
    flowrecord.flush()
    return [dict(r) for r in store.query(sql, params)]


def materialize(defs: dg.Definitions, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Materialise every asset (and check) of instrumented *defs* in process."""
    return dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, **kwargs)
