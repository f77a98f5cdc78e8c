"""Task inputs as the pure core sees them: one digest of their content per task, or what is missing.

Called by the engine (which reads the files at the edge and names them with :func:`expand`
and :func:`combined_digest`), by the planner (a task whose inputs are missing is not submitted)
and by the status computation (the ``InputsReady`` condition). Pure: plain strings in, plain
data out. Guarantees: the digest of a task's inputs depends only on where each file lands in the
run directory and on its content, never on the order the files were found in.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

INPUTS_READY = "InputsReady"
INPUT_MISSING = "InputMissing"
_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class TaskInputs:
    """What the edge found of one task's inputs this tick."""

    digest: str  # of every file found (target path and content), see combined_digest
    missing: tuple[str, ...] = ()  # one sentence per input that names nothing

    @property
    def complete(self) -> bool:
        return not self.missing


def combined_digest(files: Iterable[tuple[str, str]]) -> str:
    """One digest of ``(target path, content sha256)`` pairs, whatever their order."""
    digest = hashlib.sha256()
    for target, content in sorted(files):
        digest.update(f"{target}\0{content}\n".encode())
    return digest.hexdigest()


def is_pattern(path: str) -> bool:
    return any(character in _MAGIC for character in path)


def fixed_prefix(pattern: str) -> str:
    """The folder a glob can only match below: its leading segments without wildcards."""
    kept: list[str] = []
    for part in pattern.split("/")[:-1]:
        if is_pattern(part):
            break
        kept.append(part)
    return "/".join(kept)


def expand(pattern: str, names: Sequence[str]) -> list[str]:
    """The ``names`` (POSIX paths) a glob matches, segment by segment as a shell does: ``*``
    never crosses a ``/``."""
    wanted = pattern.split("/")
    return sorted(name for name in names if _matches(name.split("/"), wanted))


def _matches(parts: Sequence[str], wanted: Sequence[str]) -> bool:
    return len(parts) == len(wanted) and all(fnmatchcase(part, glob) for part, glob in zip(parts, wanted, strict=True))


def source_path(manifest: str | None, path: str) -> str:
    """Where an input named in ``manifest`` (relative to the source root) lies in the source."""
    folder = posixpath.dirname(manifest) if manifest else ""
    return posixpath.join(folder, path) if folder else path


def missing_message(described: str, *, manifest: str | None, task: str) -> str:
    where = f" (named in {manifest})" if manifest else ""
    return f"task {task}: input {described} not found{where}"
