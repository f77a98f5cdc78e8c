"""Sources of desired state: a folder of manifests, or a branch of a Git repository.

Called by ``reconciler run`` (through :func:`open_source`) and driven by the controller through the
:class:`Source` protocol: ``read()`` for a :class:`Snapshot`, ``wait()`` between ticks, ``wake()``
from the webhook receiver or a signal handler, ``close()`` at the end.
"""

from __future__ import annotations

from pathlib import Path

from .base import Snapshot, Source, SourceError
from .directory import DirectorySource
from .locations import is_bare_repository, is_repository, local_repository

__all__ = ["DirectorySource", "Snapshot", "Source", "SourceError", "open_source"]


def open_source(source: str, *, path: str | None = None, branch: str | None = None, cache_dir: Path,
                revision: str | None = None) -> Source:
    """The source ``source`` names.

    A URL (``ssh://``, ``https://``, ``file://``, or scp-like ``git@host:org/repo``) is a Git
    source. A local path is a Git source when it is a bare repository, or any repository when a
    ``branch`` or a ``revision`` (a commit, tag or branch read instead of the branch's tip) is
    given; otherwise it is a folder of manifests, read as it is on disk, edits that are not
    committed included. Raises ValueError for a ``path`` that leaves the root, an invalid
    branch name, or a branch given for a plain folder.
    """
    local = local_repository(source)
    if (local is None or "://" in source or is_bare_repository(local)
            or ((branch or revision) is not None and is_repository(local))):
        # Imported only here: GitPython takes longer to import than the rest of the loop, and a
        # folder needs none of it.
        from .git import GitSource

        return GitSource(source, branch=branch, path=path, cache_dir=cache_dir, revision=revision)
    if branch is not None:
        raise ValueError(f"{source} is not a Git repository, so it has no branch {branch!r}")
    if revision is not None:
        raise ValueError(f"{source} is not a Git repository, so it has no revision {revision!r}")
    return DirectorySource(local, path=path)
