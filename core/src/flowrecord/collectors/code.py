"""Code and environment snapshot: which code, on which Python, with which packages.

:func:`capture_code` records the git commit and branch of the working tree, whether
it is dirty, the uncommitted diff (``git diff HEAD``: staged and unstaged changes
to tracked files) and the *names* of untracked files (their content can be
anything, data files included, so it is not read), plus the Python version, the
platform, the installed distributions and a selection of environment variables.

It never raises for a missing git, a directory outside any repository, a
repository without commits or a detached HEAD: the affected fields are None and
``warnings`` says why. Git runs with a timeout and the diff is read from the pipe
only up to ``max_diff_bytes`` (then git is stopped), so a huge diff costs at most
that much memory. The diff and the environment go through
:mod:`flowrecord.collectors.secrets` before they are returned.

The environment selection is deliberately narrow: variables that describe the
compute and the tools (``CUDA_*``, ``PYTHON*``, ``CONDA_*``, ``SLURM_*``,
``OMP_*``, ``HF_*``, ``MLFLOW_*``, ``FLOWRECORD_*``...), never ``AIRFLOW__*`` or
``AIRFLOW_CONN_*``, whose whole purpose is to hold connection strings and keys
(only Airflow's harmless ``AIRFLOW_CTX_*`` task context is kept).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowrecord.collectors.secrets import redact_mapping, redact_text

__all__ = ["ENVIRONMENT_PREFIXES", "capture_code"]

#: Environment variables recorded: those starting with one of these prefixes.
ENVIRONMENT_PREFIXES: tuple[str, ...] = (
    "CUDA_",
    "CUDNN_",
    "CUBLAS_",
    "NCCL_",
    "NVIDIA_",
    "PYTHON",
    "VIRTUAL_ENV",
    "CONDA_",
    "SLURM_",
    "KUBERNETES_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "TORCH_",
    "PYTORCH_",
    "TF_",
    "XLA_",
    "JAX_",
    "HF_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "FLOWRECORD_",
    "MLFLOW_",
    "OPENLINEAGE_",
    "METAFLOW_",
    "DAGSTER_",
    "AIRFLOW_CTX_",
)
_ENVIRONMENT_NAMES = frozenset({"HOSTNAME", "LANG", "LC_ALL", "TZ"})

# At most this many untracked file names are listed (a forgotten build directory
# can hold thousands); the warning says how many more there were.
_MAX_UNTRACKED = 1000
# `git status` output is read up to this size, like the diff.
_MAX_STATUS_BYTES = 4_000_000
_CHUNK = 65536


class _GitMissing(Exception):
    """The git executable is not on PATH."""


class _GitTimeout(Exception):
    """A git command ran past its time limit."""


def _git_environment() -> dict[str, str]:
    env = dict(os.environ)
    # Never take the index lock (the user may be committing while the task
    # runs), never prompt, and give messages in English for the warnings.
    env.update({"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    return env


def _git(cwd: Path, args: list[str], timeout: float) -> tuple[int, str, str]:
    """Run a short git command: (exit status, stdout, stderr), both stripped."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _GitMissing() from exc
    except subprocess.TimeoutExpired as exc:
        raise _GitTimeout(" ".join(args[:2])) from exc
    return done.returncode, _text(done.stdout), _text(done.stderr)


def _text(output: bytes) -> str:
    return output.decode("utf-8", "replace").strip()


