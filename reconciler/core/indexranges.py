"""Compact index sets: "0-9999,10002" for the elements of a job array.

Used for array status (so a 30,000-element task's status stays a few hundred bytes) and for the
Slurm ``--array`` expression of a resubmission. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PART = re.compile(r"^(\d+)(?:-(\d+))?(?::(\d+))?$")


def compress(indices: Iterable[int]) -> str:
    """The shortest "a-b,c" form of a set of non-negative indices ("" when empty)."""
    ordered = sorted(set(indices))
    if not ordered:
        return ""
    parts: list[str] = []
    start = prev = ordered[0]
    for index in ordered[1:]:
        if index != prev + 1:
            parts.append(_span(start, prev))
            start = index
        prev = index
    parts.append(_span(start, prev))
    return ",".join(parts)


def _span(first: int, last: int) -> str:
    return f"{first}-{last}" if last != first else str(first)


def expand(text: str, *, limit: int = 10_000_000) -> list[int]:
    """The indices in "a-b,c" or Slurm's "a-b:step" notation; a "%N" suffix is ignored."""
    text = text.strip().strip("[]").split("%", 1)[0]
    if not text:
        return []
    result: list[int] = []
    for part in text.split(","):
        match = _PART.match(part.strip())
        if not match:
            raise ValueError(f"invalid index range {part!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        step = int(match.group(3)) if match.group(3) else 1
        if last < first or step < 1:
            raise ValueError(f"invalid index range {part!r}")
        if len(result) + (last - first) // step + 1 > limit:
            raise ValueError(f"index range {text!r} has more than {limit} elements")
        result.extend(range(first, last + 1, step))
    return sorted(set(result))

