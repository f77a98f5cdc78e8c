"""Run commands and move files on a cluster's login node over SSH: `SshTransport` (paramiko).

Created by `open_transport` (in `reconciler.slurm.transport`) for a SlurmCluster whose transport is
ssh, and then called by the Slurm client like any `Transport`: everything the transport module
promises holds here too. What SSH adds:

- Every word of a command is quoted with `shlex`, so no word of a manifest is ever parsed by a
  shell. (The remote login shell must be POSIX-compatible: bash, dash or zsh, not csh.)
- A timeout kills the command's process group: the command announces its group on stderr first,
  `echo <marker>$$ >&2; exec env K=V argv...`, the kill goes through a second channel, and the
  marker line never reaches the caller. Connection setup is bounded by `connect_timeout`, and
  retries by `max_attempts`: at worst max_attempts x (connect_timeout + timeout) plus the backoff.
- One connection, opened on first use and shared by threads. When it is down or drops, the call
  reconnects and is retried with jittered exponential backoff. Only calls whose result was not
  obtained are retried. A command whose connection dropped while it ran may nevertheless have
  run: a retried sbatch can submit twice. The client guards against that with the job's identity
  tag (it looks for the tag before submitting again), never by trusting that a failed call did
  nothing.
- Host keys are checked against the known_hosts file; an unknown one is trusted on first use only
  when the cluster allows it, and a changed one is a `HostKeyError`. Only the configured key
  authenticates, never an agent or ~/.ssh/id_*. Files go over SFTP.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import re
import secrets
import select
import shlex
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TypeVar

import paramiko

from ...api.cluster import SshSettings
from ...backoff import backoff_delay
from .base import (
    LIST_SECONDS,
    LOCAL_FILESYSTEMS,
    CommandResult,
    CommandTimeout,
    HostKeyError,
    TransportError,
    _absolute,
    _checked_argv,
    _decode,
    _matching_files,
    _pattern_parts,
    _replace_into,
    _shown,
)

# The transports' one logger: operators filter on this name, whichever transport logs.
logger = logging.getLogger("reconciler.slurm.transport")

_T = TypeVar("_T")
_CHUNK = 65536
_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
# Errors that mean "the connection is down or went down": reconnect and try again.
_CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError)
# Several SshTransports (one per cluster) may record new host keys in the same file at once.
_KNOWN_HOSTS_LOCK = threading.Lock()


class _Connection:
    """One authenticated SSH connection and, once a file call needs it, its SFTP session."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        self.client = client
        self._sftp: paramiko.SFTPClient | None = None

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def ssh(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise EOFError("the SSH connection is closed")
        return transport

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None or not self._sftp_open():
            self._sftp = self.client.open_sftp()
        return self._sftp

    def sftp_alive(self) -> bool:
        return self.alive() and (self._sftp is None or self._sftp_open())

    def _sftp_open(self) -> bool:
        channel = self._sftp.get_channel() if self._sftp is not None else None
        return channel is not None and not channel.closed

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host with no known key of any type (a changed key never gets here)."""

    def __init__(self, *, known_hosts: Path, accept: bool, description: str) -> None:
        self._known_hosts = known_hosts
        self._accept = accept
        self._description = description

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        seen = f"{key.get_name()} {key.fingerprint}"
        if not self._accept:
            raise HostKeyError(
                f"{self._description}: host key of {hostname} is unknown ({seen}) and not in {self._known_hosts}; "
                f"verify the fingerprint with the cluster's administrators, then add it "
                f"(ssh-keyscan {_keyscan_arguments(hostname)} >> {self._known_hosts}) "
                "or set acceptUnknownHostKeys to trust it on first use"
            )
        with _KNOWN_HOSTS_LOCK:
            self._known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self._known_hosts, "a+b") as stream:
                stream.seek(0, os.SEEK_END)
                separator = b""
                if stream.tell() > 0:
                    stream.seek(-1, os.SEEK_END)
                    separator = b"" if stream.read(1) == b"\n" else b"\n"
                stream.write(separator + f"{hostname} {key.get_name()} {key.get_base64()}\n".encode())
        client.get_host_keys().add(hostname, key.get_name(), key)
        logger.warning(
            "%s: trusting new host key %s of %s, recorded in %s", self._description, seen, hostname, self._known_hosts
        )


def _keyscan_arguments(hostname: str) -> str:
    if hostname.startswith("[") and "]:" in hostname:
        host, port = hostname[1:].split("]:", 1)
        return f"-p {port} {host}"
    return hostname


def _parse_private_key(text: str, *, origin: str, description: str) -> paramiko.PKey:
    # Secrets often lose the final newline or gain carriage returns on the way.
    normalized = text.replace("\r\n", "\n").strip() + "\n"
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(normalized))
        except paramiko.PasswordRequiredException:
            raise TransportError(
                f"{description}: {origin} is protected by a passphrase; provide an unencrypted key"
            ) from None
        except Exception:
            continue
    # Deliberately no parser message: it could quote part of the key.
    raise TransportError(
        f"{description}: {origin} is not a readable ed25519, ECDSA or RSA private key "
        "(PEM or OpenSSH format); check the key file or Secret"
    )


class SshTransport:
    """Runs commands on a login node over one reused SSH connection (paramiko), files over SFTP."""

    def __init__(
        self,
        settings: SshSettings,
        *,
        private_key: str | None = None,
        connect_timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_seconds: float = 0.5,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._settings = settings
        self._private_key = private_key
        self._connect_timeout = connect_timeout
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.description = f"ssh {settings.user}@{host}:{settings.port}"
        self._lock = threading.Lock()  # guards _connection and _pkey
        self._sftp_lock = threading.Lock()  # one SFTP request sequence at a time
        self._connection: _Connection | None = None
        self._pkey: paramiko.PKey | None = None

    # -- the Transport protocol --

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        words = _checked_argv(argv, env, timeout)
        # sshd usually refuses to pass environment variables (AcceptEnv), so set them with env(1).
        command = shlex.join(["env", *(f"{name}={value}" for name, value in env.items()), *words] if env else words)
        data = stdin.encode() if stdin is not None else None

        def execute(connection: _Connection) -> CommandResult:
            return self._execute(connection, words=words, command=command, data=data, timeout=timeout)

        return self._with_retries(f"running {words[0]}", execute)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        target = _absolute(path)
        temporary = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")

        def write(sftp: paramiko.SFTPClient) -> None:
            _sftp_makedirs(sftp, target.parent)
            try:
                with sftp.open(temporary, "wb") as stream:
                    stream.set_pipelined(True)
                    stream.write(data)
                sftp.chmod(temporary, mode)
                sftp.posix_rename(temporary, str(target))
            except BaseException:
                with contextlib.suppress(Exception):  # best effort: the write's own error matters
                    sftp.remove(temporary)
                raise

        self._with_sftp(f"writing {path}", write)

    def make_dirs(self, *paths: str) -> None:
        targets = [_absolute(path) for path in paths]

        def make(sftp: paramiko.SFTPClient) -> None:
            for target in targets:
                _sftp_makedirs(sftp, target)

        self._with_sftp(f"creating {', '.join(paths)}", make)

    def fetch(self, directory: str, patterns: Sequence[str], destination: Path) -> list[Path]:
        root = _absolute(directory)
        for pattern in patterns:
            _pattern_parts(pattern)  # refuse a bad pattern before connecting

        def fetch_all(sftp: paramiko.SFTPClient) -> list[Path]:
            relatives = _matching_files(root, patterns, functools.partial(_list_sftp, sftp))
            return [
                _replace_into(destination, relative, source=str(root / relative), copy=sftp.get)
                for relative in relatives
            ]

        return self._with_sftp(f"fetching outputs from {directory}", fetch_all)

    def read_file(self, path: str, *, offset: int, limit: int) -> bytes | None:
        target = str(_absolute(path))

        def read(sftp: paramiko.SFTPClient) -> bytes | None:
            try:
                stream = sftp.open(target, "rb")
            except FileNotFoundError:
                return None
            with stream:
                stream.seek(offset)
                return bytes(stream.read(limit))

        return self._with_sftp(f"reading {path}", read)

    def watch_names(self, directory: str, found: Callable[[list[str]], None], stop: threading.Event) -> None:
        """One long-lived channel on the shared connection streams the folder's new names (see
        `_WATCH_SCRIPT`); it is stopped, with what it started on the login node, when `stop` is set."""
        target = str(_absolute(directory))
        try:
            connection = self._connected()
            channel = connection.ssh().open_session(timeout=self._connect_timeout)
        except TransportError:
            raise
        except _CONNECTION_ERRORS as error:
            raise TransportError(f"{self.description}: watching {directory}: {_reason(error)}") from error
        group: int | None = None
        try:
            channel.exec_command(_WATCH_SCRIPT.format(directory=shlex.quote(target), listed=LIST_SECONDS,
                                                      local=" ".join(sorted(LOCAL_FILESYSTEMS))))
            pending = b""
            heard = time.monotonic()
            while not stop.is_set():
                if channel.recv_ready():
                    pending += channel.recv(_CHUNK)
                    heard = time.monotonic()
                    *lines, pending = pending.split(b"\n")
                    names = []
                    for line in (_decode(raw).strip() for raw in lines):
                        if line.startswith(_GROUP) and group is None:
                            group = int(line[len(_GROUP):])
                        elif line and not line.startswith("."):
                            names.append(line)
                    if names:
                        found(names)
                    continue
                if channel.eof_received or channel.closed:
                    message = _decode(channel.recv_stderr(_CHUNK) if channel.recv_stderr_ready() else b"").strip()
                    raise TransportError(f"{self.description}: the watch of {directory} ended: {message or 'EOF'}")
                if time.monotonic() - heard > _WATCH_SILENCE:
                    raise TransportError(f"{self.description}: the watch of {directory} went silent; "
                                         "the connection may be down")
                select.select([channel], [], [], 0.5)
        except _CONNECTION_ERRORS as error:
            raise TransportError(f"{self.description}: watching {directory}: {_reason(error)}") from error
        finally:
            channel.close()
            # A closed channel alone leaves a quiet inotifywait running until its next event.
            if group is not None and (failed := self._signal_group(connection, group, "TERM")) is not None:
                logger.debug("%s: could not stop the watch's processes: %s", self.description, failed)

    def _signal_group(self, connection: _Connection, group: int, signal_name: str) -> str | None:
        """Send ``signal_name`` to a process group on the login node, over a session of its own;
        why it could not be sent, or None."""
        try:
            killer = connection.ssh().open_session(timeout=self._connect_timeout)
            try:
                killer.exec_command(f"kill -s {signal_name} -- -{group}")
                killer.status_event.wait(self._connect_timeout)
            finally:
                killer.close()
        except _CONNECTION_ERRORS as error:
            return _reason(error)
        return None

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # -- connection handling --

    def _with_retries(self, what: str, operation: Callable[[_Connection], _T]) -> _T:
        last_error: BaseException | None = None
        for attempt in range(1, self._max_attempts + 1):
            connection: _Connection | None = None
            try:
                connection = self._connected()
                return operation(connection)
            except TransportError:
                raise  # already a verdict: timeout, host key, key, or a remote file error
            except _CONNECTION_ERRORS as error:
                last_error = error
                if connection is not None:
                    self._discard(connection)
                if attempt == self._max_attempts:
                    break
                # Uncapped: max_attempts already bounds how long one call keeps retrying.
                delay = backoff_delay(attempt, base=self._backoff_seconds, cap=math.inf, jitter=(0.5, 1.5))
                logger.warning(
                    "%s: %s failed (attempt %d of %d): %s; reconnecting in %.1fs",
                    self.description,
                    what,
                    attempt,
                    self._max_attempts,
                    _reason(error),
                    delay,
                )
                time.sleep(delay)
        assert last_error is not None
        if isinstance(last_error, paramiko.AuthenticationException):
            advice = (
                f"check that the public half of the configured key is in ~{self._settings.user}/.ssh/authorized_keys "
                "on the login node"
            )
        else:
            advice = "check that the login node is up and reachable; the reconciler will try again later"
        raise TransportError(
            f"{self.description}: {what} failed after {self._max_attempts} attempts: {_reason(last_error)}; {advice}"
        ) from last_error

    def _with_sftp(self, what: str, operation: Callable[[paramiko.SFTPClient], _T]) -> _T:
        def guarded(connection: _Connection) -> _T:
            with self._sftp_lock:
                try:
                    return operation(connection.sftp())
                except OSError as error:
                    if not connection.sftp_alive():
                        raise  # the connection went down: retried
                    # The server answered: the path is missing, not writable, or the disk is full.
                    raise TransportError(
                        f"{self.description}: {what} failed: {_reason(error)}; check the path and its permissions "
                        f"for {self._settings.user}"
                    ) from error

        return self._with_retries(what, guarded)

    def _connected(self) -> _Connection:
        with self._lock:
            if self._connection is not None and self._connection.alive():
                return self._connection
            if self._connection is not None:
                self._connection.close()
            self._connection = _Connection(self._connect())
            return self._connection

    def _discard(self, connection: _Connection) -> None:
        # Another thread may already have replaced a broken connection: never close its new one.
        with self._lock:
            if self._connection is connection:
                self._connection = None
        connection.close()

    def _connect(self) -> paramiko.SSHClient:
        settings = self._settings
        pkey = self._key()
        known_hosts = Path(os.path.expanduser(settings.known_hosts_file or "~/.ssh/known_hosts"))
        client = paramiko.SSHClient()
        try:
            if known_hosts.exists():
                client.get_host_keys().load(str(known_hosts))
            client.set_missing_host_key_policy(
                _TrustOnFirstUse(
                    known_hosts=known_hosts, accept=settings.accept_unknown_host_keys, description=self.description
                )
            )
            client.connect(
                hostname=settings.host,
                port=settings.port,
                username=settings.user,
                pkey=pkey,
                timeout=self._connect_timeout,
                banner_timeout=self._connect_timeout,
                auth_timeout=self._connect_timeout,
                channel_timeout=self._connect_timeout,
                # Deterministic: only the configured key, never an agent or ~/.ssh/id_*.
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            raise HostKeyError(
                f"{self.description}: host key of {_known_hosts_name(settings)} CHANGED: the server offers "
                f"{error.key.get_name()} {error.key.fingerprint}, {known_hosts} has "
                f"{error.expected_key.get_name()} {error.expected_key.fingerprint}. This may be an attack or a "
                f"reinstalled login node; verify with the cluster's administrators, then remove the old entry "
                f"(ssh-keygen -R '{_known_hosts_name(settings)}' -f {known_hosts})"
            ) from None
        except paramiko.hostkeys.InvalidHostKey as error:
            client.close()
            raise TransportError(f"{self.description}: {known_hosts} has an unreadable line: {error.line!r}") from None
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None:
            # Notice a silently dropped idle connection (NAT, firewall) before the next command.
            transport.set_keepalive(30)
        return client

    def _key(self) -> paramiko.PKey:
        # Called with self._lock held (from _connected); parsed once, on the first connection.
        if self._pkey is None:
            if self._private_key is not None:
                self._pkey = _parse_private_key(
                    self._private_key, origin="the private key given", description=self.description
                )
            elif self._settings.key_file:
                key_file = os.path.expanduser(self._settings.key_file)
                try:
                    text = Path(key_file).read_text()
                except (OSError, UnicodeDecodeError) as error:
                    raise TransportError(f"{self.description}: cannot read key file {key_file}: {error}") from None
                self._pkey = _parse_private_key(text, origin=f"key file {key_file}", description=self.description)
            else:
                raise TransportError(
                    f"{self.description}: no private key configured; set ssh.keyFile or ssh.keySecretRef"
                )
        return self._pkey

    # -- one command --

    def _execute(
        self, connection: _Connection, *, words: tuple[str, ...], command: str, data: bytes | None, timeout: float
    ) -> CommandResult:
        deadline = time.monotonic() + timeout
        marker = f"reconciler-pgid-{secrets.token_hex(4)}="
        found_marker = re.compile(re.escape(marker.encode()) + rb"(\d+)\n")
        # The session's shell leads its own process group (sshd starts it with setsid), and `exec`
        # keeps that group for the command: announcing its id lets a timeout kill the command and
        # everything it started through a second channel. (OpenSSH's own "signal" request does not
        # work for root logins, which skip privilege separation.)
        ssh = connection.ssh()
        channel = ssh.open_session(timeout=self._connect_timeout)
        try:
            channel.exec_command(f"echo {marker}$$ >&2; exec {command}")
            pending = memoryview(data) if data else None
            if pending is None:
                channel.shutdown_write()  # the command sees end of input at once
            stdout, stderr = bytearray(), bytearray()
            # Write stdin, read stdout and stderr, all interleaved: a command that echoes a large
            # input back must not block on a full window while we block on sending it.
            while not channel.eof_received and not channel.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _drain(channel, stdout, stderr)
                    raise self._stop(connection, channel, found_marker.search(stderr), words, timeout)
                if pending is not None and channel.send_ready():
                    try:
                        sent = channel.send(bytes(pending[:_CHUNK]))
                    except OSError:
                        if not channel.closed:
                            raise
                        sent = 0  # the command ended without reading all of its input
                    pending = pending[sent:] if sent and len(pending) > sent else None
                    if pending is None and not channel.closed:
                        channel.shutdown_write()
                _drain(channel, stdout, stderr)
                if not channel.eof_received and not channel.closed:
                    select.select([channel], [], [], min(remaining, 0.05 if pending is not None else 1.0))
            _drain(channel, stdout, stderr)
            # The exit status follows the end of output; closing the channel also wakes us.
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise self._stop(connection, channel, found_marker.search(stderr), words, timeout)
            if channel.exit_status == -1 and self._connection_died(ssh, channel):
                raise EOFError("the connection dropped before the command's exit status arrived")
            announced = found_marker.search(stderr)
            if announced is not None:
                del stderr[announced.start() : announced.end()]
            # -1: the server reported no exit status (the command was killed by a signal).
            return CommandResult(
                argv=words,
                exit_code=channel.recv_exit_status(),
                stdout=_decode(bytes(stdout)),
                stderr=_decode(bytes(stderr)),
            )
        finally:
            channel.close()

    @staticmethod
    def _connection_died(ssh: paramiko.Transport, channel: paramiko.Channel) -> bool:
        """Why a channel closed without an exit status: the connection died, or not (then the
        command was killed by a signal: OpenSSH sends exit-signal, which paramiko ignores)."""
        if not channel.eof_received:
            return True  # OpenSSH always ends the output with EOF before it closes a channel
        # A dying transport closes its channels just before it marks itself inactive.
        give_up = time.monotonic() + 0.2
        while ssh.is_active() and time.monotonic() < give_up:
            time.sleep(0.01)
        return not ssh.is_active()

    def _stop(
        self,
        connection: _Connection,
        channel: paramiko.Channel,
        announced: re.Match[bytes] | None,
        words: tuple[str, ...],
        timeout: float,
    ) -> CommandTimeout:
        """Kill a timed-out command's process group (closing the channel alone leaves a quiet one running)."""
        channel.close()
        if announced is not None and (
                failed := self._signal_group(connection, int(announced.group(1)), "KILL")) is not None:
            logger.warning("%s: could not stop timed-out %s: %s", self.description, words[0], failed)
        return CommandTimeout(
            f"{self.description}: {_shown(words)} did not finish within {timeout:g}s and was stopped; "
            "the login node or Slurm controller may be overloaded: retry later or allow a longer timeout"
        )