def _git_stream(cwd: Path, args: list[str], cap: int, timeout: float) -> tuple[bytes, bool, bool]:
    """Read a git command's output up to ``cap`` bytes: (data, cut at cap, timed out).

    The output is read from the pipe in chunks and git is killed as soon as the cap
    is passed, so memory stays near ``cap`` whatever git would have written. A cut
    output ends at its last complete line.
    """
    try:
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=_git_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            # Not read: a full stderr pipe would block git while we read stdout.
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise _GitMissing() from exc
    expired = threading.Event()

    def _expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, _expire)
    timer.daemon = True
    timer.start()
    chunks: list[bytes] = []
    size = 0
    cut = False
    stdout: Any = proc.stdout  # a BufferedReader: read1() returns what the pipe holds
    try:
        while True:
            chunk = stdout.read1(_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                cut = True
                break
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        stdout.close()
        proc.wait()
    data = b"".join(chunks)
    if cut or expired.is_set():
        data = data[:cap]
        end = data.rfind(b"\n")
        # Cut at a line end: a half line could be half a secret the redaction
        # rules no longer recognise.
        data = data[: end + 1] if end >= 0 else b""
    return data, cut, expired.is_set()


def _git_snapshot(start: Path, max_diff_bytes: int, timeout: float) -> dict[str, Any]:
    # Two or three git processes: the root; the status, whose header also gives
    # the commit and the branch; and the diff, only when a tracked file changed
    # (otherwise the diff against HEAD is empty). Each costs milliseconds of
    # process start, once per run.
    info: dict[str, Any] = {}
    warnings: list[str] = []
    info["warnings"] = warnings
    try:
        status, root, err = _git(start, ["rev-parse", "--show-toplevel"], timeout)
        if status != 0:
            reason = err.splitlines()[0] if err else f"git exited with status {status}"
            warnings.append(f"not a git repository ({start}): {reason}")
            return info
        info["repo_root"] = root
        repo = Path(root)

        raw, status_cut, status_late = _git_stream(
            repo,
            ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal"],
            _MAX_STATUS_BYTES,
            timeout,
        )
        parsed = _parse_status(raw, warnings)
        status_failed = parsed.commit is None and not status_late
        if parsed.commit is None:  # no header: status failed or timed out
            status, found, _ = _git(
                repo, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], timeout
            )
            parsed.commit = found if status == 0 else ""
            status, found, _ = _git(repo, ["symbolic-ref", "--quiet", "--short", "HEAD"], timeout)
            parsed.branch = found if status == 0 and found else None
        commit = parsed.commit
        if not commit:
            warnings.append("the git repository has no commits yet: no commit and no diff")
        info["commit"] = commit or None
        if parsed.branch:
            info["branch"] = parsed.branch
        elif commit:
            warnings.append(f"detached HEAD at {commit[:12]}: no branch")

        if status_late:
            warnings.append(f"git status timed out after {timeout:g}s: dirty flag unknown")
        elif status_failed:
            warnings.append("git status failed: dirty flag and untracked files unknown")
        else:
            info["dirty"] = parsed.changed or bool(parsed.untracked)
            info["untracked"] = parsed.untracked
            if status_cut:
                warnings.append("git status output was too long: the untracked list is partial")

        if commit and not (parsed.changed or status_late or status_failed or status_cut):
            info["diff"] = ""  # no tracked file differs from HEAD
            info["diff_truncated"] = False
        elif commit:
            diff, cut, late = _git_stream(
                repo,
                ["diff", "HEAD", "--no-color", "--no-ext-diff", "--no-textconv"],
                max_diff_bytes,
                timeout,
            )
            info["diff"] = redact_text(diff.decode("utf-8", "replace"))
            info["diff_truncated"] = cut or late
            if cut:
                warnings.append(f"the diff is larger than {max_diff_bytes} bytes and was cut")
            if late:
                warnings.append(f"git diff timed out after {timeout:g}s: the diff is partial")
    except _GitMissing:
        warnings.append("git is not installed: no commit, branch or diff")
    except _GitTimeout as exc:
        warnings.append(f"git {exc} timed out after {timeout:g}s")
    except OSError as exc:
        warnings.append(f"git could not run: {exc}")
    return info


@dataclass
class _Status:
    """What ``git status --porcelain=v2 --branch -z`` says."""

    commit: str | None = None
    """HEAD's commit; "" in a repository without commits; None: no header was read."""
    branch: str | None = None
    """The checked-out branch; None when HEAD is detached."""
    changed: bool = False
    """A tracked file differs from HEAD (staged or not), or a merge is unresolved."""
    untracked: list[str] = field(default_factory=list)


def _parse_status(raw: bytes, warnings: list[str]) -> _Status:
    """Commit, branch, tracked changes and untracked names from porcelain v2 output."""
    out = _Status()
    entries = raw.decode("utf-8", "replace").split("\0")
    skip_next = False
    for entry in entries:
        if skip_next:  # the original path of a rename or copy
            skip_next = False
            continue
        if entry.startswith("# branch.oid "):
            oid = entry[len("# branch.oid ") :]
            out.commit = "" if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry[len("# branch.head ") :]
            out.branch = None if head == "(detached)" else head
        elif entry.startswith("? "):
            out.untracked.append(entry[2:])
        elif entry[:2] in ("1 ", "u "):
            out.changed = True
        elif entry.startswith("2 "):
            out.changed = True
            skip_next = True
    if len(out.untracked) > _MAX_UNTRACKED:
        warnings.append(
            f"{len(out.untracked)} untracked files; only the first {_MAX_UNTRACKED} are listed"
        )
        out.untracked = out.untracked[:_MAX_UNTRACKED]
    return out


