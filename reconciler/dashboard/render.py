"""The dashboard's HTML: the workflow list, one workflow's page with its DAG as SVG, and the
pages that say what went wrong.

Pure: page models (:mod:`reconciler.dashboard.model`) in, text out. Every value from the store is
escaped. The pages need no script to be read; ``/static/dashboard.js`` only refreshes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

from .layout import Layout, layout
from .model import ApprovalRequest, GraphNode, Progress, Tail, WorkflowPage, WorkflowSummary

_MARK = '<span class="mark" title="waiting for a person">!</span>'


def workflow_path(namespace: str, name: str) -> str:
    return f"/workflows/{quote(namespace, safe='')}/{quote(name, safe='')}"


def _page(title: str, body: str, *, refresh: bool = True) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · slurm-reconciler</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head>
<body data-refresh="{'on' if refresh else 'off'}">
<header><a class="home" href="/">slurm-reconciler</a> <span class="title">{escape(title)}</span></header>
<main id="content">
{body}
</main>
</body>
</html>
"""


def _phase(phase: str) -> str:
    return f'<span class="phase phase-{escape(phase)}">{escape(phase)}</span>'


def _progress(progress: Progress) -> str:
    return (f'<span class="progress" title="{progress.text} steps (array elements counted)">'
            f'<span class="bar"><span style="width:{progress.percent}%"></span></span> {progress.text}</span>')


def _labels(labels: dict[str, str], *, selector_link: bool = True) -> str:
    chips = []
    for key, value in sorted(labels.items()):
        text = escape(f"{key}={value}")
        if selector_link:
            chips.append(f'<a class="label" href="/?{urlencode({"selector": f"{key}={value}"})}">{text}</a>')
        else:
            chips.append(f'<span class="label">{text}</span>')
    return " ".join(chips)


def _waiting(item: WorkflowSummary) -> str:
    reasons = [f"approve {escape(task)}" for task in item.awaiting_approval]
    reasons += [escape(reason) for reason in item.attention]
    return "<br>".join(reasons)


# -- the list ------------------------------------------------------------------------------------

def list_page(items: Sequence[WorkflowSummary], *, selector: str, error: str | None = None) -> str:
    waiting = sum(item.needs_person for item in items)
    form = (f'<form class="filter" method="get" action="/"><label>Labels <input name="selector" '
            f'value="{escape(selector)}" placeholder="team=imaging,stage in (fit,render)" size="40"></label> '
            f'<button type="submit">Filter</button> <a href="/">all</a></form>')
    notice = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    summary = (f'<p class="summary"><strong>{waiting}</strong> waiting for a person, '
               f'{len(items)} workflow{"s" if len(items) != 1 else ""} shown</p>')
    if not items:
        return _page("Workflows", form + notice + summary + '<p class="empty">No workflows found.</p>')
    rows = []
    for item in items:
        href = workflow_path(item.namespace, item.name)
        rows.append(
            f'<tr class="workflow{" attention" if item.needs_person else ""}" '
            f'data-workflow="{escape(item.namespace)}/{escape(item.name)}">'
            f"<td>{_MARK if item.needs_person else ''}</td>"
            f"<td>{escape(item.namespace)}</td><td><a href=\"{href}\">{escape(item.name)}</a></td>"
            f"<td>{_phase(item.phase)}</td><td>{_progress(item.progress)}</td>"
            f'<td class="number">{item.core_hours:.2f}</td><td>{_labels(item.labels)}</td>'
            f"<td>{_waiting(item)}</td></tr>")
    table = ('<table class="workflows"><thead><tr><th></th><th>Namespace</th><th>Name</th><th>Phase</th>'
             '<th>Progress</th><th>Core-hours</th><th>Labels</th><th>Waiting for</th></tr></thead><tbody>'
             + "".join(rows) + "</tbody></table>")
    return _page("Workflows", form + notice + summary + table)


# -- the DAG -------------------------------------------------------------------------------------

def _node_svg(node: GraphNode, places: Layout) -> str:
    box = places.boxes[node.name]
    shape = 'rx="18"' if node.kind == "approval" else 'rx="4"'
    return (f'<g class="node phase-{escape(node.phase)} kind-{escape(node.kind)}" data-task="{escape(node.name)}" '
            f'data-phase="{escape(node.phase)}"><title>{escape(node.name)}: {escape(node.phase)}</title>'
            f'<rect x="{box.x}" y="{box.y}" width="{box.width}" height="{box.height}" {shape}/>'
            f'<text x="{box.x + 10}" y="{box.y + 18}" class="name">{escape(node.name)}</text>'
            f'<text x="{box.x + 10}" y="{box.y + 35}" class="detail">{escape(node.detail)}</text></g>')