_GROUP = "reconciler-watch-pgid="
# The watch prints a blank line this often, so a dead connection shows as silence.
_HEARTBEAT_SECONDS = 5
_WATCH_SILENCE = 4 * _HEARTBEAT_SECONDS
# POSIX sh, run by the login shell. It announces its process group (sshd made the session shell
# its leader) so that stopping the watch stops all of it, then streams the folder's names:
# through inotifywait where the login node has it and the folder is on a filesystem whose
# changes inotify sees, else by listing the folder whenever its modification time changes,
# each second. Names are listed once the watch is in place, so none written in between is lost.
_WATCH_SCRIPT = """echo {group}$$
d={directory}
mkdir -p -- "$d" && cd -- "$d" || exit 1
( while sleep {heartbeat}; do echo; done ) &
case " {local} " in *" $(stat -f -c %T . 2>/dev/null) "*) fs=local;; *) fs=;; esac
if [ "$fs" = local ] && command -v inotifywait >/dev/null 2>&1; then
  inotifywait -m -e moved_to -e close_write --format %f . 2>&1 | {{
    while IFS= read -r line; do [ "$line" = "Watches established." ] && break; done; ls -1A .; exec cat; }}
fi
last=
while :; do
  now=$(stat -c %y . 2>/dev/null)
  if [ "$now" != "$last" ]; then last=$now; ls -1A .; fi
  sleep {listed}
done""".replace("{group}", _GROUP).replace("{heartbeat}", str(_HEARTBEAT_SECONDS))


