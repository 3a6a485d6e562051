"""Frozen value classes that cost nothing to define, for modules every task imports.

``@dataclass(frozen=True, slots=True)`` runs generated code through exec() for
each class, about 1 ms a class, which every task process paid at import (events,
configuration, step settings). A class written out by hand with ``__slots__``
and a keyword ``__init__``, then passed through :func:`frozen`, behaves as that
dataclass did: the constructor is the one written, and :func:`frozen` adds the
dataclass's repr, equality, hash, immutability and pickled form (the field
values in order). ``dataclasses.fields``, ``asdict``, ``replace`` and
``is_dataclass`` keep working: ``__dataclass_fields__`` and
``__dataclass_params__`` come from an equivalent dataclass built the first time
something reads them.

The fields are the constructor's arguments, in order. A mapping field whose
dataclass default was ``field(default_factory=dict)`` takes :data:`FACTORY` as
its default and ``{} if value is FACTORY else value`` in the constructor.
"""

from __future__ import annotations

import operator
from typing import Any, TypeVar

__all__ = ["FACTORY", "frozen", "set_field"]

set_field = object.__setattr__
"""Sets a field from ``__init__`` (the class's own ``__setattr__`` refuses)."""


class _Factory:
    """Default of a mapping field: each instance gets a fresh empty dict."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


FACTORY: Any = _Factory()

_C = TypeVar("_C", bound=type)

_TWINS: dict[type, type] = {}


def _twin(cls: Any) -> type:
    """A dataclass with the same fields and defaults as *cls*, made once per class."""
    twin = _TWINS.get(cls)
    if twin is not None:
        return twin
    import dataclasses
    import inspect

    fields: tuple[str, ...] = cls._fields
    annotations: dict[str, Any] = {}
    for c in reversed(cls.__mro__):
        annotations.update(inspect.get_annotations(c))
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__annotations__": {
            name: annotation
            for name, annotation in annotations.items()
            if name in fields
            or (not name.startswith("_") and str(annotation).startswith("ClassVar"))
        },
    }
    for name in namespace["__annotations__"]:
        if name not in fields:
            namespace[name] = getattr(cls, name)
    init = cls.__init__
    positional = fields[: init.__code__.co_argcount - 1]
    defaults = dict(zip(reversed(positional), reversed(init.__defaults__ or ()), strict=False))
    defaults.update(init.__kwdefaults__ or {})
    for name, default in defaults.items():
        namespace[name] = dataclasses.field(default_factory=dict) if default is FACTORY else default
    made: type = dataclasses.dataclass(frozen=True, kw_only=not positional)(
        type(cls.__name__, (), namespace)
    )
    return _TWINS.setdefault(cls, made)


class _DataclassView:
    """A class attribute taken from the class's dataclass twin when first read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type) -> Any:
        return getattr(_twin(cls), self.name)


def _repr(self: Any) -> str:
    pairs = zip(self._fields, type(self)._astuple(self), strict=True)
    return f"{type(self).__qualname__}({', '.join(f'{n}={v!r}' for n, v in pairs)})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return type(self)._astuple(self) == type(self)._astuple(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(type(self)._astuple(self))


def _setattr(self: Any, name: str, value: object) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return list(type(self)._astuple(self))


def _setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(self._fields, state, strict=False):
        set_field(self, name, value)


def frozen(cls: _C) -> _C:
    """Make a slotted class with a written-out ``__init__`` behave as a frozen dataclass."""
    code = cls.__init__.__code__  # type: ignore[misc]
    positional = code.co_varnames[1 : code.co_argcount]
    fields = (
        positional + code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    )
    getter = operator.attrgetter(*fields) if len(fields) > 1 else None
    attributes: dict[str, Any] = {
        "_fields": fields,
        "_astuple": getter or (lambda o: (getattr(o, fields[0]),)),
        "__match_args__": positional,
        "__repr__": _repr,
        "__eq__": _eq,
        "__hash__": _hash,
        "__setattr__": _setattr,
        "__delattr__": _delattr,
        "__getstate__": _getstate,
        "__setstate__": _setstate,
    }
    for name, value in attributes.items():
        setattr(cls, name, value)
    for name in ("__dataclass_fields__", "__dataclass_params__"):
        view = _DataclassView()
        view.__set_name__(cls, name)
        setattr(cls, name, view)
    return cls
