"""The transports against the real thing: subprocesses here, and a real OpenSSH server.

Every behaviour test runs through both transports (one parametrized fixture), so the Slurm client
can treat them alike; host keys, keys and reconnection are SSH-only. The module starts its own
sshd on loopback (no Slurm needed), so it runs anywhere /usr/sbin/sshd and ssh-keygen exist.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.api.cluster import SlurmClusterSpec, SshSettings, TransportKind
from reconciler.slurm.transport import (
    CommandResult,
    CommandTimeout,
    HostKeyError,
    LocalTransport,
    SshTransport,
    Transport,
    TransportError,
    open_transport,
)
from tests.ports import free_port

SSHD = "/usr/sbin/sshd"
LOGGER = "reconciler.slurm.transport"

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class SshServer:
    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    host_public_key: str  # "ssh-ed25519 AAAA..."
    client_keys: dict[str, Path]  # key type -> private key file, all authorized
    known_hosts: Path  # holds the server's host key

    @property
    def host_entry_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def settings(self, **overrides: object) -> SshSettings:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": getpass.getuser(),
            "key_file": str(self.client_keys["ed25519"]),
            "known_hosts_file": str(self.known_hosts),
        }
        values.update(overrides)
        return SshSettings.model_validate(values)

    def fingerprint(self) -> str:
        listing = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(self.directory / "host_ed25519.pub")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return listing.split()[1]

    def sessions(self) -> list[int]:
        """Processes sshd started for connections (its direct children)."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(entry.name))
        return children

    def drop_connections(self) -> None:
        for pid in self.sessions():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _keygen(path: Path, key_type: str, *extra: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, *extra, "-N", "", "-C", f"test-{path.name}", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not (os.path.exists(SSHD) and shutil.which("ssh-keygen")):
        pytest.skip("needs OpenSSH's sshd and ssh-keygen")  # the local transport's tests still run
    directory = tmp_path_factory.mktemp("sshd")
    _keygen(directory / "host_ed25519", "ed25519")
    client_keys = {
        "ed25519": directory / "client_ed25519",
        "ecdsa": directory / "client_ecdsa",
        "rsa": directory / "client_rsa",
        "rsa-pem": directory / "client_rsa_pem",
    }
    _keygen(client_keys["ed25519"], "ed25519")
    _keygen(client_keys["ecdsa"], "ecdsa", "-b", "256")
    _keygen(client_keys["rsa"], "rsa", "-b", "2048")
    _keygen(client_keys["rsa-pem"], "rsa", "-b", "2048", "-m", "PEM")
    (directory / "authorized_keys").write_text("".join(Path(f"{key}.pub").read_text() for key in client_keys.values()))
    port = free_port()
    (directory / "sshd_config").write_text(
        f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {directory}/host_ed25519
AuthorizedKeysFile {directory}/authorized_keys
PidFile {directory}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 64
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""
    )
    host_public_key = " ".join((directory / "host_ed25519.pub").read_text().split()[:2])
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public_key}\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
    log = directory / "sshd.log"
    process = subprocess.Popen([SSHD, "-D", "-f", str(directory / "sshd_config"), "-E", str(log)])
    server = SshServer(
        process=process,
        directory=directory,
        port=port,
        host_public_key=host_public_key,
        client_keys=client_keys,
        known_hosts=known_hosts,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"sshd exited with {process.returncode}: {log.read_text() if log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd did not listen on port {port}: {log.read_text() if log.exists() else ''}")
                time.sleep(0.05)
        yield server
    finally:
        server.drop_connections()  # first: once the listener is gone they are no longer its children
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.slurm)])  # ssh starts the sshd
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        chosen: Transport = LocalTransport()
    else:
        server: SshServer = request.getfixturevalue("sshd")
        chosen = SshTransport(server.settings(), connect_timeout=5.0)
    yield chosen
    chosen.close()


@pytest.fixture
def ssh(sshd: SshServer) -> Iterator[SshTransport]:
    transport = SshTransport(sshd.settings(), connect_timeout=5.0, backoff_seconds=0.05)
    yield transport
    transport.close()


