"""Backend discovery: the pluggy plugin manager and the ``flowrecord.backends`` group.

Built-in backends register exactly like third-party ones: each is an entry point
in the ``flowrecord.backends`` group whose target is a class (instantiated with no
arguments) or a module. Only the backends named in ``FLOWRECORD_BACKENDS`` are
imported, so an inactive backend costs nothing. Tests and embedding code can add
plugin objects directly with :func:`register_backend`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendNotFound",
    "available_backends",
    "load_backend",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "flowrecord.backends"

log = logging.getLogger("flowrecord")


class BackendNotFound(LookupError):
    """No backend of that name is installed."""


def available_backends() -> dict[str, str]:
    """Installed backend names and their entry-point targets."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


#: The entry points core itself declares. Loading one of these skips the scan of
#: every installed distribution's metadata (tens of milliseconds in each task
#: process); they are declared as entry points all the same, and found like any
#: third-party backend by :func:`available_backends`.
BUILTIN_BACKENDS = {
    "local": "flowrecord.backends.local:LocalBackend",
    "mlflow": "flowrecord.backends.mlflow:MlflowBackend",
    "openlineage": "flowrecord.backends.openlineage:OpenLineageBackend",
}


def load_backend(name: str) -> Any:
    """Import and instantiate the backend registered as *name*.

    :raises BackendNotFound: nothing of that name is registered.
    """
    builtin = BUILTIN_BACKENDS.get(name)
    if builtin is not None:
        import importlib

        module_name, _, attr = builtin.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
        return target() if isinstance(target, type) else target
    from importlib.metadata import entry_points  # ~10 ms: only for third-party backends

    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available_backends())) or "none"
        raise BackendNotFound(f"no flowrecord backend named {name!r} (installed: {known})")
    target = matches[0].load()
    return target() if isinstance(target, type) else target


def make_plugin_manager(
    plugins: Iterable[tuple[str, Any]] = (), trace: bool = False
) -> pluggy.PluginManager:
    """A plugin manager with the flowrecord hook specs and *plugins* registered."""
    import pluggy  # not at import: a process on built-in backends alone never needs it

    from flowrecord import hookspecs

    pm = pluggy.PluginManager("flowrecord")
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    if trace:
        pm.trace.root.setwriter(lambda msg: log.debug("%s", msg.rstrip()))
        pm.enable_tracing()
    return pm
