"""Reading the store's event history for watches: where a watch starts, and what it sees next.

Called by the handlers' watch stream, one call per wait. Guarantees, as kube-apiserver's watch
cache does: a watch without a resourceVersion (or ``0``, or with ``sendInitialEvents``) starts
with a synthetic ADDED per current object, then sees every later event; a watch from a
resourceVersion sees exactly the events after it, or 410 Expired when the history no longer
reaches back that far (``too old resource version: N (OLDEST)``); with a selector, an object that
starts matching arrives as ADDED and one that stops matching as DELETED.
"""

from __future__ import annotations

from collections.abc import Callable

from . import admission
from .errors import bad_request, expired
from .resources import ResourceType
from .storage import JSON, Selection, Store

Events = list[tuple[str, JSON]]


def watch_start(
    store: Store, rt: ResourceType, selection: Selection, resource_version: str, send_initial: bool
) -> tuple[Events, int]:
    """The synthetic ADDED events a watch starts with, and the resourceVersion it resumes from."""
    with store.lock:
        if resource_version in ("", "0") or send_initial:
            items, rv = store.select(rt, selection)
            return [("ADDED", i) for i in items], int(rv)
        try:
            start = int(resource_version)
        except ValueError:
            raise bad_request(f'invalid resource version "{resource_version}"') from None
        if start < store.floor:
            raise expired(f"too old resource version: {start} ({store.floor})")
        return [], start


def watch_next(
    store: Store, rt: ResourceType, selection: Selection, cursor: int, timeout: float, stop: Callable[[], bool]
) -> tuple[Events, int]:
    """Events after ``cursor`` for this watch (waiting up to ``timeout`` for one), and the new
    cursor. Raises 410 Expired when the history no longer reaches back to ``cursor``."""
    with store.lock:
        if not any(e.rv > cursor for e in store.history) and not store.closed and not stop():
            store.changed.wait(timeout)
        if cursor < store.floor:
            raise expired(f"too old resource version: {cursor} ({store.floor})")
        out: Events = []
        for e in store.history:
            if e.rv <= cursor or e.storage != rt.storage:
                continue
            now = selection.matches(e.obj)
            before = e.prev is not None and selection.matches(e.prev)
            if e.type == "MODIFIED":
                kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else ""
            else:
                kind = e.type if now else ""
            if kind:
                out.append((kind, admission.to_view(rt, e.obj)))
        return out, max(cursor, store.rv)
