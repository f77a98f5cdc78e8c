"""How ``reconciler submit --wait`` sums up a task from the jobs Slurm reports."""

from reconciler.api import FailureKind, TaskPhase
from reconciler.cli.submit import summarize
from reconciler.core.observed import JobKey, JobOutcome, ObservedJob


def element_jobs(phase: TaskPhase, indices, **extra) -> ObservedJob:
    return ObservedJob(key=JobKey("tiles", 1), job_id="40", fingerprint="f", indices=tuple(indices),
                       outcome=JobOutcome(phase=phase, **extra))


def test_an_array_is_done_only_when_every_element_is_reported():
    partial = [element_jobs(TaskPhase.SUCCEEDED, [i]) for i in range(49)]
    outcome = summarize(partial, elements=100)
    assert outcome.phase is TaskPhase.UNKNOWN and "51 not reported yet" in outcome.detail
    complete = partial + [element_jobs(TaskPhase.SUCCEEDED, [i]) for i in range(49, 100)]
    assert summarize(complete, elements=100).phase is TaskPhase.SUCCEEDED


def test_pending_elements_count_one_by_one():
    jobs = [element_jobs(TaskPhase.RUNNING, [0]), element_jobs(TaskPhase.SUBMITTED, range(1, 100))]
    outcome = summarize(jobs, elements=100)
    assert outcome.phase is TaskPhase.RUNNING and outcome.detail == "1 Running, 99 Submitted"


def test_a_failed_element_fails_the_task_with_its_exit_code():
    jobs = [element_jobs(TaskPhase.SUCCEEDED, [0]),
            element_jobs(TaskPhase.FAILED, [1], failure=FailureKind.FAILED, exit_code=3)]
    outcome = summarize(jobs, elements=2)
    assert outcome.phase is TaskPhase.FAILED and outcome.detail.startswith("FAILED, exit code 3")


def test_nothing_reported_is_unknown_not_done():
    assert summarize([], elements=1).phase is TaskPhase.UNKNOWN
