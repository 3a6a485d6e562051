"""Run every benchmark and print one table of ratios (``make bench``).

Each ``benchmarks/bench_*.py`` runs as its own subprocess, one after the other
(they measure time: running them side by side would measure each other), in
the order of the goals they answer (:data:`ORDER`), then any others by name.
Every script takes ``--json PATH`` (see ``_common.add_arguments``) and hands
its figures back that way; they make the one combined table: figure,
flowrecord, alternative, ratio, goal, met?. Each script's detailed printout is
echoed as it runs. A script without ``--json`` would be run all the same, its
own printed table standing as it is; nothing is parsed out of it.

``--quick`` passes ``--quick`` to every script: small sizes, a smoke run whose
numbers mean little. Results go to ``benchmarks/results/latest.json``
(git-ignored) and the table is printed again as markdown, with the date and
the machine, to paste into the README.

Benchmarks never fail on a number; the exit status is non-zero only when a
script itself failed (crashed or ran past ``--timeout``).

    uv run --no-sync python benchmarks/run_all.py
    uv run --no-sync python benchmarks/run_all.py --quick --only core fingerprint
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from _common import Figure, bytecode_cache_env, machine, markdown_table, text_table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
PYCACHE = HERE / "results" / "pycache"  # git-ignored with the results

#: The scripts in the order of the goals they answer (the combined table's
#: order); scripts not named here run after them, by name.
ORDER = (
    "bench_core.py",  # import, open + close a task, log_metric, points into the local store
    "bench_mlflow.py",  # points through the MLflow backend
    "bench_fingerprint.py",  # fingerprint, memory, profile
    "bench_validation.py",  # pandera, drift
    "bench_airflow.py",  # per-task overhead in the orchestrators
    "bench_dagster.py",
    "bench_metaflow.py",
)


@dataclass
class ScriptRun:
    """One benchmark script's run: how it went, its figures if it wrote any, its output."""

    script: str
    args: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    takes_json: bool = False
    figures: list[Figure] = field(default_factory=list)
    output: str = ""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "args": self.args,
            "returncode": self.returncode,
            "seconds": round(self.seconds, 2),
            "takes_json": self.takes_json,
            "error": self.error,
            "figures": [f.as_dict() for f in self.figures],
            "output": self.output,
        }


def discover(only: list[str]) -> list[Path]:
    """The bench_*.py scripts in :data:`ORDER`; with *only*, those whose name has one of them."""
    rank = {name: i for i, name in enumerate(ORDER)}
    scripts = sorted(HERE.glob("bench_*.py"), key=lambda s: (rank.get(s.name, len(ORDER)), s.name))
    if only:
        scripts = [s for s in scripts if any(word in s.name for word in only)]
    return scripts


def arguments_for(source: str, quick: bool, json_path: Path) -> tuple[list[str], bool]:
    """Command-line arguments for a script of *source*, and whether it writes JSON."""
    takes_common = "add_arguments(" in source
    takes_json = takes_common or '"--json"' in source
    args: list[str] = []
    if takes_json:
        args += ["--json", str(json_path)]
    if quick and (takes_common or '"--quick"' in source):
        args.append("--quick")
    return args, takes_json


def _echo(stream: IO[str] | None, lines: list[str]) -> None:
    assert stream is not None
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)


