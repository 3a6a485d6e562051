"""A model's provenance as one static HTML page, lineage graph included.

The page is self-contained — inline CSS and an inline SVG, no script, no network,
no graphviz — so it can be attached to a ticket or archived with the model. The
graph is laid out in layers: each node sits one column right of the furthest of
its predecessors (data flows left to right, ending at the model), and nodes in a
column are ordered by the average row of their predecessors, which keeps most
edges from crossing in the small graphs a pipeline makes.

Every recorded string goes through :func:`html.escape`: a dataset named
``<script>`` is data, not markup.

>>> from flowrecord.lifecycle.report import lineage_svg
>>> svg = lineage_svg({"nodes": [{"id": "a", "kind": "dataset", "name": "x"}], "edges": []})
>>> svg.startswith("<svg")
True
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["lineage_svg", "render_report", "write_report"]

_NODE_W = 210
_NODE_H = 58
_COL_GAP = 90
_ROW_GAP = 26
_PAD = 20

_ORCHESTRATOR_COLOURS = {
    "airflow": "#e0f2fe",
    "dagster": "#ede9fe",
    "metaflow": "#dcfce7",
    "cli": "#f3f4f6",
    "python": "#f3f4f6",
}


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value), quote=True)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_fp(fp: Any) -> str:
    if not fp:
        return "-"
    algo, sep, digest = str(fp).rpartition(":")
    return f"{algo}{sep}{digest[:12]}"


def _layers(
    nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    ids = [n["id"] for n in nodes]
    known = set(ids)
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for e in edges:
        if e["source"] in known and e["target"] in known and e["source"] != e["target"]:
            preds[e["target"]].append(e["source"])
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(node: str) -> int:
        if node in layer:
            return layer[node]
        if node in visiting:  # a cycle (should not happen in lineage): cut it here
            return 0
        visiting.add(node)
        d = 1 + max((depth(p) for p in preds[node]), default=-1)
        visiting.discard(node)
        layer[node] = d
        return d

    for i in ids:
        depth(i)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for i in ids:
        columns[layer[i]].append(i)
    # order each column by where its predecessors sit: fewer crossings
    row: dict[str, float] = {}
    for col in columns:

        def key(node: str) -> tuple[float, str]:
            ps = [row[p] for p in preds[node] if p in row]
            return (sum(ps) / len(ps) if ps else math.inf, node)

        col.sort(key=key)
        for r, node in enumerate(col):
            row[node] = r
    return columns


def _label(node: Mapping[str, Any]) -> tuple[str, str, str]:
    """(title, subtitle, tooltip) of a node."""
    kind = node.get("kind")
    if kind == "model":
        aliases = ", ".join(node.get("aliases") or []) or "no alias"
        return (str(node.get("name")), aliases, f"model {node.get('name')} ({aliases})")
    if kind == "dataset":
        fp = _short_fp(node.get("fingerprint"))
        rows = node.get("row_count")
        sub = fp + (f" · {rows} rows" if rows is not None else "")
        return (str(node.get("name")), sub, f"dataset {node.get('name')} {node.get('fingerprint')}")
    name = node.get("name") or node.get("pipeline") or node.get("run_id")
    sub = f"{node.get('orchestrator') or '?'} · {node.get('pipeline') or '?'}"
    state = node.get("state")
    tip = f"task {name} of {sub}" + (f" ({state})" if state else "")
    return (str(name), sub, tip)


def lineage_svg(graph: Mapping[str, Any]) -> str:
    """An SVG picture of a lineage graph (``{"nodes", "edges"}`` as :func:`explain` makes)."""
    nodes = list(graph.get("nodes") or [])
    edges = list(graph.get("edges") or [])
    by_id = {n["id"]: n for n in nodes}
    columns = _layers(nodes, edges)
    tallest = max((len(c) for c in columns), default=1)
    width = _PAD * 2 + len(columns) * _NODE_W + max(0, len(columns) - 1) * _COL_GAP
    height = _PAD * 2 + tallest * _NODE_H + max(0, tallest - 1) * _ROW_GAP
    pos: dict[str, tuple[float, float]] = {}
    for c, col in enumerate(columns):
        offset = (tallest - len(col)) * (_NODE_H + _ROW_GAP) / 2
        for r, node_id in enumerate(col):
            pos[node_id] = (
                _PAD + c * (_NODE_W + _COL_GAP),
                _PAD + offset + r * (_NODE_H + _ROW_GAP),
            )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph" '
        'font-family="system-ui, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#64748b"/></marker></defs>',
    ]
    for e in edges:
        if e["source"] not in pos or e["target"] not in pos:
            continue
        x1, y1 = pos[e["source"]]
        x2, y2 = pos[e["target"]]
        x1, y1 = x1 + _NODE_W, y1 + _NODE_H / 2
        y2 = y2 + _NODE_H / 2
        bend = max(30.0, (x2 - x1) / 2)
        parts.append(
            f'<path class="edge" d="M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, '
            f'{x2 - bend:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}" fill="none" stroke="#94a3b8" '
            f'stroke-width="1.5" marker-end="url(#arrow)"><title>{_e(e.get("role"))}</title>'
            "</path>"
        )
    for node_id, (x, y) in pos.items():
        node = by_id[node_id]
        kind = node.get("kind")
        title, sub, tip = _label(node)
        if kind == "model":
            fill, stroke, rx = "#fef3c7", "#d97706", 14
        elif kind == "dataset":
            fill, stroke, rx = "#ffffff", "#2563eb", 4
        else:
            fill = _ORCHESTRATOR_COLOURS.get(str(node.get("orchestrator")), "#f8fafc")
            stroke, rx = "#475569", 8
        dash = ' stroke-dasharray="5 3"' if node.get("recorded") is False else ""
        parts.append(
            f'<g class="node {_e(kind)}"><title>{_e(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="{rx}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>'
            f'<text x="{x + 10:.1f}" y="{y + 23:.1f}" font-size="13" font-weight="600" '
            f'fill="#0f172a">{_e(_cut(title, 28))}</text>'
            f'<text x="{x + 10:.1f}" y="{y + 42:.1f}" font-size="11" fill="#475569">'
            f"{_e(_cut(sub, 34))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _time(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    return _e(f"{value:.6g}")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return '<p class="none">none recorded</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ok(passed: Any) -> str:
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#0f172a;max-width:1200px}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #e2e8f0}
.sub{color:#475569}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #e2e8f0;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f8fafc}.pass{color:#15803d;font-weight:600}.fail{color:#b91c1c;font-weight:600}
code{font-size:.9em}.none{color:#64748b}.graph{overflow-x:auto;border:1px solid #e2e8f0;padding:.5rem}
"""


