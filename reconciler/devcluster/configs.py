"""Configuration files of the dev cluster: slurm.conf, slurmdbd.conf, MariaDB and sshd.

Pure text rendering from a :class:`Layout` (where everything lives) and :class:`Ports`; called by
:mod:`reconciler.devcluster.cluster` when it prepares a directory. Everything listens on
loopback only, and every path is inside the cluster's own directory, so a dev cluster never
touches the machine's own Slurm, MariaDB or sshd configuration.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

# The name of the dev cluster in the default directory; one in another directory is named after
# its directory (see ``cluster_name``), so that two of them side by side keep apart in manifests,
# accounting and on the node (Slurm's cgroups are named after the node).
CLUSTER_NAME = "dev"
PARTITION = "debug"
PARTITION_MAX_TIME = "01:00:00"
# A second partition on the same node whose jobs are billed by TRESBillingWeights, so that the
# billed core-hours Slurm's accounting reports differ from elapsed x CPUs.
BILLED_PARTITION = "billed"
BILLING_WEIGHTS = "CPU=2.0,Mem=0.25G"
# More CPUs and memory than a small machine has, on purpose: many small test jobs then run side
# by side instead of queueing (accepted thanks to SlurmdParameters=config_overrides).
NODE_CPUS = 16
NODE_MEMORY_MB = 16000
DATABASE = "slurm_acct_db"
DATABASE_USER = "slurm"


@dataclass(frozen=True)
class Ports:
    slurmctld: int
    slurmd: int
    slurmdbd: int
    mariadb: int
    sshd: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Ports:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Layout:
    """Every path of one dev cluster, derived from its root directory."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def cgroup_conf(self) -> Path:
        return self.etc / "cgroup.conf"

    @property
    def slurmdbd_conf(self) -> Path:
        # slurmdbd reads slurmdbd.conf from the directory of SLURM_CONF.
        return self.etc / "slurmdbd.conf"

    @property
    def mariadb_conf(self) -> Path:
        return self.etc / "my.cnf"

    @property
    def sshd_conf(self) -> Path:
        return self.etc / "sshd_config"

    @property
    def munge_key(self) -> Path:
        return self.etc / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.run / "munge" / "munge.socket.2"

    @property
    def mariadb_socket(self) -> Path:
        return self.run / "mariadb.sock"

    @property
    def mariadb_data(self) -> Path:
        return self.state / "mariadb"

    @property
    def database_password(self) -> Path:
        return self.etc / "database-password"

    @property
    def ports(self) -> Path:
        return self.root / "ports.json"

    @property
    def host_key(self) -> Path:
        return self.ssh / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    def pid_file(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.log / f"{daemon}.log"


# Where the dev cluster can confine jobs: cgroup v1's memory controller gives Slurm a real
# OUT_OF_MEMORY state; without it, jobs are tracked through /proc and killed over their memory
# request from accounting samples, which Slurm records as FAILED (signal 9).
_CGROUP_TRACKING = """\
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/cgroup
JobAcctGatherFrequency=task=2"""
_PROC_TRACKING = """\
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill"""


def cgroup_conf() -> str:
    return """\
# cgroup v1 confinement of the dev cluster's jobs, written by `reconciler dev-cluster up`.
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
ConstrainCores=no
IgnoreSystemd=yes
"""


def cluster_name(directory: Path, *, default_directory: Path) -> str:
    """The name a new dev cluster in ``directory`` gets: ``dev`` in the default directory, else
    the directory's name made fit for Slurm and Kubernetes (lower-case letters, digits, "-")."""
    if directory == default_directory:
        return CLUSTER_NAME
    name = re.sub(r"[^a-z0-9]+", "-", directory.name.lower()).strip("-")[:40].strip("-")
    if not name or not name[0].isalpha():
        name = f"{CLUSTER_NAME}-{name}".rstrip("-")
    return name


def node_name(cluster: str) -> str:
    """The one node of cluster ``cluster``: "dev1" for "dev", "dev2-1" for "dev2"."""
    return f"{cluster}-1" if cluster[-1].isdigit() else f"{cluster}1"


def configured_name(slurm_conf_text: str) -> str | None:
    """The ClusterName a written slurm.conf holds (a cluster keeps its name for life: slurmctld
    refuses to start when its state directory belongs to another name)."""
    found = re.search(r"^ClusterName=(\S+)$", slurm_conf_text, flags=re.MULTILINE)
    return found.group(1) if found else None


def slurm_conf(layout: Layout, ports: Ports, *, hostname: str, cgroups: bool, name: str = CLUSTER_NAME) -> str:
    tracking = _CGROUP_TRACKING if cgroups else _PROC_TRACKING
    node = node_name(name)
    return f"""\
# Single-node Slurm for development and tests, written by `reconciler dev-cluster up`.
ClusterName={name}
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={ports.slurmctld}
SlurmdPort={ports.slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={layout.munge_socket}
StateSaveLocation={layout.state / "slurmctld"}
SlurmdSpoolDir={layout.state / "slurmd"}
SlurmctldPidFile={layout.run / "slurmctld.daemon.pid"}
SlurmdPidFile={layout.run / "slurmd.daemon.pid"}
SlurmctldLogFile={layout.log_file("slurmctld")}
SlurmdLogFile={layout.log_file("slurmd")}
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
SwitchType=switch/none
{tracking}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job without --mem would otherwise claim the whole node's memory and run alone.
DefMemPerCPU=100
SchedulerType=sched/backfill
# Without these a burst of small jobs waits for the scheduler's periodic pass.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=30
OverTimeLimit=0
# Below Slurm's default (1001), so that arrays of a few hundred elements already span several
# array jobs: the demo and the tests exercise the chunking without thousands of elements.
MaxArraySize=201
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports.slurmdbd}
# The munge socket for talking to slurmdbd: Slurm reads it from here, not from AuthInfo.
AccountingStoragePass={layout.munge_socket}
AccountingStorageEnforce=associations,limits,qos
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
NodeName={node} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} Boards=1 SocketsPerBoard=1 \
CoresPerSocket={NODE_CPUS} ThreadsPerCore=1 RealMemory={NODE_MEMORY_MB} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime={PARTITION_MAX_TIME} State=UP
PartitionName={BILLED_PARTITION} Nodes={node} Default=NO MaxTime={PARTITION_MAX_TIME} State=UP \
TRESBillingWeights="{BILLING_WEIGHTS}"
"""


def slurmdbd_conf(layout: Layout, ports: Ports, *, hostname: str, password: str) -> str:
    return f"""\
# Accounting daemon of the dev cluster, written by `reconciler dev-cluster up`.
AuthType=auth/munge
AuthInfo=socket={layout.munge_socket}
DbdAddr=127.0.0.1
DbdHost={hostname}
DbdPort={ports.slurmdbd}
SlurmUser=root
LogFile={layout.log_file("slurmdbd")}
PidFile={layout.run / "slurmdbd.daemon.pid"}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports.mariadb}
StorageUser={DATABASE_USER}
StoragePass={password}
StorageLoc={DATABASE}
"""


def mariadb_conf(layout: Layout, ports: Ports) -> str:
    return f"""\
# Private MariaDB for the dev cluster's accounting, written by `reconciler dev-cluster up`.
[mysqld]
user=root
datadir={layout.mariadb_data}
socket={layout.mariadb_socket}
pid-file={layout.run / "mariadb.daemon.pid"}
port={ports.mariadb}
bind-address=127.0.0.1
skip-name-resolve
log-error={layout.log_file("mariadb")}
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
# slurmdbd's recommended settings; the defaults make it warn on every start.
innodb_lock_wait_timeout=900
max_connections=50

[client]
socket={layout.mariadb_socket}
"""


def sshd_conf(layout: Layout, ports: Ports) -> str:
    return f"""\
# OpenSSH server of the dev cluster (the login node of the ssh transport).
ListenAddress 127.0.0.1
Port {ports.sshd}
HostKey {layout.host_key}
PidFile {layout.run / "sshd.daemon.pid"}
AuthorizedKeysFile {layout.authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The key files live in a directory the tests create; ownership checks would only get in the way.
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
MaxSessions 50
MaxStartups 50:30:100
Subsystem sftp internal-sftp
"""


def cluster_manifest(layout: Layout, ports: Ports, *, transport: str, user: str, cluster: str = CLUSTER_NAME) -> str:
    """A SlurmCluster manifest for this dev cluster, reached locally or through its sshd."""
    name = cluster if transport == "local" else f"{cluster}-ssh"
    lines = [
        "apiVersion: hpc.reconciler.dev/v1alpha1",
        "kind: SlurmCluster",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  transport: {transport}",
    ]
    if transport == "ssh":
        lines += [
            "  ssh:",
            "    host: 127.0.0.1",
            f"    port: {ports.sshd}",
            f"    user: {user}",
            f"    keyFile: {layout.client_key}",
            f"    knownHostsFile: {layout.known_hosts}",
        ]
    lines += [
        f"  slurmConf: {layout.slurm_conf}",
        f"  workdir: {layout.workdir}",
        "  partitions:",
        f"    - name: {PARTITION}",
        "      costPerCoreHour: 0.05",
        f"    - name: {BILLED_PARTITION}",
        "      costPerCoreHour: 0.05",
    ]
    return "\n".join(lines) + "\n"
