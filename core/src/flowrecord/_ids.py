"""Event ids (UUIDv7, time-sortable) and deterministic run and task ids (UUIDv5).

Run and task ids derive from the orchestrator's own identity, so every process,
thread and remote worker of one pipeline run computes the same ids with no
lookup and no race.
"""

from __future__ import annotations

import os
import random
import time
import uuid

__all__ = ["new_event_id", "run_id_for", "stable_id", "task_id_for"]

#: Namespace of every flowrecord UUIDv5.
NAMESPACE = uuid.UUID("6f1c1f9e-3c59-4d3a-9d1e-7f0c2b8a4e51")

_last_ms = 0
_seq = 0
_rand = random.Random()  # reseeded from os.urandom; the stdlib reseeds it after fork
_getrandbits = _rand.getrandbits
_time_ns = time.time_ns


_VERSION_BITS = 0x7 << 76
_VARIANT_BIT = 0b10 << 62


def new_event_id() -> str:
    """A UUIDv7 as 32 hex digits: 48 bits of milliseconds, a 12-bit counter, 62 random bits.

    Ids made by one thread are increasing; across threads and processes they sort by
    millisecond, and the random bits keep them unique. Built with string
    formatting rather than :class:`uuid.UUID` because it runs once per event
    (``uuid.UUID(hex=...)`` reads it back).
    """
    global _last_ms, _seq
    ms = _time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms = ms
        _seq = 0
    else:
        ms = _last_ms
        _seq += 1
        if _seq > 0xFFF:  # counter exhausted within one ms: borrow the next ms
            _last_ms = ms = ms + 1
            _seq = 0
    value = (ms << 80) | _VERSION_BITS | (_seq << 64) | _VARIANT_BIT | _getrandbits(62)
    return value.to_bytes(16, "big").hex()


def stable_id(*parts: object) -> str:
    """A UUIDv5 of *parts*, joined with a separator no identity contains."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join("" if p is None else str(p) for p in parts)))


def run_id_for(orchestrator: str, pipeline: str, run_key: str) -> str:
    """The id of a pipeline run, the same wherever it is computed."""
    return stable_id("run", orchestrator, pipeline, run_key)


def task_id_for(run_id: str, name: str, try_number: int = 1, map_index: int | None = None) -> str:
    """The id of one attempt of one task (one map index of a mapped task)."""
    return stable_id("task", run_id, name, try_number, -1 if map_index is None else map_index)


def _reseed_after_fork() -> None:
    _rand.seed(os.urandom(16))


os.register_at_fork(after_in_child=_reseed_after_fork)
