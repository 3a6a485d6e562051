"""Validation of OpenLineage events and each of their facets against the vendored JSON schemas.

The event is checked against ``OpenLineage.json``; every facet is then checked
against the schema of its own facet file, chosen by its key and where it sits
(run, job, dataset, input or output facets), through a ``referencing`` registry
that resolves the facet files' references to the core spec. Formats are
checked too (uuid, date-time, uri), so a malformed run id or time fails.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_BASES = {
    "run": "RunFacet",
    "job": "JobFacet",
    "dataset": "DatasetFacet",
    "input": "InputDatasetFacet",
    "output": "OutputDatasetFacet",
}


class SpecValidator:
    """Validates events and facets; raises ``jsonschema.ValidationError`` on a mismatch."""

    def __init__(self, spec_dir: Path) -> None:
        from jsonschema import FormatChecker
        from referencing import Registry, Resource

        core = json.loads((spec_dir / "OpenLineage.json").read_text())
        self.core_id = core["$id"]
        resources = [(self.core_id, Resource.from_contents(core))]
        # facet key -> [(schema id, definition name, base facet name)]
        self.facets: dict[str, list[tuple[str, str, str]]] = {}
        for path in sorted((spec_dir / "facets").glob("*.json")):
            schema = json.loads(path.read_text())
            resources.append((schema["$id"], Resource.from_contents(schema)))
            for key, prop in schema.get("properties", {}).items():
                # A facet is one definition, or (lineage) one per place it may sit.
                for ref in [prop["$ref"]] if "$ref" in prop else [a["$ref"] for a in prop["anyOf"]]:
                    name = ref.rsplit("/", 1)[-1]
                    base = ""
                    for part in schema["$defs"][name].get("allOf", []):
                        if "$ref" in part:
                            base = part["$ref"].rsplit("/", 1)[-1]
                    self.facets.setdefault(key, []).append((schema["$id"], name, base))
        self.registry = Registry().with_resources(resources)
        self.format_checker = FormatChecker()
        self.format_checker.checks("date-time", raises=ValueError)(_date_time)
        self.format_checker.checks("uri", raises=ValueError)(_uri)

    def _validate(self, instance: Any, ref: str) -> None:
        from jsonschema import Draft202012Validator

        Draft202012Validator(
            {"$ref": ref}, registry=self.registry, format_checker=self.format_checker
        ).validate(instance)

    def facet_schema(self, key: str, where: str) -> str:
        """The ``$ref`` of the schema of facet *key* placed in *where* (run, job, dataset...)."""
        candidates = self.facets.get(key)
        if not candidates:
            raise AssertionError(f"facet {key!r} ({where}) has no schema in the spec")
        for schema_id, name, base in candidates:
            if base == _BASES[where]:
                return f"{schema_id}#/$defs/{name}"
        schema_id, name, _ = candidates[0]
        return f"{schema_id}#/$defs/{name}"

    def validate(self, event: dict[str, Any]) -> int:
        """Validate *event* and all its facets; return how many facets were checked."""
        self._validate(event, self.core_id)
        checked = 0
        places: list[tuple[str, dict[str, Any]]] = [
            ("run", event.get("run", {}).get("facets") or {}),
            ("job", event.get("job", {}).get("facets") or {}),
        ]
        for dataset in event.get("inputs") or []:
            places.append(("dataset", dataset.get("facets") or {}))
            places.append(("input", dataset.get("inputFacets") or {}))
        for dataset in event.get("outputs") or []:
            places.append(("dataset", dataset.get("facets") or {}))
            places.append(("output", dataset.get("outputFacets") or {}))
        for where, facets in places:
            for key, facet in facets.items():
                self._validate(facet, self.facet_schema(key, where))
                checked += 1
        return checked


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or "T" not in value:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    return True


def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = urlparse(value)
    if not parsed.scheme or not (parsed.netloc or parsed.path):
        raise ValueError(f"{value!r} is not a URI")
    return True
