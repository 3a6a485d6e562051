"""House rules on what the repository tracks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.unit


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_no_tracked_file_is_over_one_mib():
    """Data stays small or is generated: no tracked file (the lock file included) tops 1 MiB."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    big = []
    for name in filter(None, names):
        path = ROOT / name.decode()
        if path.is_file() and path.stat().st_size > 2**20:
            big.append(f"{name.decode()} ({path.stat().st_size:,} bytes)")
    assert not big, "tracked files over 1 MiB: " + ", ".join(big)
