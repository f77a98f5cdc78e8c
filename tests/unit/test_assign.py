"""The Orchestrator inside the reconcile core: auto resources chosen from history, the choice
recorded with each submission, budgets that hold a workflow, and placement among clusters."""

from dataclasses import replace
from datetime import timedelta

from reconciler.api import Capacity, TaskPhase, WorkflowPhase
from reconciler.api.orchestration import Scoring
from reconciler.core.assign import Choosing, learn, offers_of, optimizer_of, place
from reconciler.core.choices import RecordedChoice, TaskChoices
from reconciler.core.history import RunSample, TaskUsage
from reconciler.core.observed import PartitionLimits
from reconciler.core.orchestrator import StartQuery
from reconciler.core.plan import Submit
from reconciler.core.planner import DesiredWorkflow, plan_cluster, task_fingerprints
from tests.unit.reconcile_world import T0, job, resolved, view

AUTO = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: solve}
spec:
  defaults: {resources: {cpus: 2, time: "00:30:00"}}
  tasks:
    - name: sim
      kind: sim
      script: "true"
      resources: {cpus: auto, time: auto}
      candidates: {cpus: [1, 2, 4, 8]}
"""
PARTITIONS = (PartitionLimits(name="debug", max_time_seconds=3600, default=True, state="UP", total_cpus=8,
                              total_nodes=1, max_cpus_per_node=8),)


def history(*points: tuple[int, float], kind: str = "sim") -> list[RunSample]:
    """Successful runs of ``kind``: (cpus, elapsed seconds) each."""
    return [RunSample(kind=kind, workflow="default/old", task="sim", attempt=1, job_id=str(100 + n), cluster="dev",
                      partition="debug", nodes=1, cpus=cpus, memory_mib=1024, time_limit_seconds=3600,
                      size_hint=None, state="COMPLETED", elements=1, elapsed_seconds=elapsed,
                      queue_wait_seconds=1.0, max_rss_mib=100, total_cpu_seconds=elapsed * cpus,
                      billed_core_seconds=int(elapsed * cpus), finished_at=T0 - timedelta(hours=1))
            for n, (cpus, elapsed) in enumerate(points)]


# Run time 60 + 480 / cpus seconds: more CPUs always finish sooner, but bill more core-hours.
AMDAHL = history((1, 540), (2, 300), (4, 180), (1, 540), (2, 300), (4, 180))


def choosing(wf, samples=(), *, expression: str | None = None, starts=None) -> Choosing:
    spec = wf.spec if expression is None else wf.spec.model_copy(update={"scoring": Scoring(expression=expression)})
    return Choosing(offers=offers_of(wf.cluster, PARTITIONS), learned=learn(samples),
                    starts=starts or {}, optimizer=optimizer_of(spec, wf.cluster))


def plan(wf, *, with_choosing, observed=(), choices=None, usage=None, now=T0):
    desired = DesiredWorkflow(uid="uid-1", resolved=wf, generation=1, choosing=with_choosing,
                              choices=choices or TaskChoices(), observed=tuple(observed), usage=usage or {})
    [result] = plan_cluster([desired], view=view(), capacity=Capacity(), now=now)
    return result


def submits(result) -> list[Submit]:
    return [a for a in result.actions if isinstance(a, Submit)]


def test_with_history_the_score_picks_the_cpus_and_the_time_and_the_choice_goes_with_the_submission():
    wf = resolved(AUTO)
    fastest = plan(wf, with_choosing=choosing(wf, AMDAHL))
    [submit] = submits(fastest)
    assert submit.resources.cpus == 8  # "time" (the default score): the most CPUs finish first
    assert submit.resources.time is not None and submit.resources.time != "auto"
    assert submit.choice.status.reason == "Chosen" and submit.choice.attempt == 1
    assert len(submit.choice.ranked) == 4 and submit.choice.ranked[0]["cpus"] == 8
    assert fastest.status.tasks["sim"].choice.cpus == 8
    cheapest = plan(wf, with_choosing=choosing(wf, AMDAHL, expression="coreHours"))
    assert submits(cheapest)[0].resources.cpus == 1
    assert "6 runs of kind sim" in submits(cheapest)[0].choice.status.message


def test_without_history_auto_falls_back_to_the_declared_defaults_and_says_so():
    wf = resolved(AUTO)
    result = plan(wf, with_choosing=choosing(wf, history((1, 540))))
    [submit] = submits(result)
    assert (submit.resources.cpus, submit.resources.time) == (2, "00:30:00")
    assert submit.choice.status.reason == "TooLittleHistory"
    assert plan(wf, with_choosing=choosing(wf)).status.tasks["sim"].choice.reason == "NoHistory"
    # Without anything to choose with (a cluster that cannot be observed), still the defaults.
    [alone] = submits(plan(wf, with_choosing=None))
    assert (alone.resources.cpus, alone.resources.time) == (2, "00:30:00")


def test_while_its_job_runs_a_task_shows_the_choice_it_went_out_with():
    wf = resolved(AUTO)
    fp = task_fingerprints(DesiredWorkflow(uid="uid-1", resolved=wf, generation=1))["sim"]
    went = plan(wf, with_choosing=choosing(wf))
    recorded = RecordedChoice(task="sim", fingerprint=fp, attempt=1, status=submits(went)[0].choice.status)
    running = plan(wf, with_choosing=choosing(wf, AMDAHL), choices=TaskChoices((recorded,)),
                   observed=[job(wf, "sim", phase=TaskPhase.RUNNING)])
    assert not submits(running)
    assert running.status.tasks["sim"].choice.reason == "NoHistory"  # not today's "Chosen"


BUDGETED = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: capped}
spec:
  budget: {coreHours: BUDGET}
  tasks:
    - {name: prep, script: "true", resources: {cpus: 2, time: "00:30:00"}}
    - {name: tiles, script: "true", dependsOn: [prep], array: {count: 10}, resources: {cpus: 1, time: "01:00:00"}}
"""


