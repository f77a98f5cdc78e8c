"""What every source of desired state offers the control loop, and the parts the sources share.

Called by the controller (through :class:`Source`) and by the directory and Git sources, which
build on :class:`Wakeup`, :class:`ChangeWatcher` and :func:`load_tree`. Guarantees:

- ``read()`` returns a complete :class:`Snapshot` or raises :class:`SourceError`; it never returns
  half a tree. A file that fails to parse is a ``BrokenDocument`` in the snapshot, not an error of
  the source, so one bad file never hides the others.
- File names in a snapshot (``files``, every ``SourceLocation.file`` and ``ManifestError.file``) are
  POSIX paths relative to the source's root, whatever directory the files were read from.
- ``wait()`` is level-triggered: it reports that something *may* have changed, and a change that
  happens while nobody waits is remembered until the next ``wait()``. Spurious wake-ups are
  allowed, lost ones are not (once the first ``read()`` has returned).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import watchfiles

from ..manifests.loader import LoadResult, load_file, manifest_files

log = logging.getLogger(__name__)

# watchfiles groups the events of one burst: an editor's save (temporary file, rename) or a push
# (objects, then a ref written through a lock file) becomes a single wake-up. It yields once
# STEP_MS pass with no new event (at most DEBOUNCE_MS after the first), so a wake comes STEP_MS
# to twice that after the last write: the events of one save or one ref update come microseconds
# apart, and a burst cut in two only costs a spare wake (wakes are level-triggered), never a lost one.
DEBOUNCE_MS = 400
STEP_MS = 30
# How often the watcher thread checks that the watched directory is still the one it watches
# (a folder replaced by `mv` or `rm -r` and re-created keeps no watch).
CHECK_MS = 250
# How long to wait before watching again when the folder is missing or the watch failed.
RETRY_SECONDS = 1.0


class SourceFiles(Protocol):
    """The files of a source at the moment a snapshot was read, for task inputs. Paths are POSIX
    and relative to the source's root; only regular files count (never a symlink)."""

    def listing(self, folder: str) -> list[str]:
        """Every file below ``folder`` ("" for the root), recursively; empty when it is missing."""
        ...

    def read(self, path: str) -> FileContent | None:
        """The file's content, or None when there is no such regular file. Raises
        :class:`SourceError` when it cannot be read this time."""
        ...


