"""Data validation for recorded datasets: run a pandera schema and keep what it found.

A task's author may attach a pandera schema to a dataset; the recorder hands the
frame and the schema to :func:`run_pandera`, which validates lazily (every
failure, not just the first) and condenses pandera's report into a
:class:`ValidationResult`: one entry per check the schema declares, whether it
passed, how many cases failed, and a small JSON-safe sample of the failing
values. Built-in checks (volume against history, drift against a reference
profile) live in :mod:`flowrecord.collectors.checks` and return the same result
type. Nothing here raises because data is bad; the recorder decides, from the
dataset's policy (``record``, ``warn`` or ``fail``), whether a failed result
becomes a :class:`ValidationFailed`. pandera, pandas and polars are imported
only when a validation actually runs, so ``import flowrecord`` stays cheap.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "POLICIES",
    "ValidationFailed",
    "ValidationResult",
    "check_policy",
    "run_pandera",
    "schema_name",
]

POLICIES = ("record", "warn", "fail")
"""What the recorder does with a failed validation: only record it, also emit a
warning, or also fail the task with :class:`ValidationFailed`."""

# pandera reports a check's name as its ``error`` text when set, else its name;
# implicit checks (dtype, nullability, presence...) are keyed by reason so a
# failure lands on the entry the schema declared, not on a duplicate of it.
_IMPLICIT_BY_REASON = {
    "WRONG_DATATYPE": "dtype",
    "SERIES_CONTAINS_NULLS": "not_nullable",
    "SERIES_CONTAINS_DUPLICATES": "field_uniqueness",
    "COLUMN_NOT_IN_DATAFRAME": "column_in_dataframe",
    "COLUMN_NOT_IN_SCHEMA": "column_in_schema",
    "DUPLICATES": "multiple_fields_uniqueness",
}
_SAMPLE_KEYS = ("check", "column", "index", "failure_case")
_MAX_TEXT = 500  # a failure case is evidence, not payload: long strings are cut


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What one validator concluded about one dataset."""

    validator: str
    """Which validator produced this: ``"pandera"``, ``"volume"``, ``"drift"`` or ``"schema_free"``."""
    schema_name: str | None
    """The schema's name (pandera schema name or model class name), if any."""
    passed: bool
    """True when every check passed and the validator itself did not fail."""
    checks: tuple[dict, ...]
    """One dict per check: ``check``, ``column``, ``failures``, ``passed`` and
    validator-specific extras (``psi``, ``ks``, ``threshold``, ``median``...)."""
    failure_count: int
    """Total failing cases over all checks."""
    failure_sample: tuple[dict, ...]
    """A bounded sample of failing cases, each ``check``, ``column``, ``index``,
    ``failure_case``, all JSON-safe."""
    error: str | None = None
    """Set when the validator itself raised (a broken schema); then ``passed`` is False."""


class ValidationFailed(Exception):
    """Raised (by the recorder, not here) when policy is ``"fail"`` and validation did not pass.

    Carries ``.result`` (the :class:`ValidationResult`) and ``.dataset_name``;
    ``str()`` is a one-paragraph summary naming the failing checks.
    """

    def __init__(self, dataset_name: str, result: ValidationResult) -> None:
        self.dataset_name = dataset_name
        self.result = result
        super().__init__(_summarise(dataset_name, result))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their args; ours are not the constructor's,
        # and tasks run in subprocesses (Airflow, Metaflow) that pickle errors.
        return (type(self), (self.dataset_name, self.result))


def check_policy(policy: str) -> str:
    """Normalise a validation policy name, or raise ValueError listing the valid ones.

    >>> check_policy(" Fail ")
    'fail'
    """
    normalised = policy.strip().lower() if isinstance(policy, str) else None
    if normalised not in POLICIES:
        raise ValueError(
            f"unknown validation policy {policy!r}; expected one of {', '.join(POLICIES)}"
        )
    return normalised


