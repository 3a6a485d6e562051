"""The lifecycle commands of ``flowrecord``: models, explain, report, promote, rollback, retrain.

They plug into :mod:`flowrecord.cli` the way every command does: this module's
:data:`COMMANDS` list, named in ``flowrecord.cli.COMMAND_MODULES``.

Reading commands (``models``, ``explain``, ``report``) open the store read-only;
the registry answers from it, or, when another registry backend is configured
(``FLOWRECORD_BACKENDS=local,mlflow``), through that backend. Commands that
decide (``promote``, ``rollback``, ``retrain check``) record what they did as a
task of a run of pipeline ``flowrecord`` (orchestrator ``cli``), so the decision
has a place in the record like any other.

Exit status:

====================  ===================================================
``promote``           0 promoted; 2 refused (reasons printed); 1 error
``rollback``          0 rolled back; 2 refused (no previous champion); 1 error
``retrain check``     0 in either case, the first line says ``retrain`` or
                      ``no retrain``; with ``--exit-code``: 0 retrain,
                      3 no retrain, 1 when a trigger could not be evaluated
                      and none fired
other                 0 done; 1 error (unknown model, no store...)
====================  ===================================================
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowrecord.cli import Command, CommandError, Context, format_time

if TYPE_CHECKING:
    from rich.console import Console

    from flowrecord.lifecycle.registry import ModelRegistry

__all__ = [
    "COMMANDS",
    "EXIT_NO_RETRAIN",
    "EXIT_REFUSED",
    "load_declared",
    "register",
]

#: ``promote`` / ``rollback`` refused.
EXIT_REFUSED = 2
#: ``retrain check --exit-code``: no trigger fired.
EXIT_NO_RETRAIN = 3


# ---------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------


def load_declared(spec: str, expected: type) -> Any:
    """The object *spec* names: ``path/to/file.py:NAME`` or ``package.module:NAME``.

    :raises CommandError: no such file, module or name, the file fails to run, or
        the object is not an *expected*.
    """
    source, sep, attr = spec.rpartition(":")
    if not sep or not source or not attr.isidentifier():
        raise CommandError(f"{spec!r}: expected FILE.py:NAME or module:NAME")
    path = Path(source).expanduser()
    if source.endswith(".py") or os.sep in source or path.exists():
        if not path.is_file():
            raise CommandError(f"no such file: {source}")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module_name = f"_flowrecord_declared_{digest}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise CommandError(f"cannot load {source} as Python")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses look their module up while defining
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)  # the file may import its neighbours
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise CommandError(f"loading {source} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
    else:
        try:
            module = importlib.import_module(source)
        except Exception as exc:
            raise CommandError(f"importing {source} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise CommandError(f"{source} defines no {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, expected):
        raise CommandError(f"{spec} is a {type(obj).__name__}, not a {expected.__name__}")
    return obj


def _home_dir(home: Path) -> Path:
    return home.parent if home.suffix == ".db" or home.is_file() else home


def _other_registry(ctx: Context) -> bool:
    return any(b != "local" for b in ctx.config.backends)


@contextlib.contextmanager
def _recording_home(ctx: Context) -> Iterator[None]:
    """Record into ``ctx.home`` for the time of the command, then restore."""
    from flowrecord import recorder
    from flowrecord.config import load_config, reset_config

    home = _home_dir(ctx.home).absolute()
    switched = load_config().home.absolute() != home
    saved = os.environ.get("FLOWRECORD_HOME")
    if switched:
        recorder.shutdown()
        os.environ["FLOWRECORD_HOME"] = str(home)
        reset_config()
    try:
        if recorder.get_runtime() is None:
            raise CommandError(
                "recording is disabled in this process (FLOWRECORD_DISABLED is set, or the "
                "recorder failed to start): nothing can be promoted or recorded"
            )
        yield
    finally:
        recorder.flush()
        if switched:
            recorder.shutdown()
            if saved is None:
                os.environ.pop("FLOWRECORD_HOME", None)
            else:
                os.environ["FLOWRECORD_HOME"] = saved
            reset_config()


@contextlib.contextmanager
def _as_task(ctx: Context, name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """Open the store (it must exist), record into it, inside a ``cli`` task."""
    ctx.store()  # a mistyped --home must fail, not create an empty store
    from flowrecord import recorder

    with (
        _recording_home(ctx),
        recorder.run("flowrecord", orchestrator="cli"),
        recorder.task(name, attributes=dict(attributes)),
    ):
        yield


@contextlib.contextmanager
def _reading_registry(ctx: Context) -> Iterator[ModelRegistry]:
    from flowrecord.lifecycle.registry import ModelRegistry

    store = ctx.store()
    if not _other_registry(ctx):
        yield ModelRegistry(store)
        return
    with _recording_home(ctx):
        yield ModelRegistry()


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    from flowrecord.lifecycle.gate import NothingToRollBack
    from flowrecord.lifecycle.registry import ModelNotFound, RegistryUnavailable

    try:
        yield
    except (ModelNotFound, RegistryUnavailable) as exc:
        raise CommandError(str(exc)) from exc
    except NothingToRollBack as exc:  # pragma: no cover - handled by rollback itself
        raise CommandError(str(exc)) from exc


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of text"
    )


def _text(value: Any, style: str = "") -> Any:
    from rich.text import Text

    return Text("-" if value is None else str(value), style=style)


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:.6g}"


def _short(fp: Any, n: int = 12) -> str:
    if not fp:
        return "-"
    algo, sep, digest = str(fp).rpartition(":")
    return f"{algo}{sep}{digest[:n]}"


# ---------------------------------------------------------------------------
# flowrecord models
# ---------------------------------------------------------------------------


def _add_models(parser: argparse.ArgumentParser) -> None:
    _add_json(parser)


def _run_models(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.lifecycle.explain import models_overview

    with _user_errors(), _reading_registry(ctx) as registry:
        models = models_overview(registry)
    if args.json:
        ctx.print_json({"models": models})
        return 0
    if not models:
        ctx.console.print("No registered models.")
        return 0
    from rich.table import Table

    table = Table(title="Registered models", title_justify="left", title_style="bold")
    for column in ("model", "versions", "latest", "aliases", "created"):
        table.add_column(column, overflow="fold")
    for m in models:
        versions = m["versions"]
        shown = ", ".join(versions[-8:]) + (" …" if len(versions) > 8 else "")
        aliases = ", ".join(f"{a} → {v}" for a, v in sorted(m["aliases"].items()))
        table.add_row(
            _text(m["name"], "bold"),
            _text(f"{len(versions)}: {shown}" if versions else "0"),
            _text(m["latest"]),
            _text(aliases or "-"),
            _text(format_time(m["created_at"])),
        )
    ctx.console.print(table)
    return 0


# ---------------------------------------------------------------------------
# flowrecord explain / report
# ---------------------------------------------------------------------------


def _add_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="MODEL[@ALIAS|:VERSION]", help="the model version")
    _add_json(parser)


def _explanation(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    from flowrecord.lifecycle.explain import explain

    with _user_errors(), _reading_registry(ctx) as registry:
        try:
            return explain(args.ref, store=ctx.store(), registry=registry)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc


def _run_explain(args: argparse.Namespace, ctx: Context) -> int:
    x = _explanation(args, ctx)
    if args.json:
        ctx.print_json(x)
        return 0
    _render_explain(ctx.console, x)
    return 0


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="MODEL[@ALIAS|:VERSION]", help="the model version")
    parser.add_argument("-o", "--output", metavar="PATH", required=True, help="HTML file to write")


def _run_report(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.lifecycle.report import write_report

    x = _explanation(args, ctx)
    try:
        path = write_report(x, args.output)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc}") from exc
    ctx.err_console.print(f"wrote {path}")
    return 0


def _render_explain(console: Console, x: Mapping[str, Any]) -> None:
    from rich.text import Text

    def heading(title: str) -> None:
        console.print()
        console.print(Text(title, style="bold underline"))

    aliases = ", ".join(x["aliases"]) or "no alias"
    title = Text.assemble(
        (f"{x['model']}", "bold"), f" version {x['version']} ", (f"({aliases})", "cyan")
    )
    console.print(title)
    console.print(
        Text(f"registered {format_time(x['created_at'])}, uri {x['uri'] or '-'}", style="dim")
    )

    heading("Why it is in production")
    promo = x.get("promotion")
    if promo is None:
        console.print(Text("no gate decision promoted this version", style="yellow"))
    else:
        console.print(
            Text(
                f"gate {promo['gate']!r} passed and applied on {format_time(promo['decided_at'])} "
                f"(decision {promo['decision_id']})"
            )
        )
        for reason in promo.get("reasons") or []:
            console.print(Text(f"  {reason}", style="red" if reason.startswith("FAIL") else ""))
        for name, iv in ((promo.get("evidence") or {}).get("intervals") or {}).items():
            console.print(
                Text(
                    f"  bootstrap {name}: improvement {_num(iv.get('difference'))}, "
                    f"{_num(iv.get('confidence'))} interval [{_num(iv.get('ci_low'))}, "
                    f"{_num(iv.get('ci_high'))}] over {iv.get('n_examples')} examples"
                )
            )
    refused = [d for d in x.get("decisions") or [] if not d["passed"]]
    if refused:
        console.print(Text(f"  ({len(refused)} refused decision(s) for this version)", style="dim"))
    for move in x.get("alias_history") or []:
        console.print(
            Text(
                f"  {format_time(move['moved_at'])} {move['alias']}: "
                f"{move['previous_version'] or '-'} → {move['version']}  {move['reason'] or ''}",
                style="dim",
            )
        )

    heading("Evaluation metrics")
    for key, value in (x.get("metrics") or {}).items():
        console.print(Text(f"  {key} = {_num(value)}"))
    if not x.get("metrics"):
        console.print(Text("  none registered", style="yellow"))

    heading("Training")
    t = x.get("training") or {}
    if not t.get("recorded"):
        console.print(Text(f"  run {t.get('run_id') or '-'} is not in the record", style="yellow"))
    else:
        run, task = t.get("run") or {}, t.get("task") or {}
        console.print(
            Text(
                f"  task {task.get('name') or '-'} of {run.get('orchestrator')} pipeline "
                f"{run.get('pipeline')} run {run.get('run_key')} ({run.get('run_id')}), "
                f"{task.get('state') or run.get('state')}"
            )
        )
        code = t.get("code")
        if code:
            s = code.get("diff_summary") or {}
            dirty = (
                f", uncommitted: {s.get('files_changed', 0)} files "
                f"+{s.get('insertions', 0)} -{s.get('deletions', 0)}"
                if code.get("dirty")
                else ""
            )
            console.print(
                Text(f"  code {code.get('commit') or '-'} on {code.get('branch')}{dirty}")
            )
        for p in t.get("params") or []:
            console.print(Text(f"  param {p['key']} = {p['value']}"))

    heading("Datasets")
    for d in x.get("datasets") or []:
        console.print(
            Text.assemble(
                (f"  {d['name']}", "bold"),
                f" ({d['role']}) {d['fingerprint'] or 'no fingerprint'}",
                ("" if d["recorded"] else "  not in the record", "yellow"),
            )
        )
        if d["schema"]:
            cols = ", ".join(f"{c['name']}: {c['type']}" for c in d["schema"][:12])
            more = f" … (+{len(d['schema']) - 12})" if len(d["schema"]) > 12 else ""
            console.print(Text(f"    {d['row_count']} rows; {cols}{more}"))
        for v in d["validations"]:
            console.print(
                Text(
                    f"    validation {v['validator']} {'passed' if v['passed'] else 'FAILED'} "
                    f"({v['validation_id']})",
                    style="" if v["passed"] else "red",
                )
            )
        for w in d["written_by"]:
            console.print(
                Text(f"    written by {w['orchestrator']} {w['pipeline']} / {w['task'] or '-'}")
            )

    heading("Lineage")
    console.print(_lineage_tree(x.get("lineage") or {}))


def _lineage_tree(graph: Mapping[str, Any]) -> Any:
    from rich.tree import Tree

    nodes = {n["id"]: n for n in graph.get("nodes") or []}
    preds: dict[str, list[tuple[str, str]]] = {}
    for e in graph.get("edges") or []:
        preds.setdefault(e["target"], []).append((e["source"], e["role"]))

    def label(node_id: str, role: str | None) -> Any:
        n = nodes.get(node_id, {"kind": "?", "name": node_id})
        via = f"[{role}] " if role else ""
        if n["kind"] == "model":
            return _text(f"model {n['name']}", "bold")
        if n["kind"] == "dataset":
            return _text(f"{via}dataset {n.get('name')} {_short(n.get('fingerprint'))}", "blue")
        return _text(
            f"{via}task {n.get('name') or '-'} ({n.get('orchestrator') or '?'} · "
            f"{n.get('pipeline') or '?'}, {n.get('state') or '?'})"
        )

    root = graph.get("root")
    tree = Tree(label(root, None) if root else _text("(empty)"))
    seen: set[str] = set()

    def grow(branch: Any, node_id: str) -> None:
        for source, role in preds.get(node_id, []):
            child = branch.add(label(source, role))
            if source in seen:
                child.add(_text("(shown above)", "dim"))
                continue
            seen.add(source)
            grow(child, source)

    if root:
        grow(tree, root)
    return tree


# ---------------------------------------------------------------------------
# flowrecord promote / rollback
# ---------------------------------------------------------------------------


def _add_promote(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name")
    parser.add_argument(
        "version", help="candidate version: a number, 'latest' or @ALIAS (e.g. @challenger)"
    )
    parser.add_argument(
        "--gate",
        metavar="FILE.py:NAME",
        required=True,
        help="the PromotionGate to apply, as FILE.py:NAME or module:NAME",
    )
    _add_json(parser)


def _run_promote(args: argparse.Namespace, ctx: Context) -> int:
    from flowrecord.lifecycle.gate import PromotionGate

    gate = load_declared(args.gate, PromotionGate)
    if gate.model != args.model:
        raise CommandError(
            f"gate {args.gate} is declared for model {gate.model!r}, not {args.model!r}"
        )
    with _as_task(
        ctx, "promote", {"model": args.model, "version": args.version, "gate": gate.name}
    ):
        decision = gate.apply(args.version)
    if args.json:
        ctx.print_json(decision.as_dict())
    else:
        _render_decision(ctx.console, decision)
    return 0 if decision.applied else EXIT_REFUSED


def _render_decision(console: Console, decision: Any) -> None:
    from rich.text import Text

    word = ("PROMOTED", "bold green") if decision.applied else ("REFUSED", "bold red")
    against = (
        f"champion {decision.champion_version}" if decision.champion_version else "no champion"
    )
    console.print(
        Text.assemble(
            word,
            f"  {decision.model} version {decision.version} by gate {decision.gate!r} ({against})",
        )
    )
    for check in decision.checks:
        mark, style = ("✓", "green") if check.passed else ("✗", "red")
        console.print(Text.assemble(f"  {mark} ", (check.reason, "" if check.passed else style)))
    console.print(Text(f"decision {decision.decision_id}", style="dim"))


def _add_rollback(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name")
    parser.add_argument("--reason", help="why (kept in the alias history)")
    _add_json(parser)


def _run_rollback(args: argparse.Namespace, ctx: Context) -> int:
    from rich.text import Text

    from flowrecord.lifecycle.gate import NothingToRollBack, rollback

    with _user_errors(), _as_task(ctx, "rollback", {"model": args.model}):
        try:
            decision = rollback(args.model, reason=args.reason)
        except NothingToRollBack as exc:
            if args.json:
                ctx.print_json({"model": args.model, "rolled_back": False, "reason": str(exc)})
            else:
                ctx.console.print(Text.assemble(("REFUSED", "bold red"), f"  {exc}"))
            return EXIT_REFUSED
    if args.json:
        ctx.print_json({"rolled_back": True, **decision.as_dict()})
    else:
        ctx.console.print(
            Text.assemble(
                ("ROLLED BACK", "bold green"),
                f"  {args.model}: champion is version {decision.version} again "
                f"(was {decision.champion_version}); decision {decision.decision_id}",
            )
        )
    return 0


# ---------------------------------------------------------------------------
# flowrecord retrain check
# ---------------------------------------------------------------------------


def _add_retrain(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="retrain_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="Evaluate a RetrainPolicy now and say whether to retrain.",
        description="Evaluate a RetrainPolicy now and say whether to retrain.",
    )
    check.add_argument("policy", metavar="FILE.py:NAME", help="the RetrainPolicy to evaluate")
    check.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit 0 when a retrain is due, {EXIT_NO_RETRAIN} when not",
    )
    # the common options, so they may follow the action too; main() reads them from the
    # one namespace all levels share (SUPPRESS: an absent option keeps an earlier value)
    check.add_argument("--home", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    check.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    _add_json(check)


def _run_retrain(args: argparse.Namespace, ctx: Context) -> int:
    from rich.text import Text

    from flowrecord.lifecycle.policy import RetrainPolicy

    policy = load_declared(args.policy, RetrainPolicy)
    with _as_task(ctx, "retrain-check", {"model": policy.model, "policy": policy.name}):
        decision = policy.check()
    if args.json:
        ctx.print_json(decision.as_dict())
    else:
        fired = [t for t in decision.triggers if t.fired]
        word = ("retrain", "bold yellow") if decision.should_retrain else ("no retrain", "bold")
        ctx.console.print(
            Text.assemble(
                word,
                f"  {policy.model} (policy {policy.name!r}): {len(fired)} of "
                f"{len(decision.triggers)} triggers fired",
            )
        )
        for t in decision.triggers:
            mark = "!" if t.fired else ("?" if t.error else "·")
            style = "yellow" if t.fired else ("red" if t.error else "")
            ctx.console.print(Text(f"  {mark} {t.reason}", style=style))
    if not args.exit_code:
        return 0
    if decision.should_retrain:
        return 0
    return 1 if decision.errors else EXIT_NO_RETRAIN


# ---------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------

COMMANDS: list[Command] = [
    Command(
        "models", "List registered models, their versions and aliases.", _add_models, _run_models
    ),
    Command(
        "explain",
        "Explain a model version: gate decision, metrics, training run, code, data and lineage.",
        _add_explain,
        _run_explain,
    ),
    Command(
        "report",
        "Write a model version's provenance as a static HTML page with its lineage graph.",
        _add_report,
        _run_report,
    ),
    Command(
        "promote",
        "Judge a candidate version with a promotion gate and promote it if it passes.",
        _add_promote,
        _run_promote,
    ),
    Command(
        "rollback",
        "Make the previous champion of a model champion again.",
        _add_rollback,
        _run_rollback,
    ),
    Command(
        "retrain", "Retraining policies: 'retrain check FILE.py:NAME'.", _add_retrain, _run_retrain
    ),
]


def register(subparsers: Any) -> None:
    """Add the lifecycle commands to an ``argparse`` subparsers object.

    For a command line other than :func:`flowrecord.cli.main`; the commands then
    run with ``args._run(args, Context(...))``.
    """
    for command in COMMANDS:
        parser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(parser)
        parser.set_defaults(_run=command.run)
