"""The ``flowrecord`` command: read the record back, and replay what was spooled.

Each subcommand is a :class:`Command`: a name, a line of help, a function that adds
its arguments to an ``argparse`` parser, and a function that runs it with the parsed
arguments and a :class:`Context` (the store, the consoles, ``--json`` output). The
modules named in :data:`COMMAND_MODULES` each expose a ``COMMANDS`` list; adding a
command elsewhere in flowrecord is one ``Command`` in such a module and one line
here. Commands read through :mod:`flowrecord.query` and only render: a rich table
or tree for people, exactly one JSON document with ``--json``.

Importing this module stays cheap (no rich, no store): the work happens inside the
commands. Errors a user can cause (an unknown run id, no store yet, a file that is
not a store) print one line on stderr and exit with status 1.

>>> from flowrecord.cli import main
>>> main(["runs", "--limit", "5"])  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from flowrecord.config import Config
    from flowrecord.query import ReadOnlyStore

__all__ = [
    "COMMANDS",
    "COMMAND_MODULES",
    "Command",
    "CommandError",
    "Context",
    "build_parser",
    "dead_letters",
    "format_bytes",
    "format_duration",
    "format_time",
    "main",
    "short_id",
    "state_text",
    "sync_spool",
    "to_json",
]

#: Modules whose ``COMMANDS`` lists make up the command line, in help order.
COMMAND_MODULES: tuple[str, ...] = ("flowrecord.cli", "flowrecord.lifecycle.cli")

#: Width of human output when stdout is not a terminal (a file, a pipe) and
#: ``COLUMNS`` is unset: wide enough that ids and keys are not cut.
PIPE_WIDTH = 160


# ---------------------------------------------------------------------------
# the command registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One ``flowrecord`` subcommand.

    >>> def add(parser): parser.add_argument("name")
    >>> def run(args, ctx):
    ...     ctx.console.print(f"hello {args.name}")
    ...     return 0
    >>> COMMANDS = [Command("hello", "Say hello.", add, run)]  # in a module of COMMAND_MODULES
    """

    name: str
    """The word typed after ``flowrecord``."""
    help: str
    """One line for ``flowrecord --help``; the first sentence is also the description."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    """Adds the command's own arguments (``--home`` and ``--debug`` are added for it)."""
    run: Callable[[argparse.Namespace, Context], int]
    """Runs the command; returns the exit status."""


class CommandError(Exception):
    """A failure the user can act on: printed as one line on stderr, exit status 1."""


