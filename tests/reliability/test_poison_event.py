"""An event the local store can never take, spooled by an earlier process among
thousands of good ones: `flowrecord sync` stores every other event exactly once,
keeps the bad one as a dead letter, and says so."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _child_env import child_env

from flowrecord.backends.local import LocalStore
from flowrecord.dispatcher import pending_spool_files, spool_dirs

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

POINTS = 5000
TASKS = 3

# The earlier process: its store cannot be opened (the store file is a directory),
# so everything it records is spooled, one param the store will never bind among it.
_WRITER = textwrap.dedent(
    """
    import json, sys, time
    import flowrecord
    from flowrecord._ids import new_event_id
    from flowrecord.events import ParamEvent
    from flowrecord.recorder import get_runtime

    POINTS, TASKS = map(int, sys.argv[1:3])
    with flowrecord.run("poison", "poison-run"):
        for t in range(TASKS):
            with flowrecord.task(f"t{t}") as task:
                flowrecord.log_param("lr", 0.1)
                for i in range(POINTS):
                    flowrecord.log_metric(f"m{t}", float(i), step=i)
                if t == 1:
                    # As a buggy integration might: a value that is not text.
                    get_runtime().dispatcher.submit(
                        ParamEvent(
                            event_id=new_event_id(),
                            ts=time.time(),
                            run_id=task.run_id,
                            task_id=task.task_id,
                            key="bad",
                            value={"not": "text"},
                        )
                    )
    assert flowrecord.flush(60)
    print(json.dumps(get_runtime().dispatcher.stats()["local"]), flush=True)
    """
)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowrecord.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sync_stores_every_event_but_the_poison_once_and_keeps_it_as_a_dead_letter(
    tmp_path: Path,
):
    """A spool from an earlier process holds 15,000 points, params and one param the
    store can never bind: `sync` stores all the others exactly once (the files after
    the bad one too), keeps the bad one as a dead letter, lists it, and exits 1."""
    home = tmp_path / "home"
    (home / "flowrecord.db").mkdir(parents=True)  # the outage: no store can be opened
    env = child_env(home)
    child = subprocess.run(
        [sys.executable, "-c", _WRITER, str(POINTS), str(TASKS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == 0, child.stderr
    stats = json.loads(child.stdout.strip().splitlines()[-1])
    assert stats["delivered"] == 0 and stats["lost"] == 0 and stats["dead"] == 0
    spooled = pending_spool_files(spool_dirs(home, "local"))
    assert len(spooled) > 1

    (home / "flowrecord.db").rmdir()  # the outage is over
    sync = _cli(env, "sync", "--json")
    assert sync.returncode == 1, sync.stderr
    report = json.loads(sync.stdout)
    (local,) = report["backends"]
    assert (local["dead"], local["dead_letters"], local["left"], local["failed_files"]) == (
        1,
        1,
        0,
        0,
    )
    assert local["events"] == stats["spooled"] - 1 and not report["ok"]
    assert "dead letters" in sync.stderr and sync.stderr.count("\n") == 1
    assert pending_spool_files(spool_dirs(home, "local")) == []

    store = LocalStore(home)
    try:
        assert store.query("PRAGMA integrity_check")[0][0] == "ok"
        counts = store.query(
            "SELECT key, count(*) AS n, count(DISTINCT event_id) AS ids"
            " FROM metric_points GROUP BY key ORDER BY key"
        )
        assert [tuple(r) for r in counts] == [(f"m{t}", POINTS, POINTS) for t in range(TASKS)]
        params = store.query("SELECT key, count(*) FROM params GROUP BY key")
        assert [tuple(r) for r in params] == [("lr", TASKS)]
        states = {r["name"]: r["state"] for r in store.query("SELECT name, state FROM tasks")}
        assert states == {f"t{t}": "succeeded" for t in range(TASKS)}
        assert store.query("SELECT state FROM runs")[0][0] == "succeeded"
    finally:
        store.close()

    listed = _cli(env, "sync", "--list-dead", "--json")
    assert listed.returncode == 0, listed.stderr
    (letter,) = json.loads(listed.stdout)["dead_letters"]
    assert (letter["backend"], letter["kind"]) == ("local", "param")
    assert "binding parameter" in letter["error"]

    again = _cli(env, "sync", "--json")  # nothing new; the dead letter is still there
    assert again.returncode == 1
    assert json.loads(again.stdout)["events"] == 0
