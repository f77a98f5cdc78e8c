"""What both transports share: the `Transport` protocol, its errors, `CommandResult`, and the
checks of arguments and file patterns. `LocalTransport` lives in `.local`, `SshTransport` in `.ssh`
(see there for what SSH adds).

Called by the Slurm client for every sbatch, squeue, sacct, scontrol and scancel, and for writing
batch scripts and fetching outputs. What a caller can rely on, whichever transport it holds:

- A command is an argv list, never a shell string. `LocalTransport` runs it without a shell;
  `SshTransport` quotes every word, so no word of a manifest is ever parsed by a shell.
- A command that ran is a `CommandResult`, whatever its exit code. `TransportError` means no
  result was obtained (connection refused or lost, authentication failed, timeout, a file that
  could not be written): transient for the caller, which retries later with backoff. Its
  `HostKeyError` subclass is terminal: a human must check the host key. Messages say what to do
  next and never contain key material.
- Every call is bounded. `run` enforces its timeout for the whole command, and on timeout kills the
  command's process group, so nothing it started lives on.
- Files: `write_file` is atomic (a temporary file in the same directory, then rename); `fetch`
  copies regular files only (never symlinks, which could point anywhere on the cluster) and
  refuses patterns that would leave the directory; `read_file` returns at most `limit` bytes from
  `offset` (fewer at the end of the file, None when there is no such file), so a caller following a
  growing file reads only what is new. Remote paths must be absolute.
- `watch_names` streams the names that appear in one folder (the jobs' end records) to a
  callback until `stop` is set, without running any Slurm command: the names already there
  first, then each new one as it arrives, seconds at most after (names may repeat). It returns
  when `stop` is set and raises `TransportError` when the watch broke (the caller watches again).
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Protocol

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TransportError(Exception):
    """The command could not be run or its result not obtained; retry later with backoff."""


class CommandTimeout(TransportError):
    """The command did not finish within its timeout; it was stopped."""


class HostKeyError(TransportError):
    """The server's host key is unknown (and not to be trusted on first use) or has changed."""


@dataclass(frozen=True)
class CommandResult:
    """What a command that ran reported. A command killed by signal N exits 128+N locally (as in a
    shell) and -1 over SSH (the server reports no exit status then)."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


class Transport(Protocol):
    description: str

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult: ...

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None: ...

    def make_dirs(self, *paths: str) -> None: ...

    def fetch(self, directory: str, patterns: Sequence[str], destination: Path) -> list[Path]: ...

    def read_file(self, path: str, *, offset: int, limit: int) -> bytes | None: ...

    def watch_names(self, directory: str, found: Callable[[list[str]], None], stop: threading.Event) -> None: ...

    def close(self) -> None: ...


# --- arguments shared by both transports -------------------------------------------------------


def _checked_argv(argv: Sequence[str], env: Mapping[str, str] | None, timeout: float) -> tuple[str, ...]:
    if isinstance(argv, str):
        raise ValueError("argv must be a list of words, not a string")
    words = tuple(argv)
    if not words or not words[0]:
        raise ValueError("argv must name a command")
    if any("\0" in word for word in words):
        raise ValueError("argv words cannot contain NUL characters")
    for name in env or {}:
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not valid")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    return words


def _absolute(path: str) -> PurePosixPath:
    # Relative paths would mean the working directory here and the home directory over SSH.
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must be an absolute path")
    return PurePosixPath(path)


def _pattern_parts(pattern: str) -> tuple[str, ...]:
    if pattern.startswith("/"):
        raise ValueError(f"output pattern {pattern!r} is absolute; patterns are relative to the directory")
    parts = tuple(part for part in pattern.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ValueError(f"output pattern {pattern!r} leaves the directory ('..')")
    if not parts:
        raise ValueError("an output pattern cannot be empty")
    return parts


# Filesystems whose changes inotify sees whatever machine made them. On a network filesystem
# (NFS, Lustre, GPFS...) a compute node's write raises no event on the login node: a watch
# there lists the folder each second instead.
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "ext2/ext3", "xfs", "btrfs", "tmpfs", "overlay", "overlayfs",
                               "zfs", "f2fs"})
# How often a folder on a network filesystem is listed.
LIST_SECONDS = 1.0


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _shown(words: Sequence[str]) -> str:
    text = shlex.join(words)
    return text if len(text) <= 200 else text[:197] + "..."


# Lists one directory as (name, is_directory) for regular files and real directories only;
# a missing directory lists as empty.
_Lister = Callable[[str], list[tuple[str, bool]]]


def _matching_files(directory: PurePosixPath, patterns: Sequence[str], list_dir: _Lister) -> list[str]:
    """Relative paths of the files under `directory` matching any of the glob patterns.

    Each pattern is matched one path segment at a time with fnmatch (so '*' also matches names
    starting with a dot, and never crosses a '/'); a '**' segment matches any number of directories.
    Only the directories a pattern can reach are listed.
    """
    pattern_parts = [_pattern_parts(pattern) for pattern in patterns]
    listings: dict[str, list[tuple[str, bool]]] = {}
    found: set[str] = set()

    def entries(relative: str) -> list[tuple[str, bool]]:
        if relative not in listings:
            listings[relative] = list_dir(str(directory / relative) if relative else str(directory))
        return listings[relative]

    def child(relative: str, name: str) -> str:
        return f"{relative}/{name}" if relative else name

    def walk(relative: str, parts: tuple[str, ...]) -> None:
        head, rest = parts[0], parts[1:]
        if head == "**":
            if rest:
                walk(relative, rest)
            for name, is_dir in entries(relative):
                if is_dir:
                    walk(child(relative, name), parts)
                elif not rest:
                    found.add(child(relative, name))
            return
        for name, is_dir in entries(relative):
            if not fnmatchcase(name, head):
                continue
            if rest and is_dir:
                walk(child(relative, name), rest)
            elif not rest and not is_dir:
                found.add(child(relative, name))

    for parts in pattern_parts:
        walk("", parts)
    return sorted(found)


def _replace_into(destination: Path, relative: str, *, source: str, copy: Callable[[str, str], object]) -> Path:
    """Copy source to destination/relative through a temporary file, so readers never see half a file."""
    target = destination.joinpath(*relative.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    try:
        copy(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
