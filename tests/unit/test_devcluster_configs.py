"""The dev cluster's slurm.conf: how jobs are confined decides whether OUT_OF_MEMORY is real."""

from pathlib import Path

from reconciler.devcluster.configs import Layout, Ports, cgroup_conf, slurm_conf

PORTS = Ports(slurmctld=1, slurmd=2, slurmdbd=3, mariadb=4, sshd=5)
LAYOUT = Layout(Path("/srv/dev"))


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_with_cgroups_jobs_are_confined_by_the_kernel():
    conf = settings(slurm_conf(LAYOUT, PORTS, hostname="vm", cgroups=True))
    assert conf["TaskPlugin"] == "task/cgroup" and conf["ProctrackType"] == "proctrack/cgroup"
    assert "JobAcctGatherParams" not in conf
    assert "ConstrainRAMSpace=yes" in cgroup_conf()


def test_without_cgroups_jobs_are_tracked_through_proc_and_killed_over_memory():
    conf = settings(slurm_conf(LAYOUT, PORTS, hostname="vm", cgroups=False))
    assert conf["TaskPlugin"] == "task/none" and conf["ProctrackType"] == "proctrack/linuxproc"
    assert conf["JobAcctGatherParams"] == "OverMemoryKill"


def test_everything_listens_on_loopback_in_its_own_directory():
    conf = settings(slurm_conf(LAYOUT, PORTS, hostname="vm", cgroups=True))
    assert conf["SlurmctldHost"] == "vm(127.0.0.1)" and conf["AccountingStorageHost"] == "127.0.0.1"
    assert all(value.startswith("/srv/dev/") for key, value in conf.items()
               if key.endswith(("File", "Location", "SpoolDir")))
