"""A push-notification receiver, like Flux's notification receiver: a forge's webhook wakes the loop.

Started by ``reconciler run --webhook-port`` with the source's ``wake`` as ``on_push``. The
notification carries no state: whatever the body says, the loop only reads the source sooner, so a
forged or replayed call can at worst cause one extra read. Guarantees:

- ``POST /hook`` (or ``/hook/<anything>``, so forge-specific paths work) calls ``on_push`` and
  answers 202. With a ``secret`` the request must carry GitHub's ``X-Hub-Signature-256`` (an HMAC
  of the body) or GitLab's ``X-Gitlab-Token``; both are compared in constant time; else 401.
- ``GET /healthz`` answers 200 ``ok``; everything else 404. Bodies over 1 MiB get 413 unread, and
  a client that stalls is dropped after ``REQUEST_TIMEOUT`` seconds.
- The secret, request headers and hook paths are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
REQUEST_TIMEOUT = 10.0
HOOK_PATH = "/hook"


class WebhookReceiver:
    def __init__(self, *, host: str, port: int, on_push: Callable[[], None], secret: str | None) -> None:
        self._address = (host, port)
        self._on_push = on_push
        self._secret = secret.encode() if secret else None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the system when constructed with port 0)."""
        if self._server is None:
            raise RuntimeError("the webhook receiver is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer(self._address, self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval only makes stop() prompt; requests are served as they arrive.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="webhook receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = None
        self._thread = None

    def _authorized(self, *, body: bytes, signature: str | None, token: str | None) -> bool:
        if self._secret is None:
            return True
        if signature is not None:
            expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode(), signature.strip().encode()):
                return True
        if token is not None:
            return hmac.compare_digest(self._secret, token.encode())
        return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "slurm-reconciler"
            sys_version = ""
            timeout = REQUEST_TIMEOUT  # a socket timeout: a stalled client cannot hold a thread

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/healthz":
                    self._answer(HTTPStatus.OK, "ok\n")
                else:
                    self._answer(HTTPStatus.NOT_FOUND, "not found\n")

            def do_POST(self) -> None:
                route = self.path.split("?", 1)[0]
                if route != HOOK_PATH and not route.startswith(HOOK_PATH + "/"):
                    self._answer(HTTPStatus.NOT_FOUND, "not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    self._answer(HTTPStatus.BAD_REQUEST, "bad Content-Length\n")
                    return
                if length < 0 or length > MAX_BODY_BYTES:
                    # The body stays unread, so the connection cannot be reused.
                    self.close_connection = True
                    self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large\n")
                    return
                body = self.rfile.read(length) if length else b""
                if len(body) != length:
                    self._answer(HTTPStatus.BAD_REQUEST, "incomplete body\n")
                    return
                authorized = receiver._authorized(
                    body=body, signature=self.headers.get("X-Hub-Signature-256"),
                    token=self.headers.get("X-Gitlab-Token"),
                )
                if not authorized:
                    self._answer(HTTPStatus.UNAUTHORIZED, "bad or missing signature\n")
                    return
                try:
                    receiver._on_push()
                except Exception:
                    log.exception("handling a push notification failed")
                    self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, "error\n")
                    return
                self._answer(HTTPStatus.ACCEPTED, "accepted\n")

            def do_PUT(self) -> None:
                self._answer(HTTPStatus.NOT_FOUND, "not found\n")

            do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_PUT

            def _answer(self, status: HTTPStatus, text: str) -> None:
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                # The path may hold a per-forge token, so only its first segment is logged.
                route = "/hook/..." if self.path.startswith(HOOK_PATH + "/") else self.path.split("?", 1)[0]
                log.debug("%s %s %s from %s", self.command, route, code, self.client_address[0])

            def log_message(self, format: str, *args: object) -> None:
                log.debug("webhook: " + format, *args)

        return Handler