class Context:
    """What a running command needs: where the store is, consoles, JSON output."""

    def __init__(self, home: Path | None = None, *, debug: bool = False) -> None:
        self._home = home
        self.debug = debug
        self._config: Config | None = None
        self._store: ReadOnlyStore | None = None
        self._console: Console | None = None
        self._err_console: Console | None = None

    @property
    def config(self) -> Config:
        """The configuration, with ``--home`` applied."""
        if self._config is None:
            from flowrecord.config import load_config

            # Read afresh rather than the recorder's per-process cache: main() may run
            # many times in one process (tests, embedding) with the environment changing.
            config = load_config(os.environ)
            if self._home is not None:
                config = dataclasses.replace(config, home=self._home)
            self._config = config
        return self._config

    @property
    def home(self) -> Path:
        """``--home``, else ``FLOWRECORD_HOME``, else the configured default."""
        return self._home if self._home is not None else self.config.home

    def store(self) -> ReadOnlyStore:
        """The store, opened read-only (never created).

        :raises StoreError: no store there, or not a flowrecord store.
        """
        if self._store is None:
            from flowrecord.query import open_store

            self._store = open_store(self.home)
        return self._store

    @property
    def console(self) -> Console:
        """A rich console on stdout."""
        if self._console is None:
            self._console = _make_console(stderr=False)
        return self._console

    @property
    def err_console(self) -> Console:
        """A rich console on stderr (progress, notes)."""
        if self._err_console is None:
            self._err_console = _make_console(stderr=True)
        return self._err_console

    def print_json(self, document: Any) -> None:
        """Write *document* as the one JSON document of this command (see :func:`to_json`)."""
        sys.stdout.write(to_json(document) + "\n")
        sys.stdout.flush()

    def error(self, message: str) -> None:
        """One line on stderr, prefixed ``flowrecord:``."""
        line = " ".join(str(message).split()) or "error"
        sys.stderr.write(f"flowrecord: error: {line}\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Close the store connection this context opened, if any."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _make_console(*, stderr: bool) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if "COLUMNS" not in os.environ and not _isatty(stream):
        width = PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=False)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _commands() -> list[Command]:
    commands: list[Command] = []
    for module_name in COMMAND_MODULES:
        commands.extend(importlib.import_module(module_name).COMMANDS)
    return commands


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS as default: a subcommand's parser must not overwrite a value given
    # before the subcommand (``flowrecord --home X runs``), and vice versa.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="flowrecord home (or its flowrecord.db); overrides FLOWRECORD_HOME",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an unexpected error",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``flowrecord`` argument parser, with every registered command."""
    from flowrecord import __version__

    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="flowrecord",
        description="Read what flowrecord recorded about your pipelines.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"flowrecord {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _commands():
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            parents=[common],
        )
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowrecord`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 0
    home = getattr(args, "home", None)
    ctx = Context(
        Path(home).expanduser().absolute() if home else None, debug=getattr(args, "debug", False)
    )
    import sqlite3

    from flowrecord.backends.local import StoreError
    from flowrecord.query import AmbiguousReference, RecordNotFound

    try:
        return int(run(args, ctx))
    except (CommandError, StoreError, RecordNotFound, AmbiguousReference) as exc:
        ctx.error(str(exc))
        return 1
    except sqlite3.Error as exc:
        if ctx.debug:
            raise
        ctx.error(f"reading the store failed: {type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``flowrecord runs | head``): not an error worth a word.
        _silence_stdout()
        return 0
    except Exception as exc:
        if ctx.debug:
            raise
        ctx.error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    finally:
        ctx.close()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# ---------------------------------------------------------------------------
# rendering helpers, shared by commands
# ---------------------------------------------------------------------------


def to_json(document: Any) -> str:
    """*document* as strict JSON: NaN and infinities become null, ``*_at`` times become
    ISO 8601 strings in UTC, paths and other objects become strings."""
    return json.dumps(_jsonable(document), indent=2, ensure_ascii=False, allow_nan=False)


def _jsonable(value: Any, key: str | None = None) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if key is not None and key.endswith("_at"):
            return _iso(float(value))
        return value
    return str(value)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def format_time(ts: float | None) -> str:
    """Local time, to the second (``2026-05-01 12:03:04``); ``-`` when unknown."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    """``850ms``, ``12.3s``, ``4m 05s``, ``2h 03m``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_bytes(n: float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``2.0 GiB``; ``-`` when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def format_number(value: float | None, text: str | None = None) -> str:
    """A metric value: 6 significant digits, or its text (``nan``, ``inf``)."""
    if value is None:
        return text if text is not None else "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def short_id(identifier: str | None, length: int = 8) -> str:
    """The first characters of an id, as shown in tables (a unique prefix is accepted back)."""
    return "-" if not identifier else identifier[:length]


_STATE_STYLES = {
    "succeeded": "green",
    "failed": "bold red",
    "incomplete": "bold yellow",
    "started": "cyan",
    "retrying": "yellow",
    "skipped": "dim",
}


def state_text(state: str | None) -> Text:
    """A state word, coloured."""
    from rich.text import Text

    return Text(state or "-", style=_STATE_STYLES.get(state or "", ""))


def _text(value: Any, style: str = "") -> Text:
    # Recorded strings go through Text, never markup: a task named "[red]x" is data.
    from rich.text import Text

    return Text("-" if value is None else str(value), style=style)


def _first_line(text: str | None, limit: int = 80) -> str | None:
    if not text:
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _table(title: str | None, *columns: str) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of tables"
    )


def _add_stale_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stale-after",
        metavar="HOURS",
        type=_positive_float,
        default=24.0,
        help="show a task still 'started' after this many hours as incomplete (default 24)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _task_counts(counts: Mapping[str, int]) -> Text:
    from rich.text import Text

    text = Text()
    for i, (state, n) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1])):
        if i:
            text.append(", ")
        text.append(f"{n} {state}", style=_STATE_STYLES.get(state, ""))
    return text if counts else Text("-")


# ---------------------------------------------------------------------------
# flowrecord runs
# ---------------------------------------------------------------------------


def _add_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=_non_negative_int, default=20, help="how many runs (default 20)"
    )
    parser.add_argument("--pipeline", help="only runs of this pipeline (DAG, job or flow)")
    _add_stale_flag(parser)
    _add_json_flag(parser)


def _run_runs(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.query import list_runs

    runs = list_runs(
        ctx.store(), limit=args.limit, pipeline=args.pipeline, stale_after_s=args.stale_after * 3600
    )
    if args.json:
        ctx.print_json({"runs": runs})
        return 0
    if not runs:
        where = f" of pipeline {args.pipeline!r}" if args.pipeline else ""
        ctx.console.print(_text(f"No runs{where} recorded in {ctx.home}."))
        return 0
    table = _table(
        None, "Run", "Orchestrator", "Pipeline", "Run key", "State", "Started", "Duration", "Tasks"
    )
    for r in runs:
        table.add_row(
            _text(short_id(r["run_id"]), "bold"),
            _text(r["orchestrator"]),
            _text(r["pipeline"]),
            _text(r["run_key"]),
            state_text(r["state"]),
            _text(format_time(r["started_at"])),
            _text(format_duration(r["duration_s"])),
            _task_counts(r["task_counts"]),
        )
    ctx.console.print(table)
    return 0


# ---------------------------------------------------------------------------
# flowrecord show
# ---------------------------------------------------------------------------


def _add_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_ID", help="run id, a unique prefix of it, or run key")
    _add_stale_flag(parser)
    _add_json_flag(parser)


def _run_show(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.query import resolve_run, run_details

    store = ctx.store()
    details = run_details(
        store, resolve_run(store, args.run), stale_after_s=args.stale_after * 3600
    )
    if args.json:
        ctx.print_json(details)
        return 0
    _render_show(ctx.console, details)
    return 0


def _task_label(item: Mapping[str, Any]) -> str:
    return item.get("task") or "(run)"


def _render_show(console: Console, d: Mapping[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    run = d["run"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="dim")
    head.add_column()
    title = Text("Run ", style="bold")
    title.append(run["run_id"], style="bold")
    title.append("  ")
    title.append_text(state_text(run["state"]))
    head.add_row(_text("pipeline"), _text(f"{run['orchestrator']} / {run['pipeline']}"))
    head.add_row(_text("run key"), _text(run["run_key"]))
    head.add_row(
        _text("started"),
        _text(f"{format_time(run['started_at'])}   duration {format_duration(run['duration_s'])}"),
    )
    if run["state"] != run["recorded_state"]:
        head.add_row(
            _text("recorded"), _text(f"{run['recorded_state']} ({run['incomplete_reason']})")
        )
    if run["error"]:
        head.add_row(_text("error"), _text(_first_line(run["error"], 200), "red"))
    run_tags = [t for t in d["tags"] if t["task_id"] is None]
    if run_tags:
        head.add_row(_text("tags"), _text(", ".join(f"{t['key']}={t['value']}" for t in run_tags)))
    console.print(title)
    console.print(head)

    if d["tasks"]:
        table = _table("Tasks", "Task", "Try", "Map", "State", "Started", "Duration", "Error")
        for t in d["tasks"]:
            error = _first_line(t["error"]) or (
                f"({t['incomplete_reason']})" if t["incomplete_reason"] else None
            )
            table.add_row(
                _text(t["name"], "bold"),
                _text(t["try_number"]),
                _text("" if t["map_index"] is None else t["map_index"]),
                state_text(t["state"]),
                _text(format_time(t["started_at"])),
                _text(format_duration(t["duration_s"])),
                _text(error or "", "red" if t["error"] else "yellow"),
            )
        console.print(table)
    if d["metrics"]:
        table = _table("Metrics (latest)", "Task", "Key", "Value", "Step", "Points", "Min", "Max")
        for m in d["metrics"]:
            table.add_row(
                _text(_task_label(m)),
                _text(m["key"], "bold"),
                _text(format_number(m["value"], m["value_text"])),
                _text("" if m["step"] is None else m["step"]),
                _text(m["points"]),
                _text(format_number(m["min"])),
                _text(format_number(m["max"])),
            )
        console.print(table)
    if d["params"]:
        table = _table("Params", "Task", "Key", "Value")
        for p in d["params"]:
            value = _first_line(p["value"], 100) or ""
            if p["truncated"]:
                value += " (cut)"
            table.add_row(_text(_task_label(p)), _text(p["key"], "bold"), _text(value))
        console.print(table)
    task_tags = [t for t in d["tags"] if t["task_id"] is not None]
    if task_tags:
        table = _table("Task tags", "Task", "Key", "Value")
        for t in task_tags:
            table.add_row(_text(_task_label(t)), _text(t["key"], "bold"), _text(t["value"]))
        console.print(table)
    if d["datasets"]:
        from flowrecord.query import short_fingerprint

        table = _table("Datasets", "Task", "Role", "Name", "Fingerprint", "Rows", "Schema")
        for ds in d["datasets"]:
            table.add_row(
                _text(_task_label(ds)),
                _text(ds["role"]),
                _text(ds["name"], "bold"),
                _text(short_fingerprint(ds["fingerprint"]) or "(none)"),
                _text("-" if ds["row_count"] is None else f"{ds['row_count']:,}"),
                _text(_schema_line(ds["schema"])),
            )
        console.print(table)
    if d["validations"]:
        table = _table(
            "Validations", "Task", "Dataset", "Validator", "Result", "Failed checks", "Failures"
        )
        for v in d["validations"]:
            result = (
                _text("passed", "green")
                if v["passed"]
                else _text("error" if v["error"] else "FAILED", "bold red")
            )
            table.add_row(
                _text(_task_label(v)),
                _text(v["dataset"]),
                _text(v["validator"] + (f" ({v['schema_name']})" if v["schema_name"] else "")),
                result,
                _text(f"{v['checks_failed']}/{v['checks_total']}"),
                _text(v["failure_count"] if not v["error"] else _first_line(v["error"], 60)),
            )
        console.print(table)
    if d["system_usage"]:
        table = _table(
            "System usage", "Task", "CPU peak", "CPU mean", "RSS peak", "RSS mean", "GPU"
        )
        for u in d["system_usage"]:
            s = u["summary"]
            table.add_row(
                _text(_task_label(u)),
                _text(_percent(s.get("cpu_percent_peak"))),
                _text(_percent(s.get("cpu_percent_mean"))),
                _text(format_bytes(s.get("rss_bytes_peak"))),
                _text(format_bytes(s.get("rss_bytes_mean"))),
                _text(_gpu_line(s.get("gpus"))),
            )
        console.print(table)
    code = d["code"]
    if code:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column()
        dirty = {True: "dirty", False: "clean", None: "unknown"}[code["dirty"]]
        grid.add_row(_text("commit"), _text(f"{code['commit'] or '(not a git checkout)'}"))
        grid.add_row(_text("branch"), _text(code["branch"]))
        diff = f"{dirty}, diff {format_bytes(code['diff_bytes'])}"
        if code["diff_truncated"]:
            diff += " (cut)"
        grid.add_row(_text("tree"), _text(diff))
        grid.add_row(_text("python"), _text(f"{code['python']} on {code['platform']}"))
        console.print(Text("Code", style="bold"))
        console.print(grid)
    if d["artifacts"]:
        table = _table("Artifacts", "Task", "Name", "Size", "Fingerprint", "Path")
        from flowrecord.query import short_fingerprint

        for a in d["artifacts"]:
            table.add_row(
                _text(_task_label(a)),
                _text(a["name"], "bold"),
                _text(format_bytes(a["size_bytes"])),
                _text(short_fingerprint(a["fingerprint"]) or "-"),
                _text(a["path"]),
            )
        console.print(table)
    if d["gate_decisions"]:
        table = _table("Gate decisions", "Model", "Version", "Gate", "Result", "Applied", "Reasons")
        for g in d["gate_decisions"]:
            table.add_row(
                _text(g["model"], "bold"),
                _text(g["version"]),
                _text(g["gate"]),
                _text("passed", "green") if g["passed"] else _text("rejected", "bold red"),
                _text("yes" if g["applied"] else "no"),
                _text("; ".join(str(r) for r in g["reasons"])),
            )
        console.print(table)
    if d["model_versions"]:
        table = _table("Model versions", "Model", "Version", "Task", "Aliases", "URI")
        for m in d["model_versions"]:
            table.add_row(
                _text(m["model"], "bold"),
                _text(m["version"]),
                _text(_task_label(m)),
                _text(", ".join(m["aliases"])),
                _text(m["uri"]),
            )
        console.print(table)


def _schema_line(columns: Sequence[Mapping[str, Any]], limit: int = 60) -> str:
    if not columns:
        return "-"
    parts = ", ".join(f"{c['name']}:{c['type']}" for c in columns)
    line = f"{len(columns)} cols: {parts}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _percent(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.0f}%"


def _gpu_line(gpus: Any) -> str:
    # Per GPU: peak utilisation and peak memory used (see flowrecord.collectors.system).
    if not isinstance(gpus, list) or not gpus:
        return "-"
    parts = []
    for i, gpu in enumerate(gpus):
        if not isinstance(gpu, Mapping):
            continue
        bits = [f"GPU{gpu.get('index', i)}"]
        util = gpu.get("utilization_percent_peak")
        mem = gpu.get("memory_used_bytes_peak")
        if isinstance(util, int | float):
            bits.append(f"{util:.0f}%")
        if isinstance(mem, int | float):
            bits.append(format_bytes(mem))
        parts.append(" ".join(bits))
    return "; ".join(parts) or "-"


# ---------------------------------------------------------------------------
# flowrecord lineage
# ---------------------------------------------------------------------------


def _add_lineage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        metavar="DATASET_OR_FINGERPRINT",
        help="a dataset name or (prefix of a) fingerprint",
    )
    way = parser.add_mutually_exclusive_group()
    way.add_argument(
        "--upstream",
        dest="direction",
        action="store_const",
        const="upstream",
        help="what it was made from (default)",
    )
    way.add_argument(
        "--downstream",
        dest="direction",
        action="store_const",
        const="downstream",
        help="what was made from it",
    )
    parser.set_defaults(direction="upstream")
    parser.add_argument(
        "--depth", type=_non_negative_int, default=None, help="task levels to follow (default: all)"
    )
    _add_json_flag(parser)


def _run_lineage(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.query import lineage

    graph = lineage(ctx.store(), args.dataset, direction=args.direction, depth=args.depth)
    if args.json:
        ctx.print_json(graph)
        return 0
    ctx.console.print(_lineage_tree(graph))
    return 0


def _node_label(node: Mapping[str, Any], prefix: str) -> Text:
    from rich.text import Text

    from flowrecord.query import short_fingerprint

    label = Text()
    if prefix:
        label.append(prefix + " ", style="dim")
    if node["kind"] == "dataset":
        label.append(str(node["name"]), style="bold")
        label.append("  " + (short_fingerprint(node["fingerprint"]) or "(no fingerprint)"))
        if node["row_count"] is not None:
            rows = node["row_count"]
            label.append(f"  {rows:,} row{'' if rows == 1 else 's'}", style="dim")
        others = [n for n in node["names"] if n != node["name"]]
        if others:
            label.append(f"  also named {', '.join(others)}", style="dim")
        return label
    label.append("task ", style="dim")
    label.append(str(node["name"] or "(run)"), style="bold")
    if node["try_number"] and node["try_number"] != 1:
        label.append(f" try {node['try_number']}")
    if node["map_index"] is not None:
        label.append(f" [{node['map_index']}]")
    label.append("  ")
    label.append_text(state_text(node["state"]))
    label.append(
        f"  {node['orchestrator']}/{node['pipeline']} run {node['run_key']} "
        f"({short_id(node['run_id'])})",
        style="dim",
    )
    return label


def _lineage_tree(graph: Mapping[str, Any]) -> Any:
    from rich.tree import Tree

    nodes = {n["id"]: n for n in graph["nodes"]}
    upstream = graph["direction"] == "upstream"
    children: dict[str, list[str]] = {}
    for e in graph["edges"]:
        parent, child = (e["target"], e["source"]) if upstream else (e["source"], e["target"])
        children.setdefault(parent, []).append(child)
    prefixes = (
        {"task": "written by", "dataset": "read"}
        if upstream
        else {"task": "read by", "dataset": "wrote"}
    )
    root = graph["root"]
    tree = Tree(_node_label(nodes[root], ""))
    expanded = {root}

    def grow(branch: Tree, node_id: str) -> None:
        for child in children.get(node_id, []):
            node = nodes[child]
            label = _node_label(node, prefixes[node["kind"]])
            if child in expanded:
                if children.get(child):
                    label.append("  (see above)", style="dim italic")
                branch.add(label)
                continue
            expanded.add(child)
            grow(branch.add(label), child)

    grow(tree, root)
    if not children.get(root):
        none = "no recorded task wrote it" if upstream else "no recorded task read it"
        tree.add(_text(f"({none})", "dim"))
    return tree


# ---------------------------------------------------------------------------
# flowrecord compare
# ---------------------------------------------------------------------------


def _add_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="run id, unique prefix, or run key")
    parser.add_argument("run_b", metavar="RUN_B", help="run id, unique prefix, or run key")
    _add_json_flag(parser)


def _run_compare(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.query import compare_runs, resolve_run

    store = ctx.store()
    result = compare_runs(store, resolve_run(store, args.run_a), resolve_run(store, args.run_b))
    if args.json:
        ctx.print_json(result)
        return 0
    _render_compare(ctx.console, result)
    return 0


def _scope_key(item: Mapping[str, Any]) -> str:
    return f"{item['task']}:{item['key']}" if item.get("task") else str(item["key"])


def _same_note(n: int, noun: str) -> str:
    return f"1 other {noun} is the same." if n == 1 else f"{n} other {noun}s are the same."


def _render_compare(console: Console, c: Mapping[str, Any]) -> None:
    from rich.text import Text

    from flowrecord.query import short_fingerprint

    a, b = c["a"], c["b"]
    head = Text()
    head.append("A ", style="bold")
    head.append(f"{a['run_id']}  {a['orchestrator']}/{a['pipeline']} run {a['run_key']}\n")
    head.append("B ", style="bold")
    head.append(f"{b['run_id']}  {b['orchestrator']}/{b['pipeline']} run {b['run_key']}")
    console.print(head)

    if c["params"]:
        table = _table("Params that differ", "Param", "A", "B")
        for p in c["params"]:
            table.add_row(
                _text(_scope_key(p), "bold"),
                _text(_first_line(p["a"], 60) if p["a"] is not None else "(unset)"),
                _text(_first_line(p["b"], 60) if p["b"] is not None else "(unset)"),
            )
        console.print(table)
        console.print(_text(_same_note(c["params_same"], "param"), "dim"))
    else:
        console.print(_text(f"Params: all {c['params_same']} the same.", "dim"))
    if c["metrics"]:
        table = _table("Metrics (latest)", "Metric", "A", "B", "Delta")
        for m in c["metrics"]:
            delta = m["delta"]
            style = "" if not delta else ("green" if delta > 0 else "red")
            table.add_row(
                _text(_scope_key(m), "bold"),
                _text(format_number(m["a"], m["a_text"])),
                _text(format_number(m["b"], m["b_text"])),
                _text("-" if delta is None else f"{delta:+.6g}", style),
            )
        console.print(table)
    if c["datasets"]:
        table = _table("Datasets that differ", "Task", "Role", "Name", "A", "B")
        for ds in c["datasets"]:
            table.add_row(
                _text(ds["task"] or "(run)"),
                _text(ds["role"]),
                _text(ds["name"], "bold"),
                _text(short_fingerprint(ds["a"]) or "(absent)"),
                _text(short_fingerprint(ds["b"]) or "(absent)"),
            )
        console.print(table)
        console.print(_text(_same_note(c["datasets_same"], "dataset"), "dim"))
    else:
        console.print(_text(f"Datasets: all {c['datasets_same']} the same.", "dim"))
    code = c["code"]
    if code["a"] or code["b"]:
        ca = (code["a"] or {}).get("commit") or "-"
        cb = (code["b"] or {}).get("commit") or "-"
        same = "same commit" if code["same_commit"] else "different commits"
        console.print(_text(f"Code: {same}: A {ca}  B {cb}"))


# ---------------------------------------------------------------------------
# flowrecord sync
# ---------------------------------------------------------------------------


def _add_sync(parser: argparse.ArgumentParser) -> None:
    dead = parser.add_mutually_exclusive_group()
    dead.add_argument(
        "--list-dead",
        action="store_true",
        help="list the events a backend refused for good (dead letters); replay nothing",
    )
    dead.add_argument(
        "--retry-dead",
        action="store_true",
        help="also send the dead letters again (after the backend or the data was fixed)",
    )
    _add_json_flag(parser)


def sync_spool(
    config: Config,
    *,
    plugins: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    retry_dead: bool = False,
) -> dict[str, Any]:
    """Replay every spooled batch of every configured backend (and of *plugins*).

    A backend's spool is its directory under ``<home>/spool`` and the temp-dir
    fallback. Backends with nothing spooled are not even imported. Spool
    directories of backends that are not configured are reported under
    ``skipped`` and left alone. Events a backend refuses for good become dead
    letters (``dead`` counts the new ones, ``dead_letters`` those held now).

    :param plugins: plugin objects by backend name, beside the configured ones
        (those added with :func:`flowrecord.recorder.register_backend`).
    :param progress: called with (files done, files in all) after each file.
    :param retry_dead: send each backend's dead letters again first
        (``dead_retried`` counts those delivered).
    :return: ``{"backends": [...], "files", "events", "failed_files", "left",
        "dead", "dead_retried", "dead_letters", "skipped"}``; each backend's report
        also gives ``dead_error``, the error of its oldest dead letter.
    """
    from flowrecord.dispatcher import (
        list_dead_letters,
        pending_spool_files,
        replay_spool,
        retry_dead_letters,
        spool_dirs,
        subset_callers,
    )
    from flowrecord.plugins import load_backend, make_plugin_manager

    plugins = dict(plugins or {})
    names = list(dict.fromkeys([*config.backends, *plugins]))
    pending = {name: pending_spool_files(spool_dirs(config.home, name)) for name in names}
    dead = {name: list_dead_letters(spool_dirs(config.home, name)) for name in names}
    total = sum(len(files) for files in pending.values())
    done = 0
    if progress is not None:
        progress(0, total)
    reports = []
    for name in names:
        dirs = spool_dirs(config.home, name)
        report: dict[str, Any] = {
            "backend": name,
            "pending": len(pending[name]),
            "files": 0,
            "events": 0,
            "failed_files": 0,
            "left": 0,
            "dead": 0,
            "dead_retried": 0,
            "dead_letters": len(dead[name]),
            "dead_error": dead[name][0]["error"] if dead[name] else None,
            "errors": [],
        }
        reports.append(report)
        if not pending[name] and not (retry_dead and dead[name]):
            continue
        base = done
        pm = None
        try:
            plugin = plugins[name] if name in plugins else load_backend(name)
            pm = make_plugin_manager([(name, plugin)])
            callers = subset_callers(pm, name)
            callers("flowrecord_backend_configure")(config=config.as_mapping())

            def step(i: int, n: int, base: int = base) -> None:
                if progress is not None:
                    progress(base + i, total)

            if retry_dead and dead[name]:
                again = retry_dead_letters(dirs, callers)
                report["dead_retried"] = again.events
                report["errors"].extend(f"dead letters: {e}" for e in again.errors)
            if pending[name]:
                stats = replay_spool(dirs, callers, progress=step)
                report.update(
                    files=stats.files,
                    events=stats.events,
                    failed_files=stats.failed_files,
                    dead=stats.dead,
                )
                report["errors"].extend(stats.errors)
        except Exception as exc:  # the backend cannot be loaded or configured
            report["failed_files"] = len(pending[name])
            report["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            if pm is not None:
                try:
                    pm.hook.flowrecord_backend_close()
                except Exception as exc:
                    report["errors"].append(f"closing: {type(exc).__name__}: {exc}")
        report["left"] = len(pending_spool_files(dirs))
        letters = list_dead_letters(dirs)
        report["dead_letters"] = len(letters)
        report["dead_error"] = letters[0]["error"] if letters else None
        done = base + len(pending[name])
        if progress is not None:
            progress(done, total)

    skipped = []
    roots = [config.home / "spool", spool_dirs(config.home, "_")[1].parent]
    seen: dict[str, int] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            if directory.name in names:
                continue
            n = len(pending_spool_files([directory]))
            if n:
                seen[directory.name] = seen.get(directory.name, 0) + n
    for name, n in seen.items():
        skipped.append({"backend": name, "files": n})
    return {
        "home": str(config.home),
        "backends": reports,
        "files": sum(r["files"] for r in reports),
        "events": sum(r["events"] for r in reports),
        "failed_files": sum(r["failed_files"] for r in reports),
        "left": sum(r["left"] for r in reports),
        "dead": sum(r["dead"] for r in reports),
        "dead_retried": sum(r["dead_retried"] for r in reports),
        "dead_letters": sum(r["dead_letters"] for r in reports),
        "skipped": skipped,
    }


def dead_letters(home: Path) -> list[dict[str, Any]]:
    """Every dead letter under *home*'s spools (configured backends or not), oldest
    first per backend: ``{"backend", "event_id", "kind", "run_id", "task_id",
    "error", "failed_at", "file"}``."""
    from flowrecord.dispatcher import list_dead_letters, spool_dirs

    names: set[str] = set()
    for root in (home / "spool", spool_dirs(home, "_")[1].parent):
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if p.is_dir())
    return [
        {"backend": name, **letter}
        for name in sorted(names)
        for letter in list_dead_letters(spool_dirs(home, name))
    ]


def _registered_plugins() -> dict[str, Any]:
    # Plugins added in this process with flowrecord.recorder.register_backend (tests,
    # embedding code calling main()) have spools too.
    from flowrecord import recorder

    return dict(getattr(recorder, "_extra_plugins", {}))


def _run_sync(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.config
    if args.list_dead:
        return _run_list_dead(ctx, config.home, as_json=args.json)
    progress_bar = None
    task_id = None
    callback = None
    if ctx.err_console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress_bar = Progress(
            TextColumn("spooled files"),
            BarColumn(),
            MofNCompleteColumn(),
            console=ctx.err_console,
            transient=True,
        )
        task_id = progress_bar.add_task("sync", total=None)

        def callback(done: int, total: int) -> None:
            progress_bar.update(task_id, completed=done, total=total)

        progress_bar.start()
    try:
        result = sync_spool(
            config,
            plugins=_registered_plugins(),
            progress=callback,
            retry_dead=args.retry_dead,
        )
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    failed = [r for r in result["backends"] if r["failed_files"] or r["errors"]]
    dead = [r for r in result["backends"] if r["dead_letters"]]
    result["ok"] = not failed and not dead
    if args.json:
        ctx.print_json(result)
    else:
        _render_sync(ctx.console, result)
    for r in failed:
        reason = r["errors"][0] if r["errors"] else "delivery failed"
        ctx.error(
            f"backend {r['backend']!r}: {r['failed_files']} spooled file(s) not delivered "
            f"({r['left']} left for the next sync): {reason}"
        )
    for r in dead:
        ctx.error(
            f"backend {r['backend']!r}: {r['dead_letters']} event(s) refused for good "
            f"({r['dead_error']}), kept as dead letters: see `flowrecord sync --list-dead`; "
            "after a fix, `flowrecord sync --retry-dead`"
        )
    return 0 if result["ok"] else 1


def _run_list_dead(ctx: Context, home: Path, *, as_json: bool) -> int:
    letters = dead_letters(home)
    if as_json:
        ctx.print_json({"home": str(home), "count": len(letters), "dead_letters": letters})
        return 0
    if not letters:
        ctx.console.print(_text(f"No dead letters under {home}."))
        return 0
    table = _table(None, "Backend", "Event", "Kind", "Run", "Failed at", "Error")
    for d in letters:
        table.add_row(
            _text(d["backend"], "bold"),
            # Whole event ids: those of one batch share their first (time) digits.
            _text(d["event_id"]),
            _text(d["kind"] or "(unreadable)"),
            _text(short_id(d["run_id"])),
            _text(format_time(d["failed_at"])),
            _text(d["error"] or "-", "red"),
        )
    ctx.console.print(table)
    files = sorted({d["file"] for d in letters})
    ctx.console.print(
        _text(
            f"{len(letters)} dead letter(s) in {len(files)} file(s). Send them again with "
            "`flowrecord sync --retry-dead` once the backend (or the code that made the "
            "events) is fixed; deleting a file discards its events."
        )
    )
    return 0


def _render_sync(console: Console, result: Mapping[str, Any]) -> None:
    active = [
        r for r in result["backends"] if r["pending"] or r["dead_letters"] or r["dead_retried"]
    ]
    if active:
        table = _table(
            None, "Backend", "Files", "Events delivered", "Failed files", "Left", "Dead letters"
        )
        for r in active:
            table.add_row(
                _text(r["backend"], "bold"),
                _text(r["files"]),
                _text(r["events"] + r["dead_retried"]),
                _text(r["failed_files"], "bold red" if r["failed_files"] else ""),
                _text(r["left"]),
                _text(r["dead_letters"], "bold red" if r["dead_letters"] else ""),
            )
        console.print(table)
        console.print(
            _text(
                f"Delivered {result['events']} events from {result['files']} spooled files"
                + (f"; {result['failed_files']} failed." if result["failed_files"] else ".")
            )
        )
        if result["dead_retried"]:
            console.print(_text(f"Delivered {result['dead_retried']} dead letters."))
        if result["dead"]:
            console.print(
                _text(f"{result['dead']} events were refused for good: now dead letters.", "red")
            )
    else:
        console.print(_text(f"Nothing to sync: no spooled events under {result['home']}."))
    for s in result["skipped"]:
        console.print(
            _text(
                f"{s['files']} spooled file(s) for backend {s['backend']!r}, which is not "
                "configured (FLOWRECORD_BACKENDS), left in place.",
                "yellow",
            )
        )


# ---------------------------------------------------------------------------
# the commands of this module
# ---------------------------------------------------------------------------

COMMANDS: list[Command] = [
    Command("runs", "List recent runs.", _add_runs, _run_runs),
    Command("show", "Show everything recorded about one run.", _add_show, _run_show),
    Command(
        "lineage",
        "Show where a dataset came from (--upstream) or what was made from it (--downstream).",
        _add_lineage,
        _run_lineage,
    ),
    Command(
        "compare", "Compare two runs: params, metrics, datasets, code.", _add_compare, _run_compare
    ),
    Command(
        "sync",
        "Replay events spooled while a backend was unavailable; list or retry dead letters.",
        _add_sync,
        _run_sync,
    ),
]


if __name__ == "__main__":  # python -m flowrecord.cli
    # Run the imported module's main, not this __main__ copy, so that errors raised by
    # commands in other modules are the same CommandError class.
    from flowrecord.cli import main as _main

    sys.exit(_main())
