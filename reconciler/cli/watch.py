"""``--watch`` for ``reconciler get workflows`` and ``reconciler describe workflow``: the view is
drawn again whenever the state it shows changes, until Ctrl-C.

Called by :mod:`reconciler.cli.commands`. It only reads the store: once a second it reads what
the view shows, and compares a digest of that state (statuses, events, attempts; never the
clock, so ages ticking by cause no redraw) with the last one drawn. On a terminal each drawing
replaces the screen; into a pipe or a file, drawings follow one another, a blank line apart, as
``kubectl get --watch`` appends. Ctrl-C ends it with exit code 0.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .progress import element_progress, progress_bar

if TYPE_CHECKING:
    from ..core.selectors import Selector
    from ..store.database import Store

POLL_SECONDS = 1.0
# Home, then clear the screen: the next drawing replaces the last one on a terminal.
CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True)
class View:
    """What a view shows now: a digest of the state it draws, and the drawing."""

    state: str
    draw: Callable[[datetime], str]  # drawn only when it changed, at that moment


def digest(*parts: object) -> str:
    """A digest of the state a view shows (JSON-able parts), to tell whether it changed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def frame(previous: str | None, view: View, *, now: datetime, terminal: bool) -> str | None:
    """What to write for ``view``: None when its state is the one last drawn (``previous``),
    else the drawing, replacing the screen on a terminal or after a blank line elsewhere."""
    if previous == view.state:
        return None
    text = view.draw(now)
    if terminal:
        return CLEAR + text
    return text if previous is None else "\n" + text


def watch(read: Callable[[], View], *, out: TextIO | None = None) -> int:
    """Draw ``read()`` now and again whenever its state changes, until Ctrl-C (exit 0)."""
    stream = out or sys.stdout
    terminal = stream.isatty()
    previous: str | None = None
    try:
        while True:
            view = read()
            text = frame(previous, view, now=datetime.now(UTC), terminal=terminal)
            if text is not None:
                stream.write(text)
                stream.flush()
                previous = view.state
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        if terminal:
            stream.write("\n")
        return 0


def watch_workflows(directory: Path, selector: Selector, *, output: str) -> int:
    """``get workflows --watch``: the table with a progress bar per workflow."""
    from .commands import open_store

    if output not in ("table", "wide"):
        print(f"get workflows --watch draws a table: use -o table or -o wide, not -o {output}", file=sys.stderr)
        return 2
    with open_store(directory) as store:
        return watch(lambda: workflows_view(store, selector, wide=output == "wide"))


def workflows_view(store: Store, selector: Selector, *, wide: bool) -> View:
    """The workflows ``selector`` matches, as ``get workflows`` lists them, with progress bars."""
    from .commands import listed_workflows
    from .output import workflows_table

    rows = listed_workflows(store, selector)
    state = digest([(r.uid, r.generation, r.labels, r.status and r.status.model_dump(mode="json")) for r in rows])

    def draw(now: datetime) -> str:
        return workflows_table(rows, now=now, wide=wide, bars=True) if rows else "No workflows found.\n"

    return View(state=state, draw=draw)


def watch_description(store: Store, uid: str) -> int:
    """``describe workflow NAME --watch``."""
    return watch(lambda: description_view(store, uid))


def description_view(store: Store, uid: str) -> View:
    """The workflow's description under a title line with its progress bar."""
    from .commands import description

    stored = store.workflow_by_uid(uid)
    assert stored is not None, "a workflow's row is never deleted"
    state = digest(stored.generation, stored.removed_at, stored.status and stored.status.model_dump(mode="json"),
                   [(e.at, e.reason, e.message) for e in store.events(uid, limit=20)],
                   [(a.key, a.job_id, a.outcome, a.states) for a in store.history(uid)], store.approvals(uid))

    def draw(now: datetime) -> str:
        title = (f"{stored.namespace}/{stored.name}  {progress_bar(element_progress(stored.status))} elements  "
                 f"(at {now:%H:%M:%S}; Ctrl-C to stop)\n\n")
        return title + description(store, stored, now=now)

    return View(state=state, draw=draw)
