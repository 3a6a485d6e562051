"""What the benchmark scripts share: timing helpers, the table of figures, JSON output.

A *figure* is one flowrecord number set beside what users would otherwise use
(the alternative), the ratio of the two and the goal from the issue that asked
for it. Every ``bench_*.py`` prints its figures as a table; given ``--json
PATH`` it also writes them there, and ``run_all.py`` combines the files of all
scripts into one table. A script adopts this with three lines::

    from _common import Figure, add_arguments, report

    add_arguments(parser)                  # --json PATH and --quick
    report("bench_x", figures, json_path=args.json)

Benchmarks never fail on a number: ``met`` is printed, not asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Figure",
    "Stopwatch",
    "add_arguments",
    "at_least",
    "at_most",
    "best_of",
    "bytecode_cache_env",
    "fresh_process_numbers",
    "machine",
    "markdown_table",
    "median_of",
    "paired_overhead",
    "report",
    "text_table",
    "write_json",
]

#: Version of the JSON written by :func:`write_json`.
JSON_VERSION = 1


@dataclass(frozen=True)
class Figure:
    """One measured figure, beside the alternative users would otherwise use.

    >>> f = Figure("import time", 0.05, "s", alternative=3.4, alternative_name="import mlflow",
    ...            goal="<= 0.15 s", met=True)
    >>> round(f.ratio, 1)
    68.0
    """

    name: str
    """What is measured, in the user's words ("open + close a task")."""
    flowrecord: float | None
    """flowrecord's number, in :attr:`unit`; None when it could not be measured."""
    unit: str
    """``s``, ``ms``, ``us``, ``points/s``, ``GB/s``, ``rows/s``, ``%``..."""
    alternative: float | None = None
    """The alternative's number, in the same unit."""
    alternative_name: str = ""
    """What the alternative is ("mlflow.start_run + end_run, sqlite store")."""
    better: str = "lower"
    """``lower`` when a smaller number is better (times), ``higher`` otherwise (rates)."""
    goal: str = ""
    """The goal as the issue states it ("<= 0.5 ms", ">= 10x"); empty when there is none."""
    met: bool | None = None
    """Whether the goal is met; None when there is no goal or no number."""
    note: str = ""
    """Anything a reader needs to read the number right (sizes, caveats)."""

    def __post_init__(self) -> None:
        if self.better not in ("lower", "higher"):
            raise ValueError(f"better must be 'lower' or 'higher', not {self.better!r}")

    @property
    def ratio(self) -> float | None:
        """How many times better flowrecord is than the alternative (above 1: better)."""
        ours, theirs = self.flowrecord, self.alternative
        if ours is None or theirs is None or not ours or not theirs:
            return None
        return theirs / ours if self.better == "lower" else ours / theirs

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figure:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def at_most(value: float | None, limit: float) -> bool | None:
    """``value <= limit``, or None when there is no value."""
    return None if value is None else value <= limit


def at_least(value: float | None, floor: float) -> bool | None:
    """``value >= floor``, or None when there is no value."""
    return None if value is None else value >= floor


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def median_of(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Median wall seconds of *repeat* calls of *fn*, and every time measured."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def paired_overhead(
    with_: Sequence[float], without: Sequence[float], *, confidence: float = 0.9
) -> tuple[float, float, float]:
    """Overhead of *with_* over *without* from rounds run side by side: (estimate, low, high).

    Round *i* of each list ran back to back, so their ratio cancels what drifts
    over minutes (a busy neighbour, a growing orchestrator database); the
    median of the ratios shrugs off a round a burst of noise hit. *low* and
    *high* bound the median with the given confidence, by resampling rounds
    (bootstrap, fixed seed: the same data always gives the same interval). A
    goal is shown as met by the estimate; the interval says how far the
    machine's noise lets a run of this many rounds see.

    >>> round(paired_overhead([1.02, 1.03, 1.01], [1.0, 1.0, 1.0])[0], 3)
    0.02
    """
    import random

    if len(with_) != len(without) or not with_:
        raise ValueError("need the same, non-zero number of rounds with and without")
    ratios = [w / o for w, o in zip(with_, without, strict=True)]
    estimate = statistics.median(ratios) - 1
    rng = random.Random(20261206)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) - 1 for _ in range(2000))
    tail = (1 - confidence) / 2
    low = medians[int(tail * (len(medians) - 1))]
    high = medians[int((1 - tail) * (len(medians) - 1))]
    return estimate, low, high


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Least wall seconds of *repeat* calls of *fn*: on a shared machine, the least noisy."""
    best = math.inf
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def fresh_process_numbers(
    code: str,
    repeat: int,
    env: Mapping[str, str | None] | None = None,
    warmup: int = 1,
    timeout: float = 600,
) -> list[list[float]]:
    """Run *code* in fresh interpreters; each prints one line of numbers, returned per run.

    Used for import times, which only a fresh process measures honestly. The
    first *warmup* runs are not returned: they fill the bytecode cache, as a
    user's installed packages have theirs (see :func:`bytecode_cache_env`). In
    *env*, None unsets a variable.

    :raises RuntimeError: a child failed or printed no numbers.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    out = []
    for i in range(warmup + repeat):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=timeout,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        if i >= warmup:
            out.append([float(x) for x in lines[-1].split()])
    return out


