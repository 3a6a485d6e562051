"""Code snapshot against real git repositories in a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from flowrecord.collectors.code import capture_code

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch, tmp_path):
    """No user or system git config, and no repository above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("lr = 0.1\nepochs = 3\n")
    (root / "config.yaml").write_text("model: resnet\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.mark.integration
def test_clean_repository(repo):
    """Commit, branch and root are read; a clean tree is not dirty and has an empty diff."""
    snap = capture_code(repo, with_packages=False)
    assert snap["commit"] == git(repo, "rev-parse", "HEAD")
    assert snap["branch"] == "main"
    assert snap["dirty"] is False
    assert snap["diff"] == "" and snap["diff_truncated"] is False
    assert Path(snap["repo_root"]).resolve() == repo.resolve()
    assert snap["untracked"] == []
    assert snap["warnings"] == []


@pytest.mark.integration
def test_changes_and_untracked_files(repo):
    """Staged and unstaged edits are in the diff; untracked files are listed by name only."""
    (repo / "train.py").write_text("lr = 0.05\nepochs = 3\n")
    (repo / "config.yaml").write_text("model: vit\n")
    git(repo, "add", "config.yaml")
    (repo / "notes.txt").write_text("private scratch content\n")
    snap = capture_code(repo / "train.py", with_packages=False)  # a file inside the repo works
    assert snap["dirty"] is True
    assert "-lr = 0.1" in snap["diff"] and "+lr = 0.05" in snap["diff"]
    assert "+model: vit" in snap["diff"]
    assert snap["untracked"] == ["notes.txt"]
    assert "private scratch content" not in snap["diff"]


@pytest.mark.integration
def test_a_clean_tree_runs_no_diff_and_a_rename_is_read(repo, monkeypatch):
    """git diff runs only when status shows a tracked change; a staged rename is one.

    Each git process costs the run milliseconds, so a clean tree is read with two.
    """
    from flowrecord.collectors import code

    ran: list[str] = []
    real = code._git_stream
    monkeypatch.setattr(
        code, "_git_stream", lambda cwd, args, *a: ran.append(args[0]) or real(cwd, args, *a)
    )
    snap = capture_code(repo, with_packages=False)
    assert ran == ["status"] and snap["diff"] == "" and snap["dirty"] is False
    git(repo, "mv", "train.py", "model.py")
    (repo / "scratch.txt").write_text("x\n")
    ran.clear()
    snap = capture_code(repo, with_packages=False)
    assert ran == ["status", "diff"]
    assert snap["dirty"] is True and snap["untracked"] == ["scratch.txt"]
    assert "rename to model.py" in snap["diff"] or "+++ b/model.py" in snap["diff"]
    assert snap["branch"] == "main" and snap["commit"] == git(repo, "rev-parse", "HEAD")


@pytest.mark.integration
def test_commit_and_branch_survive_a_status_that_says_nothing(repo, monkeypatch):
    """Should git status fail (no header), commit, branch and diff still come from git."""
    from flowrecord.collectors import code

    real = code._git_stream

    def status_fails(cwd, args, *rest):
        if args[0] == "status":
            return b"", False, False  # what a git status that exited at once leaves
        return real(cwd, args, *rest)

    monkeypatch.setattr(code, "_git_stream", status_fails)
    (repo / "train.py").write_text("lr = 0.3\n")
    snap = capture_code(repo, with_packages=False)
    assert snap["commit"] == git(repo, "rev-parse", "HEAD") and snap["branch"] == "main"
    # Nothing known about the tree is not a clean tree: the diff is read, not assumed empty.
    assert snap["dirty"] is None and "+lr = 0.3" in snap["diff"]
    assert any("git status failed" in w for w in snap["warnings"])


@pytest.mark.integration
def test_only_untracked_files_make_the_tree_dirty(repo):
    """A new file nobody added yet still makes the working tree dirty."""
    (repo / "new_step.py").write_text("print('hi')\n")
    snap = capture_code(repo, with_packages=False)
    assert snap["dirty"] is True and snap["diff"] == ""
    assert snap["untracked"] == ["new_step.py"]


@pytest.mark.integration
def test_planted_secrets_in_the_diff_are_redacted(repo):
    """A staged .env, a password in YAML and a URI with a password are scrubbed from the diff."""
    (repo / ".env").write_text(
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\n"
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
        "REGION=eu-west-1\n"
    )
    git(repo, "add", ".env")
    (repo / "config.yaml").write_text(
        "model: resnet\npassword: hunter2\ndb: postgresql://app:s3cr3t@db:5432/prod\n"
    )
    snap = capture_code(repo, with_packages=False)
    diff = snap["diff"]
    for planted in ("wJalrXUtnFEMIK7MDENG", "AKIAIOSFODNN7EXAMPLE", "hunter2", "s3cr3t"):
        assert planted not in diff
    assert "+AWS_SECRET_ACCESS_KEY=***" in diff
    assert "+password: ***" in diff
    assert "postgresql://app:***@db:5432/prod" in diff
    assert "+REGION=eu-west-1" in diff


@pytest.mark.integration
def test_huge_diff_is_cut_without_reading_it_all(repo):
    """A ~50 MB diff is cut at max_diff_bytes, quickly and with bounded memory."""
    line = "value_%08d = 'some generated content to make a long line'\n"
    with (repo / "train.py").open("w") as fh:
        for start in range(0, 800_000, 10_000):
            fh.write("".join(line % i for i in range(start, start + 10_000)))
    assert (repo / "train.py").stat().st_size > 45_000_000

    cap = 1_000_000
    tracemalloc.start()
    began = time.perf_counter()
    snap = capture_code(repo, max_diff_bytes=cap, with_packages=False)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert snap["diff_truncated"] is True
    assert 0 < len(snap["diff"].encode()) <= cap
    assert snap["diff"].endswith("\n")  # cut at a line end
    assert any("was cut" in w for w in snap["warnings"])
    assert peak < 15 * cap  # nowhere near the 50 MB git had to say
    assert elapsed < 20


@pytest.mark.integration
def test_directory_outside_any_repository(tmp_path):
    """A directory that is not in a repository gives None fields and a warning."""
    plain = tmp_path / "plain"
    plain.mkdir()
    snap = capture_code(plain, with_packages=False)
    assert snap["commit"] is None and snap["branch"] is None and snap["dirty"] is None
    assert snap["diff"] is None and snap["repo_root"] is None
    assert len(snap["warnings"]) == 1 and "not a git repository" in snap["warnings"][0]
    assert snap["python"].split()[0] in ("CPython", "PyPy") and snap["platform"]


@pytest.mark.integration
def test_missing_directory_is_a_warning(tmp_path):
    """A path that does not exist gives a warning, not an exception."""
    snap = capture_code(tmp_path / "nope", with_packages=False)
    assert snap["commit"] is None and "is not a directory" in snap["warnings"][0]


@pytest.mark.integration
def test_detached_head(repo):
    """A detached HEAD keeps the commit, has no branch, and says so."""
    (repo / "train.py").write_text("lr = 0.2\n")
    git(repo, "commit", "-q", "-am", "second")
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)
    snap = capture_code(repo, with_packages=False)
    assert snap["commit"] == first
    assert snap["branch"] is None
    assert snap["dirty"] is False
    assert any("detached HEAD" in w for w in snap["warnings"])


