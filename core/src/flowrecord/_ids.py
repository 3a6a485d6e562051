"""Event ids (UUIDv7, time-sortable) and deterministic run and task ids (UUIDv5).

Run and task ids derive from the orchestrator's own identity, so every process,
thread and remote worker of one pipeline run computes the same ids with no
lookup and no race.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time

__all__ = ["new_event_id", "run_id_for", "stable_id", "task_id_for"]

#: Namespace of every flowrecord UUIDv5 (as 16 bytes).
NAMESPACE = bytes.fromhex("6f1c1f9e3c594d3a9d1e7f0c2b8a4e51")

_time_ns = time.time_ns

# Layout of an event id (RFC 9562, UUIDv7): 48 bits of Unix milliseconds, the
# version (7), 12 bits ``rand_a``, the variant (0b10), 62 bits ``rand_b``.
# ``rand_a`` is random per process; ``rand_b`` is a per-process counter that
# starts at a random 61-bit value (RFC 9562's "monotonic random" method), so ids
# are unique without a random draw per id, and increase in call order within a
# millisecond. Two processes collide only if they share the millisecond, the 12
# random bits and an overlapping counter range: about n / 2**73 for n ids.
_VERSION_BITS = 0x7 << 76
_VARIANT_BITS = 0b10 << 62
_high = 0
_next_low = itertools.count().__next__


def _seed() -> None:
    global _high, _next_low
    rand = int.from_bytes(os.urandom(10), "big")
    _high = _VERSION_BITS | ((rand & 0xFFF) << 64)
    # itertools.count's __next__ is atomic under the GIL: threads never share a value.
    _next_low = itertools.count(_VARIANT_BITS | (rand >> 19)).__next__


_seed()


def new_event_id() -> str:
    """A UUIDv7 as 32 hex digits: milliseconds, then per-process random bits and counter.

    Ids made by one process increase with the wall clock and, within one
    millisecond, in call order (across threads too); across processes they sort
    by millisecond. Built from integers rather than :class:`uuid.UUID` because
    it runs once per event (``uuid.UUID(hex=...)`` reads it back).
    """
    return (((_time_ns() // 1_000_000) << 80) | _high | _next_low()).to_bytes(16, "big").hex()


def stable_id(*parts: object) -> str:
    """A UUIDv5 of *parts*, joined with a separator no identity contains.

    The same value as ``str(uuid.uuid5(uuid.UUID(bytes=NAMESPACE), name))``, made with hashlib
    alone: importing :mod:`uuid` (and the platform module it pulls in) was a
    tenth of the cost of ``import flowrecord``.
    """
    name = "\x1f".join("" if p is None else str(p) for p in parts)
    digest = bytearray(hashlib.sha1(NAMESPACE + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def run_id_for(orchestrator: str, pipeline: str, run_key: str) -> str:
    """The id of a pipeline run, the same wherever it is computed."""
    return stable_id("run", orchestrator, pipeline, run_key)


def task_id_for(run_id: str, name: str, try_number: int = 1, map_index: int | None = None) -> str:
    """The id of one attempt of one task (one map index of a mapped task)."""
    return stable_id("task", run_id, name, try_number, -1 if map_index is None else map_index)


# A forked child must not repeat its parent's counter.
os.register_at_fork(after_in_child=_seed)
