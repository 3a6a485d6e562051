"""Lifecycle objects named by reference, as the integrations and the CLI accept them.

A gate or a policy can be given as the object or as ``"package.module:NAME"``
(``NAME`` may be dotted: ``"pipelines.churn:POLICIES.weekly"``), imported when
it is needed. The integrations share these so that every orchestrator reads a
reference, and refuses a wrong one, the same way.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowrecord.lifecycle.policy import RetrainPolicy

__all__ = ["as_retrain_policy", "resolve_reference"]

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve_reference(reference: str) -> Any:
    """The object ``"package.module:NAME"`` names.

    :raises ValueError: *reference* is not written ``module:NAME``.
    :raises ImportError: the module cannot be imported.
    :raises AttributeError: the module has no such name.
    """
    if not isinstance(reference, str) or not _REFERENCE.match(reference):
        raise ValueError(f"{reference!r} must be written 'package.module:NAME'")
    module_name, _, attr = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def as_retrain_policy(
    policy: Any, resolve: Callable[[str], Any] = resolve_reference
) -> RetrainPolicy:
    """*policy* itself, or the ``RetrainPolicy`` its reference names.

    :param resolve: how a string is turned into the object (an integration may
        know more places to look, e.g. the flow's own file).
    :raises TypeError: it is not (or does not name) a ``RetrainPolicy``.
    """
    from flowrecord.lifecycle.policy import RetrainPolicy

    obj = resolve(policy) if isinstance(policy, str) else policy
    if not isinstance(obj, RetrainPolicy):
        raise TypeError(
            f"policy must be a RetrainPolicy or 'module:NAME' naming one, not {type(obj).__name__}"
        )
    return obj
