"""The operator's Prometheus metrics and its health endpoint, on one port.

Called by the operator (which starts the server before leader election, so standby replicas
answer their probes) and by the publisher after every tick. ``/healthz`` is 200 while the
process is sound: on a standby always, on the leader as long as a tick finished recently.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..api import WorkflowPhase, WorkflowStatus
from ..core.plan import Event


class Metrics:
    def __init__(self, *, stale_after: float) -> None:
        self.registry = CollectorRegistry()
        self.stale_after = stale_after
        self.leader = Gauge("reconciler_leader", "1 while this replica holds the leader lease",
                            registry=self.registry)
        self.ticks = PromCounter("reconciler_ticks", "control-loop ticks carried out", registry=self.registry)
        self.tick_seconds = Histogram("reconciler_tick_seconds", "time one tick took", registry=self.registry,
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.workflows = Gauge("reconciler_workflows", "workflows by phase", ["phase"], registry=self.registry)
        self.events = PromCounter("reconciler_events", "events recorded, by reason", ["reason"],
                                  registry=self.registry)
        self.conflicts = PromCounter("reconciler_status_conflicts", "status writes refused with 409 and retried",
                                     registry=self.registry)
        self._last_tick = time.monotonic()
        self._leading = False

    def tick(self, *, seconds: float, statuses: dict[str, WorkflowStatus], events: dict[str, list[Event]]) -> None:
        self.ticks.inc()
        self.tick_seconds.observe(seconds)
        phases = Counter(status.phase for status in statuses.values())
        for phase in WorkflowPhase:
            self.workflows.labels(phase=phase.value).set(phases.get(phase, 0))
        for items in events.values():
            for event in items:
                self.events.labels(reason=event.reason).inc()
        self._last_tick = time.monotonic()

    def healthy(self) -> bool:
        if not self._leading:  # a standby has no loop to be stuck in
            return True
        return time.monotonic() - self._last_tick < self.stale_after

    def became_leader(self) -> None:
        self._leading = True
        self.leader.set(1)
        self._last_tick = time.monotonic()

    def serve(self, *, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, status, kind = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    ok = metrics.healthy()
                    body, status, kind = (b"ok\n" if ok else b"stalled\n"), (200 if ok else 503), "text/plain"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server
