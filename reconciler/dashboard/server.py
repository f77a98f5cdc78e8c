"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer`` over the store.

Started by ``reconciler serve``, or beside the loop by ``run`` and ``operator``
(``--dashboard-port``), through :mod:`reconciler.dashboard.command`. Every request reads the store
afresh (the loop writes it from its own thread or process; SQLite's WAL lets both go on), so a page
always shows the last status the loop wrote. Routes:

* ``GET /`` and ``GET /api/workflows?selector=SEL``: the workflows, those waiting for a person first;
* ``GET /workflows/NS/NAME`` and ``GET /api/workflows/NS/NAME``: one workflow;
* ``POST /workflows/NS/NAME/approve`` (the page's form) and ``POST /api/workflows/NS/NAME/approve``
  (JSON): approve a task awaiting approval, refused with 403 unless approving is on and the
  request presents the token;
* ``GET /static/...``: the stylesheet and the script, from the package.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from ..api.approval import ApprovalValue
from ..core.approval_values import described
from ..core.approval_values import render as rendered
from ..core.approvals import ApprovalVia
from ..core.selectors import SelectorError, parse_selector
from ..store.database import Store
from . import model, render
from .access import ApprovePolicy, presented_token
from .logtail import LogReader
from .model import Tail

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # an approval is a few fields; anything larger is not one
EVENTS_SHOWN = 20
_STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True, kw_only=True)
class Approved:
    task: str
    fingerprint: str
    by: str
    values: dict[str, ApprovalValue]

    @property
    def described(self) -> str:
        return f"task {self.task} approved" + (f" with {described(self.values)}" if self.values else "")


class DashboardError(Exception):
    """A request the dashboard answers with an error status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    """The server and what its pages read: the store, and whether approving is on."""

    def __init__(self, *, store: Store, policy: ApprovePolicy, address: str = "127.0.0.1", port: int = 0,
                 logs: LogReader | None = None) -> None:
        self.store = store
        self.policy = policy
        self.logs = logs  # None: the pages name the command that prints a task's output instead
        server_class = _IPv6Server if ":" in address else ThreadingHTTPServer
        self.httpd = server_class((address, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.dashboard = self  # type: ignore[attr-defined]  # how the handler finds its dashboard
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}/"

    def start(self) -> Dashboard:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    # -- what the pages read -------------------------------------------------------------------

    def workflows(self, selector_text: str) -> list[model.WorkflowSummary]:
        try:
            selector = parse_selector(selector_text)
        except SelectorError as exc:
            raise DashboardError(HTTPStatus.BAD_REQUEST, f"not a label selector: {selector_text!r}: {exc}") from exc
        return model.workflow_list((w.as_row() for w in self.store.active_workflows()), selector)

    def workflow(self, namespace: str, name: str) -> model.WorkflowPage:
        stored = self.store.workflow(namespace, name)
        if stored is None or not stored.active:
            raise DashboardError(HTTPStatus.NOT_FOUND, f"workflow {namespace}/{name} not found")
        return model.workflow_page(stored.as_row(), self.store.events(stored.uid, limit=EVENTS_SHOWN),
                                   self.store.approvals(stored.uid))

    def tail(self, namespace: str, name: str, task: str) -> Tail:
        stored = self.store.workflow(namespace, name)
        if stored is None or not stored.active:
            raise DashboardError(HTTPStatus.NOT_FOUND, f"workflow {namespace}/{name} not found")
        if self.logs is None:
            raise DashboardError(HTTPStatus.NOT_FOUND,
                                 f"this dashboard reads no output: run `reconciler logs {name} {task}`")
        found = self.logs.tail(stored, self.store.history(stored.uid), task)
        if isinstance(found, str):
            raise DashboardError(HTTPStatus.NOT_FOUND, found)
        return found

    def approve(self, namespace: str, name: str, *, task: str, fingerprint: str | None, values: Mapping[str, str],
                token: str | None, who: str) -> Approved:
        """Approve ``task`` with ``values`` (text, read as its declared parameters) as
        ``reconciler approve --set`` does, once the token checks out; with ``fingerprint``, only
        if the task still awaits approval of those inputs."""
        if not self.policy.enabled:
            raise DashboardError(HTTPStatus.FORBIDDEN, "approving from the dashboard is off: start it with "
                                                       "--allow-approve and --token-file FILE")
        if not self.policy.allows(token):
            raise DashboardError(HTTPStatus.FORBIDDEN, "approving needs the dashboard's token")
        stored = self.store.workflow(namespace, name)
        if stored is None or not stored.active:
            raise DashboardError(HTTPStatus.NOT_FOUND, f"workflow {namespace}/{name} not found")
        row = stored.as_row()
        target = model.approval_target(row, task)
        if isinstance(target, model.Refusal):
            raise DashboardError(target.status, target.message)
        parsed = model.approval_values(row, task, values)
        if isinstance(parsed, model.Refusal):
            raise DashboardError(parsed.status, parsed.message)
        if model.repeated(row, task, self.store.approvals(stored.uid).current(task, fingerprint=target), parsed):
            raise DashboardError(HTTPStatus.CONFLICT, f"task {task} is approved with these values already: give "
                                                      "other values to approve it again")
        if fingerprint and fingerprint != target:
            raise DashboardError(HTTPStatus.CONFLICT, f"the inputs of {task} changed since the page was shown "
                                                      f"(now {target}): look at them again before approving")
        self.store.approve(namespace, name, task, fingerprint=target, via=ApprovalVia.CLI, by=who, now=self.now(),
                           values=parsed or None)
        approved = Approved(task=task, fingerprint=target, by=who, values=parsed)
        log.info("workflow %s/%s: %s from the dashboard (%s) for inputs %s", namespace, name, approved.described,
                 who, target)
        return approved


def _given_values(fields: Mapping[str, Any], *, api: bool) -> dict[str, str]:
    """The values a request gives, as text: the JSON's ``values`` object (a number or a boolean
    written as YAML would), or the form's ``value.NAME`` fields."""
    if not api:
        return {key.removeprefix("value."): str(text) for key, text in fields.items() if key.startswith("value.")}
    given = fields.get("values") or {}
    if not isinstance(given, dict) or not all(isinstance(v, str | int | float | bool) for v in given.values()):
        raise DashboardError(HTTPStatus.BAD_REQUEST, 'values is an object of names and values: {"gamma": 1.2}')
    return {str(name): rendered(value) for name, value in given.items()}


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _route(path: str) -> tuple[str, list[str]]:
    """("api"|"page"|"static", the path's parts after that prefix)."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    if parts[:2] == ["api", "workflows"]:
        return "api", parts[2:]
    if parts[:1] == ["workflows"]:
        return "page", parts[1:]
    if parts[:1] == ["static"]:
        return "static", parts[1:]
    return ("page", []) if not parts else ("unknown", parts)


class _Handler(BaseHTTPRequestHandler):
    server_version = "slurm-reconciler-dashboard"

    @property
    def dashboard(self) -> Dashboard:
        return self.server.dashboard  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- GET -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        kind, parts = _route(url.path)
        try:
            if kind == "static" and len(parts) == 1 and parts[0] in _STATIC:
                self._send(HTTPStatus.OK, resources.files(__package__).joinpath("static", parts[0]).read_bytes(),
                           _STATIC[parts[0]], cache=True)
            elif kind == "api" and not parts:
                items = self.dashboard.workflows(query.get("selector", ""))
                self._json(HTTPStatus.OK, {"items": [model.summary_json(i) for i in items]})
            elif kind == "api" and len(parts) == 2:
                self._json(HTTPStatus.OK, model.page_json(self.dashboard.workflow(*parts)))
            elif kind in ("api", "page") and len(parts) == 4 and parts[2] == "logs":
                self._tail(parts[0], parts[1], parts[3], api=kind == "api")
            elif kind == "page" and not parts:
                self._list_page(query.get("selector", ""))
            elif kind == "page" and len(parts) == 2:
                notice = query.get("notice")
                self._html(HTTPStatus.OK, render.workflow_html(
                    self.dashboard.workflow(*parts), now=self.dashboard.now(), approving=self.dashboard.policy.enabled,
                    notice=notice, logs_linked=self.dashboard.logs is not None))
            else:
                raise DashboardError(HTTPStatus.NOT_FOUND, f"nothing at {url.path}")
        except DashboardError as exc:
            self._error(exc, api=kind == "api")

    def _tail(self, namespace: str, name: str, task: str, *, api: bool) -> None:
        tail = self.dashboard.tail(namespace, name, task)
        if api:
            self._json(HTTPStatus.OK, {"task": tail.task, "jobId": tail.job_id, "index": tail.index, "path": tail.path,
                                       "text": tail.text, "cut": tail.cut, "unread": tail.unread})
        else:
            self._html(HTTPStatus.OK, render.tail_page(namespace, name, tail))

    def _list_page(self, selector: str) -> None:
        try:
            items = self.dashboard.workflows(selector)
        except DashboardError as exc:
            self._html(exc.status, render.list_page([], selector=selector, error=exc.message))
            return
        self._html(HTTPStatus.OK, render.list_page(items, selector=selector))

    # -- POST ----------------------------------------------------------------------------------

    def do_POST(self) -> None:
        kind, parts = _route(urlsplit(self.path).path)
        api = kind == "api"
        try:
            if kind not in ("api", "page") or len(parts) != 3 or parts[2] != "approve":
                raise DashboardError(HTTPStatus.NOT_FOUND, f"nothing to post to at {self.path}")
            namespace, name = parts[0], parts[1]
            fields = self._json_body() if api else self._form_body()
            task = fields.get("task")
            if not isinstance(task, str) or not task:
                raise DashboardError(HTTPStatus.BAD_REQUEST, "say which task to approve (task)")
            fingerprint = fields.get("fingerprint")
            token = presented_token(authorization=self.headers.get("Authorization"),
                                    form_token=None if api else fields.get("token"))
            approved = self.dashboard.approve(
                namespace, name, task=task, fingerprint=fingerprint if isinstance(fingerprint, str) else None,
                values=_given_values(fields, api=api), token=token,
                who=f"{getpass.getuser()} via the dashboard from {self.client_address[0]}")
        except DashboardError as exc:
            self._error(exc, api=api)
            return
        if api:
            self._json(HTTPStatus.OK, {"approved": approved.task, "fingerprint": approved.fingerprint,
                                       "by": approved.by, "values": approved.values})
        else:
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", render.workflow_path(namespace, name) + "?"
                             + urlencode({"notice": approved.described}))
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise DashboardError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "an approval is a few fields, not this much")
        return self.rfile.read(length)

    def _json_body(self) -> dict[str, Any]:
        try:
            fields = json.loads(self._body() or b"{}")
        except ValueError as exc:
            raise DashboardError(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise DashboardError(HTTPStatus.BAD_REQUEST, 'the body is a JSON object: {"task": ...}')
        return fields

    def _form_body(self) -> dict[str, Any]:
        return {k: v[-1] for k, v in parse_qs(self._body().decode("utf-8", "replace")).items()}

    # -- answers -------------------------------------------------------------------------------

    def _error(self, exc: DashboardError, *, api: bool) -> None:
        if api:
            self._json(exc.status, {"error": exc.message})
        else:
            self._html(exc.status, render.message_page(HTTPStatus(exc.status).phrase, exc.message))

    def _json(self, status: int, document: Any) -> None:
        self._send(status, (json.dumps(document, indent=1) + "\n").encode(), "application/json")

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)
