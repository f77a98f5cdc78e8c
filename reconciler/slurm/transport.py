"""Run commands and move files on a cluster's login node: on this machine, or over SSH.

Called by the Slurm client for every sbatch, squeue, sacct, scontrol and scancel, and for writing
batch scripts and fetching outputs; the controller gets one per SlurmCluster from `open_transport`.
This module holds what both transports share: the `Transport` protocol, its errors, `CommandResult`,
the checks of arguments, and `LocalTransport`; `SshTransport` lives in `reconciler.slurm.ssh` (see
there for what SSH adds). What a caller can rely on, whichever transport it holds:

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
  refuses patterns that would leave the directory. Remote paths must be absolute.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from reconciler.api.cluster import SlurmClusterSpec, TransportKind

if TYPE_CHECKING:
    # What `__getattr__` below hands out, for type checkers; at run time .ssh is imported on first use.
    from .ssh import SshTransport as SshTransport  # noqa: PLC0414 - the explicit re-export form

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

    def close(self) -> None: ...


def open_transport(spec: SlurmClusterSpec, *, private_key: str | None = None) -> Transport:
    """The transport a SlurmCluster asks for; `private_key` (e.g. from its Secret) is for SSH."""
    if spec.transport is TransportKind.SSH:
        from .ssh import SshTransport  # here, not at the top: .ssh imports this module

        assert spec.ssh is not None  # the model rejects transport ssh without an ssh section
        return SshTransport(spec.ssh, private_key=private_key)
    return LocalTransport()


def __getattr__(name: str) -> object:
    # `from reconciler.slurm.transport import SshTransport` works too; .ssh (and paramiko) loads on first use.
    if name == "SshTransport":
        from .ssh import SshTransport

        return SshTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


# --- local -------------------------------------------------------------------------------------


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

    def close(self) -> None:
        pass


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
