"""A workflow none of whose inputs changed is not planned again (``LastPlans``): the plan handed
back must be the one planning would give, and anything that could change it plans again."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from reconciler.api import Capacity, FailureKind, TaskPhase, WorkflowStatus
from reconciler.core.observed import ClusterView, ObservedJob
from reconciler.core.plan import Cleanup, Submit, WorkflowPlan
from reconciler.core.planner import DesiredWorkflow, LastPlans, plan_cluster

from .reconcile_world import T0, approved, job, resolved, view

CHAIN = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: chain}
spec:
  ttlSecondsAfterFinished: 600
  tasks:
    - {name: a, script: "true"}
    - {name: b, script: "true", dependsOn: [a], retry: {limit: 2, backoffSeconds: 60}}
"""

GATED = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: gated}
spec:
  tasks:
    - {name: a, script: "true"}
    - {name: review, type: approval, dependsOn: [a]}
    - {name: b, script: "true", dependsOn: [review]}
"""


@dataclass
class Loop:
    """One workflow planned tick after tick the way the loop does: each tick starts from the
    status the one before made, with the plans it kept."""

    desired: DesiredWorkflow
    last: LastPlans = field(default_factory=LastPlans)
    status: WorkflowStatus | None = None

    def tick(self, *, now=T0, cluster_view: ClusterView | None = None, capacity: Capacity | None = None,
             **changes) -> WorkflowPlan:
        self.desired = replace(self.desired, previous=self.status, **changes)
        [plan] = plan_cluster([self.desired], view=cluster_view or view(), capacity=capacity or Capacity(), now=now,
                              last=self.last)
        self.status = plan.status
        return plan

    def fresh(self, **kwargs) -> WorkflowPlan:
        """What planning from scratch gives for the same inputs."""
        [plan] = plan_cluster([self.desired], view=kwargs.get("cluster_view") or view(),
                              capacity=kwargs.get("capacity") or Capacity(), now=kwargs.get("now", T0))
        return plan


def loop(text: str, observed: tuple[ObservedJob, ...] = ()) -> Loop:
    return Loop(DesiredWorkflow(uid="uid-1", resolved=resolved(text), generation=1, observed=observed))


def running(wf) -> tuple[ObservedJob, ...]:
    return (job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0, finished=T0),
            job(wf, "b", phase=TaskPhase.RUNNING, job_id="102"))


def steady(world: Loop, **kwargs) -> WorkflowPlan:
    """Two ticks: the first plans, the second confirms the status it made; then the steady one."""
    world.tick(**kwargs)
    world.tick(**kwargs)
    return world.tick(**kwargs)


def test_a_workflow_whose_inputs_did_not_change_is_handed_its_last_plan():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    first = world.tick()
    assert not first.unchanged and first.status.tasks["b"].phase is TaskPhase.RUNNING
    second = world.tick()
    assert not second.unchanged  # the status it started from changed: planned again
    third = world.tick(observed=tuple(replace(j) for j in world.desired.observed))  # equal jobs, new objects
    assert third.unchanged and third.actions == () and third.events == ()
    assert third.status == world.fresh().status == second.status
    assert len(world.last) == 1


def test_a_changed_job_plans_again():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    done = (running(wf)[0], job(wf, "b", phase=TaskPhase.SUCCEEDED, exit_code=0, finished=T0, job_id="102"))
    plan = world.tick(observed=done)
    assert not plan.unchanged and plan.status.tasks["b"].phase is TaskPhase.SUCCEEDED


def test_a_plan_with_something_to_do_is_never_handed_back():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf)[:1])  # a done, b not submitted yet
    plans = [world.tick() for _ in range(3)]
    assert all(not plan.unchanged and [type(a) for a in plan.actions] == [Submit] for plan in plans)
    assert len(world.last) == 0


def test_an_approval_that_arrives_plans_again():
    wf = resolved(GATED)
    world = loop(GATED, (job(wf, "a", phase=TaskPhase.SUCCEEDED, exit_code=0, finished=T0),))
    waiting = steady(world)
    assert waiting.unchanged and waiting.status.tasks["review"].phase is TaskPhase.AWAITING_APPROVAL
    plan = world.tick(approvals=approved(wf, ["review"]))
    assert not plan.unchanged and plan.status.tasks["review"].phase is TaskPhase.SUCCEEDED
    assert [a.key.task for a in plan.actions if isinstance(a, Submit)] == ["b"]


def test_a_retry_whose_backoff_comes_due_plans_again():
    wf = resolved(CHAIN)
    failed = (running(wf)[0], job(wf, "b", phase=TaskPhase.FAILED, failure=FailureKind.FAILED, exit_code=1,
                                   finished=T0, job_id="102"))
    world = loop(CHAIN, failed)
    held = steady(world, now=T0 + timedelta(seconds=10))
    assert held.unchanged and held.status.tasks["b"].phase is TaskPhase.RETRYING
    assert held.requeue_after == 50  # the loop still wakes up when the backoff ends
    before = world.tick(now=T0 + timedelta(seconds=59))
    assert before.unchanged and before.requeue_after == 1
    due = world.tick(now=T0 + timedelta(seconds=60))
    assert not due.unchanged and [a.key.attempt for a in due.actions if isinstance(a, Submit)] == [2]


def test_room_on_the_cluster_plans_a_queued_workflow_again():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf)[:1])
    full = {"capacity": Capacity(max_submitted_jobs=3), "cluster_view": view(queued_jobs=3)}
    queued = steady(world, **full)
    assert queued.unchanged and queued.status.tasks["b"].phase is TaskPhase.QUEUED
    plan = world.tick(capacity=Capacity(max_submitted_jobs=3), cluster_view=view(queued_jobs=2))
    assert not plan.unchanged and [a.key.task for a in plan.actions if isinstance(a, Submit)] == ["b"]


def test_a_busier_queue_does_not_plan_a_running_workflow_again():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    assert world.tick(cluster_view=view(queued_jobs=40, queued_cores=400)).unchanged


def test_a_changed_spec_or_cluster_view_plans_again():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    assert not world.tick(cluster_view=view(reachable=False)).unchanged
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    edited = resolved(CHAIN.replace('script: "true"}\n    - {name: b', 'script: "false"}\n    - {name: b'))
    assert not world.tick(resolved=edited).unchanged


def test_an_equal_spec_resolved_again_is_handed_the_last_plan():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    assert world.tick(resolved=resolved(CHAIN)).unchanged


def test_a_status_not_written_plans_again():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    world.last.forget("uid-1")
    assert not world.tick().unchanged
    assert world.tick().unchanged
    # A status the loop started from that is not the one the plan made (overwritten, or lost).
    world.status = world.status.model_copy(update={"progress": "0/2"})
    assert not world.tick().unchanged


def test_a_finished_workflow_waiting_for_its_ttl_costs_no_plan_until_it_is_due():
    wf = resolved(CHAIN)
    done = (running(wf)[0], job(wf, "b", phase=TaskPhase.SUCCEEDED, exit_code=0, finished=T0, job_id="102"))
    world = loop(CHAIN, done)
    finished = steady(world, now=T0 + timedelta(seconds=1))
    assert finished.unchanged and finished.status.phase.value == "Succeeded"
    assert world.tick(now=T0 + timedelta(seconds=300)).unchanged
    due = world.tick(now=T0 + timedelta(seconds=601))
    assert not due.unchanged and [type(a) for a in due.actions] == [Cleanup]


def test_a_restarted_loop_plans_everything():
    wf = resolved(CHAIN)
    world = loop(CHAIN, running(wf))
    assert steady(world).unchanged
    world.last = LastPlans()
    assert not world.tick().unchanged
