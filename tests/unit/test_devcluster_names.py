"""Dev clusters side by side: each directory gives a cluster of its own name, node and ports."""

from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster, DevClusterError
from reconciler.devcluster.configs import (
    Layout,
    Ports,
    cluster_manifest,
    cluster_name,
    configured_name,
    node_name,
    slurm_conf,
)

DEFAULT = Path("/home/u/.local/state/slurm-reconciler/dev-cluster")


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("directory, name", [
    (DEFAULT, "dev"),
    (DEFAULT.parent / "dev2", "dev2"),
    (Path("/tmp/Second Cluster!"), "second-cluster"),
    (Path("/tmp/2nd"), "dev-2nd"),
    (Path("/tmp/___"), "dev"),
    (Path("/tmp/" + "a" * 60), "a" * 40),
])
def test_a_cluster_is_named_after_its_directory_unless_it_is_the_default_one(directory, name):
    assert cluster_name(directory, default_directory=DEFAULT) == name


def test_each_cluster_has_a_node_of_its_own_name():
    assert node_name("dev") == "dev1" and node_name("dev2") == "dev2-1" and node_name("gpu-a") == "gpu-a1"


def test_two_directories_give_two_clusters_that_share_nothing():
    first, second = Layout(Path("/srv/a")), Layout(Path("/srv/b"))
    ports_a, ports_b = Ports(1, 2, 3, 4, 5), Ports(11, 12, 13, 14, 15)
    a = settings(slurm_conf(first, ports_a, hostname="vm", cgroups=True, name="a"))
    b = settings(slurm_conf(second, ports_b, hostname="vm", cgroups=True, name="b"))
    assert (a["ClusterName"], b["ClusterName"]) == ("a", "b")
    assert a["NodeName"].startswith("a1 ") and b["NodeName"].startswith("b1 ")
    assert "Nodes=b1 " in b["PartitionName"]
    shared = {key for key in a if a[key] == b[key] and key.endswith(("Port", "File", "Location", "SpoolDir", "Pass"))}
    assert shared == set()
    assert configured_name(slurm_conf(second, ports_b, hostname="vm", cgroups=False, name="b")) == "b"
    assert configured_name("# nothing\n") is None


def test_the_manifests_name_the_cluster():
    manifest = cluster_manifest(Layout(Path("/srv/b")), Ports(11, 12, 13, 14, 15), transport="ssh", user="u",
                                cluster="b")
    assert "  name: b-ssh\n" in manifest and "  slurmConf: /srv/b/etc/slurm.conf\n" in manifest
    assert "    port: 15\n" in manifest


def test_a_cluster_keeps_the_name_its_configuration_was_written_with(tmp_path: Path):
    directory = tmp_path / "renamed-later"
    (directory / "etc").mkdir(parents=True)
    assert DevCluster(directory).name == "renamed-later"
    (directory / "etc" / "slurm.conf").write_text("ClusterName=first\n")
    cluster = DevCluster(directory)
    assert cluster.name == "first" and cluster.node == "first1"


def test_a_name_asked_for_applies_to_a_new_cluster_and_must_match_an_existing_one(tmp_path: Path):
    directory = tmp_path / "elsewhere"
    assert DevCluster(directory, name="dev").name == "dev"
    (directory / "etc").mkdir(parents=True)
    (directory / "etc" / "slurm.conf").write_text("ClusterName=dev\n")
    with pytest.raises(DevClusterError, match="holds cluster dev, not other"):
        DevCluster(directory, name="other").up()


def test_a_new_cluster_takes_no_port_a_stopped_cluster_beside_it_recorded(tmp_path: Path, monkeypatch):
    from reconciler.devcluster import cluster as module

    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "ports.json").write_text(Ports(1, 2, 3, 4, 5).to_json())
    offered = iter([1, 2, 10, 10, 3, 11, 12, 5, 13, 14])  # what the kernel hands out as free
    monkeypatch.setattr(module, "_free_port", lambda: next(offered))
    assert module._new_ports(tmp_path / "second") == Ports(10, 11, 12, 13, 14)