def render_report(explanation: Mapping[str, Any]) -> str:
    """The HTML page of an :func:`~flowrecord.lifecycle.explain.explain` document."""
    x = explanation
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(x['model'])} v{_e(x['version'])} — flowrecord</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(x['model'])} <small>version {_e(x['version'])}</small></h1>",
        f'<p class="sub">aliases: {_e(", ".join(x.get("aliases") or []) or "none")} · '
        f"registered {_e(_time(x.get('created_at')))} · uri <code>{_e(x.get('uri'))}</code> · "
        f"orchestrators: {_e(', '.join(x.get('orchestrators') or []) or '-')}</p>",
    ]
    promo = x.get("promotion")
    out.append("<h2>Why it is here</h2>")
    if promo:
        out.append(
            f"<p>Gate <b>{_e(promo['gate'])}</b> decided {_ok(promo['passed'])} and applied it "
            f"on {_e(_time(promo.get('decided_at')))} (decision <code>{_e(promo['decision_id'])}"
            "</code>).</p>"
        )
        out.append(_table(["reason"], [[_e(r)] for r in promo.get("reasons") or []]))
        intervals = (promo.get("evidence") or {}).get("intervals") or {}
        if intervals:
            out.append(
                _table(
                    ["metric", "candidate", "champion", "improvement", "interval", "passed"],
                    [
                        [
                            _e(k),
                            _num(v.get("candidate")),
                            _num(v.get("champion")),
                            _num(v.get("difference")),
                            f"[{_num(v.get('ci_low'))}, {_num(v.get('ci_high'))}] "
                            f"at {_num(v.get('confidence'))}",
                            _ok(v.get("passed")),
                        ]
                        for k, v in intervals.items()
                    ],
                )
            )
    else:
        out.append('<p class="none">No gate decision promoted this version.</p>')
    decisions = x.get("decisions") or []
    if decisions:
        out.append("<h3>All decisions</h3>")
        out.append(
            _table(
                ["when", "gate", "passed", "applied", "failures"],
                [
                    [
                        _e(_time(d.get("decided_at"))),
                        _e(d.get("gate")),
                        _ok(d.get("passed")),
                        _e("yes" if d.get("applied") else "no"),
                        _e("; ".join(r for r in d.get("reasons") or [] if r.startswith("FAIL"))),
                    ]
                    for d in decisions
                ],
            )
        )
    moves = x.get("alias_history") or []
    if moves:
        out.append("<h3>Alias moves</h3>")
        out.append(
            _table(
                ["when", "alias", "to", "from", "reason"],
                [
                    [
                        _e(_time(m.get("moved_at"))),
                        _e(m.get("alias")),
                        _e(m.get("version")),
                        _e(m.get("previous_version")),
                        _e(m.get("reason")),
                    ]
                    for m in moves
                ],
            )
        )
    out.append("<h2>Evaluation metrics</h2>")
    out.append(
        _table(["metric", "value"], [[_e(k), _num(v)] for k, v in (x.get("metrics") or {}).items()])
    )
    out.append("<h2>Lineage</h2>")
    out.append(f'<div class="graph">{lineage_svg(x.get("lineage") or {})}</div>')
    out.append(_training_html(x.get("training") or {}))
    out.append("<h2>Datasets</h2>")
    for d in x.get("datasets") or []:
        out.append(
            f"<h3>{_e(d.get('name'))} <small>({_e(d.get('role'))})</small></h3>"
            f"<p>fingerprint <code>{_e(d.get('fingerprint'))}</code> · {_e(d.get('data_type'))}"
            f" · {_e(d.get('row_count'))} rows</p>"
        )
        out.append(
            _table(
                ["column", "type", "nullable"],
                [
                    [_e(c.get("name")), _e(c.get("type")), _e(c.get("nullable"))]
                    for c in d.get("schema") or []
                ],
            )
        )
        out.append(
            _table(
                ["validation", "validator", "passed", "failures"],
                [
                    [
                        f"<code>{_e(v.get('validation_id'))}</code>",
                        _e(v.get("validator")),
                        _ok(v.get("passed")),
                        _e(v.get("failure_count")),
                    ]
                    for v in d.get("validations") or []
                ],
            )
        )
    upstream = x.get("upstream_tasks") or []
    out.append("<h2>Upstream tasks</h2>")
    out.append(
        _table(
            ["task", "orchestrator", "pipeline", "state", "started"],
            [
                [
                    _e(t.get("name")),
                    _e(t.get("orchestrator")),
                    _e(t.get("pipeline")),
                    _e(t.get("state")),
                    _e(_time(t.get("started_at"))),
                ]
                for t in upstream
            ],
        )
    )
    out.append(f'<p class="sub">Generated by flowrecord on {_e(_time(_now()))}.</p></body></html>')
    return "\n".join(out)