def schema_name(schema: object) -> str | None:
    """The name a pandera schema or DataFrameModel class goes by, or None.

    A model's name is its ``Config.name`` when set, else its class name; a
    schema's is its ``name`` argument. Anything else has no name.
    """
    if "pandera" not in sys.modules:
        return None
    resolved = _as_schema(schema)
    if resolved is None:
        return None
    name = getattr(resolved, "name", None)
    if name is None and isinstance(schema, type):
        name = schema.__name__
    return None if name is None else str(name)


def run_pandera(obj: object, schema: object, *, sample_size: int = 20) -> ValidationResult:
    """Validate a pandas or polars DataFrame against a pandera schema, lazily.

    ``schema`` is a pandera ``DataFrameSchema`` (pandas or polars flavour) or a
    ``DataFrameModel`` class. Data that fails never raises: the result lists
    every declared check with its failure count and keeps up to ``sample_size``
    failing cases (spread over the failing checks). A check that itself raises
    (a broken custom check) is recorded in ``error`` and fails the result. A
    polars ``LazyFrame`` is validated as pandera does by default, which for lazy
    frames means the schema only, not the values.

    Raises TypeError only for misuse: ``schema`` is not a pandera schema or
    model, or ``obj`` is not a frame that schema can validate (say a polars
    schema given a pandas frame).

    >>> import pandas as pd, pandera.pandas as pa
    >>> schema = pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(0))})
    >>> result = run_pandera(pd.DataFrame({"age": [3, -1]}), schema)
    >>> result.passed, result.failure_count
    (False, 1)
    """
    if not isinstance(sample_size, int) or sample_size < 0:
        raise ValueError(f"sample_size must be a non-negative int, got {sample_size!r}")
    if "pandera" not in sys.modules:
        # No pandera object can exist before pandera is imported; saying so
        # here avoids importing it (and pandas) only to reject the argument.
        raise TypeError(_not_a_schema(schema))
    resolved = _as_schema(schema)
    if resolved is None:
        raise TypeError(_not_a_schema(schema))
    _check_frame(obj, resolved)
    name = schema_name(schema)

    from pandera.errors import BackendNotFoundError, SchemaError, SchemaErrors

    entries = _declared_checks(resolved, obj)
    try:
        resolved.validate(obj, lazy=True)
    except SchemaErrors as exc:
        return _result_from_errors(name, entries, exc.schema_errors, exc.failure_cases, sample_size)
    except SchemaError as exc:
        # Some failures bypass lazy collection and arrive alone.
        return _result_from_errors(name, entries, [exc], None, sample_size)
    except BackendNotFoundError as exc:
        raise TypeError(
            f"pandera schema {type(resolved).__module__}.{type(resolved).__name__} "
            f"cannot validate a {_type_name(obj)}: {exc}"
        ) from exc
    except Exception as exc:
        # A broken schema must not take the user's task down with it: record it.
        return ValidationResult(
            validator="pandera",
            schema_name=name,
            passed=False,
            checks=tuple(entries.values()),
            failure_count=0,
            failure_sample=(),
            error=_clip(f"{type(exc).__name__}: {exc}"),
        )
    return ValidationResult(
        validator="pandera",
        schema_name=name,
        passed=True,
        checks=tuple(entries.values()),
        failure_count=0,
        failure_sample=(),
    )


# --------------------------------------------------------------------------- schema


def _as_schema(schema: object) -> Any | None:
    """The DataFrameSchema behind ``schema`` (a model class is converted), or None."""
    from pandera.api.dataframe.container import DataFrameSchema
    from pandera.api.dataframe.model import DataFrameModel

    if isinstance(schema, type) and issubclass(schema, DataFrameModel):
        if schema is DataFrameModel or schema.__module__.startswith("pandera."):
            return None  # the abstract bases have no fields to validate
        return schema.to_schema()
    if isinstance(schema, DataFrameSchema):
        return schema
    return None


def _not_a_schema(schema: object) -> str:
    return (
        "schema must be a pandera DataFrameSchema (pandera.pandas or pandera.polars) "
        f"or a DataFrameModel class, got {_type_name(schema)}"
    )


def _type_name(obj: object) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    prefix = "class " if isinstance(obj, type) else ""
    return f"{prefix}{kind.__module__}.{kind.__qualname__}"