def test_a_workflow_whose_projection_exceeds_its_budget_submits_nothing_and_is_stalled():
    # Projected from the time limits: 2 CPUs x 0.5 h + 10 x 1 CPU x 1 h = 11 core-hours.
    wf = resolved(BUDGETED.replace("BUDGET", "10"))
    held = plan(wf, with_choosing=choosing(wf))
    assert not submits(held)
    budget = held.status.budget
    assert (budget.core_hours, budget.spent, budget.projected) == (10, 0, 11)
    conditions = {c.type: c for c in held.status.conditions}
    assert conditions["WithinBudget"].status.value == "False"
    assert conditions["Stalled"].reason == "BudgetExceeded"
    assert "raise spec.budget.coreHours" in conditions["Stalled"].message
    assert held.status.tasks["prep"].reason == "BudgetExceeded"
    allowed = plan(resolved(BUDGETED.replace("BUDGET", "11.5")), with_choosing=choosing(wf))
    assert [s.key.task for s in submits(allowed)] == ["prep", "tiles"]
    assert {c.type: c.status.value for c in allowed.status.conditions}["WithinBudget"] == "True"
    assert allowed.status.phase is not WorkflowPhase.FAILED


def test_spent_core_hours_count_and_finished_tasks_leave_the_projection():
    wf = resolved(BUDGETED.replace("BUDGET", "10.6"))
    done = job(wf, "prep", phase=TaskPhase.SUCCEEDED, exit_code=0, core_seconds=1800, finished=T0)
    result = plan(wf, with_choosing=choosing(wf), observed=[done])
    assert (result.status.budget.spent, result.status.budget.projected) == (0.5, 10.5)
    assert [s.key.task for s in submits(result)] == ["tiles"]


TWO_CLUSTERS = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: busy}
spec: {workdir: /w}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: idle}
spec: {workdir: /w}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: anywhere}
spec:
  cluster: [busy, idle]
  scoring: {expression: "start"}
  tasks:
    - {name: a, script: "true", resources: {cpus: 1, time: "00:10:00"}}
