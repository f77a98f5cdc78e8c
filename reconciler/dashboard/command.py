"""Starting the dashboard from the command line: ``reconciler serve`` on its own, or beside the
loop of ``run`` and ``operator`` (``--dashboard-port``).

Called by :mod:`reconciler.cli.main`. Refuses to start (exit 2, nothing served) when approving is
asked for without a usable token file, so a dashboard never approves for anyone who asks.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..store.database import Store
from .access import ApprovePolicy, TokenFileError, read_token
from .logtail import LogReader
from .server import Dashboard

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DashboardOptions:
    address: str = "127.0.0.1"  # loopback: nothing outside this machine sees it unless told otherwise
    port: int = 8080
    allow_approve: bool = False
    token_file: Path | None = None
    source: Path | None = None  # manifests declaring the SlurmClusters (default: as the loop recorded them)

    def policy(self) -> ApprovePolicy:
        """Approving on (with the file's token) or off; raises TokenFileError when asked for without one."""
        if not self.allow_approve:
            return ApprovePolicy()
        if self.token_file is None:
            raise TokenFileError("approving from the dashboard needs --token-file FILE (the token it asks for)")
        return ApprovePolicy(token=read_token(self.token_file))


def open_dashboard(state_dir: Path, options: DashboardOptions) -> tuple[Dashboard, Store]:
    policy = options.policy()
    store = Store(state_dir / "state.db")
    try:
        dashboard = Dashboard(store=store, policy=policy, address=options.address, port=options.port,
                              logs=LogReader(store, options.source))
    except OSError:
        store.close()
        raise
    return dashboard, store


def serve(*, state_dir: Path, options: DashboardOptions) -> int:
    """``reconciler serve``: the dashboard until SIGINT or SIGTERM."""
    try:
        dashboard, store = open_dashboard(state_dir, options)
    except (TokenFileError, OSError) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, _frame: object) -> None:
        log.info("%s received: stopping the dashboard", signal.Signals(signum).name)
        # shutdown() waits for serve_forever to return, which runs in this very thread: ask from another.
        threading.Thread(target=dashboard.httpd.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"dashboard on {dashboard.url} (approving {_approving(dashboard)})", flush=True)
    try:
        dashboard.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        dashboard.httpd.server_close()
        store.close()
    return 0


def _approving(dashboard: Dashboard) -> str:
    return "on, with the token" if dashboard.policy.enabled else "off"


@contextmanager
def serving(state_dir: Path, options: DashboardOptions | None) -> Iterator[Dashboard | None]:
    """The dashboard running in a thread for the duration of the block (nothing without options).
    Raises TokenFileError or OSError before the block when it cannot start."""
    if options is None:
        yield None
        return
    dashboard, store = open_dashboard(state_dir, options)
    dashboard.start()
    log.info("dashboard on %s (approving %s)", dashboard.url, _approving(dashboard))
    try:
        yield dashboard
    finally:
        dashboard.stop()
        store.close()
