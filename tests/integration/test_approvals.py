"""Git mode end to end: an approval counts for what it approved. When a task before it reruns
with new parameters, the approval task waits for a person again and what follows it does not run
unreviewed, whether the approval was given with ``reconciler approve`` or committed in Git."""

from __future__ import annotations

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import sacct_jobs, unique, workflow_header

pytestmark = pytest.mark.slurm

STALE = "ApprovalStale"


def reviewed(name: str, *, threshold: str, approved: str | None = None) -> str:
    """prepare -> review (an approval) -> treat."""
    declared = f"\n      approved: {approved}" if approved is not None else ""
    return workflow_header(name) + f"""\
    - name: prepare
      script: echo threshold={threshold}
    - name: review
      type: approval
      dependsOn: [prepare]{declared}
    - name: treat
      dependsOn: [review]
      script: echo treated
"""


def task(status: dict, name: str) -> dict:
    return status.get("tasks", {}).get(name, {})


def asks_again(revision: str):
    """The status of ``revision``: prepare ran again, review waits for a person again."""
    return lambda s: (s.get("revision") == revision and task(s, "prepare").get("phase") == "Succeeded"
                      and task(s, "review").get("phase") == "AwaitingApproval")


def treated(dev_cluster: DevCluster, name: str, *, at_least: int) -> int:
    return len(sacct_jobs(dev_cluster, f"{name}.treat", at_least=at_least))


def test_a_changed_prerequisite_makes_a_person_approve_again(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("approved")
    repo.write("plans/reviewed.yaml", reviewed(name, threshold="0.5"))
    repo.push("a treatment plan that needs a review")
    loop.start()
    loop.wait_for(name, lambda s: task(s, "review").get("phase") == "AwaitingApproval", what="awaiting approval")
    assert "approved" in loop.cli("approve", name, "review").stdout
    loop.wait_for_phase(name, "Succeeded")

    repo.write("plans/reviewed.yaml", reviewed(name, threshold="0.6"))
    revision = repo.push("a new threshold for prepare")
    status = loop.wait_for(name, asks_again(revision), what="review asks again")
    assert task(status, "review")["reason"] == STALE, task(status, "review")
    assert "was for different inputs" in task(status, "review")["message"]
    assert task(status, "treat")["phase"] == "Waiting"
    # treat stays unrun while nobody approved the new inputs: the loop has planned it twice since.
    assert task(loop.later_ticks(name, 2), "treat")["phase"] == "Waiting"
    assert treated(dev_cluster, name, at_least=1) == 1
    assert STALE in loop.cli("describe", "workflow", name).stdout

    assert "approved" in loop.cli("approve", name, "review").stdout
    loop.wait_for_phase(name, "Succeeded")
    assert treated(dev_cluster, name, at_least=2) == 2


def test_an_approval_committed_in_git_counts_for_its_revision(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("committed")
    repo.write("plans/reviewed.yaml", reviewed(name, threshold="0.5", approved="true"))
    repo.push("reviewed in the same commit")
    loop.start()
    loop.wait_for_phase(name, "Succeeded")

    # A new parameter before the approval, approved: true left as it was.
    repo.write("plans/reviewed.yaml", reviewed(name, threshold="0.6", approved="true"))
    revision = repo.push("a new threshold, the old approval left in place")
    status = loop.wait_for(name, asks_again(revision), what="review asks again")
    assert task(status, "review")["reason"] == STALE
    assert "approved: value" in task(status, "review")["message"]
    assert task(loop.later_ticks(name, 2), "treat")["phase"] == "Waiting"
    assert treated(dev_cluster, name, at_least=1) == 1

    # Committing the approval anew: a note says what was checked for this revision.
    repo.write("plans/reviewed.yaml", reviewed(name, threshold="0.6", approved='"threshold 0.6 checked (ana)"'))
    approved = repo.push("review of threshold 0.6")
    loop.wait_for(name, lambda s: s.get("revision") == approved and s.get("phase") == "Succeeded",
                  what="treated again")
    assert treated(dev_cluster, name, at_least=2) == 2