"""


def test_a_start_weighted_score_places_a_workflow_on_the_idle_cluster():
    from reconciler.manifests.loader import load_text
    from reconciler.manifests.resolve import resolve

    [wf] = resolve(load_text(TWO_CLUSTERS, filename="plan.yaml").resources).workflows
    assert wf.cluster is None and len(wf.candidates) == 2
    offers = tuple(offer for cluster in wf.candidates for offer in offers_of(cluster, PARTITIONS))
    starts = {StartQuery(cluster="busy", partition=None, nodes=None, cpus=1, time_seconds=600): 3600.0,
              StartQuery(cluster="idle", partition=None, nodes=None, cpus=1, time_seconds=600): 0.0}
    chosen = place(wf, choosing=Choosing(offers=offers, starts=starts, optimizer=optimizer_of(wf.spec, None)))
    assert chosen.cluster == "idle"
    assert [row["cluster"] for row in chosen.ranked] == ["idle", "busy"]
    assert chosen.message.startswith("placed on idle")
    flipped = {replace(query, cluster="busy" if query.cluster == "idle" else "idle"): seconds
               for query, seconds in starts.items()}
    assert place(wf, choosing=Choosing(offers=offers, starts=flipped,
                                       optimizer=optimizer_of(wf.spec, None))).cluster == "busy"


LEARNING = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: learning}
spec:
  defaults: {resources: {cpus: 2, time: "00:30:00"}}
  tasks:
    - {name: c1, kind: sim, script: "true", resources: {cpus: 1}}
    - {name: c4, kind: sim, script: "true", resources: {cpus: 4}}
    - {name: sim, kind: sim, script: "true", dependsOn: [c1, c4], resources: {cpus: auto, time: auto}}
"""


def test_without_history_an_auto_task_waits_for_the_runs_of_its_kind_before_it():
    wf = resolved(LEARNING)
    live = [job(wf, name, phase=TaskPhase.RUNNING) for name in ("c1", "c4")]
    waiting = plan(wf, with_choosing=choosing(wf), observed=live)
    assert not submits(waiting)
    assert waiting.status.tasks["sim"].phase is TaskPhase.WAITING
    # With enough history it goes out ahead, behind their jobs, as any task does.
    [ahead] = submits(plan(wf, with_choosing=choosing(wf, AMDAHL), observed=live))
    assert ahead.key.task == "sim" and len(ahead.after_jobs) == 2


def test_a_timeout_of_the_kind_raises_the_time_the_next_run_asks_for():
    wf = resolved(AUTO)
    before = submits(plan(wf, with_choosing=choosing(wf, AMDAHL)))[0].resources.time
    timed_out = replace(AMDAHL[0], job_id="999", cpus=8, state="TIMEOUT", elapsed_seconds=600,
                        time_limit_seconds=600)
    after = submits(plan(wf, with_choosing=choosing(wf, [*AMDAHL, timed_out])))[0].resources
    assert before == "00:03:00"
    # At least 1.5 x the 10 minutes it ran out of, with the margin: on 8 CPUs or fewer, none is
    # faster any more, so the one that bills least goes.
    assert (after.time, after.cpus) == ("00:19:00", 1)


def test_once_they_succeeded_it_waits_for_their_runs_to_reach_the_history_a_while_at_most():
    wf = resolved(LEARNING)
    fps = task_fingerprints(DesiredWorkflow(uid="uid-1", resolved=wf, generation=1))
    done = [job(wf, name, phase=TaskPhase.SUCCEEDED, exit_code=0, finished=T0) for name in ("c1", "c4")]
    assert not submits(plan(wf, with_choosing=choosing(wf), observed=done, now=T0 + timedelta(seconds=5)))
    recorded = {(name, fps[name]): TaskUsage(attempt=1, cpu_efficiency=1.0, memory_efficiency=None)
                for name in ("c1", "c4")}
    assert submits(plan(wf, with_choosing=choosing(wf), observed=done, usage=recorded,
                        now=T0 + timedelta(seconds=5)))
    # Accounting that never reports them does not hold it for ever.
    assert submits(plan(wf, with_choosing=choosing(wf), observed=done, now=T0 + timedelta(minutes=3)))


def test_a_workflow_without_a_scoring_of_its_own_takes_its_clusters():
    from reconciler.api import SlurmCluster

    wf = resolved(AUTO)
    frugal = SlurmCluster.model_validate({"metadata": {"name": "dev"}, "spec": {
        "workdir": "/w", "scoring": {"expression": "coreHours"}}})
    chooser = Choosing(offers=offers_of(frugal, PARTITIONS), learned=learn(AMDAHL),
                       optimizer=optimizer_of(wf.spec, frugal))
    assert submits(plan(wf, with_choosing=chooser))[0].resources.cpus == 1
    own = wf.spec.model_copy(update={"scoring": Scoring(expression="time")})
    assert optimizer_of(own, frugal).criteria == frozenset({"time"})
    assert optimizer_of(None, None).criteria == frozenset({"time"})
