"""Git mode end to end: an approval counts for what it approved. When a task before it reruns
with new parameters, the approval task waits for a person again and what follows it does not run
unreviewed, whether the approval was given with ``reconciler approve`` or committed in Git. An
approval's values reach the job after it, and approving again with other values reruns it."""

from __future__ import annotations

from pathlib import Path

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


def tuned(name: str) -> str:
    """review (an approval with a parameter) -> show, which writes what it was given."""
    return workflow_header(name) + """\
    - name: review
      type: approval
      parameters:
        - {name: gamma, type: number, description: the brightness to apply}
    - name: show
      dependsOn: [review]
      script: echo "env=$APPROVAL_REVIEW_GAMMA template={{ approvals.review.gamma }}" > gamma.txt
"""


def test_approving_again_with_other_values_reruns_the_job_with_them(local_world):
    repo, loop, workdir = local_world
    name = unique("tuned")
    repo.write("plans/tuned.yaml", tuned(name))
    repo.push("a step that needs a value from a person")
    loop.start()
    loop.wait_for(name, lambda s: task(s, "review").get("phase") == "AwaitingApproval", what="awaiting approval")
    refused = loop.cli("approve", name, "review", "--set", "gamma=bright", check=False)
    assert refused.returncode == 1 and "'bright' expects a number" in refused.stderr

    loop.cli("approve", name, "review", "--set", "gamma=1.2")
    first = loop.wait_for_phase(name, "Succeeded")
    written: Path = workdir / "default" / name / "show" / "gamma.txt"
    assert written.read_text() == "env=1.2 template=1.2\n"

    assert "again" in loop.cli("approve", name, "review", "--set", "gamma=1.5").stdout
    loop.wait_for(name, lambda s: s.get("phase") == "Succeeded" and task(s, "show").get("fingerprint") not in (
        None, task(first, "show")["fingerprint"]), what="show ran again")
    assert written.read_text() == "env=1.5 template=1.5\n"
    described = loop.cli("describe", "workflow", name).stdout.split("Approvals:")[1]
    iterations = [line.split() for line in described.splitlines() if line.strip().startswith("review")]
    assert [row[:4] for row in iterations] == [["review", "1", "Approved", "gamma=1.2"],
                                                ["review", "2", "Approved", "gamma=1.5"]]
    assert all("show#" in " ".join(row) for row in iterations), iterations
