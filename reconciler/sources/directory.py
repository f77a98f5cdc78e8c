"""Desired state from a folder of YAML manifests on this machine (``reconciler run ./plans``).

Called by the controller through :func:`reconciler.sources.open_source`. Guarantees: ``read()``
loads every ``*.yaml``/``*.yml`` under ``root/path`` (hidden files and folders skipped), names
files relative to ``root``, and raises :class:`SourceError` while that folder is missing (an
unmounted share must not read as "every workflow was deleted"). ``wait()`` returns within a few
hundred milliseconds of a saved edit, through a watchfiles watch on a background thread; the
caller's interval is only the fallback for file systems that report nothing (some network mounts).
Task inputs are read from the folder as it is on disk when the engine asks (``Snapshot.content``):
regular files below the root only, never through a symlink.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from watchfiles import Change, DefaultFilter

from ..manifests.loader import MANIFEST_SUFFIXES
from .base import ChangeWatcher, FileContent, Snapshot, SourceError, Wakeup, load_tree, relative_parts

# Editor droppings (swap files, backups) are not manifests; saving one must not wake the loop.
_IGNORED = DefaultFilter()


class DirectorySource:
    def __init__(self, root: Path, *, path: str | None = None) -> None:
        self._root = root.expanduser().absolute()
        parts = relative_parts(path)
        if parts and self._root.is_file():
            raise ValueError(f"{self._root} is a file; a path inside it makes no sense")
        target = self._root.joinpath(*parts)
        self._single_file = target.is_file() or (not target.is_dir() and target.suffix in MANIFEST_SUFFIXES)
        # Names are relative to the folder given, so a single file given on its own reads as its name.
        self._base = self._root.parent if self._root.is_file() or (self._single_file and not parts) else self._root
        self._target = target
        self.description = f"directory {target}"
        self._wakeup = Wakeup()
        self._watcher = ChangeWatcher(
            name=f"watch {target}", wakeup=self._wakeup, locate=self._locate, accept=self._matters,
            recursive=not self._single_file,
        )

    def read(self) -> Snapshot:
        if not self._target.exists():
            raise SourceError(f"{self._target} does not exist")
        try:
            load, files = load_tree(root=self._base, target=self._target)
        except OSError as exc:
            raise SourceError(f"cannot list {self._target}: {exc.strerror or exc}") from exc
        return Snapshot(load=load, revision=None, files=files, content=DirectoryFiles(self._base))

    def wait(self, timeout: float) -> bool:
        return self._wakeup.wait(timeout)

    def wake(self) -> None:
        self._wakeup.wake()

    def close(self) -> None:
        self._watcher.close()

    def _locate(self) -> Path | None:
        # A single file is watched through its folder: editors replace the file on save, and a
        # watch on the old file would go quiet.
        folder = self._target.parent if self._single_file else self._target
        return folder if folder.is_dir() else None

    def _matters(self, parts: tuple[str, ...]) -> bool:
        if not parts:
            return True  # the watched folder itself went away
        if self._single_file:
            return parts[0] == self._target.name
        if any(part.startswith(".") for part in parts):
            return False
        return _IGNORED(Change.modified, os.sep.join(parts))


class DirectoryFiles:
    """The files below a folder, read from disk when asked (see :class:`SourceFiles`)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def listing(self, folder: str) -> list[str]:
        found = []
        for directory, folders, names in os.walk(self._root.joinpath(*folder.split("/")) if folder else self._root):
            # Hidden folders (.git, editor state) are not inputs unless named exactly.
            folders[:] = [name for name in folders if not name.startswith(".")]
            for name in names:
                path = Path(directory, name)
                if path.is_file() and not path.is_symlink():
                    found.append(path.relative_to(self._root).as_posix())
        return sorted(found)

    def read(self, path: str) -> FileContent | None:
        parts = path.split("/")
        target = self._root.joinpath(*parts)
        try:
            # A folder on the way that is a symlink could lead anywhere on this machine.
            if target.parent.resolve() != self._root.resolve().joinpath(*parts[:-1]):
                return None
            status = os.lstat(target)
            if not stat.S_ISREG(status.st_mode):
                return None
            return FileContent(data=target.read_bytes(), executable=bool(status.st_mode & stat.S_IXUSR))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(f"cannot read {target}: {exc.strerror or exc}") from exc
