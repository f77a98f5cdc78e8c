"""The transport that runs a cluster's commands on this machine, for a login node the reconciler
itself runs on. What it guarantees is the `Transport` contract in `base`: an argv list run without
a shell, a timeout that kills the command's whole process group, atomic writes, fetches of regular
files only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import watchfiles

from .base import (
    LIST_SECONDS,
    LOCAL_FILESYSTEMS,
    CommandResult,
    CommandTimeout,
    TransportError,
    _absolute,
    _checked_argv,
    _decode,
    _matching_files,
    _replace_into,
    _shown,
)

# Set on the threads in `watch_names`: watchfiles logs every batch of changes at INFO, which for
# job ends would be a line per job in the loop's log.
_watching = threading.local()


class _QuietWhileWatchingEnds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_watching, "active", False)


logging.getLogger("watchfiles.main").addFilter(_QuietWhileWatchingEnds())


class LocalTransport:
    """Runs commands on this machine as subprocesses (never through a shell)."""

    def __init__(self) -> None:
        self.description = "local"

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        words = _checked_argv(argv, env, timeout)
        try:
            process = subprocess.Popen(
                words,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **env} if env else None,
                # Its own process group, so a timeout kills everything the command started.
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as error:
            # Report what a shell (and so the SSH transport) reports: the command ran and failed.
            code = 127 if isinstance(error, FileNotFoundError) else 126
            return CommandResult(argv=words, exit_code=code, stdout="", stderr=f"{words[0]}: {error.strerror}\n")
        except OSError as error:
            raise TransportError(
                f"could not start {_shown(words)} locally: {error}; check the machine's resources"
            ) from error
        try:
            out, err = process.communicate(input=stdin.encode() if stdin is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(process)
            raise CommandTimeout(
                f"{_shown(words)} did not finish within {timeout:g}s locally and was killed; "
                "the cluster may be overloaded: retry later or allow a longer timeout"
            ) from None
        code = process.returncode
        # Killed by signal N: report 128+N like a shell does.
        return CommandResult(
            argv=words, exit_code=128 - code if code < 0 else code, stdout=_decode(out), stderr=_decode(err)
        )

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            # A descendant left the process group and keeps the pipes open: stop waiting for it.
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
            process.wait()

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        target = Path(_absolute(path))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                    os.fchmod(stream.fileno(), mode)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise TransportError(
                f"could not write {path} locally: {error}; check that its directory is writable"
            ) from error

    def make_dirs(self, *paths: str) -> None:
        for path in paths:
            try:
                os.makedirs(_absolute(path), exist_ok=True)
            except OSError as error:
                raise TransportError(f"could not create directory {path} locally: {error}") from error

    def fetch(self, directory: str, patterns: Sequence[str], destination: Path) -> list[Path]:
        root = _absolute(directory)
        try:
            relatives = _matching_files(root, patterns, _list_local)
            return [
                _replace_into(destination, relative, source=str(root / relative), copy=_copy_local)
                for relative in relatives
            ]
        except OSError as error:
            raise TransportError(f"could not fetch outputs from {directory} locally: {error}") from error

    def read_file(self, path: str, *, offset: int, limit: int) -> bytes | None:
        target = _absolute(path)
        try:
            with open(target, "rb") as stream:
                stream.seek(offset)
                return stream.read(limit)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise TransportError(f"could not read {path} locally: {error}; check its permissions") from error

    def watch_names(self, directory: str, found: Callable[[list[str]], None], stop: threading.Event) -> None:
        root = Path(_absolute(directory))
        _watching.active = True
        try:
            root.mkdir(parents=True, exist_ok=True)
            polling = _filesystem(root) not in LOCAL_FILESYSTEMS
            listed = False
            for changes in watchfiles.watch(
                root, stop_event=stop, recursive=False, debounce=50, step=20, rust_timeout=1000,
                yield_on_timeout=True, raise_interrupt=False, force_polling=polling,
                poll_delay_ms=int(LIST_SECONDS * 1000),
            ):
                if not listed:
                    # The first yield comes once the watch is in place: what is there now was
                    # written before it, everything later raises a change.
                    listed = True
                    found([entry.name for entry in os.scandir(root) if not entry.name.startswith(".")])
                names = [Path(path).name for change, path in changes if change is not watchfiles.Change.deleted]
                if names:
                    found([name for name in names if not name.startswith(".")])
        except OSError as error:
            raise TransportError(f"could not watch {directory} locally: {error}") from error
        finally:
            _watching.active = False

    def close(self) -> None:
        pass


def _filesystem(path: Path) -> str:
    """The type of the filesystem ``path`` lies on, as /proc/self/mounts names it ("" unknown)."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return kind


def _list_local(path: str) -> list[tuple[str, bool]]:
    try:
        with os.scandir(path) as listing:
            return [
                (entry.name, entry.is_dir(follow_symlinks=False))
                for entry in listing
                if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _copy_local(source: str, target: str) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)