def _edge_svg(before: str, after: str, places: Layout) -> str:
    (x1, y1), (x2, y2) = places.boxes[before].right_middle, places.boxes[after].left_middle
    bend = (x2 - x1) // 2
    return (f'<path class="edge" d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2 - 6},{y2}" '
            f'marker-end="url(#arrow)"/>')


def dag_svg(nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str]]) -> str:
    """The DAG as an SVG drawing: a ``g.node`` per task, coloured by its phase, a path per edge."""
    places = layout([n.name for n in nodes], edges)
    marker = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="4" refY="5" markerWidth="6" markerHeight="6" '
              'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>')
    return (f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{places.width}" height="{places.height}" '
            f'viewBox="0 0 {places.width} {places.height}" role="img" aria-label="the workflow\'s tasks">{marker}'
            + "".join(_edge_svg(a, b, places) for a, b in edges)
            + "".join(_node_svg(node, places) for node in nodes) + "</svg>")


# -- one workflow --------------------------------------------------------------------------------

def _approval_form(page: WorkflowPage, request: ApprovalRequest, *, approving: bool) -> str:
    item = page.summary
    command = f"reconciler approve {item.name if item.namespace == 'default' else f'{item.namespace}/{item.name}'}"
    if request.again:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(request.values.items())) or "the defaults"
        message = (f'<p class="message">approved with {escape(shown)}; approving with other values runs the '
                   "tasks after it again</p>")
    else:
        message = f'<p class="message">{escape(request.message)}</p>' if request.message else ""
    heading = f'<h3>Approve <code>{escape(request.task)}</code>{" again" if request.again else ""}</h3>{message}'
    sets = "".join(f" --set {f.name}=VALUE" for f in request.fields) if request.again else ""
    if not approving:
        return (f'<div class="approval" data-task="{escape(request.task)}">{heading}<p>Approving from the dashboard '
                f'is off (start it with <code>--allow-approve --token-file FILE</code>); from a shell: '
                f'<code>{escape(command)} {escape(request.task)}{sets}</code></p></div>')
    fields = []
    for field in request.fields:
        help_text = f' <span class="help">{escape(field.description)}</span>' if field.description else ""
        placeholder = f' placeholder="{escape(field.default)}"' if field.default is not None else ""
        value = f' value="{escape(request.values[field.name])}"' if field.name in request.values else ""
        fields.append(f'<label>{escape(field.name)} <span class="type">{escape(field.type)}</span> '
                      f'<input name="value.{escape(field.name)}"{placeholder}{value}>{help_text}</label>')
    action = workflow_path(item.namespace, item.name) + "/approve"
    return (f'<form class="approval" method="post" action="{action}" data-task="{escape(request.task)}">{heading}'
            f'<input type="hidden" name="task" value="{escape(request.task)}">'
            f'<input type="hidden" name="fingerprint" value="{escape(request.fingerprint)}">'
            + "".join(fields) +
            '<label>Token <input type="password" name="token" autocomplete="current-password" required></label>'
            f'<button type="submit">Approve{" again" if request.again else ""}</button> '
            f'<span class="help">approves inputs {escape(request.fingerprint)}</span></form>')


def _task_table(page: WorkflowPage, log_hint: str | None) -> str:
    rows = "".join(
        f'<tr data-task="{escape(t.name)}"><td>{escape(t.name)}</td><td>{escape(t.kind)}</td><td>{_phase(t.phase)}</td>'
        f'<td>{escape(t.job_id or "-")}</td><td class="number">{t.attempts}</td>'
        f'<td class="number">{"-" if t.exit_code is None else t.exit_code}</td>'
        f'<td class="number">{t.core_hours:.4f}</td><td>{escape(t.detail)}</td>'
        f'<td>{_log_command(page, t.name, log_hint) if t.kind == "job" and t.job_id else ""}</td></tr>'
        for t in page.tasks)
    return ('<table class="tasks"><thead><tr><th>Task</th><th>Type</th><th>Phase</th><th>Job</th><th>Attempts</th>'
            '<th>Exit</th><th>Core-hours</th><th>Detail</th><th>Output</th></tr></thead><tbody>'
            + rows + "</tbody></table>")