# The last listing, with the sys.path directories (and their modification times)
# it was read from: a process that records many runs reads its packages once,
# and again only after something was installed or removed (which changes a
# directory on sys.path).
_packages_cache: tuple[tuple[tuple[str, int], ...], dict[str, str]] | None = None


def _path_state() -> tuple[tuple[str, int], ...]:
    state = []
    for entry in sys.path:
        try:
            state.append((str(entry), os.stat(entry or ".").st_mtime_ns))
        except (OSError, TypeError, ValueError):  # gone, or not a path at all
            state.append((repr(entry), -1))
    return tuple(state)


def _installed_packages() -> dict[str, str]:
    """Distribution name -> version, the first found on sys.path winning (as import does)."""
    global _packages_cache
    state = _path_state()
    cached = _packages_cache
    if cached is not None and cached[0] == state:
        return dict(cached[1])
    packages = _read_packages()
    _packages_cache = (state, packages)
    return dict(packages)


def _read_packages() -> dict[str, str]:
    from importlib import metadata

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        try:
            # Reading the two header fields directly is ~5x faster than
            # dist.metadata, which parses the whole file (descriptions included).
            text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
            name = version = None
            for line in text.splitlines():
                if not line:
                    break
                if line.startswith("Name:"):
                    name = line[5:].strip()
                elif line.startswith("Version:"):
                    version = line[8:].strip()
            if not name:
                name, version = dist.metadata["Name"], dist.version
        except (OSError, UnicodeDecodeError, KeyError):
            continue  # a broken installation record: skip it, keep the rest
        if name and name not in packages:
            packages[name] = version or ""
    return dict(sorted(packages.items(), key=lambda item: item[0].lower()))


def _selected_environment(env: Mapping[str, str]) -> dict[str, str]:
    chosen = {
        name: value
        for name, value in env.items()
        if name in _ENVIRONMENT_NAMES or name.startswith(ENVIRONMENT_PREFIXES)
    }
    redacted = redact_mapping(chosen)
    return {name: str(redacted[name]) for name in sorted(redacted)}


def capture_code(
    path: str | os.PathLike[str] | None = None,
    *,
    max_diff_bytes: int = 1_000_000,
    with_packages: bool = True,
    env: Mapping[str, str] | None = None,
    git_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Snapshot the code at ``path`` (default: the working directory) and the environment.

    :param path: a directory (or a file) inside the repository to describe.
    :param max_diff_bytes: longest diff kept, in bytes of git's output; a longer
        one is cut at a line end and flagged ``diff_truncated``.
    :param with_packages: list installed distributions (about 0.1 s).
    :param env: environment to select variables from; ``os.environ`` by default.
    :param git_timeout_s: time limit of each git command.
    :returns: ``commit``, ``branch``, ``dirty``, ``diff`` (redacted),
        ``diff_truncated``, ``repo_root``, ``untracked`` (file names), ``python``,
        ``platform``, ``packages`` (name -> version, sorted), ``environment``
        (selected, redacted) and ``warnings``.

    >>> snapshot = capture_code(with_packages=False)
    >>> sorted(snapshot)[:4]
    ['branch', 'commit', 'diff', 'diff_truncated']
    """
    warnings: list[str] = []
    result: dict[str, Any] = {
        "commit": None,
        "branch": None,
        "dirty": None,
        "diff": None,
        "diff_truncated": False,
        "repo_root": None,
        "untracked": [],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": {},
        "environment": {},
        "warnings": warnings,
    }
    start = Path(path) if path is not None else Path.cwd()
    if start.is_file():
        start = start.parent
    if not start.is_dir():
        warnings.append(f"{start} is not a directory: no git information")
    else:
        snapshot = _git_snapshot(start, max(0, int(max_diff_bytes)), git_timeout_s)
        warnings.extend(snapshot.pop("warnings"))
        result.update(snapshot)
    if with_packages:
        try:
            result["packages"] = _installed_packages()
        except Exception as exc:  # metadata of a broken environment must not stop the run
            warnings.append(f"installed packages could not be listed: {exc}")
    result["environment"] = _selected_environment(os.environ if env is None else env)
    return result