def _check_frame(obj: object, schema: Any) -> None:
    """Reject a frame the schema's backend cannot take, before pandera does it less clearly."""
    flavour = type(schema).__module__
    if flavour.startswith("pandera.api.pandas"):
        pd = sys.modules.get("pandas")
        if pd is None or not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"a pandas pandera schema validates a pandas.DataFrame, got {_type_name(obj)}"
                + _hint(obj, "polars", "use a pandera.polars schema or convert with .to_pandas()")
            )
    elif flavour.startswith("pandera.api.polars"):
        pl = sys.modules.get("polars")
        if pl is None or not isinstance(obj, pl.DataFrame | pl.LazyFrame):
            raise TypeError(
                "a polars pandera schema validates a polars.DataFrame or LazyFrame, "
                f"got {_type_name(obj)}"
                + _hint(
                    obj,
                    "pandas",
                    "use a pandera.pandas schema or convert with polars.from_pandas()",
                )
            )


def _hint(obj: object, module: str, advice: str) -> str:
    return f" ({advice})" if type(obj).__module__.split(".")[0] == module else ""


def _declared_checks(schema: Any, obj: object) -> dict[tuple, dict]:
    """One passing entry per check the schema declares, keyed as failures will be.

    Listing passing checks too is what makes a result evidence: a gate or an
    OpenLineage assertion facet needs to know what was checked, not only what broke.
    """
    entries: dict[tuple, dict] = {}
    present = _frame_columns(obj)
    for col_name, column in (getattr(schema, "columns", None) or {}).items():
        if getattr(column, "regex", False):
            continue  # a pattern, not a column: failures will name the real columns
        col = _json_safe(col_name)
        missing = present is not None and col_name not in present
        if getattr(column, "required", True):
            entries[("column_in_dataframe", col)] = _entry("column_in_dataframe", col)
        if getattr(column, "dtype", None) is not None:
            entries[("dtype", col)] = _entry(f"dtype('{column.dtype}')", col, missing)
        if not getattr(column, "nullable", True):
            entries[("not_nullable", col)] = _entry("not_nullable", col, missing)
        if getattr(column, "unique", False):
            entries[("field_uniqueness", col)] = _entry("field_uniqueness", col, missing)
        for index, check in enumerate(getattr(column, "checks", None) or ()):
            entries[("check", col, index)] = _entry(_check_id(check), col, missing)
    for index, check in enumerate(getattr(schema, "checks", None) or ()):
        entries[("check", None, index)] = _entry(_check_id(check), None)
    if getattr(schema, "strict", False) is True:
        entries[("column_in_schema", None)] = _entry("column_in_schema", None)
    if getattr(schema, "unique", None):
        entries[("multiple_fields_uniqueness", None)] = _entry("multiple_fields_uniqueness", None)
    return entries


def _entry(check: str, column: Any, missing: bool = False) -> dict:
    entry = {"check": check, "column": column, "failures": 0, "passed": True}
    if missing:
        # pandera cannot run a column's checks when the column is absent; saying
        # "passed" would be a claim nobody verified.
        entry["passed"] = False
        entry["skipped"] = "column not in data"
    return entry


def _frame_columns(obj: object) -> set | None:
    try:
        if type(obj).__name__ == "LazyFrame":
            return set(obj.collect_schema().names())  # type: ignore[attr-defined]
        return set(obj.columns)  # type: ignore[attr-defined]
    except Exception:
        return None


def _check_id(check: Any) -> str:
    """The name pandera gives a check in its failure report."""
    if check is None:
        return "unknown"
    if isinstance(check, str):
        return check
    for attr in ("error", "name"):
        value = getattr(check, attr, None)
        if value is not None:
            return str(value)
    return str(check)


# --------------------------------------------------------------------------- errors