class ConfigMaps(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A ConfigMap's keys and values, or None when there is none of that name. Raises
        :class:`SourceError` when it cannot be read this time."""
        ...


@dataclass(frozen=True)
class FileContent:
    data: bytes
    executable: bool


@dataclass(frozen=True)
class Snapshot:
    """Everything a source held at one moment."""

    load: LoadResult  # every resource and every broken document, names relative to the root
    revision: str | None  # the Git commit read; None for a plain directory
    files: tuple[str, ...]  # the manifest files read, relative to the root, in a stable order
    content: SourceFiles | None = None  # the files as of this snapshot; None where a source has none
    config_maps: ConfigMaps | None = None  # Kubernetes mode: the ConfigMaps inputs may name


class SourceError(Exception):
    """The source could not be read at all this time. Transient: keep the last good state, retry."""


class Source(Protocol):
    description: str

    def read(self) -> Snapshot:
        """The current content; raises :class:`SourceError` when it cannot be read."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block until a change may have happened (True) or ``timeout`` seconds passed (False)."""
        ...

    def wake(self) -> None:
        """Make the current or next ``wait()`` return True at once. Safe from any thread."""
        ...

    def close(self) -> None: ...


class Wakeup:
    """A level-triggered flag: ``wake`` from any thread or signal handler, ``wait`` from the loop.

    A pipe rather than a ``threading.Event``: ``Event.set`` takes a lock, and a signal handler
    that interrupts the main thread while it holds that lock would deadlock; a write to a
    non-blocking pipe never blocks, and ``poll`` returns as soon as the handler has written.
    """

    def __init__(self) -> None:
        self._reader, self._writer = os.pipe()
        os.set_blocking(self._reader, False)
        os.set_blocking(self._writer, False)
        self._poll = select.poll()
        self._poll.register(self._reader, select.POLLIN)
        # The descriptors are closed only when nothing can call wake() any more: closing them
        # earlier would let a late wake() write into whatever file reuses the number.
        weakref.finalize(self, _close_all, self._reader, self._writer)

    def wake(self) -> None:
        # A full pipe holds earlier wakes: the loop is already awake.
        with contextlib.suppress(BlockingIOError):
            os.write(self._writer, b"!")

    def wait(self, timeout: float) -> bool:
        if not self._poll.poll(max(0, int(timeout * 1000))):
            return False
        # Drain every wake that came in so far: any number of them is one "something changed",
        # and the read that follows sees what they announced.
        while True:
            try:
                if len(os.read(self._reader, 4096)) < 4096:
                    break
            except BlockingIOError:
                break
        return True


def _close_all(*descriptors: int) -> None:
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            os.close(descriptor)


Accept = Callable[[tuple[str, ...]], bool]


class ChangeWatcher:
    """Watches one directory tree with watchfiles on a daemon thread and rings a :class:`Wakeup`.

    ``locate`` returns the directory to watch, or None while it does not exist; the thread then
    retries every second. Every watch rings once it is in place, the first one too: whatever
    changed before it was (between the source's first read and the watch, or while the folder
    was missing) is read by the tick that ring starts, so no read ever waits for the watch.
    ``accept`` sees each changed path as parts relative to that directory (the empty tuple for
    the directory itself) and says whether it matters.
    """

    def __init__(self, *, name: str, wakeup: Wakeup, locate: Callable[[], Path | None], accept: Accept,
                 recursive: bool = True) -> None:
        self._wakeup = wakeup
        self._locate = locate
        self._accept = accept
        self._recursive = recursive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            root = self._locate()
            if root is None:
                self._stop.wait(RETRY_SECONDS)
                continue
            try:
                self._watch(root)
            except Exception as exc:
                log.debug("watching %s failed: %s; watching again in %.0fs", root, exc, RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)

    def _watch(self, root: Path) -> None:
        identity = _identity(root)

        def matters(_change: watchfiles.Change, path: str) -> bool:
            try:
                parts = Path(path).relative_to(root).parts
            except ValueError:
                return True
            return self._accept(parts)

        ready = False
        for changes in watchfiles.watch(
            root, watch_filter=matters, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=self._stop,
            rust_timeout=CHECK_MS, yield_on_timeout=True, raise_interrupt=False, recursive=self._recursive,
        ):
            # The first yield (at the latest after CHECK_MS) proves the watch is registered.
            if not ready:
                ready = True
                self._wakeup.wake()
            if changes:
                self._wakeup.wake()
            if _identity(root) != identity:
                log.debug("%s was replaced or removed; watching again", root)
                self._wakeup.wake()
                return


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


def relative_parts(path: str | None) -> tuple[str, ...]:
    """Checks a sub-folder option (like Flux's ``--path``): relative, inside the root."""
    if not path:
        return ()
    pure = PurePosixPath(path)
    parts = tuple(part for part in pure.parts if part not in ("", "."))
    if pure.is_absolute() or ".." in parts:
        raise ValueError(f"path {path!r} must be relative to the source root and stay inside it")
    return parts


def load_tree(*, root: Path, target: Path) -> tuple[LoadResult, tuple[str, ...]]:
    """Load every manifest under ``target`` (a folder or one file), naming files relative to ``root``.

    The files are listed once and each is loaded from that list, so ``files`` and the load always
    agree even if the tree changes meanwhile (a change rings the watcher, and the next read sees it).
    """
    result = LoadResult()
    files: list[str] = []
    for path in manifest_files(target):
        name = path.relative_to(root).as_posix()
        files.append(name)
        result.extend(load_file(path, display=name))
    return result, tuple(files)
