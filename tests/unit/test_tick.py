"""Whole ticks of the control loop over in-memory edges (tests/fakes.py): a fault in one cluster,
one workflow or one status write stays there, is logged and shown, and every other workflow is
reconciled, saved and published in the same tick."""

from __future__ import annotations

import logging
from pathlib import Path

from reconciler.api import TaskPhase, WorkflowStatus
from reconciler.engine.controller import Controller
from reconciler.store.database import Store
from tests.fakes import LoginNodes, MemoryPublisher, MemorySource


def cluster(name: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {{name: {name}}}
spec: {{workdir: /work/{name}}}
"""


def workflow(name: str, *, on: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  cluster: {on}
  defaults: {{resources: {{partition: debug, time: "00:05:00"}}}}
  tasks:
    - {{name: step, script: "echo {name}"}}
"""


def manifests(*documents: str) -> str:
    return "---\n".join(documents)


TWO_CLUSTERS = manifests(cluster("a"), cluster("b"), workflow("one", on="a"), workflow("two", on="b"))


def controller(store: Store, tmp_path: Path, nodes: LoginNodes, *, text: str = TWO_CLUSTERS,
               publisher: MemoryPublisher | None = None, interval: float = 30.0) -> Controller:
    return Controller(source=MemorySource(text), store=store, state_dir=tmp_path, interval=interval,
                      publisher=publisher, connect=nodes)


def status(store: Store, name: str) -> WorkflowStatus:
    stored = store.workflow("default", name)
    assert stored is not None and stored.status is not None, f"no status saved for {name}"
    return stored.status


def condition(status: WorkflowStatus, kind: str):
    return next((c for c in status.conditions if c.type == kind), None)


def events(store: Store, name: str) -> list[tuple[str, str, str]]:
    stored = store.workflow("default", name)
    assert stored is not None
    return [(e.type, e.reason, e.message) for e in store.events(stored.uid)]


def submitted(status: WorkflowStatus) -> bool:
    return status.tasks["step"].phase is TaskPhase.SUBMITTED


def test_a_tick_submits_on_every_cluster_and_saves_and_publishes_every_status(store, tmp_path, nodes):
    publisher = MemoryPublisher()
    controller(store, tmp_path, nodes, publisher=publisher).tick()

    assert [job.name for job in nodes["/work/a"].submitted()] == ["one.step"]
    assert [job.name for job in nodes["/work/b"].submitted()] == ["two.step"]
    assert submitted(status(store, "one")) and submitted(status(store, "two"))
    assert all(submitted(s) for s in publisher.written.values()) and len(publisher.written) == 2
    assert condition(status(store, "one"), "ClusterReachable") is None


def test_a_cluster_whose_connection_cannot_be_set_up_affects_only_its_workflows(store, tmp_path, nodes, caplog):
    publisher = MemoryPublisher()
    why = "Secret default/login-a not found: create it or fix spec.ssh.keySecretRef"
    publisher.break_cluster("a", why)
    loop = controller(store, tmp_path, nodes, publisher=publisher)

    with caplog.at_level(logging.WARNING, logger="reconciler.engine.controller"):
        loop.tick()

    one = status(store, "one")
    reachable = condition(one, "ClusterReachable")
    assert reachable is not None and reachable.status == "False"
    assert why in reachable.message and "cluster a" in reachable.message
    ready = condition(one, "Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "ClusterUnreachable"
    assert one.tasks["step"].phase is TaskPhase.WAITING, one.tasks["step"]
    assert nodes["/work/a"].calls == []  # nothing was run on a cluster it could not connect to
    assert any(r.levelno == logging.WARNING and "cluster a" in r.getMessage() and why in r.getMessage()
               for r in caplog.records)
    # The other cluster went on in the same tick, and both statuses were saved and published.
    assert submitted(status(store, "two"))
    assert [job.name for job in nodes["/work/b"].submitted()] == ["two.step"]
    uids = {name: store.workflow("default", name).uid for name in ("one", "two")}
    assert publisher.written[uids["one"]] == one and submitted(publisher.written[uids["two"]])

    # Backed off: the next tick does not ask for the connection again, and keeps the status.
    loop.tick()
    assert publisher.connections == ["a", "b"]
    assert condition(status(store, "one"), "ClusterReachable").status == "False"


def test_a_cluster_is_tried_again_once_its_backoff_ends(store, tmp_path, nodes):
    publisher = MemoryPublisher()
    publisher.break_cluster("a", "Secret default/login-a has no ssh-privatekey or privateKey key")
    loop = controller(store, tmp_path, nodes, publisher=publisher, interval=0.0)  # a backoff of 0 s
    loop.tick()
    assert not submitted(status(store, "one"))

    publisher.mend_cluster("a")
    loop.tick()
    assert publisher.connections.count("a") == 2
    assert submitted(status(store, "one"))
    assert condition(status(store, "one"), "ClusterReachable") is None


def test_an_unexpected_exception_while_observing_one_cluster_is_contained(store, tmp_path, nodes, caplog):
    nodes["/work/a"].fail("squeue", RuntimeError("garbled reply"))
    loop = controller(store, tmp_path, nodes)

    with caplog.at_level(logging.WARNING, logger="reconciler.engine.controller"):
        loop.tick()

    reachable = condition(status(store, "one"), "ClusterReachable")
    assert reachable is not None and reachable.status == "False"
    assert "RuntimeError" in reachable.message and "garbled reply" in reachable.message
    assert not any(call[0] == "sbatch" for call in nodes["/work/a"].calls)
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "cluster a" in logged.getMessage() and logged.exc_info is not None
    assert submitted(status(store, "two"))

    calls = len(nodes["/work/a"].calls)
    loop.tick()  # backed off: cluster a is left alone this time
    assert len(nodes["/work/a"].calls) == calls
    assert len(nodes["/work/b"].submitted()) == 1  # and b is not submitted to twice


def test_an_exception_in_one_workflows_action_leaves_the_others_on_its_cluster_going(store, tmp_path, nodes,
                                                                                       caplog):
    text = manifests(cluster("a"), workflow("one", on="a"), workflow("two", on="a"))
    nodes["/work/a"].fail("write_file", RuntimeError("disk on fire"), containing="/one/")

    with caplog.at_level(logging.ERROR, logger="reconciler.engine.executor"):
        controller(store, tmp_path, nodes, text=text).tick()

    assert ("Warning", "ActionFailed", "Submit of step: unexpected RuntimeError: disk on fire") in events(store, "one")
    assert any("default/one" in r.getMessage() and r.exc_info is not None for r in caplog.records)
    assert [job.name for job in nodes["/work/a"].submitted()] == ["two.step"]
    assert submitted(status(store, "two"))
    assert condition(status(store, "two"), "ClusterReachable") is None


def test_a_failed_status_write_is_an_event_on_its_workflow_and_is_written_next_tick(store, tmp_path, nodes,
                                                                                   caplog):
    publisher = MemoryPublisher()
    publisher.refuse_write("one", "500 Internal Server Error")
    loop = controller(store, tmp_path, nodes, publisher=publisher)

    with caplog.at_level(logging.WARNING, logger="reconciler.engine.controller"):
        loop.tick()

    one, two = (store.workflow("default", name) for name in ("one", "two"))
    assert one.uid not in publisher.written
    assert submitted(publisher.written[two.uid])
    assert submitted(status(store, "one")) and submitted(status(store, "two"))  # saved all the same
    [failure] = [e for e in events(store, "one") if e[1] == "StatusWriteFailed"]
    assert failure[0] == "Warning" and "500 Internal Server Error" in failure[2]
    assert not [e for e in events(store, "two") if e[1] == "StatusWriteFailed"]
    assert any("default/one" in r.getMessage() and "500 Internal Server Error" in r.getMessage()
               for r in caplog.records)

    loop.tick()
    assert publisher.written[one.uid] == status(store, "one")


def test_a_cluster_that_cannot_be_observed_keeps_its_workflows_status_and_says_why(store, tmp_path, nodes):
    loop = controller(store, tmp_path, nodes, interval=0.0)
    loop.tick()
    loop.tick()
    job_id = status(store, "one").tasks["step"].job_id
    assert job_id == "100"
    nodes["/work/a"].fail("squeue", RuntimeError("connection reset"))

    loop.tick()

    one = status(store, "one")
    assert one.tasks["step"].job_id == job_id  # the job is still known
    assert one.tasks["step"].phase is TaskPhase.UNKNOWN and one.tasks["step"].reason == "ClusterUnreachable"
    assert "connection reset" in condition(one, "ClusterReachable").message
    assert len(nodes["/work/a"].submitted()) == 1  # never submitted again while it cannot look


def test_a_workflow_naming_candidate_clusters_is_placed_once_and_runs_there(store, tmp_path, nodes):
    loop = controller(store, tmp_path, nodes, text=manifests(cluster("a"), cluster("b"),
                                                             workflow("three", on="[b, a]")))
    loop.tick()
    placed = status(store, "three")
    # Both idle and alike: the lower score ties, and the name decides.
    assert placed.cluster == "a" and submitted(placed)
    assert [job.name for job in nodes["/work/a"].submitted()] == ["three.step"] and not nodes["/work/b"].submitted()
    [(_, _, message)] = [e for e in events(store, "three") if e[1] == "Placed"]
    assert message.startswith("placed on a: its tasks score")
    loop.tick()
    assert status(store, "three").cluster == "a"
    assert len([e for e in events(store, "three") if e[1] == "Placed"]) == 1


def test_a_workflow_none_of_whose_clusters_can_be_asked_waits_to_be_placed(store, tmp_path, nodes, caplog):
    publisher = MemoryPublisher()
    for name in ("a", "b"):
        publisher.break_cluster(name, f"Secret default/login-{name} not found")
    text = manifests(cluster("a"), cluster("b"), workflow("three", on="auto"))
    loop = controller(store, tmp_path, nodes, text=text, publisher=publisher, interval=0.0)
    with caplog.at_level(logging.WARNING, logger="reconciler.engine.controller"):
        loop.tick()
    assert store.workflow("default", "three").status is None
    assert any("none of its clusters can be asked" in r.getMessage() for r in caplog.records)
    publisher.mend_cluster("b")
    loop.tick()
    assert status(store, "three").cluster == "b" and submitted(status(store, "three"))