@pytest.mark.integration
def test_repository_without_commits(tmp_path):
    """A fresh repository: no commit, no diff, a warning; the branch name is still known."""
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "trunk")
    (root / "a.py").write_text("x = 1\n")
    snap = capture_code(root, with_packages=False)
    assert snap["commit"] is None and snap["diff"] is None
    assert snap["branch"] == "trunk"
    assert snap["dirty"] is True and snap["untracked"] == ["a.py"]
    assert any("no commits" in w for w in snap["warnings"])


@pytest.mark.integration
def test_git_not_installed(repo, monkeypatch, tmp_path):
    """Without git on PATH the snapshot still comes back, with a warning."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    snap = capture_code(repo, with_packages=False)
    assert snap["commit"] is None
    assert any("git is not installed" in w for w in snap["warnings"])


@pytest.mark.integration
def test_git_timing_out_is_a_warning(repo):
    """A git command past its time limit becomes a warning, never an exception."""
    snap = capture_code(repo, with_packages=False, git_timeout_s=1e-6)
    assert any("timed out" in w for w in snap["warnings"])


@pytest.mark.unit
def test_packages_are_listed_and_sorted():
    """Installed distributions come with their versions, sorted by name."""
    snap = capture_code(os.devnull, with_packages=True, env={})
    packages = snap["packages"]
    import pytest as pytest_module

    assert packages["pytest"] == pytest_module.__version__
    assert list(packages) == sorted(packages, key=str.lower)
    assert capture_code(os.devnull, with_packages=False, env={})["packages"] == {}


@pytest.mark.unit
def test_environment_is_selected_and_redacted():
    """Only useful variables are kept, and secrets among them are hidden."""
    env = {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz0123456789",
        "MLFLOW_TRACKING_URI": "https://bob:pw123@mlflow.internal",
        "MLFLOW_TRACKING_PASSWORD": "pw123",
        "SLURM_JOB_ID": "42",
        "AIRFLOW_CTX_DAG_ID": "train",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://a:b@h/db",
        "AIRFLOW_CONN_WAREHOUSE": "postgresql://a:b@h/db",
        "AWS_SECRET_ACCESS_KEY": "x",
        "HOME": "/root",
        "HOSTNAME": "node-7",
    }
    snap = capture_code(os.devnull, with_packages=False, env=env)
    assert snap["environment"] == {
        "AIRFLOW_CTX_DAG_ID": "train",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "HF_TOKEN": "***",
        "HOSTNAME": "node-7",
        "MLFLOW_TRACKING_PASSWORD": "***",
        "MLFLOW_TRACKING_URI": "https://bob:***@mlflow.internal",
        "SLURM_JOB_ID": "42",
    }


@pytest.mark.unit
def test_package_listing_is_reused_until_something_is_installed(tmp_path: Path, monkeypatch):
    """The second capture in a process reuses the listing; a new distribution is seen at once."""
    import sys

    from flowrecord.collectors import code

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    first = code._installed_packages()
    calls = []
    real = code._read_packages
    monkeypatch.setattr(code, "_read_packages", lambda: calls.append(1) or real())
    assert code._installed_packages() == first and calls == []
    # "Install" a distribution: a new .dist-info directory changes the site directory.
    time.sleep(0.01)
    info = site / "frtestpkg-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: frtestpkg\nVersion: 1.2.3\n\n")
    again = code._installed_packages()
    assert calls == [1] and again["frtestpkg"] == "1.2.3"
    assert sys.path[0] == str(site)


@pytest.mark.unit
def test_odd_sys_path_entries_do_not_break_the_package_listing(monkeypatch):
    """A missing directory or a Path object on sys.path still lists packages."""
    import sys

    from flowrecord.collectors import code

    monkeypatch.setattr(sys, "path", [*sys.path, "/no/such/dir", Path("/tmp")])
    packages = code._installed_packages()
    assert "pytest" in {name.lower() for name in packages}
