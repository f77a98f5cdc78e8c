"""Arrays sized at run time: what a size file says, and what a task waits for until it is read.

Pure. The engine reads the file an array's ``countFrom`` / ``itemsFrom`` names once the task that
writes it has succeeded, and hands its text to :func:`read_size`; the result is stored per
(workflow, task, fingerprint of the writing task), so a rerun of that task with other parameters
is read again, and passed to the planner, which plans a known size exactly like a static array
(:func:`array_indices`) and holds an unknown or invalid one back (:func:`unsized_phase`).

What it guarantees: a file is either a valid size or an :class:`InvalidSize` whose message names
the file, the line and the problem; a count is a positive integer of at most ``MAX_ELEMENTS``; an
item list has 1 to ``MAX_ELEMENTS`` non-empty lines of UTF-8 text, each at most
``MAX_ITEM_CHARS`` long. The item list itself is kept whole (normalised to one ``\\n`` after each
line, with its SHA-256) so the job can take its line from a copy on the cluster: 30,000 items are
never written into every script or status.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ..api import ArraySource, Task, TaskPhase

# A fan-out wider than this is a mistake in the file far more often than a plan; at 1,000,000
# elements the array's history is still a few groups of outcomes in the store.
MAX_ELEMENTS = 1_000_000
MAX_ITEM_CHARS = 4096
# Read at most this much of a size file: a million short items fit, a stray data file does not.
MAX_FILE_BYTES = 8 * 1024 * 1024

SIZE_UNKNOWN = "SizeUnknown"
SIZE_INVALID = "ArraySizeInvalid"

_COUNT = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class KnownSize:
    """An array's size as read; ``items`` (the normalised list) only for ``itemsFrom``."""

    count: int
    items: str | None = field(default=None, repr=False)
    items_digest: str | None = None  # sha256 of ``items``, which names its copy on the cluster


@dataclass(frozen=True)
class InvalidSize:
    """A file that cannot size the array: missing, too large, or not what it should hold."""

    message: str


ArraySize = KnownSize | InvalidSize


def described(source: ArraySource) -> str:
    return f"{source.file} of task {source.task}"


def read_size(source: ArraySource, *, items: bool, text: str, size_bytes: int, path: str) -> ArraySize:
    """What ``text`` (the file at ``path``, ``size_bytes`` long as read, at most
    ``MAX_FILE_BYTES + 1``) says as a count, or as an item list when ``items``."""
    where = f"{described(source)} ({path})"
    if size_bytes > MAX_FILE_BYTES:
        return InvalidSize(f"{where} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return _items(text, where=where) if items else _count(text, where=where)


def _count(text: str, *, where: str) -> ArraySize:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return InvalidSize(f"{where} is empty: expected a positive integer")
    extra = next((number for number, line in enumerate(lines[1:], start=2) if line), None)
    if extra is not None:
        return InvalidSize(f"{where}, line {extra}: expected one number, found more lines")
    value = lines[0]
    if not _COUNT.fullmatch(value):
        return InvalidSize(f"{where}, line 1: {_shown(value)} is not a positive integer")
    count = int(value)
    if not 1 <= count <= MAX_ELEMENTS:
        return InvalidSize(f"{where}, line 1: {count} is not between 1 and {MAX_ELEMENTS:,}")
    return KnownSize(count=count)


def _items(text: str, *, where: str) -> ArraySize:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        return InvalidSize(f"{where} is empty: expected one item per line")
    if len(lines) > MAX_ELEMENTS:
        return InvalidSize(f"{where} holds {len(lines):,} lines, more than {MAX_ELEMENTS:,}")
    kept = [line.removesuffix("\r") for line in lines]
    for number, line in enumerate(kept, start=1):
        problem = _item_problem(line)
        if problem is not None:
            return InvalidSize(f"{where}, line {number}: {problem}")
    normalised = "".join(f"{line}\n" for line in kept)
    return KnownSize(count=len(kept), items=normalised,
                     items_digest=hashlib.sha256(normalised.encode()).hexdigest())


def _item_problem(line: str) -> str | None:
    if not line.strip():
        return "is empty (one item per line, no blank lines)"
    if len(line) > MAX_ITEM_CHARS:
        return f"is longer than {MAX_ITEM_CHARS} characters"
    # The transports decode output with replacement characters: one here was not UTF-8.
    if "\ufffd" in line or "\0" in line:
        return "is not UTF-8 text"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def array_indices(task: Task, size: ArraySize | None) -> list[int | None]:
    """The task's element indices: ``[None]`` for a plain job, none yet for an array whose size
    is not known (or cannot be)."""
    if task.array is None:
        return [None]
    if task.array.source is None:
        return list(range(task.array.size))
    return list(range(size.count)) if isinstance(size, KnownSize) else []


@dataclass(frozen=True)
class Unsized:
    """An array task held back because its size is not known: its phase and why."""

    phase: TaskPhase
    message: str


def unsized_phase(task: Task, size: ArraySize | None, *, upstream_broken: bool) -> Unsized | None:
    """None when the task is planned as usual (no run-time size, or a known one). Otherwise it
    waits for the file (its writer has not succeeded, or it is being read), is skipped with a
    failed writer, or fails on a file that cannot size it: no job goes out ahead of the file."""
    if task.array is None or task.array.source is None or isinstance(size, KnownSize):
        return None
    source = task.array.source
    if isinstance(size, InvalidSize):
        return Unsized(TaskPhase.FAILED, size.message)
    if upstream_broken:
        return Unsized(TaskPhase.SKIPPED, f"{described(source)} will not be written")
    what = "item list" if task.array.items_from is not None else "count"
    return Unsized(TaskPhase.WAITING, f"waits for its {what}: {described(source)}, read when {source.task} "
                                      "has succeeded")
