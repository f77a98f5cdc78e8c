"""``reconciler submit``: how it cuts an array and throttles its chunks, and how ``--wait`` sums
up a task from the jobs Slurm reports."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.api import FailureKind, TaskPhase
from reconciler.cli.submit import split_parallelism, submit_workflow, summarize
from reconciler.core.observed import JobKey, JobOutcome, ObservedJob
from reconciler.engine.staging import find_inputs
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.commands import command_name
from reconciler.sources.directory import DirectoryFiles
from tests.fakes import FakeSlurm
from tests.unit.reconcile_world import resolved


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


# -- parallelism across MaxArraySize chunks ------------------------------------------------------

def tiles(count: int, parallelism: int | None) -> str:
    throttle = f", parallelism: {parallelism}" if parallelism is not None else ""
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: slide}}
spec:
  tasks:
    - {{name: tile, script: "true", array: {{count: {count}{throttle}}}}}
    - {{name: mosaic, dependsOn: [tile], script: "true"}}
"""


def arrays_submitted(fake: FakeSlurm) -> list[str]:
    """The --array directive of every script sbatch was given, in submission order."""
    scripts = [fake.files[call[-1]].decode() for call in fake.calls if command_name(call) == "sbatch"]
    return [line.removeprefix("#SBATCH --array=") for script in scripts for line in script.splitlines()
            if line.startswith("#SBATCH --array=")]


def test_parallelism_is_split_between_the_chunks_so_the_task_runs_at_most_n_at_once():
    fake = FakeSlurm()  # MaxArraySize 1001, as the dev cluster's
    wf = resolved(tiles(2500, 10))
    submission = submit_workflow(wf, SlurmClient(wf.cluster, fake))
    assert arrays_submitted(fake) == ["0-1000%3", "0-1000%3", "0-497%4"]
    assert len(submission.jobs["tile"]) == 3 and not submission.blocked
    caps = [int(array.rpartition("%")[2]) for array in arrays_submitted(fake)]
    assert sum(caps) == 10


def test_one_chunk_keeps_the_whole_cap_and_an_unthrottled_array_gets_none():
    fake = FakeSlurm()
    wf = resolved(tiles(40, 8))
    submit_workflow(wf, SlurmClient(wf.cluster, fake))
    assert arrays_submitted(fake) == ["0-39%8"]
    fake = FakeSlurm()
    wf = resolved(tiles(1500, None))
    submit_workflow(wf, SlurmClient(wf.cluster, fake))
    assert arrays_submitted(fake) == ["0-1000", "0-498"]


def test_fewer_throttle_slots_than_chunks_is_refused_not_run_above_the_cap():
    fake = FakeSlurm()
    wf = resolved(tiles(3500, 3))  # four chunks, a cap of three
    submission = submit_workflow(wf, SlurmClient(wf.cluster, fake))
    assert arrays_submitted(fake) == [] and submission.jobs == {}
    assert "parallelism 3 is below its 4 arrays of at most 1001 elements" in submission.blocked["tile"]
    assert "reconciler run" in submission.blocked["tile"]
    assert submission.blocked["mosaic"] == "waits for tile"


@pytest.mark.parametrize("sizes, parallelism, shares", [
    ([1001, 1001, 498], 10, [3, 3, 4]),
    ([1001, 8], 8, [4, 4]),
    ([1001, 2], 8, [6, 2]),  # what the small chunk cannot use goes to the other
    ([1001, 1001], 2, [1, 1]),
    ([5], 100, [5]),
    ([1001, 1001, 1001], 2, None),
])
def test_split_parallelism(sizes, parallelism, shares):
    assert split_parallelism(sizes, parallelism) == shares


@given(st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=5000))
def test_split_parallelism_never_exceeds_the_cap_and_gives_every_chunk_one(sizes, parallelism):
    shares = split_parallelism(sizes, parallelism)
    if parallelism < len(sizes):
        assert shares is None
        return
    assert shares is not None and sum(shares) <= parallelism
    assert all(1 <= share <= size for share, size in zip(shares, sizes, strict=True))
    # Nothing is left unused that a chunk could have taken.
    assert sum(shares) == min(parallelism, sum(sizes))


def test_a_task_whose_input_names_nothing_is_not_submitted_and_says_which(tmp_path):
    fake = FakeSlurm()
    wf = resolved("""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: slide}
spec:
  tasks:
    - {name: segment, script: ./segment.sh, inputs: [segment.sh]}
    - {name: mosaic, dependsOn: [segment], script: "true"}
""")
    inputs = find_inputs(wf, content=DirectoryFiles(tmp_path), config_maps=None)
    submission = submit_workflow(wf, SlurmClient(wf.cluster, fake), inputs=inputs)
    assert arrays_submitted(fake) == [] and submission.jobs == {}
    assert "input segment.sh not found" in submission.blocked["segment"]
    assert submission.blocked["mosaic"] == "waits for segment"
