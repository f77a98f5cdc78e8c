"""HTTP request handling of the test Kubernetes API server: URL routing, content negotiation,
request recording, and the chunked watch stream.

Called by ``http.server`` (one handler per connection, on its own thread) for the ``ApiServer``
that owns the listening socket. Guarantees:

- resource URLs are the real ones: ``/api/v1[/namespaces/NS]/PLURAL[/NAME[/status]]`` and
  ``/apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME[/status]]``; lists across namespaces use the
  URL without ``namespaces/NS``;
- every resource request is recorded before it is served as a ``RequestRecord`` with the RBAC verb
  (get, list, watch, create, update, patch, delete, deletecollection), API group, resource (with
  ``/status`` for the subresource), namespace and name;
- every failure is answered with a ``kind: Status`` body (404 for unknown paths too);
- ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` gets a Table, for gets, lists and
  watches;
- a watch (``?watch=1|true``) is a chunked stream of one JSON event per line: synthetic ADDED events
  first when ``resourceVersion`` is absent or ``0`` (or ``sendInitialEvents=true``, closed by a
  BOOKMARK annotated ``k8s.io/initial-events-end``), then live events; BOOKMARKs every
  ``bookmark_interval`` seconds when ``allowWatchBookmarks=true``; a resourceVersion older than
  the history yields a single ERROR event holding a 410 Expired Status; the server ends the stream
  after ``timeoutSeconds`` (default 1800 s) or when it stops.
- unknown-field warnings go out as ``Warning: 299 - "..."`` headers, as kubectl expects them.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import discovery, protobuf, tables, watching
from .errors import ApiError, bad_request, method_not_allowed, no_such_resource
from .resources import ResourceType
from .selectors import parse_fields, parse_labels
from .storage import APPLY_PATCH, Selection

if TYPE_CHECKING:
    from .apiserver import ApiServer

JSON = dict[str, Any]


@dataclass(frozen=True)
class RequestRecord:
    """One resource request, in RBAC terms."""

    verb: str
    api_group: str
    resource: str  # "workflows", "workflows/status", ...
    namespace: str
    name: str
    user_agent: str = ""


@dataclass(frozen=True)
class Route:
    group: str
    version: str
    namespace: str | None  # None: not in the URL
    plural: str
    name: str
    subresource: str


def _split(path: str) -> tuple[str, str, list[str]] | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


def parse_route(group: str, version: str, rest: list[str]) -> Route | None:
    if rest and rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and rest[2] in ("status", "finalize")):
        namespace: str | None = rest[1]
        rest = rest[2:]
    else:
        namespace = None
    if not rest or len(rest) > 3:
        return None
    return Route(group, version, namespace, rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "")


def _truthy(value: str | None) -> bool:
    return value in ("1", "true", "True")


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: ApiServer  # set on the subclass ApiServer creates

    # --- plumbing --------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.api.connections.add(self.connection)

    def finish(self) -> None:
        self.api.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the request record is the log tests read.
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        code: int,
        body: Any,
        headers: dict[str, str] | None = None,
        warnings: list[str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for w in warnings or []:
            self.send_header("Warning", "299 - " + json.dumps(w))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: ApiError) -> None:
        self._send(err.code, err.status())

    # --- dispatch --------------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
            split = _split(url.path)
            route = parse_route(*split) if split else None
            if route is None:
                self.api.non_resource_requests.append((method.lower(), url.path))
                self._non_resource(method, url.path)
                return
            self._resource(method, route, query, body)
        except ApiError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an unexpected server bug must still read as a Status
            self._send_error(ApiError(500, "InternalError", f"Internal error occurred: {exc!r}"))

    def _non_resource(self, method: str, path: str) -> None:
        if method != "GET":
            raise method_not_allowed()
        registry = self.api.store.registry
        accept = self.headers.get("Accept", "")
        path = path.rstrip("/") or "/"
        with self.api.store.lock:
            if path == "/version":
                self._send(200, discovery.VERSION_INFO)
            elif path in ("/healthz", "/livez", "/readyz"):
                self._send(200, b"ok", content_type="text/plain; charset=utf-8")
            elif path in ("/api", "/apis"):
                media = discovery.wants_aggregated(accept)
                if media:
                    self._send(
                        200, discovery.aggregated(registry, core=path == "/api", media_type=media), content_type=media
                    )
                elif path == "/api":
                    self._send(200, discovery.api_versions(f"127.0.0.1:{self.api.port}"))
                else:
                    self._send(200, discovery.api_group_list(registry))
            elif path == "/openapi/v3":
                self._send(200, discovery.openapi_v3_root(registry))
            elif path.startswith("/openapi/v3/"):
                split = _split(path.removeprefix("/openapi/v3"))
                doc = discovery.openapi_v3(registry, split[0], split[1]) if split and not split[2] else None
                if doc is None:
                    raise no_such_resource()
                self._send(200, doc, headers={"Etag": '"' + discovery.document_hash(doc) + '"'})
            elif (split := _split(path)) is not None and not split[2]:
                found = discovery.api_resource_list(registry, split[0], split[1])
                if found is None:
                    raise no_such_resource()
                self._send(200, found)
            elif path.startswith("/apis/") and path.count("/") == 2:
                group = discovery.api_group(registry, path.split("/")[2])
                if group is None:
                    raise no_such_resource()
                self._send(200, group)
            else:
                raise no_such_resource()

    def _verb(self, method: str, route: Route, query: dict[str, str]) -> str:
        if method == "GET":
            if route.name:
                return "get"
            return "watch" if _truthy(query.get("watch")) else "list"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        return "delete" if route.name else "deletecollection"

    def _resource(self, method: str, route: Route, query: dict[str, str], body: bytes) -> None:
        store = self.api.store
        verb = self._verb(method, route, query)
        resource = route.plural + (f"/{route.subresource}" if route.subresource else "")
        self.api.requests.append(
            RequestRecord(
                verb, route.group, resource, route.namespace or "", route.name, self.headers.get("User-Agent", "")
            )
        )
        with store.lock:
            rt = store.registry.get(route.group, route.version, route.plural)
        if rt is None or (route.subresource and not (route.subresource == "status" and rt.status_subresource)):
            raise no_such_resource()
        if route.namespace is not None and not rt.namespaced:
            raise no_such_resource()
        namespace = route.namespace or ""
        if rt.namespaced and route.namespace is None and verb not in ("list", "watch"):
            raise no_such_resource()
        if (verb == "create" and route.name) or (verb in ("update", "patch") and not route.name):
            raise method_not_allowed()
        if route.subresource and verb not in ("get", "update", "patch"):
            raise method_not_allowed()
        dry_run = self._dry_run(query)
        validation = query.get("fieldValidation", "") or "Warn"
        if validation not in ("Ignore", "Warn", "Strict"):
            raise bad_request(f'fieldValidation must be one of "Ignore", "Warn", or "Strict", got "{validation}"')
        table = "as=Table" in self.headers.get("Accept", "").replace(" ", "")
        include = query.get("includeObject", "Metadata")

        if verb == "get":
            obj = store.get(rt, namespace, route.name)
            if table:
                self._send(200, tables.table(rt.columns, [obj], obj["metadata"]["resourceVersion"], include))
            else:
                self._send(200, obj)
        elif verb in ("list", "watch"):
            selection = self._selection(rt, route, query)
            if verb == "watch":
                self._watch(rt, selection, query, table, include)
                return
            items, rv = store.select(rt, selection)
            if table:
                self._send(200, tables.table(rt.columns, items, rv, include))
                return
            if not rt.custom:
                # Typed lists carry their items without apiVersion and kind.
                for item in items:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
            self._send(
                200,
                {
                    "apiVersion": rt.group_version,
                    "kind": rt.list_kind,
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                },
            )
        elif verb == "create":
            result = store.create(
                rt, namespace, self._decode(body, "", rt.kind), dry_run=dry_run, validation=validation
            )
            self._send(201, result.obj, warnings=result.warnings)
        elif verb == "update":
            result = store.update(
                rt,
                namespace,
                route.name,
                self._decode(body, "", rt.kind),
                subresource=route.subresource,
                dry_run=dry_run,
                validation=validation,
            )
            self._send(200, result.obj, warnings=result.warnings)
        elif verb == "patch":
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            result = store.patch(
                rt,
                namespace,
                route.name,
                content_type,
                self._decode(body, content_type),
                subresource=route.subresource,
                dry_run=dry_run,
                validation=validation,
            )
            self._send(200, result.obj, warnings=result.warnings)
        else:
            options = self._decode(body, "", "DeleteOptions") if body.strip() else {}
            if not isinstance(options, dict):
                raise bad_request("the body of a delete request must be DeleteOptions")
            if verb == "delete":
                self._send(200, store.delete(rt, namespace, route.name, options, dry_run=dry_run))
            else:
                items = store.delete_collection(rt, self._selection(rt, route, query), options, dry_run=dry_run)
                self._send(
                    200,
                    {
                        "apiVersion": rt.group_version,
                        "kind": rt.list_kind,
                        "metadata": {"resourceVersion": str(store.rv)},
                        "items": items,
                    },
                )

    @staticmethod
    def _dry_run(query: dict[str, str]) -> bool:
        value = query.get("dryRun")
        if value is None or value == "":
            return False
        if value != "All":
            raise bad_request(f'Invalid dry run value: "{value}"; only "All" is supported')
        return True

    def _decode(self, body: bytes, content_type: str, kind: str = "") -> Any:
        if content_type == APPLY_PATCH:
            return body  # refused by storage before it is parsed
        if self.headers.get("Content-Type", "").split(";")[0].strip() == protobuf.PROTOBUF:
            return protobuf.decode(body, kind)
        text = body.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            pass
        try:
            # kube-apiserver takes application/yaml bodies as well.
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None

    @staticmethod
    def _selection(rt: ResourceType, route: Route, query: dict[str, str]) -> Selection:
        return Selection(
            namespace=route.namespace,
            labels=parse_labels(query.get("labelSelector", "")),
            fields=parse_fields(query.get("fieldSelector", ""), rt.field_selectors, rt.unsupported_field),
        )

    # --- watch -----------------------------------------------------------------------------------

    def _chunk(self, event: JSON) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, rt: ResourceType, selection: Selection, query: dict[str, str], table: bool, include: str) -> None:
        store = self.api.store
        while self.api.watches_paused.is_set() and not self.api.stopping:
            time.sleep(0.05)
        epoch = self.api.watch_epoch
        with self.api.watch_lock:
            self.api.open_watches += 1
        try:
            self._stream_watch(rt, selection, query, table, include, store, epoch)
        finally:
            with self.api.watch_lock:
                self.api.open_watches -= 1

    def _stream_watch(self, rt: ResourceType, selection: Selection, query: dict[str, str], table: bool,
                      include: str, store: Any, epoch: int) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        send_initial = _truthy(query.get("sendInitialEvents"))
        error: ApiError | None = None
        try:
            initial, cursor = watching.watch_start(store, rt, selection, query.get("resourceVersion", ""), send_initial)
        except ApiError as err:
            if err.code != 410:
                raise
            initial, cursor, error = [], 0, err
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = True

        def emit(kind: str, obj: JSON) -> None:
            if table and kind != "BOOKMARK" and kind != "ERROR":
                obj = tables.table(rt.columns, [obj], obj["metadata"].get("resourceVersion", ""), include)
            self._chunk({"type": kind, "object": obj})

        def bookmark(annotations: dict[str, str] | None = None) -> None:
            meta: JSON = {"resourceVersion": str(cursor)}
            if annotations:
                meta["annotations"] = annotations
            self._chunk(
                {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": meta}}
            )

        try:
            if error is not None:
                emit("ERROR", error.status())
                return
            for kind, obj in initial:
                emit(kind, obj)
            if send_initial:
                bookmark({"k8s.io/initial-events-end": "true"})
            last_bookmark = time.monotonic()
            while not self.api.stopping and self.api.watch_epoch == epoch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, self.api.bookmark_interval if bookmarks else 1.0, 1.0)
                try:
                    events, cursor = watching.watch_next(store, rt, selection, cursor, wait, lambda: self.api.stopping)
                except ApiError as err:
                    emit("ERROR", err.status())
                    return
                if self.api.watch_epoch != epoch:
                    break  # cut off: what happened meanwhile is for the next watch to find
                for kind, obj in events:
                    emit(kind, obj)
                if bookmarks and time.monotonic() - last_bookmark >= self.api.bookmark_interval:
                    bookmark()
                    last_bookmark = time.monotonic()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, OSError):
            return
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
