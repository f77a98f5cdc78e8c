"""The Kubernetes publisher against in-memory API objects (tests/fakes.py) that fail the way
the API server does (ApiException with its HTTP status): one write that fails affects only its
workflow, and a cluster's credentials that cannot be had are a ClusterConnectionError that says
what to fix, and status is written by server-side apply, only when it changed. The same code
against a real API server: tests/integration/test_kube_status.py and test_kubernetes.py."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import API_VERSION, SlurmCluster, WorkflowPhase, WorkflowStatus
from reconciler.engine.controller import ClusterConnectionError
from reconciler.engine.metrics import Metrics
from reconciler.kube.publisher import FINALIZER, KubernetesPublisher, leftover_fields
from reconciler.kube.source import KubernetesSource
from reconciler.manifests.loader import load_text
from reconciler.sources.base import Snapshot
from reconciler.store.database import Store, StoredWorkflow
from tests.fakes import FakeCoreV1, FakeCustomObjects

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class World:
    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.custom = FakeCustomObjects()
        self.core = FakeCoreV1()
        self.source = KubernetesSource(self.custom, namespace="default")  # informers never started
        self.metrics = Metrics(stale_after=60)
        self.store = store
        self.state_dir = tmp_path
        self.publisher = KubernetesPublisher(custom=self.custom, core=self.core, source=self.source,
                                             state_dir=tmp_path, metrics=self.metrics)

    def workflow(self, name: str, *, finalizers: tuple[str, ...] = (FINALIZER,)) -> StoredWorkflow:
        obj: dict[str, Any] = {
            "apiVersion": API_VERSION, "kind": "Workflow",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": 1,
                         "finalizers": list(finalizers)},
            "spec": {"cluster": "dev", "tasks": [{"name": "step", "script": "true"}]},
        }
        self.source.workflows.remember(self.custom.add(obj))
        return self.store.upsert_workflow(namespace="default", name=name, resource=obj, revision=None,
                                          source_file=None, now=NOW, uid=obj["metadata"]["uid"])

    def status_of(self, name: str) -> dict[str, Any] | None:
        return self.custom.objects[("default", name)].get("status")

    def events_on(self, name: str) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.core.events if e["involvedObject"]["name"] == name]


@pytest.fixture
def world(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        yield World(tmp_path, store)


def running(progress: str) -> WorkflowStatus:
    return WorkflowStatus(phase=WorkflowPhase.RUNNING, progress=progress)


def test_a_status_write_that_fails_is_reported_and_every_other_status_is_written(world: World):
    one, two = world.workflow("one"), world.workflow("two")
    world.custom.refuse("one", call="status", status=500, reason="Internal Server Error")

    failed = world.publisher.publish(statuses={one.uid: running("0/1"), two.uid: running("0/1")}, events={},
                                     pruned=[], store=world.store)

    assert failed == {one.uid: "500 Internal Server Error"}
    assert world.status_of("one") is None
    written = world.status_of("two")
    assert written is not None and (written["phase"], written["progress"]) == ("Running", "0/1")
    assert world.events_on("one") == [("Warning", "StatusWriteFailed")]
    assert world.events_on("two") == []
    assert world.metrics.registry.get_sample_value("reconciler_events_total",
                                                   {"reason": "StatusWriteFailed"}) == 1.0


def test_a_status_not_written_is_written_by_the_next_publish(world: World):
    one = world.workflow("one")
    world.custom.refuse("one", call="status", status=503, reason="Service Unavailable")
    assert world.publisher.publish(statuses={one.uid: running("0/1")}, events={}, pruned=[], store=world.store)

    world.custom.mend("one", call="status")
    assert world.publisher.publish(statuses={one.uid: running("0/1")}, events={}, pruned=[], store=world.store) == {}
    assert world.status_of("one")["progress"] == "0/1"


def test_status_is_applied_by_the_operator_as_field_manager(world: World):
    one = world.workflow("one")

    assert world.publisher.publish(statuses={one.uid: running("1/2")}, events={}, pruned=[], store=world.store) == {}

    [call] = world.custom.status_calls
    assert (call["plural"], call["field_manager"], call["force"], call["_content_type"]) == (
        "workflows", "slurm-reconciler", True, "application/apply-patch+yaml")
    assert call["body"] == {"apiVersion": API_VERSION, "kind": "Workflow",
                            "metadata": {"name": "one", "namespace": "default"},
                            "status": running("1/2").model_dump(mode="json", by_alias=True, exclude_none=True)}
    assert world.status_of("one")["progress"] == "1/2"


def test_an_unchanged_status_is_not_written_again(world: World):
    one = world.workflow("one")
    for _ in range(3):
        world.publisher.publish(statuses={one.uid: running("1/2")}, events={}, pruned=[], store=world.store)
    assert world.custom.status_writes == ["one"]


def test_a_field_the_operator_stops_setting_is_gone(world: World):
    one = world.workflow("one")
    world.publisher.publish(statuses={one.uid: running("1/2")}, events={}, pruned=[], store=world.store)

    world.publisher.publish(statuses={one.uid: WorkflowStatus(phase=WorkflowPhase.RUNNING)}, events={}, pruned=[],
                            store=world.store)

    assert "progress" not in world.status_of("one")
    assert len(world.custom.status_calls) == 2  # the apply alone removed it


def test_fields_another_writer_left_in_the_status_are_removed_after_the_apply(world: World):
    one = world.workflow("one")
    world.custom.objects[("default", "one")]["status"] = {"phase": "Running", "progress": "0/2", "cluster": "old",
                                                          "tasks": {"gone": {"phase": "Running"}}}

    world.publisher.publish(statuses={one.uid: running("1/2")}, events={}, pruned=[], store=world.store)

    assert world.status_of("one") == running("1/2").model_dump(mode="json", by_alias=True, exclude_none=True)
    _, merge = world.custom.status_calls
    assert merge["_content_type"] == "application/merge-patch+json"
    assert merge["body"] == {"status": {"cluster": None, "tasks": {"gone": None}}}


def test_leftover_fields_name_what_the_applied_status_lacks():
    assert leftover_fields({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}, {"a": 1, "b": {"c": 2}, "e": []}) == {
        "b": {"d": None}}
    assert leftover_fields({"a": 1}, {"a": 2, "b": 3}) is None


def test_a_finalizer_that_cannot_be_added_does_not_stop_the_others(world: World):
    world.workflow("one", finalizers=())
    world.workflow("two", finalizers=())
    world.custom.refuse("one", call="patch", status=500, reason="Internal Server Error")

    world.publisher.prepare(Snapshot(load=load_text("", filename="none.yaml"), revision=None, files=()),
                            world.store, now=NOW)

    assert world.custom.objects[("default", "one")]["metadata"]["finalizers"] == []
    assert world.custom.objects[("default", "two")]["metadata"]["finalizers"] == [FINALIZER]


def ssh_cluster(secret: str | None = "login") -> SlurmCluster:
    ssh: dict[str, Any] = {"host": "login.example.org", "user": "hpc"}
    if secret is not None:
        ssh["keySecretRef"] = secret
    return SlurmCluster.model_validate({
        "apiVersion": API_VERSION, "kind": "SlurmCluster", "metadata": {"name": "hpc", "namespace": "science"},
        "spec": {"transport": "ssh", "ssh": ssh, "workdir": "/scratch"},
    })


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_missing_secret_says_what_to_do(world: World):
    with pytest.raises(ClusterConnectionError) as raised:
        world.publisher.connection(ssh_cluster())
    assert str(raised.value) == "Secret science/login not found: create it or fix spec.ssh.keySecretRef"


def test_a_secret_the_rbac_does_not_name_says_where_to_name_it(world: World):
    world.core.secrets[("science", "login")] = {"ssh-privatekey": encoded("key")}
    world.core.forbidden.add(("science", "login"))
    with pytest.raises(ClusterConnectionError) as raised:
        world.publisher.connection(ssh_cluster())
    assert str(raised.value) == ("Secret science/login cannot be read (403 Forbidden): the operator reads only "
                                 "the Secrets its RBAC names; with the chart, add {name: login, namespace: "
                                 "science} to secretAccess")


def test_a_secret_without_a_key_says_which_keys_it_needs(world: World):
    world.core.secrets[("science", "login")] = {"id_rsa": encoded("key")}
    with pytest.raises(ClusterConnectionError, match=r"^Secret science/login has no ssh-privatekey or privateKey key"):
        world.publisher.connection(ssh_cluster())


def test_the_key_and_known_hosts_come_from_the_secret(world: World):
    world.core.secrets[("science", "login")] = {"ssh-privatekey": encoded("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
                                                "known_hosts": encoded("login.example.org ssh-ed25519 AAAA\n")}
    spec, key = world.publisher.connection(ssh_cluster())
    assert key == "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    assert spec.ssh is not None and spec.ssh.known_hosts_file is not None
    assert Path(spec.ssh.known_hosts_file).read_text() == "login.example.org ssh-ed25519 AAAA\n"


def test_a_cluster_without_a_secret_needs_no_api_call(world: World):
    spec, key = world.publisher.connection(ssh_cluster(secret=None))
    assert key is None and spec == ssh_cluster(secret=None).spec
