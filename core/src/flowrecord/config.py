"""Configuration: environment variables first, then ``[tool.flowrecord]`` in pyproject.toml.

With nothing configured, flowrecord records to the local store in ``./.flowrecord``.
The resolved configuration is a frozen :class:`Config`; :func:`load_config` is
cheap and cached per process until :func:`reset_config` (tests change the
environment between cases).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowrecord._frozen import FACTORY, frozen, set_field

__all__ = ["Config", "load_config", "reset_config"]

_DEFAULT_HOME = ".flowrecord"


@frozen
class Config:
    """Resolved flowrecord settings."""

    __slots__ = (
        "backends",
        "capture_code",
        "enabled",
        "extra",
        "flush_timeout_s",
        "home",
        "max_param_bytes",
        "profile_datasets",
        "redact_patterns",
        "sample_interval_s",
        "system_sampling",
        "trace",
        "validation_policy",
    )

    home: Path
    """Directory of the local store and the spool (``FLOWRECORD_HOME``)."""
    backends: tuple[str, ...]
    """Active backend names, in order (``FLOWRECORD_BACKENDS=local,mlflow``)."""
    enabled: bool
    """``FLOWRECORD_DISABLED=1`` turns recording off entirely."""
    flush_timeout_s: float
    """Longest a task end waits for its events to reach the backends before spooling them."""
    sample_interval_s: float
    """Seconds between system-usage samples of a task."""
    system_sampling: bool
    capture_code: bool
    profile_datasets: bool
    validation_policy: str
    """Default policy of validations: ``record``, ``warn`` or ``fail``."""
    max_param_bytes: int
    """Params longer than this are cut and flagged ``truncated``."""
    redact_patterns: tuple[str, ...]
    """Extra key patterns (regular expressions) whose values are secrets."""
    trace: bool
    """``FLOWRECORD_TRACE=1`` logs every hook call (pluggy tracing)."""
    extra: Mapping[str, Any]
    """Backend-specific settings from ``[tool.flowrecord.<backend>]``."""

    # Written out rather than made by @dataclass(frozen=True, slots=True), which cost
    # every task process ~1 ms at import; @frozen gives it that dataclass's behaviour.
    def __init__(
        self,
        home: Path,
        backends: tuple[str, ...] = ("local",),
        enabled: bool = True,
        flush_timeout_s: float = 2.0,
        sample_interval_s: float = 1.0,
        system_sampling: bool = True,
        capture_code: bool = True,
        profile_datasets: bool = True,
        validation_policy: str = "record",
        max_param_bytes: int = 65536,
        redact_patterns: tuple[str, ...] = (),
        trace: bool = False,
        extra: Mapping[str, Any] = FACTORY,
    ) -> None:
        set_field(self, "home", home)
        set_field(self, "backends", backends)
        set_field(self, "enabled", enabled)
        set_field(self, "flush_timeout_s", flush_timeout_s)
        set_field(self, "sample_interval_s", sample_interval_s)
        set_field(self, "system_sampling", system_sampling)
        set_field(self, "capture_code", capture_code)
        set_field(self, "profile_datasets", profile_datasets)
        set_field(self, "validation_policy", validation_policy)
        set_field(self, "max_param_bytes", max_param_bytes)
        set_field(self, "redact_patterns", redact_patterns)
        set_field(self, "trace", trace)
        set_field(self, "extra", {} if extra is FACTORY else extra)

    def as_mapping(self) -> dict[str, Any]:
        """The configuration as a plain dict, as handed to backends."""
        return {
            "home": str(self.home),
            "backends": list(self.backends),
            "flush_timeout_s": self.flush_timeout_s,
            "sample_interval_s": self.sample_interval_s,
            "validation_policy": self.validation_policy,
            **{k: v for k, v in self.extra.items()},
        }


_lock = threading.Lock()
_cached: Config | None = None


def _find_pyproject(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_tool_table(start: Path) -> dict[str, Any]:
    path = _find_pyproject(start)
    if path is None:
        return {}
    try:
        import tomllib

        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError):
        # A broken pyproject is the user's to fix; recording must not fail on it.
        return {}
    table = data.get("tool", {}).get("flowrecord", {})
    return table if isinstance(table, dict) else {}


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def load_config(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
    """Resolve the configuration (cached when called with no arguments)."""
    global _cached
    if environ is None and cwd is None and _cached is not None:
        return _cached
    env = os.environ if environ is None else environ
    table = _read_tool_table((cwd or Path.cwd()).resolve())

    home_raw = env.get("FLOWRECORD_HOME") or table.get("home") or _DEFAULT_HOME
    home = Path(str(home_raw)).expanduser()
    if not home.is_absolute():
        home = (cwd or Path.cwd()) / home

    backends_raw = env.get("FLOWRECORD_BACKENDS") or table.get("backends") or "local"
    if isinstance(backends_raw, str):
        backends = tuple(b.strip() for b in backends_raw.split(",") if b.strip())
    else:
        backends = tuple(str(b) for b in backends_raw)

    patterns_raw = env.get("FLOWRECORD_REDACT_PATTERNS") or table.get("redact_patterns") or ()
    if isinstance(patterns_raw, str):
        patterns = tuple(p for p in patterns_raw.split(",") if p)
    else:
        patterns = tuple(str(p) for p in patterns_raw)

    extra = {k: v for k, v in table.items() if isinstance(v, dict)}
    config = Config(
        home=home,
        backends=backends or ("local",),
        enabled=not _flag(env.get("FLOWRECORD_DISABLED"), False),
        flush_timeout_s=_number(
            env.get("FLOWRECORD_FLUSH_TIMEOUT", table.get("flush_timeout_s")), 2.0
        ),
        sample_interval_s=_number(
            env.get("FLOWRECORD_SAMPLE_INTERVAL", table.get("sample_interval_s")), 1.0
        ),
        system_sampling=_flag(
            env.get("FLOWRECORD_SYSTEM_SAMPLING"), bool(table.get("system_sampling", True))
        ),
        capture_code=_flag(
            env.get("FLOWRECORD_CAPTURE_CODE"), bool(table.get("capture_code", True))
        ),
        profile_datasets=_flag(
            env.get("FLOWRECORD_PROFILE"), bool(table.get("profile_datasets", True))
        ),
        validation_policy=str(
            env.get("FLOWRECORD_VALIDATION_POLICY") or table.get("validation_policy") or "record"
        ),
        max_param_bytes=int(
            _number(env.get("FLOWRECORD_MAX_PARAM_BYTES", table.get("max_param_bytes")), 65536)
        ),
        redact_patterns=patterns,
        trace=_flag(env.get("FLOWRECORD_TRACE"), False),
        extra=extra,
    )
    if environ is None and cwd is None:
        with _lock:
            _cached = config
    return config


def reset_config() -> None:
    """Forget the cached configuration (the next :func:`load_config` reads afresh)."""
    global _cached
    with _lock:
        _cached = None