def _log_command(page: WorkflowPage, task: str, log_hint: str | None) -> str:
    item = page.summary
    if log_hint is None:
        href = f"{workflow_path(item.namespace, item.name)}/logs/{quote(task, safe='')}"
        return f'<a class="logs" href="{href}">output</a>'
    name = item.name if item.namespace == "default" else f"{item.namespace}/{item.name}"
    return f'<code class="logs">{escape(log_hint.format(workflow=name, task=task))}</code>'


def _events(page: WorkflowPage, now: datetime) -> str:
    if not page.events:
        return '<p class="empty">No events.</p>'
    rows = "".join(f'<tr class="event-{escape(e.type)}"><td>{_ago(e.at, now)}</td><td>{escape(e.type)}</td>'
                   f"<td>{escape(e.reason)}</td><td>{escape(e.message)}</td></tr>" for e in reversed(page.events))
    return ('<table class="events"><thead><tr><th>Age</th><th>Type</th><th>Reason</th><th>Message</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _ago(at: datetime, now: datetime) -> str:
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _conditions(page: WorkflowPage) -> str:
    return "".join(f'<li class="condition condition-{escape(s)}"><strong>{escape(t)}</strong>={escape(s)} '
                   f"{escape(r)}{': ' + escape(m) if m else ''}</li>" for t, s, r, m in page.conditions)


LOG_COMMAND = "reconciler logs {workflow} {task}"


def workflow_html(page: WorkflowPage, *, now: datetime, approving: bool, notice: str | None = None,
                  logs_linked: bool = False) -> str:
    """One workflow's page; ``logs_linked``: each job's output is a link to its tail (the
    dashboard reads it), else the command that prints it."""
    log_hint = None if logs_linked else LOG_COMMAND
    item = page.summary
    facts = [("Phase", _phase(item.phase)), ("Progress", _progress(item.progress)),
             ("Core-hours", f"{item.core_hours:.4f}"), ("Labels", _labels(item.labels) or "-")]
    if page.cluster:
        facts.append(("Cluster", escape(page.cluster)))
    if page.revision:
        facts.append(("Revision", f"<code>{escape(page.revision[:12])}</code>"))
    header = "<dl class=\"facts\">" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    shown = f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""
    waiting = ""
    if item.needs_person:
        reasons = "".join(f"<li>{escape(reason)}</li>" for reason in item.attention)
        forms = "".join(_approval_form(page, request, approving=approving) for request in page.approvals
                        if not request.again)
        waiting = (f'<section class="attention"><h2>Waiting for a person</h2>'
                   f'{"<ul>" + reasons + "</ul>" if reasons else ""}{forms}</section>')
    again = "".join(_approval_form(page, request, approving=approving) for request in page.approvals if request.again)
    if again:
        again = f'<section class="iterate"><h2>Approve again</h2>{again}</section>'
    body = (f"{shown}{header}{waiting}"
            f'<section><h2>Tasks</h2><div class="graph">{dag_svg(page.nodes, page.edges)}</div>'
            f"{_task_table(page, log_hint)}</section>{again}"
            f'<section><h2>Conditions</h2><ul class="conditions">{_conditions(page)}</ul></section>'
            f"<section><h2>Recent events</h2>{_events(page, now)}</section>")
    return _page(f"{item.namespace}/{item.name}", body)


def tail_page(namespace: str, name: str, tail: Tail) -> str:
    element = f", element {tail.index}" if tail.index is not None else ""
    cut = "… (the start is left out)\n" if tail.cut else ""
    unread = ("\n… (the file goes on: `reconciler logs` prints it all)" if tail.unread else "")
    body = (f'<p>Job <code>{escape(tail.job_id)}</code>{element}: <code>{escape(tail.path)}</code> '
            f'(<a href="{workflow_path(namespace, name)}">back to {escape(name)}</a>)</p>'
            f'<pre class="output">{escape(cut + tail.text + unread)}</pre>')
    return _page(f"{namespace}/{name} {tail.task} output", body)


def message_page(title: str, message: str, *, back: str = "/") -> str:
    return _page(title, f'<p class="error" role="alert">{escape(message)}</p><p><a href="{escape(back)}">back</a></p>',
                 refresh=False)