def run_script(script: Path, quick: bool, timeout: float, workdir: Path) -> ScriptRun:
    """Run one script, echoing its output as it comes; read its figures back."""
    source = script.read_text(encoding="utf-8")
    json_path = workdir / f"{script.stem}.json"
    args, takes_json = arguments_for(source, quick, json_path)
    result = ScriptRun(script.name, args, takes_json=takes_json)
    print(f"\n=== {script.name} {' '.join(args)}", flush=True)
    lines: list[str] = []
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Deployed packages come compiled; a checkout run with PYTHONDONTWRITEBYTECODE
    # would have every process of every benchmark compile its imports again.
    for key, value in bytecode_cache_env(PYCACHE).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=HERE.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        # Echo from a thread, so a script that hangs in silence still times out.
        echo = threading.Thread(target=_echo, args=(proc.stdout, lines), daemon=True)
        echo.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            result.error = f"ran past {timeout:.0f} s and was stopped"
        echo.join(10)
        result.returncode = proc.returncode
    result.seconds = time.perf_counter() - started
    result.output = "".join(lines)
    if result.error is None and result.returncode != 0:
        result.error = f"exited with status {result.returncode}"
    if takes_json and json_path.exists():
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
            result.figures = [Figure.from_dict(f) for f in data.get("figures", [])]
        except (ValueError, TypeError) as exc:
            result.error = result.error or f"unreadable JSON: {exc}"
    elif takes_json and result.error is None:
        result.error = "wrote no JSON"
    print(
        f"=== {script.name}: {result.seconds:.0f} s" + (f", {result.error}" if result.error else "")
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", nargs="+", default=[], metavar="WORD", help="only scripts whose name has WORD"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds one script may take (default 3600)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()

    scripts = discover(args.only)
    if not scripts:
        print("no benchmark script matches", file=sys.stderr)
        return 2
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %z")
    before = machine()
    print(f"{len(scripts)} benchmarks on {describe(before)}, load average {before['load_average']}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="flowrecord-bench-") as tmp:
        for script in scripts:
            runs.append(run_script(script, args.quick, args.timeout, Path(tmp)))
    after = machine()

    figures = [f for r in runs for f in r.figures]
    payload = {
        "date": started_at,
        "quick": args.quick,
        "machine": {**before, "load_average_after": after["load_average"]},
        "figures": [f.as_dict() for f in figures],
        "scripts": [r.as_dict() for r in runs],
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")

    print("\n" + "=" * 100)
    size = "--quick sizes" if args.quick else "full sizes"
    header = (
        f"flowrecord benchmarks, {started_at} ({size}): {describe(before)}, "
        f"load average {before['load_average']} -> {after['load_average']}"
    )
    print(text_table(figures, header) if figures else header + "\n(no script wrote figures)")
    print(goals_line(figures))
    plain = [r.script for r in runs if not r.takes_json and r.error is None]
    if plain:
        print(f"\nprinted their own tables above (no --json, nothing parsed): {', '.join(plain)}")
    failed = [r for r in runs if r.error]
    for r in failed:
        print(f"FAILED {r.script}: {r.error}")
    print(f"\nresults: {args.results}")
    print("\nmarkdown:\n")
    print(
        f"Measured {started_at} with `run_all.py` ({size}) on {describe(before)}; "
        f"load average {_loads(before['load_average'])} before, "
        f"{_loads(after['load_average'])} after.\n"
    )
    print(markdown_table(figures) if figures else "(no script wrote figures)")
    if figures:
        print(f"\n{goals_line(figures)}")
        notes = [f for f in figures if f.note]
        if notes:
            print()
            for f in notes:
                print(f"- {f.name}: {f.note}")
    if plain:
        print(f"\n(Own tables, not in this one: {', '.join(plain)}.)")
    if failed:
        print(f"\n(Failed, so not in this table: {', '.join(r.script for r in failed)}.)")
    return 1 if failed else 0


def describe(info: dict[str, Any]) -> str:
    """The machine in a few words: CPUs and model, memory, operating system, Python."""
    memory = info.get("memory_gib")
    return (
        f"{info['cpus']} CPUs ({info['cpu_model']})"
        + (f", {memory:.0f} GiB memory" if memory else "")
        + f", {info['platform']}, Python {info['python']}"
    )


def _loads(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values) if values else "unknown"


def goals_line(figures: list[Figure]) -> str:
    """How many goals the figures meet, and which they miss."""
    with_goal = [f for f in figures if f.goal]
    met = [f for f in with_goal if f.met]
    missed = [f.name for f in with_goal if f.met is False]
    unknown = [f.name for f in with_goal if f.met is None]
    line = f"goals met: {len(met)} of {len(with_goal)}"
    if missed:
        line += f"; missed: {'; '.join(missed)}"
    if unknown:
        line += f"; not measured: {'; '.join(unknown)}"
    return line


if __name__ == "__main__":
    sys.exit(main())
