"""The flowrecord demo: one churn model, retrained by Metaflow, Airflow and Dagster.

The three churn examples (``examples/{metaflow,airflow,dagster}``) run one after
the other into one fresh store, each twice: week 1 on the usual customers, week
2 on customers whose incomes drifted. Every run trains a candidate, registers it
with the fingerprints of the exact data it saw, and puts it through the same
promotion gate; the record of each orchestrator's tasks lands in the same place.
At the end the demo prints the registry (``flowrecord models``) and why the
champion is the champion (``flowrecord explain churn@champion``).

No server, no download: the data is generated, everything runs in-process or as
local subprocesses, and the store is ``./.flowrecord-demo`` (or
``$FLOWRECORD_HOME``), started afresh each time::

    make demo          # or: uv run python examples/demo.py
    uv run python examples/demo.py --only airflow   # one orchestrator
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
WEEKS = (("1", "0"), ("2", "1.5"))  # (week, income shift): the second week drifts
MARKER = ".flowrecord-demo"  # only a directory holding this is ever wiped


def _fresh_home() -> Path:
    home = Path(os.environ.get("FLOWRECORD_HOME") or Path.cwd() / ".flowrecord-demo").resolve()
    if home.exists():
        if not (home / MARKER).exists():
            raise SystemExit(
                f"{home} exists and was not made by the demo; set FLOWRECORD_HOME to a new "
                "directory (the demo starts from an empty store)"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by examples/demo.py; removed by its next run\n")
    return home


def _commands(orchestrator: str, week: str, shift: str) -> list[str]:
    py = sys.executable
    if orchestrator == "metaflow":
        flow = EXAMPLES / "metaflow" / "churn_flow.py"
        return [py, str(flow), "--no-pylint", "run", "--week", week, "--shift", shift]
    if orchestrator == "airflow":
        return [py, str(EXAMPLES / "airflow" / "churn_dag.py"), "--week", week, "--shift", shift]
    return [py, str(EXAMPLES / "dagster" / "churn_defs.py"), "--week", week, "--shift", shift]


def _environment(home: Path) -> dict[str, str]:
    work = home / "orchestrators"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "METAFLOW"))}
    env.update(
        {
            "FLOWRECORD_HOME": str(home),
            # Each orchestrator keeps its own state beside the record, not in ~/.
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "DAGSTER_HOME": str(work / "dagster"),
            "METAFLOW_HOME": str(work / "metaflow-config"),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(work / "metaflow"),
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
            "USERNAME": os.environ.get("USERNAME") or os.environ.get("USER") or "demo",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for d in ("airflow", "dagster", "metaflow-config", "metaflow"):
        (work / d).mkdir(parents=True, exist_ok=True)
    return env


def _last_decision(home: Path, since: float) -> str:
    """The gate's decision in the run that just ended, as one line."""
    from flowrecord.backends.local import LocalStore
    from flowrecord.lifecycle import decisions

    store = LocalStore(home)
    try:
        made = [d for d in decisions("churn", store=store) if d["decided_at"] >= since]
    finally:
        store.close()
    if not made:
        return "no gate decision recorded"
    last = made[-1]
    if last["applied"]:
        return f"version {last['version']} promoted to champion"
    failed = [r for r in last["reasons"] if not str(r).startswith("pass")]
    why = failed[0] if failed else "refused"
    more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"version {last['version']} refused: {why}{more}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["metaflow", "airflow", "dagster"],
        default=["metaflow", "airflow", "dagster"],
        help="orchestrators to run (default: all three, in this order)",
    )
    args = parser.parse_args(argv)

    home = _fresh_home()
    env = _environment(home)
    print(f"flowrecord demo: recording into {home}\n")
    for orchestrator in args.only:
        for week, shift in WEEKS:
            label = f"{orchestrator:<8} week {week}" + (
                " (drifted incomes)" if shift != "0" else ""
            )
            print(f"{label:<38}", end="", flush=True)
            started, wall = time.time(), time.perf_counter()
            proc = subprocess.run(
                _commands(orchestrator, week, shift),
                cwd=EXAMPLES.parent,
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print("FAILED\n")
                print((proc.stdout + proc.stderr)[-4000:])
                return 1
            took = time.perf_counter() - wall
            print(f"{took:5.1f} s   {_last_decision(home, started)}")

    cli = [sys.executable, "-m", "flowrecord.cli", "--home", str(home)]
    for title, command in (
        ("flowrecord models", ["models"]),
        ("flowrecord explain churn@champion", ["explain", "churn@champion"]),
    ):
        print(f"\n$ {title}")
        sys.stdout.flush()
        subprocess.run([*cli, *command], env=env, check=True)
    print(
        f"\nEverything above is in {home / 'flowrecord.db'}; look around with\n"
        f"  flowrecord --home {home} runs\n"
        f"  flowrecord --home {home} report churn@champion -o churn.html"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
