"""Errors and warnings flowrecord raises into user code, and only these.

Tracking fails open: a broken backend or collector never raises into a task; it
logs, spools, and (where the user should know) emits a :class:`FlowrecordWarning`.
What does raise is misuse that the caller can fix at once (a metric that is not a
number, a key that is not a string) and a validation whose policy is ``fail``.
"""

from __future__ import annotations

__all__ = ["EventRefused", "FlowrecordError", "FlowrecordWarning", "NoActiveTask"]


class FlowrecordError(Exception):
    """Base class of flowrecord's own errors."""


class NoActiveTask(FlowrecordError):
    """An operation needs an open task and there is none in this context."""


class FlowrecordWarning(UserWarning):
    """Something was recorded differently from what was asked (cut, dropped, degraded)."""


class EventRefused(ValueError):
    """A backend refused an event for good (a 4xx answer, say): sending it again cannot help.

    Raised by a backend's hook, never into user code. A ``ValueError``, so the
    dispatcher treats it as permanent: it splits the batch until the refused
    events are alone, delivers every other one, and keeps the refused ones as
    dead letters (``flowrecord sync --list-dead``).
    """