def _result_from_errors(
    name: str | None,
    entries: dict[tuple, dict],
    schema_errors: Iterable[Any],
    failure_cases: Any,
    sample_size: int,
) -> ValidationResult:
    check_errors: list[str] = []
    errored: set[tuple[str, str]] = set()
    failed: list[tuple[Any, str, Any]] = []
    for err in schema_errors:
        reason = getattr(getattr(err, "reason_code", None), "name", None) or "UNKNOWN"
        check = _check_id(getattr(err, "check", None))
        component = getattr(err, "schema", None)
        is_column = type(component).__name__ not in ("DataFrameSchema", "NoneType")
        column = _json_safe(getattr(component, "name", None)) if is_column else None
        cases = getattr(err, "failure_cases", None)
        if reason == "COLUMN_NOT_IN_DATAFRAME" and not is_column:
            column = _json_safe(cases)
        key = _error_key(reason, column, getattr(err, "check_index", None))
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _entry(check, column)
        entry["passed"] = False
        if reason == "CHECK_ERROR":
            detail = cases if isinstance(cases, str) else str(err)
            entry["error"] = _clip(detail)
            where = f" on column {column!r}" if column is not None else ""
            check_errors.append(f"check {check!r}{where} raised {_clip(detail, 200)}")
            errored.add((check, str(cases)))
            continue
        entry["check"] = check  # the name pandera reports, so samples match entries
        entry["failures"] += _count_cases(cases, reason)
        failed.append((column, check, cases))

    if type(failure_cases).__module__.startswith("polars"):
        groups = len(failed) + len(errored)
        sample = _sample_polars(failure_cases, sample_size, errored, name, groups)
    else:
        sample = _sample_errors(failed, sample_size)
    checks = tuple(entries.values())
    total = sum(entry["failures"] for entry in checks)
    error = "; ".join(check_errors) or None
    return ValidationResult(
        validator="pandera",
        schema_name=name,
        passed=error is None and all(entry["passed"] for entry in checks),
        checks=checks,
        failure_count=total,
        failure_sample=sample,
        error=error,
    )


def _error_key(reason: str, column: Any, check_index: Any) -> tuple:
    implicit = _IMPLICIT_BY_REASON.get(reason)
    if implicit is not None:
        return (implicit, column)
    if check_index is not None:
        return ("check", column, int(check_index))
    return (reason, column)


def _count_cases(cases: Any, reason: str) -> int:
    if cases is None or isinstance(cases, str | bytes) or not hasattr(cases, "__len__"):
        return 1
    columns = getattr(cases, "columns", ())
    if reason == "DATAFRAME_CHECK" and "column" in columns and "index" in columns:
        # pandas reports a frame-wide check once per cell of a failing row;
        # the user's question is how many rows failed.
        return int(cases["index"].nunique(dropna=False))
    return len(cases)


