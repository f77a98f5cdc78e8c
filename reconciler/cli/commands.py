"""The Git-mode commands: ``run`` (the control loop), ``get`` and ``describe``.

Called by :mod:`reconciler.cli` with parsed arguments; wires a source, the store and the
controller together, and renders the store's content with :mod:`reconciler.cli.output`. ``get``
and ``describe`` only open the store, so they work while a loop runs (as ``approve`` and
``reject`` do, in :mod:`reconciler.cli.approving`).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..core.conditions import needs_attention
from ..core.selectors import Selector, SelectorError, parse_selector
from ..store.database import Store, StoredWorkflow, state_dir_default
from ..store.rows import WorkflowRow
from .output import describe, dump, resource, task_resource, task_rows, tasks_table, workflows_table

log = logging.getLogger(__name__)


def state_dir(option: str | None) -> Path:
    return Path(option).expanduser() if option else state_dir_default()


def open_store(directory: Path) -> Store:
    return Store(directory / "state.db")


def run(*, source: str, path: str | None, branch: str | None, state: str | None, interval: float, once: bool,
        until_done: bool, webhook_port: int | None, webhook_secret_file: str | None,
        metrics_port: int | None = None, metrics_address: str = "127.0.0.1", group_label: str | None = None) -> int:
    # Imported here: get, describe and approve only read the store, and start faster without them.
    from ..engine.controller import Controller, StateLock, StateLocked
    from ..engine.heap import settle_for_the_loop
    from ..engine.metrics import Metrics
    from ..sources import open_source
    from ..sources.webhook import WebhookReceiver

    directory = state_dir(state)
    try:
        lock = StateLock(directory)
    except StateLocked as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 2
    metrics = Metrics(stale_after=max(60.0, interval * 10), group_label=group_label)
    server = None
    if metrics_port is not None:
        try:
            server = metrics.serve(port=metrics_port, host=metrics_address)
        except OSError as exc:
            print(f"run: cannot serve metrics on {metrics_address}:{metrics_port}: {exc}", file=sys.stderr)
            lock.release()
            return 2
        log.info("serving metrics on http://%s:%d/metrics", metrics_address, server.server_port)
        metrics.loop_started()
    store = open_store(directory)
    source_ = open_source(source, path=path, branch=branch, cache_dir=directory / "sources")
    controller = Controller(source=source_, store=store, state_dir=directory, interval=interval, metrics=metrics)
    receiver = None
    if webhook_port is not None:
        secret = Path(webhook_secret_file).read_text().strip() if webhook_secret_file else None
        receiver = WebhookReceiver(host="0.0.0.0", port=webhook_port, on_push=source_.wake, secret=secret)
        receiver.start()
        log.info("listening for push notifications on port %d", receiver.port)

    def stop(signum: int, _frame: object) -> None:
        log.info("%s received: stopping after the current action", signal.Signals(signum).name)
        controller.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("reconciling %s into %s every %.0fs", source_.description, directory, interval)
    # What the start built lives as long as the loop: the collector need not walk it again in
    # every full collection, nor as the process exits; and a tick's garbage is mostly acyclic.
    settle_for_the_loop()
    try:
        return controller.run(once=once, until_done=until_done)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if receiver is not None:
            receiver.stop()
        if server is not None:
            server.shutdown()
        controller.close()
        source_.close()
        store.close()
        lock.release()


def _selector(text: str | None) -> Selector | None:
    """The parsed ``-l`` selector, or None after reporting it as kubectl does."""
    try:
        return parse_selector(text)
    except SelectorError as exc:
        print(f'error: couldn\'t parse the selector string "{text}": {exc}', file=sys.stderr)
        return None


def get_workflows(*, state: str | None, selector: str | None, output: str, watch: bool = False) -> int:
    now = datetime.now(UTC)
    parsed = _selector(selector)
    if parsed is None:
        return 1
    if watch:
        from .watch import watch_workflows

        return watch_workflows(state_dir(state), parsed, output=output)
    with open_store(state_dir(state)) as store:
        rows = listed_workflows(store, parsed)
    _print_list(output=output, items=[resource(r) for r in rows], what="workflows",
                table=lambda: workflows_table(rows, now=now, wide=output == "wide"))
    return 0


def listed_workflows(store: Store, selector: Selector) -> list[WorkflowRow]:
    """The active workflows ``selector`` matches, as ``get workflows`` lists them."""
    rows = [w.as_row() for w in store.active_workflows() if selector.matches(w.labels)]
    # Those waiting for a person first, each group in the store's order.
    rows.sort(key=lambda row: not needs_attention(row.status))
    return rows


def get_tasks(*, state: str | None, selector: str | None, workflow: str | None, output: str) -> int:
    parsed = _selector(selector)
    if parsed is None:
        return 1
    with open_store(state_dir(state)) as store:
        if workflow is not None:
            stored = _find(store, workflow)
            if stored is None or not stored.active:
                if stored is not None:
                    print(f'Error: workflow "{workflow}" not found', file=sys.stderr)
                return 1
            workflows = [stored]
        else:
            workflows = store.active_workflows()
        rows = [row for w in workflows for row in task_rows(w.as_row()) if parsed.matches(row.labels)]
    _print_list(output=output, items=[task_resource(r) for r in rows], what="tasks",
                table=lambda: tasks_table(rows, wide=output == "wide"))
    return 0


def _print_list(*, output: str, items: list[dict], what: str, table: Callable[[], str]) -> None:
    """A listing as kubectl prints one: a List document for json/yaml, else a table (and a note
    on stderr when there is nothing to show)."""
    if output in ("json", "yaml"):
        sys.stdout.write(dump({"apiVersion": "v1", "kind": "List", "items": items}, output=output))
    elif not items:
        print(f"No {what} found.", file=sys.stderr)
    else:
        sys.stdout.write(table())


def _find(store: Store, name: str) -> StoredWorkflow | None:
    namespace, _, short = name.rpartition("/")
    stored = store.workflow(namespace or "default", short)
    if stored is None:
        print(f'Error: workflow "{name}" not found', file=sys.stderr)
    return stored


def get_workflow(*, state: str | None, name: str, output: str) -> int:
    now = datetime.now(UTC)
    with open_store(state_dir(state)) as store:
        stored = _find(store, name)
        if stored is None:
            return 1
        row = stored.as_row()
    if output in ("json", "yaml"):
        sys.stdout.write(dump(resource(row), output=output))
    else:
        sys.stdout.write(workflows_table([row], now=now, wide=output == "wide"))
    return 0


def describe_workflow(*, state: str | None, name: str, watch: bool = False) -> int:
    now = datetime.now(UTC)
    with open_store(state_dir(state)) as store:
        stored = _find(store, name)
        if stored is None:
            return 1
        if watch:
            from .watch import watch_description

            return watch_description(store, stored.uid)
        sys.stdout.write(description(store, stored, now=now))
    return 0


def description(store: Store, stored: StoredWorkflow, *, now: datetime) -> str:
    """What ``describe workflow`` prints of ``stored``."""
    return describe(stored.as_row(), store.events(stored.uid, limit=20), now=now,
                    attempts=store.history(stored.uid), approvals=store.approvals(stored.uid))