def _training_html(t: Mapping[str, Any]) -> str:
    out = ["<h2>Training</h2>"]
    if not t.get("recorded"):
        out.append(f'<p class="none">Training run {_e(t.get("run_id"))} is not in the record.</p>')
        return "\n".join(out)
    run = t.get("run") or {}
    task = t.get("task") or {}
    out.append(
        f"<p>Task <b>{_e(task.get('name'))}</b> of run <code>{_e(run.get('run_id'))}</code> "
        f"({_e(run.get('orchestrator'))} · {_e(run.get('pipeline'))} · {_e(run.get('run_key'))})"
        f", {_e(task.get('state') or run.get('state'))}.</p>"
    )
    code = t.get("code")
    if code:
        summary = code.get("diff_summary") or {}
        out.append(
            f"<p>Code: commit <code>{_e(code.get('commit'))}</code> on {_e(code.get('branch'))}"
            f"{', uncommitted changes' if code.get('dirty') else ''}: "
            f"{_e(summary.get('files_changed', 0))} files, +{_e(summary.get('insertions', 0))} "
            f"-{_e(summary.get('deletions', 0))}</p>"
        )
    out.append("<h3>Parameters</h3>")
    out.append(
        _table(["key", "value"], [[_e(p["key"]), _e(p["value"])] for p in t.get("params") or []])
    )
    return "\n".join(out)


def _now() -> float:
    import time

    return time.time()


def write_report(explanation: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report of *explanation* to *path* (parent folders are created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(explanation), encoding="utf-8")
    return target
