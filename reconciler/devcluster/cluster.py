"""Bringing a single-node Slurm with accounting and an OpenSSH login node up and down.

Called by ``reconciler dev-cluster``, by ``scripts/demo`` and by the test suite's session
fixture. Guarantees: ``up`` is idempotent (a daemon already running is left alone), every daemon
listens on loopback only and keeps its configuration, state and logs in the cluster's own
directory, and ``down`` stops exactly the processes ``up`` started (recorded in pid files and
checked against their command line, so a recycled pid is never killed).

Daemons run in the foreground of their own session, so their pid is the one we recorded, and
are started in dependency order: munge, MariaDB, slurmdbd (which must be up before slurmctld
when associations are enforced), the cluster's registration, slurmctld, slurmd, sshd.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..api import SlurmCluster
from ..manifests.loader import load_text
from . import configs
from .configs import Layout, Ports
from .packages import ensure_installed

START_TIMEOUT = 60.0
# sacctmgr blocks for minutes while slurmdbd is unreachable; every call is bounded.
SACCTMGR_TIMEOUT = 20.0


class DevClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: Callable[[DevCluster], list[str]]
    ready: Callable[[DevCluster], bool]


def default_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "slurm-reconciler" / "dev-cluster"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _new_ports(root: Path) -> Ports:
    """Five distinct free ports, none of them one that another dev cluster beside this one (or in
    the default directory's parent) recorded: a stopped cluster's ports are free but still its."""
    taken: set[int] = set()
    for ports_file in {*root.parent.glob("*/ports.json"), *default_dir().parent.glob("*/ports.json")}:
        if ports_file.parent.resolve() == root:
            continue
        with contextlib.suppress(OSError, ValueError, TypeError):
            taken.update(asdict(Ports.from_json(ports_file.read_text())).values())
    chosen: list[int] = []
    while len(chosen) < 5:
        port = _free_port()
        if port not in taken and port not in chosen:
            chosen.append(port)
    return Ports(*chosen)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class DevCluster:
    """One dev cluster, wholly inside its directory: several in different directories run side by
    side, each with its own ports, daemons, accounting database, name and node name."""

    def __init__(self, directory: Path | None = None, *, name: str | None = None) -> None:
        """``name``: the cluster's name when ``up`` creates it (default: after its directory, see
        ``configs.cluster_name``); a cluster keeps the name it was created with."""
        self.layout = Layout((directory or default_dir()).resolve())
        self.hostname = socket.gethostname().split(".")[0]
        self.user = getpass.getuser()
        written = self.layout.slurm_conf.read_text() if self.layout.slurm_conf.exists() else ""
        self.name = configs.configured_name(written) or name or configs.cluster_name(
            self.layout.root, default_directory=default_dir().resolve())
        self._requested_name = name

    @property
    def node(self) -> str:
        return configs.node_name(self.name)

    # -- what tests and the CLI read -------------------------------------------------------

    @property
    def slurm_conf(self) -> Path:
        return self.layout.slurm_conf

    @property
    def ports(self) -> Ports:
        return Ports.from_json(self.layout.ports.read_text())

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.layout.slurm_conf)}

    def manifest_path(self, transport: str) -> Path:
        return self.layout.root / f"slurmcluster-{transport}.yaml"

    def cluster(self, transport: str) -> SlurmCluster:
        """The SlurmCluster resource for this dev cluster, reached ``local``ly or over ``ssh``."""
        path = self.manifest_path(transport)
        result = load_text(path.read_text(), filename=str(path))
        if result.errors or len(result.resources) != 1:
            raise DevClusterError(f"{path}: {result.errors}")
        resource = result.resources[0].resource
        assert isinstance(resource, SlurmCluster)
        return resource

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, *, say: Callable[[str], None] = lambda _: None) -> None:
        if self._requested_name not in (None, self.name):
            raise DevClusterError(f"{self.layout.root} holds cluster {self.name}, not {self._requested_name}; "
                                  f"remove the directory to create it anew")
        ensure_installed(say=say)
        changed = self._prepare()
        for daemon in DAEMONS:
            # A daemon reads its configuration when it starts: a changed file means a restart.
            if changed & set(_READS.get(daemon.name, ())) and self._pid(daemon) is not None:
                self.stop(daemon.name)
                say(f"{daemon.name}: configuration changed, restarting")
            if self._running(daemon):
                say(f"{daemon.name}: already running")
            else:
                self._start(daemon)
                say(f"{daemon.name}: started")
            if daemon.name == "slurmdbd":
                self._register_cluster()

    def down(self, *, say: Callable[[str], None] = lambda _: None) -> None:
        for daemon in reversed(DAEMONS):
            pid = self._pid(daemon)
            if pid is None:
                continue
            _terminate(pid)
            self.layout.pid_file(daemon.name).unlink(missing_ok=True)
            say(f"{daemon.name}: stopped")

    def status(self) -> dict[str, bool]:
        return {daemon.name: self._running(daemon) for daemon in DAEMONS}

    def stop(self, name: str) -> None:
        """Stop one daemon (tests use it to take slurmctld or sshd away for a while)."""
        daemon = _daemon(name)
        pid = self._pid(daemon)
        if pid is not None:
            _terminate(pid)
            self.layout.pid_file(name).unlink(missing_ok=True)

    def start(self, name: str) -> None:
        daemon = _daemon(name)
        if not self._running(daemon):
            self._start(daemon)

    # -- internals -------------------------------------------------------------------------

    def _prepare(self) -> set[str]:
        """Create the directory, keys and configuration once; later calls keep what exists, so
        ports, keys and the accounting database survive restarts. The names of the
        configuration files whose content changed."""
        layout = self.layout
        for directory in (layout.etc, layout.run, layout.run / "munge", layout.log, layout.state / "slurmctld",
                          layout.state / "slurmd", layout.ssh, layout.workdir):
            directory.mkdir(parents=True, exist_ok=True)
        # munged refuses a socket directory others can write to.
        os.chmod(layout.run / "munge", 0o755)
        if not layout.ports.exists():
            layout.ports.write_text(_new_ports(layout.root).to_json())
        ports = self.ports
        if not layout.munge_key.exists():
            _run(["mungekey", "--create", "--keyfile", str(layout.munge_key)])
        os.chmod(layout.munge_key, 0o600)
        if not layout.database_password.exists():
            _write(layout.database_password, secrets.token_hex(16), mode=0o600)
        password = layout.database_password.read_text().strip()
        changed: set[str] = set()
        cgroups = cgroup_v1_memory()
        if _write(layout.slurm_conf, configs.slurm_conf(layout, ports, hostname=self.hostname, cgroups=cgroups,
                                                        name=self.name)):
            changed.add("slurm.conf")
        if cgroups and _write(layout.cgroup_conf, configs.cgroup_conf()):
            changed.add("cgroup.conf")
        if not cgroups and layout.cgroup_conf.exists():
            layout.cgroup_conf.unlink()
            changed.add("cgroup.conf")
        # slurmdbd refuses a configuration file others can read: it holds the database password.
        if _write(layout.slurmdbd_conf, configs.slurmdbd_conf(layout, ports, hostname=self.hostname,
                                                              password=password), mode=0o600):
            changed.add("slurmdbd.conf")
        if _write(layout.mariadb_conf, configs.mariadb_conf(layout, ports)):
            changed.add("my.cnf")
        if _write(layout.sshd_conf, configs.sshd_conf(layout, ports)):
            changed.add("sshd_config")
        if not layout.host_key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev-cluster-host", "-f", str(layout.host_key)])
        if not layout.client_key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev-cluster-client",
                  "-f", str(layout.client_key)])
        _write(layout.authorized_keys, layout.client_key.with_suffix(".pub").read_text(), mode=0o600)
        host_public = layout.host_key.with_suffix(".pub").read_text().split()
        _write(layout.known_hosts, f"[127.0.0.1]:{ports.sshd} {host_public[0]} {host_public[1]}\n")
        for transport in ("local", "ssh"):
            _write(self.manifest_path(transport),
                   configs.cluster_manifest(layout, ports, transport=transport, user=self.user, cluster=self.name))
        if not (layout.mariadb_data / "mysql").exists():
            layout.mariadb_data.mkdir(parents=True, exist_ok=True)
            _run(["mariadb-install-db", f"--defaults-file={layout.mariadb_conf}",
                  "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=120)
        # sshd checks for its privilege separation directory even when it is not used.
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        return changed

    def _pid(self, daemon: Daemon) -> int | None:
        """The recorded pid of ``daemon`` when that process is alive and is that daemon."""
        path = self.layout.pid_file(daemon.name)
        try:
            pid = int(path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # sshd rewrites its title to "sshd: /usr/sbin/sshd -D ... [listener]".
        program = cmdline[0].decode(errors="replace").split(" ", 1)[0].rstrip(":")
        if Path(program).name != Path(daemon.argv(self)[0]).name:
            return None
        if _zombie(pid):
            return None
        return pid

    def _running(self, daemon: Daemon) -> bool:
        return self._pid(daemon) is not None and daemon.ready(self)

    def _start(self, daemon: Daemon) -> None:
        argv = daemon.argv(self)
        env = {**os.environ, **self.env}
        log = self.layout.log_file(f"{daemon.name}.stdout")
        with open(log, "ab") as output:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True, close_fds=True)
        self.layout.pid_file(daemon.name).write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DevClusterError(f"{daemon.name} exited with code {process.returncode}; "
                                      f"see {self.layout.log_file(daemon.name)} and {log}")
            # A port answered by a stale process of someone else's is no proof: ours must live on.
            if daemon.ready(self) and process.poll() is None:
                return
            time.sleep(0.2)
        raise DevClusterError(f"{daemon.name} did not become ready within {START_TIMEOUT:.0f}s; "
                              f"see {self.layout.log_file(daemon.name)} and {log}")

    def _register_cluster(self) -> None:
        """Create the accounting database's cluster, once; slurmctld refuses to run jobs for a
        cluster slurmdbd does not know when associations are enforced."""
        listed = self.sacctmgr(["--noheader", "--parsable2", "list", "cluster", "format=Cluster"])
        if self.name not in listed.split():
            self.sacctmgr(["--immediate", "add", "cluster", self.name])

    def sacctmgr(self, args: Sequence[str]) -> str:
        return _run(["sacctmgr", *args], env={**os.environ, **self.env}, timeout=SACCTMGR_TIMEOUT)

    def command_works(self, argv: Sequence[str]) -> bool:
        try:
            subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, timeout=10, check=True)
        except (subprocess.SubprocessError, OSError):
            return False
        return True


def cgroup_v1_memory() -> bool:
    """Whether jobs can be confined with cgroup v1's memory controller here (mounted, writable)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "memory" in fields[3].split(","):
            return os.access(fields[1], os.W_OK)
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _terminate(pid: int, *, grace: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if _zombie(pid) or not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _write(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` unless it holds that already; whether the file changed."""
    changed = not path.exists() or path.read_text() != text
    if changed:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.chmod(temporary, mode)
        temporary.replace(path)
    os.chmod(path, mode)
    return changed


def _run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    try:
        done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DevClusterError(f"{argv[0]} did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        raise DevClusterError(f"{' '.join(argv)} failed ({done.returncode}): {output}")
    return done.stdout


def _database_ready(cluster: DevCluster) -> bool:
    if not cluster.layout.mariadb_socket.exists():
        return False
    try:
        _run(["mariadb", f"--defaults-file={cluster.layout.mariadb_conf}", "-uroot", "-e", _database_sql(cluster)],
             timeout=10)
    except DevClusterError:
        return False
    return True


def _database_sql(cluster: DevCluster) -> str:
    password = cluster.layout.database_password.read_text().strip()
    user = f"'{configs.DATABASE_USER}'@'127.0.0.1'"
    return (f"CREATE DATABASE IF NOT EXISTS {configs.DATABASE}; "
            f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON {configs.DATABASE}.* TO {user};")


def _munge_ready(cluster: DevCluster) -> bool:
    return cluster.layout.munge_socket.exists()


def _slurmdbd_ready(cluster: DevCluster) -> bool:
    return _port_open(cluster.ports.slurmdbd)


def _slurmctld_ready(cluster: DevCluster) -> bool:
    return _port_open(cluster.ports.slurmctld) and cluster.command_works(["scontrol", "ping"])


def _slurmd_ready(cluster: DevCluster) -> bool:
    if not _port_open(cluster.ports.slurmd):
        return False
    try:
        states = _run(["sinfo", "--noheader", "--Node", "--format=%T"], env={**os.environ, **cluster.env}, timeout=10)
    except DevClusterError:
        return False
    # "idle", "mixed" or "allocated" once registered; "unknown"/"down*" until slurmd reported in.
    return any(state.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for state in states.split())


def _sshd_ready(cluster: DevCluster) -> bool:
    return _port_open(cluster.ports.sshd)


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _munged_argv(dev: DevCluster) -> list[str]:
    lay = dev.layout
    return [_sbin("munged"), "--foreground", f"--key-file={lay.munge_key}", f"--socket={lay.munge_socket}",
            f"--pid-file={lay.run / 'munged.daemon.pid'}", f"--log-file={lay.log_file('munged')}",
            f"--seed-file={lay.state / 'munged.seed'}", "--force"]


DAEMONS: tuple[Daemon, ...] = (
    Daemon("munged", _munged_argv, _munge_ready),
    Daemon("mariadb", lambda dev: [_sbin("mariadbd"), f"--defaults-file={dev.layout.mariadb_conf}"], _database_ready),
    Daemon("slurmdbd", lambda dev: [_sbin("slurmdbd"), "-D"], _slurmdbd_ready),
    Daemon("slurmctld", lambda dev: [_sbin("slurmctld"), "-D", "-f", str(dev.layout.slurm_conf)], _slurmctld_ready),
    Daemon("slurmd", lambda dev: [_sbin("slurmd"), "-D", "-N", dev.node, "-f", str(dev.layout.slurm_conf)],
           _slurmd_ready),
    Daemon("sshd", lambda dev: [_sbin("sshd"), "-D", "-f", str(dev.layout.sshd_conf),
                                "-E", str(dev.layout.log_file("sshd"))], _sshd_ready),
)


# The configuration files each daemon reads at start.
_READS = {
    "mariadb": ("my.cnf",),
    "slurmdbd": ("slurmdbd.conf",),
    "slurmctld": ("slurm.conf",),
    "slurmd": ("slurm.conf", "cgroup.conf"),
    "sshd": ("sshd_config",),
}


def _daemon(name: str) -> Daemon:
    for daemon in DAEMONS:
        if daemon.name == name:
            return daemon
    raise KeyError(f"no daemon {name!r}; the dev cluster runs {', '.join(d.name for d in DAEMONS)}")