def _processes_with_argument(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# --- both transports ---------------------------------------------------------------------------


def test_description_names_the_way_in(transport: Transport, request: pytest.FixtureRequest) -> None:
    if isinstance(transport, LocalTransport):
        assert transport.description == "local"
    else:
        server: SshServer = request.getfixturevalue("sshd")
        assert transport.description == f"ssh {getpass.getuser()}@127.0.0.1:{server.port}"


def test_words_reach_the_command_unchanged(transport: Transport) -> None:
    words = ["two words", "it's", 'say "hi"', "$HOME", "*", "a;b|c&&d", "`id`", "héllo wörld ✓", "", "-n"]
    result = transport.run(["printf", "%s\\n", *words])
    assert result == CommandResult(
        argv=("printf", "%s\\n", *words), exit_code=0, stdout="".join(f"{w}\n" for w in words), stderr=""
    )


def test_exit_code_and_stderr_are_a_result_not_an_error(transport: Transport) -> None:
    result = transport.run(["sh", "-c", "echo out; echo 'oops ✗' >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "oops ✗\n")


def test_a_missing_command_exits_127(transport: Transport) -> None:
    result = transport.run(["no-such-command-for-the-reconciler"])
    assert result.exit_code == 127
    assert "no-such-command-for-the-reconciler" in result.stderr


def test_env_is_added_to_the_environment(transport: Transport) -> None:
    result = transport.run(
        ["sh", "-c", 'printf "%s|%s|%s" "$GREETING" "$EMPTY" "${HOME:+home}"'],
        env={"GREETING": "hello 'you' $x", "EMPTY": ""},
    )
    assert result.stdout == "hello 'you' $x||home"


def test_stdin_is_passed_and_closed(transport: Transport) -> None:
    assert transport.run(["cat"], stdin="line one\nlíne two\n").stdout == "line one\nlíne two\n"
    started = time.monotonic()
    assert transport.run(["cat"], timeout=5).stdout == ""  # no stdin: end of input at once
    assert time.monotonic() - started < 2
    # A command may end without reading its input: that is its business, not an error.
    assert transport.run(["true"], stdin="unread\n" * 500000, timeout=10).exit_code == 0


def test_large_output_on_both_streams(transport: Transport) -> None:
    result = transport.run(["sh", "-c", "seq 200000; seq 100000 >&2"])
    lines = result.stdout.splitlines()
    assert (len(lines), lines[0], lines[-1]) == (200000, "1", "200000")
    assert result.stderr.splitlines()[-1] == "100000"


def test_large_input_echoed_back_does_not_deadlock(transport: Transport) -> None:
    text = "".join(f"{i:08d} a line of input\n" for i in range(150000))  # ~3.6 MB, beyond SSH windows
    result = transport.run(["cat"], stdin=text, timeout=30)
    assert result.stdout == text


def test_timeout_stops_the_command(transport: Transport) -> None:
    marker = f"5.{uuid.uuid4().int % 10**8:08d}"  # a unique `sleep` argument to find the process by
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not finish within 1s"):
        transport.run(["sh", "-c", f"sleep {marker}; echo never"], timeout=1)
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 3
    while _processes_with_argument(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with_argument(marker) == []
    assert transport.run(["echo", "still usable"]).stdout == "still usable\n"


def test_write_file_creates_parents_sets_mode_and_replaces(transport: Transport, tmp_path: Path) -> None:
    script = tmp_path / "jobs" / "wf-1" / "task.sh"
    transport.write_file(str(script), b"#!/bin/sh\necho first\n", mode=0o755)
    assert transport.run([str(script)]).stdout == "first\n"
    assert transport.run(["stat", "-c", "%a", str(script)]).stdout == "755\n"
    transport.write_file(str(script), b"#!/bin/sh\necho second\n", mode=0o700)
    assert transport.run([str(script)]).stdout == "second\n"
    assert oct(script.stat().st_mode & 0o777) == oct(0o700)
    assert sorted(p.name for p in script.parent.iterdir()) == ["task.sh"]  # no temporary files left


def test_write_file_into_a_file_is_an_error(transport: Transport, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(TransportError, match="plain"):
        transport.write_file(str(tmp_path / "plain" / "inside.txt"), b"data")


def test_make_dirs(transport: Transport, tmp_path: Path) -> None:
    transport.make_dirs(str(tmp_path / "a" / "b" / "c"), str(tmp_path / "d"), str(tmp_path / "a"))
    assert (tmp_path / "a" / "b" / "c").is_dir() and (tmp_path / "d").is_dir()


def test_read_file_reads_a_bounded_part_from_an_offset(transport: Transport, tmp_path: Path) -> None:
    target = tmp_path / "job.out"
    target.write_bytes("line 1\nünï\n".encode())
    data = target.read_bytes()
    assert transport.read_file(str(target), offset=0, limit=4) == data[:4]
    # An offset inside a multi-byte character: bytes, not text, so offsets stay exact.
    assert transport.read_file(str(target), offset=8, limit=100) == data[8:]
    assert transport.read_file(str(target), offset=len(data), limit=100) == b""
    assert transport.read_file(str(tmp_path / "missing.out"), offset=0, limit=100) is None
    with pytest.raises(TransportError):
        transport.read_file(str(tmp_path), offset=0, limit=1)


def test_relative_paths_are_refused(transport: Transport, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        transport.write_file("relative/file.txt", b"")
    with pytest.raises(ValueError, match="absolute"):
        transport.make_dirs("relative")
    with pytest.raises(ValueError, match="absolute"):
        transport.fetch("relative", ["*"], tmp_path)


def test_write_and_fetch_roundtrip_with_globs_and_subdirectories(transport: Transport, tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    binary = bytes(range(256)) * 1000
    files = {
        "report.txt": b"report\n",
        "result.bin": binary,
        "log.err": b"warning\n",
        "out/a.txt": "ä\n".encode(),
        "out/b.txt": b"b\n",
        "out/b.csv": b"1,2\n",
        "out/deep/c.txt": b"c\n",
        "out/deep/er/d.txt": b"d\n",
    }
    for relative, data in files.items():
        transport.write_file(str(remote / relative), data)

    fetched = transport.fetch(str(remote), ["out/*.txt", "*.err", "result.bin", "out/a.txt"], local)
    assert fetched == [local / "log.err", local / "out" / "a.txt", local / "out" / "b.txt", local / "result.bin"]
    assert all(path.read_bytes() == files[path.relative_to(local).as_posix()] for path in fetched)

    everything = transport.fetch(str(remote), ["**"], tmp_path / "all")
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in everything) == sorted(files)

    texts = transport.fetch(str(remote), ["**/*.txt"], tmp_path / "texts")
    assert sorted(p.relative_to(tmp_path / "texts").as_posix() for p in texts) == sorted(
        name for name in files if name.endswith(".txt")
    )
    below_out = transport.fetch(str(remote), ["./out/**/?.txt"], tmp_path / "below")
    assert sorted(p.relative_to(tmp_path / "below").as_posix() for p in below_out) == [
        "out/a.txt",
        "out/b.txt",
        "out/deep/c.txt",
        "out/deep/er/d.txt",
    ]


def test_fetch_of_nothing(transport: Transport, tmp_path: Path) -> None:
    assert transport.fetch(str(tmp_path / "missing"), ["*"], tmp_path / "local") == []
    (tmp_path / "empty").mkdir()
    assert transport.fetch(str(tmp_path / "empty"), ["*.txt", "sub/*"], tmp_path / "local") == []
    assert transport.fetch(str(tmp_path / "empty"), [], tmp_path / "local") == []


def test_fetch_skips_symlinks(transport: Transport, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    (remote / "real").mkdir(parents=True)
    (remote / "real" / "data.txt").write_text("data")
    (remote / "hostname.txt").symlink_to("/etc/hostname")
    (remote / "linked").symlink_to("/etc")
    fetched = transport.fetch(str(remote), ["*", "*/*", "**/*.txt"], tmp_path / "local")
    assert fetched == [tmp_path / "local" / "real" / "data.txt"]


@pytest.mark.parametrize("pattern", ["../x", "/etc/*", "out/../../x", "..", "", "./"])
def test_fetch_refuses_patterns_leaving_the_directory(transport: Transport, tmp_path: Path, pattern: str) -> None:
    (tmp_path / "remote").mkdir()
    with pytest.raises(ValueError):
        transport.fetch(str(tmp_path / "remote"), ["*.txt", pattern], tmp_path / "local")
    assert not (tmp_path / "local").exists()


def test_concurrent_calls_share_the_transport(transport: Transport, tmp_path: Path) -> None:
    results: dict[int, str] = {}

    def work(index: int) -> None:
        transport.write_file(str(tmp_path / f"f{index}"), f"{index}\n".encode())
        results[index] = transport.run(["cat", str(tmp_path / f"f{index}")]).stdout

    threads = [threading.Thread(target=work, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {index: f"{index}\n" for index in range(12)}


def test_open_transport_follows_the_spec(sshd: SshServer) -> None:
    local = open_transport(SlurmClusterSpec(workdir="/tmp"))
    assert isinstance(local, LocalTransport)
    remote = open_transport(
        SlurmClusterSpec(transport=TransportKind.SSH, ssh=sshd.settings(key_file=None), workdir="/tmp"),
        private_key=sshd.client_keys["ed25519"].read_text(),
    )
    try:
        assert isinstance(remote, SshTransport)
        assert remote.run(["echo", "via spec"]).stdout == "via spec\n"
    finally:
        remote.close()


# --- ssh only: host keys -----------------------------------------------------------------------


def test_unknown_host_key_is_rejected(sshd: SshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    transport = SshTransport(sshd.settings(known_hosts_file=str(known_hosts)))
    started = time.monotonic()
    with pytest.raises(HostKeyError) as raised:
        transport.run(["true"])
    assert time.monotonic() - started < 3  # terminal: not retried
    message = str(raised.value)
    assert sshd.host_entry_name in message and sshd.fingerprint() in message and "unknown" in message
    assert not known_hosts.exists()


def test_unknown_host_key_is_trusted_on_first_use_and_recorded(
    sshd: SshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    first = SshTransport(sshd.settings(known_hosts_file=str(known_hosts), accept_unknown_host_keys=True))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert first.run(["echo", "hi"]).stdout == "hi\n"
    first.close()
    assert known_hosts.read_text() == f"{sshd.host_entry_name} {sshd.host_public_key}\n"
    assert sshd.fingerprint() in caplog.text
    # From now on the recorded key is simply known.
    strict = SshTransport(sshd.settings(known_hosts_file=str(known_hosts)))
    assert strict.run(["echo", "again"]).stdout == "again\n"
    strict.close()


def test_recording_keeps_existing_entries(sshd: SshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = f"other.example {sshd.host_public_key}"
    known_hosts.write_text(other)  # no final newline
    transport = SshTransport(sshd.settings(known_hosts_file=str(known_hosts), accept_unknown_host_keys=True))
    transport.run(["true"])
    transport.close()
    assert known_hosts.read_text().splitlines() == [other, f"{sshd.host_entry_name} {sshd.host_public_key}"]


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_a_changed_host_key_is_rejected_even_when_trusting_new_keys(
    sshd: SshServer, tmp_path: Path, key_type: str
) -> None:
    impostor = tmp_path / "impostor"
    _keygen(impostor, key_type)
    known_hosts = tmp_path / "known_hosts"
    known = f"{sshd.host_entry_name} {' '.join(Path(f'{impostor}.pub').read_text().split()[:2])}\n"
    known_hosts.write_text(known)
    transport = SshTransport(sshd.settings(known_hosts_file=str(known_hosts), accept_unknown_host_keys=True))
    with pytest.raises(HostKeyError) as raised:
        transport.run(["true"])
    message = str(raised.value)
    assert "CHANGED" in message and sshd.fingerprint() in message and sshd.host_entry_name in message
    assert known_hosts.read_text() == known


# --- ssh only: keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa", "rsa-pem"])
def test_private_key_text_wins_over_the_key_file(sshd: SshServer, key_type: str) -> None:
    text = sshd.client_keys[key_type].read_text()
    transport = SshTransport(sshd.settings(key_file="/nonexistent/key"), private_key=text.strip().replace("\n", "\r\n"))
    try:
        assert transport.run(["echo", key_type]).stdout == f"{key_type}\n"
    finally:
        transport.close()


def test_an_unreadable_key_fails_fast_without_showing_it(sshd: SshServer) -> None:
    secret_text = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    transport = SshTransport(sshd.settings(), private_key=secret_text)
    started = time.monotonic()
    with pytest.raises(TransportError) as raised:
        transport.run(["true"])
    assert time.monotonic() - started < 2
    assert "c2VjcmV0" not in str(raised.value) and "not a readable" in str(raised.value)


def test_no_key_configured(sshd: SshServer) -> None:
    with pytest.raises(TransportError, match="no private key"):
        SshTransport(sshd.settings(key_file=None)).run(["true"])


def test_an_unauthorized_key_fails_after_the_retries(sshd: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    _keygen(stranger, "ed25519")
    transport = SshTransport(sshd.settings(key_file=str(stranger)), max_attempts=2, backoff_seconds=0.01)
    with pytest.raises(TransportError, match="authorized_keys") as raised:
        transport.run(["true"])
    assert "after 2 attempts" in str(raised.value)
    assert "PRIVATE KEY" not in str(raised.value)


# --- ssh only: the connection ------------------------------------------------------------------


def test_one_connection_is_reused(ssh: SshTransport, sshd: SshServer) -> None:
    before = set(sshd.sessions())
    ssh.run(["true"])
    ssh.write_file(str(sshd.directory / "reuse" / "f"), b"x")
    ssh.run(["true"])
    assert len(set(sshd.sessions()) - before) == 1


def test_reconnects_after_the_server_drops_the_connection(
    ssh: SshTransport, sshd: SshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert ssh.run(["echo", "before"]).stdout == "before\n"
    sshd.drop_connections()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert ssh.run(["echo", "after"]).stdout == "after\n"
        sshd.drop_connections()
        ssh.write_file(str(tmp_path / "after.txt"), b"written after a drop")
    assert (tmp_path / "after.txt").read_bytes() == b"written after a drop"
    assert "attempt 1 of 4" in caplog.text


def test_a_command_cut_off_by_a_dropped_connection_runs_again(
    ssh: SshTransport, sshd: SshServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    # Each run leaves a line: the repeat is why sbatch needs identity tags, not trust in retries.
    dropper = threading.Timer(0.5, sshd.drop_connections)
    dropper.start()
    try:
        result = ssh.run(["sh", "-c", f"echo run >> {runs}; sleep 1; echo done"], timeout=10)
    finally:
        dropper.join()
    assert result.stdout == "done\n"
    assert runs.read_text() == "run\nrun\n"


def test_a_command_killed_by_a_signal_is_a_result(transport: Transport) -> None:
    result = transport.run(["sh", "-c", "echo started; kill -KILL $$"])
    assert result.stdout == "started\n"
    assert result.exit_code == (137 if isinstance(transport, LocalTransport) else -1)


def test_close_then_use_again(ssh: SshTransport) -> None:
    assert ssh.run(["echo", "one"]).stdout == "one\n"
    ssh.close()
    ssh.close()
    assert ssh.run(["echo", "two"]).stdout == "two\n"


def test_a_server_that_is_down_fails_after_bounded_retries(sshd: SshServer, caplog: pytest.LogCaptureFixture) -> None:
    transport = SshTransport(sshd.settings(port=free_port()), connect_timeout=2.0, max_attempts=3, backoff_seconds=0.1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(TransportError) as raised:
        transport.run(["true"])
    assert time.monotonic() - started < 3
    assert "after 3 attempts" in str(raised.value) and "reachable" in str(raised.value)
    assert not isinstance(raised.value, (HostKeyError, CommandTimeout))
    assert [record.levelname for record in caplog.records if record.name == LOGGER] == ["WARNING", "WARNING"]