def bytecode_cache_env(directory: str | os.PathLike[str]) -> dict[str, str | None]:
    """Environment that lets children cache bytecode under *directory*, outside the tree.

    Installed packages come with compiled bytecode, but a checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` compiles every module of every import again,
    which would make an import benchmark measure the compiler.
    """
    return {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": os.fspath(directory)}


def machine() -> dict[str, Any]:
    """The machine a run was measured on, and how busy it was (load average)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (OSError, ValueError, AttributeError):
        memory_gib = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": None if memory_gib is None else round(memory_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load,
    }


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json PATH`` (write the figures there) and ``--quick`` (small sizes)."""
    # Made absolute now: some scripts change directory before they report.
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=os.path.abspath,
        help="also write the figures to PATH as JSON",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repeats: a smoke run"
    )


def format_number(value: float | None, unit: str = "") -> str:
    """A number with 3 significant digits (thousands separated), and its unit."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} {unit}".strip()
    magnitude = abs(value)
    if magnitude >= 10_000_000:
        text = f"{value / 1e6:,.1f}M"  # rows/s: "15.9M" reads against a goal of "50M"
    elif magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _ratio_text(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None:
        return "-"
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def _met_text(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def _rows(figures: Iterable[Figure]) -> list[list[str]]:
    rows = []
    for f in figures:
        alternative = format_number(f.alternative, f.unit)
        if f.alternative_name:
            alternative = f"{alternative} ({f.alternative_name})" if f.alternative else "-"
        rows.append(
            [
                f.name,
                format_number(f.flowrecord, f.unit),
                alternative,
                _ratio_text(f),
                f.goal or "-",
                _met_text(f.met),
            ]
        )
    return rows


HEADER = ["figure", "flowrecord", "alternative", "ratio", "goal", "met?"]


def text_table(figures: Sequence[Figure], title: str = "") -> str:
    """The figures as a fixed-width table for a terminal."""
    rows = _rows(figures)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines.append("notes:")
        lines.extend(notes)
    lines.append(
        "ratio: how many times better flowrecord is than the alternative (above 1: better)"
    )
    return "\n".join(lines)


def markdown_table(figures: Sequence[Figure]) -> str:
    """The figures as a GitHub markdown table (for the README)."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", "---", ":---:"]) + "|",
    ]
    for row in _rows(figures):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def write_json(
    path: str | os.PathLike[str],
    script: str,
    figures: Sequence[Figure],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write *figures* of *script* to *path* in the format ``run_all.py`` reads."""
    payload = {
        "version": JSON_VERSION,
        "script": script,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "figures": [f.as_dict() for f in figures],
        "extra": dict(extra or {}),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def report(
    script: str,
    figures: Sequence[Figure],
    *,
    json_path: str | None = None,
    title: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Print *figures* as a table and, when *json_path* is given, write them as JSON."""
    print()
    print(text_table(figures, title or f"{script}: flowrecord against the alternatives"))
    if json_path:
        write_json(json_path, script, figures, extra)


@dataclass
class Stopwatch:
    """Wall and CPU time of a block (this process, all threads)."""

    wall: float = 0.0
    cpu: float = 0.0
    _started: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def __enter__(self) -> Stopwatch:
        self._started = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started[0]
        self.cpu = time.process_time() - self._started[1]