def _sample_polars(
    failure_cases: Any,
    sample_size: int,
    errored: set,
    frame_name: str | None,
    groups: int = 0,
) -> tuple[dict, ...]:
    """Up to ``sample_size`` rows of pandera's polars failure frame, spread over the checks.

    polars errors carry the failing values but not their row numbers; only the
    consolidated frame has those, and polars groups it in about a millisecond.
    *groups* is how many (column, check) pairs failed, as the errors said; when
    it is not known the frame is asked (another millisecond on 60,000 cases).
    """
    if sample_size == 0 or len(failure_cases) == 0:
        return ()
    keys = ["column", "check"]
    if groups <= 0:
        groups = failure_cases.select(keys).n_unique()
    per_check = max(1, -(-sample_size // groups))
    picked = failure_cases.group_by(keys, maintain_order=True).head(per_check)
    sample = []
    for context, *row in picked.select(["schema_context", *_SAMPLE_KEYS]).rows():
        record = dict(zip(_SAMPLE_KEYS, row, strict=True))
        if context == "DataFrameSchema" and record["column"] == frame_name:
            record["column"] = None  # pandera puts the schema's name where a column goes
        if (record["check"], str(record["failure_case"])) in errored:
            continue
        sample.append({key: _json_safe(value) for key, value in record.items()})
        if len(sample) == sample_size:
            break
    return tuple(sample)


def _sample_errors(failed: list[tuple[Any, str, Any]], sample_size: int) -> tuple[dict, ...]:
    """Up to ``sample_size`` failure cases taken from each error's own cases, in turn.

    pandas errors carry their cases with row labels, so reading the first few of
    each is enough; grouping pandera's consolidated frame instead would cost more
    than the rest of this module put together.
    """
    if sample_size == 0 or not failed:
        return ()
    per_check = max(1, -(-sample_size // len(failed)))
    sample: list[dict] = []
    for column, check, cases in failed:
        for where, idx, value in _first_cases(cases, column, per_check):
            sample.append(
                {
                    "check": check,
                    "column": _json_safe(where),
                    "index": _json_safe(idx),
                    "failure_case": _json_safe(value),
                }
            )
    return tuple(sample[:sample_size])


def _first_cases(cases: Any, column: Any, limit: int) -> list[tuple[Any, Any, Any]]:
    """(column, row, value) of the first ``limit`` cases of one error."""
    columns = getattr(cases, "columns", None)
    if columns is not None and "failure_case" in columns:
        head = cases.head(limit)
        values = list(head["failure_case"])
        rows = list(head["index"]) if "index" in columns else [None] * len(values)
        # a frame-wide check reports the column of each failing cell
        where = list(head["column"]) if "column" in columns else [column] * len(values)
        return list(zip(where, rows, values, strict=True))
    if columns is not None:  # polars: the failing values, without row numbers
        return [(column, None, value) for value in cases.head(limit).rows()]
    if hasattr(cases, "index") and hasattr(cases, "head") and not isinstance(cases, str):
        head = cases.head(limit)
        return [(column, idx, value) for idx, value in zip(head.index, head, strict=True)]
    return [(column, None, cases)]


# --------------------------------------------------------------------------- json


def _json_safe(value: Any) -> Any:
    """A value that ``json.dumps`` accepts and that reads the same to a person.

    numpy scalars become Python ones, missing values (None, NaN, NaT, pd.NA)
    become None, infinities become the strings ``"inf"``/``"-inf"``, dates and
    timestamps become ISO strings; anything else unknown becomes its ``str``.
    """
    if value is None or isinstance(value, bool | int | str):
        return _clip(value) if isinstance(value, str) else value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return _missing_or(value, lambda v: v.isoformat())
    if isinstance(value, Mapping):
        return {str(_json_safe(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return _clip(value.decode("utf-8", errors="replace"))
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        # numpy scalar (including datetime64/timedelta64, whose item() is Python's)
        return _missing_or(value, lambda v: _json_safe(v.item()))
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):  # pandas Timestamp/Timedelta-likes not caught above
        return _missing_or(value, lambda v: v.isoformat())
    return _missing_or(value, lambda v: _clip(str(v)))


def _missing_or(value: Any, convert: Any) -> Any:
    try:
        if bool(value != value):  # NaN, NaT and pd.NA are not equal to themselves
            return None
    except (TypeError, ValueError):
        pass  # pd.NA refuses bool(); arrays refuse it too: both fall through
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return convert(value)


def _clip(text: Any, limit: int = _MAX_TEXT) -> Any:
    if isinstance(text, str) and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


# --------------------------------------------------------------------------- summary


def _summarise(dataset_name: str, result: ValidationResult) -> str:
    schema = f" against schema {result.schema_name!r}" if result.schema_name else ""
    head = f"Validation of dataset {dataset_name!r}{schema} ({result.validator}) did not pass"
    if result.error:
        return f"{head}: the validator itself failed: {result.error}"
    failing = [entry for entry in result.checks if not entry.get("passed", True)]
    parts = []
    for entry in failing[:5]:
        where = f"{entry.get('column')}: " if entry.get("column") is not None else ""
        parts.append(f"{where}{entry.get('check')} ({entry.get('failures', 0)} failing)")
    if len(failing) > 5:
        parts.append(f"and {len(failing) - 5} more")
    text = (
        f"{head}: {len(failing)} of {len(result.checks)} checks failed, "
        f"{result.failure_count} failing cases in all"
    )
    if parts:
        text += " — " + ", ".join(parts)
    if result.failure_sample:
        first = result.failure_sample[0]
        text += (
            f". For example {first.get('failure_case')!r} failed {first.get('check')}"
            + (f" in column {first.get('column')!r}" if first.get("column") is not None else "")
            + (f" at row {first.get('index')!r}" if first.get("index") is not None else "")
        )
    return text + "."
