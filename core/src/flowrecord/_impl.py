"""The hook-implementation marker of the built-in backends, without importing pluggy.

A pluggy marker only sets one attribute on the function: the options pluggy
reads when the plugin is registered. The built-in backends mark their methods
with :func:`hookimpl` from here, which sets the very same attribute (a test
holds it equal to what ``pluggy.HookimplMarker("flowrecord")`` sets), so that a
task process recording to the local store alone imports neither pluggy nor
builds a plugin manager: the dispatcher calls the marked methods directly
(:class:`flowrecord.dispatcher.DirectCallers`). Third-party plugins keep using
:data:`flowrecord.hookspecs.hookimpl`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["IMPL_ATTRIBUTE", "hookimpl"]

IMPL_ATTRIBUTE = "flowrecord_impl"
"""Where pluggy looks for a hook implementation's options (``<project>_impl``)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def hookimpl(function: _F) -> _F:
    """Mark *function* as a flowrecord hook implementation (no options)."""
    setattr(
        function,
        IMPL_ATTRIBUTE,
        {
            "wrapper": False,
            "hookwrapper": False,
            "optionalhook": False,
            "tryfirst": False,
            "trylast": False,
            "specname": None,
        },
    )
    return function
