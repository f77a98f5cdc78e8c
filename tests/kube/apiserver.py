"""A small, faithful Kubernetes API server for the tests, served in-process over plain HTTP.

Called by test fixtures (``tests/kube``, ``tests/integration``): ``ApiServer().start()``, point
kubectl or the python ``kubernetes`` client at ``kubeconfig(path)``, and ``stop()`` at the end.
It serves the built-in types the operator and kubectl touch (Namespaces, Secrets, ConfigMaps,
core and ``events.k8s.io`` Events, Leases, CustomResourceDefinitions) and every custom resource a
CRD posted to it declares, with kube-apiserver's semantics where a client can tell the difference:
discovery (aggregated and legacy), OpenAPI v3, CRUD with resourceVersion conflicts, the three patch
formats, finalizers, the status subresource, generation, structural-schema pruning, defaulting and
validation, label and field selectors, watches with history and bookmarks, and Table output.
Each module says what it does and every deviation from the real server it knows of:

- ``storage``: the object store, its write semantics and the watch history; ``watching``: what a
  watch sees of that history;
- ``schema``: pruning, defaulting and validation against structural schemas;
- ``admission``: ObjectMeta validation and the built-in types' own rules;
- ``patching``: merge, JSON and strategic merge patches;
- ``selectors``: label and field selectors;
- ``resources``: the served types; ``discovery``: discovery and OpenAPI; ``tables``: Tables;
- ``handlers``: routing, the request record and watch streaming; ``protobuf``: typed clients'
  protobuf request bodies; ``errors`` and ``gofmt``: Status objects and messages worded as
  apimachinery words them.

Deviations that hold for the whole server: no authentication or authorization (any bearer token
is accepted, none is required), no admission webhooks or CEL, server-side apply
(``application/apply-patch+yaml``) answers 415, one version per CRD is stored as sent (no
conversion between versions), and no controllers beyond the namespace and CRD-cleanup ones.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import yaml

from .handlers import ApiHandler, RequestRecord
from .storage import Store


class ApiServer:
    """One API server on 127.0.0.1 and a free port.

    ``requests`` records every resource request (``RequestRecord``: verb, api_group, resource,
    namespace, name, user_agent) in arrival order; ``non_resource_requests`` the others as
    (verb, path). ``expire_history()`` and ``inject_conflicts()`` are the fault hooks.
    """

    def __init__(self, *, history_size: int = 1000, bookmark_interval: float = 1.0) -> None:
        self.store = Store(history_size=history_size)
        self.bookmark_interval = bookmark_interval
        self.requests: list[RequestRecord] = []
        self.non_resource_requests: list[tuple[str, str]] = []
        self.connections: set[socket.socket] = set()
        self.stopping = False
        # Bumped by pause_watches(): open watch streams end, as when an API server restarts.
        self.watch_epoch = 0
        self.watches_paused = threading.Event()
        self.open_watches = 0
        self.watch_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ApiServer:
        """Listen on 127.0.0.1 (a free port) and serve on a background thread."""
        handler = type("BoundApiHandler", (ApiHandler,), {"api": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="test-kube-apiserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end every watch stream and close every client connection."""
        self.stopping = True
        self.store.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the API server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (for kubectl, helm and ``config.load_kube_config``)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
            "current-context": "test",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # --- test hooks ------------------------------------------------------------------------------

    def expire_history(self) -> None:
        """Compact the watch history: a watch from any resourceVersion older than the current one
        then gets 410 Expired (as after an etcd compaction)."""
        self.store.expire_history()

    def inject_conflicts(self, resource: str, count: int) -> None:
        """Make the next ``count`` updates or patches of ``resource``'s status subresource
        (``"workflows"`` or ``"workflows/status"``) fail with 409 Conflict."""
        self.store.inject_conflicts(resource, count)

    def pause_watches(self) -> None:
        """End every open watch stream and hold new watch requests until ``resume_watches()``:
        clients are cut off (as by an API server restart) while the test changes things."""
        self.watches_paused.set()
        self.watch_epoch += 1
        deadline = time.monotonic() + 10
        while self.open_watches and time.monotonic() < deadline:
            time.sleep(0.02)

    def resume_watches(self) -> None:
        self.watches_paused.clear()

    def requests_for(self, resource: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.resource == resource]