def _drain(channel: paramiko.Channel, stdout: bytearray, stderr: bytearray) -> None:
    while channel.recv_ready():
        stdout += channel.recv(_CHUNK)
    while channel.recv_stderr_ready():
        stderr += channel.recv_stderr(_CHUNK)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _known_hosts_name(settings: SshSettings) -> str:
    return settings.host if settings.port == 22 else f"[{settings.host}]:{settings.port}"


def _list_sftp(sftp: paramiko.SFTPClient, path: str) -> list[tuple[str, bool]]:
    try:
        # OpenSSH reports lstat attributes here, so a symlink is neither a file nor a directory.
        attributes = sftp.listdir_attr(path)
    except FileNotFoundError:
        return []
    listing = []
    for entry in attributes:
        mode = entry.st_mode or 0
        if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            listing.append((entry.filename, stat.S_ISDIR(mode)))
    return listing


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: PurePosixPath) -> None:
    """mkdir -p: find the deepest existing ancestor, then create the rest top down."""
    missing: list[PurePosixPath] = []
    current = path
    while True:
        try:
            attributes = sftp.stat(str(current))
        except FileNotFoundError:
            if current == current.parent:
                raise
            missing.append(current)
            current = current.parent
            continue
        if not stat.S_ISDIR(attributes.st_mode or 0):
            raise NotADirectoryError(f"{current} exists and is not a directory")
        break
    for directory in reversed(missing):
        try:
            sftp.mkdir(str(directory))
        except OSError:
            # Someone else may have created it meanwhile: that is fine.
            if not stat.S_ISDIR(sftp.stat(str(directory)).st_mode or 0):
                raise
