"""The environment of a child process that records into a given home, local store only."""

from __future__ import annotations

import os
from pathlib import Path


def child_env(home: Path) -> dict[str, str]:
    """This process's environment, recording into *home* with neither sampling nor code capture."""
    return {
        **os.environ,
        "FLOWRECORD_HOME": str(home),
        "FLOWRECORD_BACKENDS": "local",
        "FLOWRECORD_CAPTURE_CODE": "0",
        "FLOWRECORD_SYSTEM_SAMPLING": "0",
    }
