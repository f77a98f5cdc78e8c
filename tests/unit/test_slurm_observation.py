"""From squeue and sacct records to the core's ObservedJobs, on output captured from Slurm 22.05."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.api import FailureKind, TaskPhase
from reconciler.core.observed import AttemptRecord, ClusterView, JobKey
from reconciler.core.taskruns import task_runs
from reconciler.slurm import commands as c
from reconciler.slurm.commands import ClusterLimits, JobRecord, PartitionInfo
from reconciler.slurm.observation import (
    ACCOUNTING_MAX_LAG,
    cluster_view,
    observed_by_workflow,
    observed_jobs,
    queue_load,
    reported_ids,
)

DATA = Path(__file__).parent / "data" / "slurm-22.05"
NOW = datetime.fromtimestamp(1795413440, tz=UTC)  # 20 s past a whole minute
# What a job started 10 minutes before NOW has run, counted to the last whole minute.
RAN_TO_THE_MINUTE = 600 - 20
TAG = "slurm-reconciler.v1:uid-1:tiles:1:0:fp"


def captured(*names: str) -> list[JobRecord]:
    records: list[JobRecord] = []
    for name in names:
        parse = c.parse_squeue if name.startswith("squeue") else c.parse_sacct
        records += parse((DATA / name).read_text())
    return records


def record(**fields) -> JobRecord:
    base = {"job_id": "5", "array_job_id": None, "array_indices": None, "state": "RUNNING", "reason": None,
            "exit_code": None, "signal": None, "node_list": "n1", "started_at": NOW - timedelta(minutes=10),
            "finished_at": None, "elapsed_seconds": 600, "cpus": 4, "name": "wf.tiles", "comment": TAG,
            "source": "squeue"}
    base.update(fields)
    return JobRecord(**base)


def by_task(jobs):
    result = {}
    for job in jobs:
        result.setdefault(job.key.task, []).append(job)
    return result


def test_one_captured_tick_squeue_and_sacct_together():
    jobs = by_task(observed_jobs(captured("squeue-running.txt", "sacct-running.txt"), now=NOW))
    assert set(jobs) == {"tiles", "sparse", "irregular", "held", "ok", "exit3", "slow", "oom"}  # not the foreign job

    tiles = jobs["tiles"]
    assert {j.job_id for j in tiles} == {"25"}  # elements are acted on through their array
    assert {j.key for j in tiles} == {JobKey("tiles", 1, 1000)}
    indices = sorted(i for j in tiles for i in j.indices)
    assert indices == list(range(1000, 1010))  # Slurm's 0-9 shifted by the tag's part
    phase_of = {j.indices: (j.phase, j.outcome.failure, j.outcome.exit_code) for j in tiles}
    assert phase_of[(1004,)] == (TaskPhase.FAILED, FailureKind.FAILED, 2)
    assert phase_of[(1000,)] == (TaskPhase.SUCCEEDED, None, 0)
    assert phase_of[(1008,)] == phase_of[(1009,)] == (TaskPhase.RUNNING, None, None)  # from squeue
    # The two running elements started after the last whole minute before NOW, to which a running
    # job's time counts: only the eight that ended count yet.
    assert sum(j.outcome.core_hours for j in tiles) == 8 * 15 / 3600

    [irregular] = jobs["irregular"]
    assert (irregular.key, irregular.job_id, irregular.phase) == (JobKey("irregular", 3, 2000), "44", TaskPhase.HELD)
    assert irregular.indices[:3] == (2000, 2002, 2005) and irregular.outcome.exit_code is None
    [held] = jobs["held"]
    assert (held.job_id, held.indices, held.phase, held.outcome.started_at) == ("26", None, TaskPhase.HELD, None)
    [exit3] = jobs["exit3"]
    assert (exit3.key.attempt, exit3.phase, exit3.outcome.failure, exit3.outcome.exit_code) == (
        2, TaskPhase.FAILED, FailureKind.FAILED, 3)
    [slow] = jobs["slow"]
    assert (slow.phase, slow.outcome.failure, slow.outcome.core_hours) == (
        TaskPhase.FAILED, FailureKind.TIMEOUT, 65 / 3600)
    assert slow.fingerprint == "fp0123456789abcd" and slow.outcome.node_list == "dev1"


def test_pending_remainder_and_running_elements_in_one_squeue():
    jobs = by_task(observed_jobs(captured("squeue-array-split.txt"), now=NOW))
    tiles = sorted(jobs["tiles"], key=lambda j: j.indices)
    assert [(j.indices[:2], j.phase) for j in tiles] == [
        ((1000,), TaskPhase.RUNNING), ((1001,), TaskPhase.RUNNING), ((1002, 1003), TaskPhase.SUBMITTED)]
    assert len(tiles[-1].indices) == 8 and tiles[-1].outcome.core_hours == 0


def test_sacct_sees_what_squeue_no_longer_shows_cancelled_and_dependency_kills():
    jobs = by_task(observed_jobs(captured("sacct-jobs.txt", "sacct-cancelled.txt"), now=NOW))
    assert jobs["dep2"][0].phase is TaskPhase.CANCELLED and jobs["dep2"][0].outcome.reason == "Dependency"
    assert [j.phase for j in jobs["killed"]] == [TaskPhase.CANCELLED]
    # Array 44: the element split off by a hold and the remainder, each once.
    irregular = jobs["irregular"]
    assert sorted(len(j.indices) for j in irregular) == [1, 23] and {j.job_id for j in irregular} == {"44"}


def test_squeue_wins_over_lagging_sacct_for_the_same_job():
    live = record(state="RUNNING")
    lagging = record(state="PENDING", source="sacct", started_at=None, elapsed_seconds=0)
    [job] = observed_jobs([lagging, live], now=NOW)
    assert job.phase is TaskPhase.RUNNING and job.outcome.core_hours == RAN_TO_THE_MINUTE * 4 / 3600


def test_array_elements_merge_per_index():
    squeue_pending = record(job_id="100", array_job_id="100", array_indices=(5, 6, 7), state="PENDING",
                            started_at=None, elapsed_seconds=0)
    squeue_running = record(job_id="104", array_job_id="100", array_indices=(4,))
    sacct_remainder = record(job_id="100", array_job_id="100", array_indices=(3, 4, 5, 6, 7), state="PENDING",
                             source="sacct", started_at=None, elapsed_seconds=0)
    sacct_done = record(job_id="103", array_job_id="100", array_indices=(3,), state="COMPLETED", exit_code=0,
                        source="sacct", finished_at=NOW, elapsed_seconds=60)
    jobs = observed_jobs([squeue_pending, squeue_running, sacct_remainder, sacct_done], now=NOW)
    assert sorted((j.indices, j.phase) for j in jobs) == [
        ((3,), TaskPhase.SUCCEEDED), ((4,), TaskPhase.RUNNING), ((5, 6, 7), TaskPhase.SUBMITTED)]
    assert {j.job_id for j in jobs} == {"100"}


def test_sacct_remainder_shrinks_to_what_nothing_else_covers():
    remainder = record(job_id="100", array_job_id="100", array_indices=(3, 4, 5), state="PENDING", source="sacct")
    running = record(job_id="104", array_job_id="100", array_indices=(4,))
    jobs = observed_jobs([remainder, running], now=NOW)
    assert sorted(j.indices for j in jobs) == [(3, 5), (4,)]


def test_a_running_job_counts_from_its_start_to_the_last_whole_minute():
    for reported in (0, 600, 611):  # whatever time used squeue printed
        [job] = observed_jobs([record(elapsed_seconds=reported)], now=NOW)
        assert job.outcome.core_seconds == RAN_TO_THE_MINUTE * 4
    # Every look within the same minute reports the same figure; the next minute adds one.
    within = {observed_jobs([record()], now=NOW + timedelta(seconds=s))[0].outcome for s in range(0, 40, 7)}
    [next_minute] = observed_jobs([record()], now=NOW + timedelta(seconds=40))
    assert len(within) == 1 and next_minute.outcome.core_seconds == (RAN_TO_THE_MINUTE + 60) * 4


def test_jobs_are_grouped_by_workflow_uid():
    other = record(job_id="6", comment="slurm-reconciler.v1:uid-2:tiles:1:0:fp")
    foreign = record(job_id="7", comment="mine")
    grouped = observed_by_workflow([record(), other, foreign], now=NOW)
    assert {uid: [j.job_id for j in jobs] for uid, jobs in grouped.items()} == {"uid-1": ["5"], "uid-2": ["6"]}


def test_queue_load_counts_every_queued_element_of_the_user():
    records = captured("squeue-array-split.txt", "sacct-running.txt")
    # pending 8 + 101 + 1, running 2 elements + slow + the foreign job; sacct is not counted
    assert queue_load(records) == (8 + 101 + 1 + 2 + 1 + 1, 114)
    assert queue_load([record(cpus=4, array_indices=(1, 2, 3), array_job_id="5")]) == (3, 12)
    assert queue_load([record(state="COMPLETED")]) == (0, 0)


def test_cluster_view():
    partitions = c.parse_partitions((DATA / "scontrol-show-partition.txt").read_text())
    partitions.append(PartitionInfo(name="long", max_time_seconds=None, default=False, state="UP", total_cpus=1))
    view = cluster_view(name="dev", records_ok=True, accounting_ok=False, error="sacct: timed out",
                        records=captured("squeue-running.txt"),
                        limits=ClusterLimits(max_array_size=501, max_job_count=10),
                        partitions=partitions, submit_limit=40, observed_at=NOW)
    assert view == ClusterView(name="dev", reachable=True, accounting=False, error="sacct: timed out",
                               queued_jobs=24 + 101 + 1 + 2 + 1, queued_cores=129, max_array_size=501,
                               partition_max_time={"debug": 3600, "long": None}, default_partition="debug",
                               submit_limit=40, partitions=tuple(partitions))
    unknown = cluster_view(name="dev", records_ok=False, accounting_ok=False, error="down", records=[], limits=None,
                           partitions=[], submit_limit=None, observed_at=NOW)
    assert unknown.max_array_size == 1001 and unknown.default_partition is None and unknown.queued_jobs == 0


def test_records_that_are_not_ours_are_ignored():
    assert observed_jobs([replace(record(), comment="")], now=NOW) == []


def test_accounting_is_complete_only_up_to_its_maximum_lag_before_the_observation():
    def view(accounting_ok: bool) -> ClusterView:
        return cluster_view(name="dev", records_ok=True, accounting_ok=accounting_ok, error=None, records=[],
                            limits=None, partitions=[], submit_limit=None, observed_at=NOW)

    assert view(True).accounting_complete_until == NOW - ACCOUNTING_MAX_LAG
    assert view(False).accounting_complete_until is None
    # Long enough for slurmdbd to have recorded a job that ended within a second, short enough
    # that a submission that never reached Slurm is retried within minutes.
    assert timedelta(seconds=5) <= ACCOUNTING_MAX_LAG <= timedelta(minutes=5)


# --- squeue --states=all: jobs that ended a moment ago ------------------------------------------

CAUGHT = datetime.fromtimestamp(1795930228, tz=UTC)


def test_a_job_that_just_ended_is_finished_from_squeue_while_sacct_has_none_of_it():
    jobs = by_task(observed_jobs(captured("squeue-states-all.txt", "sacct-states-all.txt"), now=CAUGHT))
    assert set(jobs) == {"long", "quick", "dep", "held", "tiles"}
    [quick] = jobs["quick"]
    # COMPLETED is Slurm's word for an exit code of 0.
    assert (quick.job_id, quick.phase, quick.outcome.exit_code) == ("8420", TaskPhase.SUCCEEDED, 0)
    started = datetime.fromtimestamp(1795930225, tz=UTC)
    assert quick.outcome.started_at == quick.outcome.finished_at == started  # it ran for no whole second
    # A failure waits for sacct's exit code: it is left out, as before squeue showed ended jobs.
    assert "exit3" not in jobs
    [dep] = jobs["dep"]
    assert (dep.phase, dep.outcome.reason, dep.outcome.node_list) == (
        TaskPhase.CANCELLED, "DependencyNeverSatisfied", None)
    assert sorted((j.indices, j.job_id, j.phase) for j in jobs["tiles"]) == [
        ((i,), "8423", TaskPhase.SUCCEEDED) for i in range(4)]
    assert [j.phase for j in jobs["long"]] == [TaskPhase.RUNNING]


def test_sacct_speaks_for_an_ended_job_once_it_has_it_squeue_until_then():
    records = captured("squeue-states-all-later.txt", "sacct-states-all-later.txt")
    jobs = by_task(observed_jobs(records, now=CAUGHT))
    [quick] = jobs["quick"]
    assert (quick.phase, quick.outcome.exit_code) == (TaskPhase.SUCCEEDED, 0)
    [exit3] = jobs["exit3"]
    assert (exit3.phase, exit3.outcome.exit_code) == (TaskPhase.FAILED, 3)  # sacct's record: the exit code
    assert sorted((j.indices, j.outcome.exit_code) for j in jobs["tiles"]) == [((i,), 0) for i in range(4)]
    # Never eligible, so not in sacct's time window: squeue's record stays.
    assert [(j.phase, j.outcome.reason) for j in jobs["dep"]] == [(TaskPhase.CANCELLED, "DependencyNeverSatisfied")]
    assert [(j.phase, j.outcome.reason) for j in jobs["held"]] == [(TaskPhase.CANCELLED, "JobHeldUser")]
    [long] = jobs["long"]
    # Started 3 s before CAUGHT, within its minute: a running job counts to the last whole minute.
    assert long.phase is TaskPhase.RUNNING and long.outcome.core_hours == 0


def test_squeue_finished_state_wins_over_sacct_still_showing_the_job_live():
    ended = record(state="COMPLETED", elapsed_seconds=30)
    lagging = record(state="RUNNING", source="sacct", elapsed_seconds=20)
    [job] = observed_jobs([lagging, ended], now=NOW)
    assert job.phase is TaskPhase.SUCCEEDED and job.outcome.finished_at == ended.started_at + timedelta(seconds=30)
    # A failure squeue shows is not taken from it (no exit code); sacct's lagging word stands.
    [failed] = observed_jobs([lagging, replace(ended, state="TIMEOUT")], now=NOW)
    assert failed.phase is TaskPhase.RUNNING
    assert observed_jobs([replace(ended, state="FAILED")], now=NOW) == []
    [cancelled] = observed_jobs([lagging, replace(ended, state="CANCELLED")], now=NOW)
    assert cancelled.phase is TaskPhase.CANCELLED and cancelled.outcome.exit_code is None
    accounted = record(state="COMPLETED", source="sacct", exit_code=0, finished_at=NOW, elapsed_seconds=31)
    [job] = observed_jobs([ended, accounted], now=NOW)
    assert (job.outcome.exit_code, job.outcome.finished_at, job.outcome.core_hours) == (0, NOW, 31 * 4 / 3600)


def test_array_elements_ended_in_squeue_give_way_to_sacct_element_by_element():
    queued = [record(job_id=str(200 + i), array_job_id="200", array_indices=(i,), state="COMPLETED") for i in range(3)]
    accounted = record(job_id="201", array_job_id="200", array_indices=(1,), state="COMPLETED", exit_code=0,
                       source="sacct", finished_at=NOW)
    lagging_remainder = record(job_id="200", array_job_id="200", array_indices=(0, 2), state="PENDING",
                               source="sacct", started_at=None)
    jobs = observed_jobs([*queued, accounted, lagging_remainder], now=NOW)
    squeue_end = NOW - timedelta(minutes=10) + timedelta(seconds=600)  # start plus time used
    assert sorted((j.indices, j.phase, j.outcome.finished_at) for j in jobs) == [
        ((0,), TaskPhase.SUCCEEDED, squeue_end), ((1,), TaskPhase.SUCCEEDED, NOW),
        ((2,), TaskPhase.SUCCEEDED, squeue_end)]


def test_jobs_squeue_holds_after_they_ended_take_no_room():
    records = captured("squeue-states-all-later.txt", "sacct-states-all-later.txt")
    assert queue_load(records) == (1, 1)  # the running job; not the finished ones, ours or foreign
    view = cluster_view(name="dev", records_ok=True, accounting_ok=True, error=None, records=records, limits=None,
                        partitions=[], submit_limit=None, observed_at=CAUGHT)
    assert (view.queued_jobs, view.queued_cores) == (1, 1)


def test_jobs_squeue_shows_ended_are_asked_of_sacct_by_id_until_it_has_them():
    # Neither the ended jobs nor the ended array (8423) count as reported: the client asks sacct
    # for them by id. The running job and foreign jobs need no second look.
    assert reported_ids(captured("squeue-states-all.txt", "sacct-states-all.txt")) == {"8419"}
    later = reported_ids(captured("squeue-states-all-later.txt", "sacct-states-all-later.txt"))
    assert {"8420", "8421", "8423", "8419"} <= later and not {"8422", "8424"} & later


def test_an_intent_whose_job_ended_a_moment_ago_is_that_job_succeeded_not_unknown():
    # The loop was killed before it recorded job 8420's id; a fresh loop looks right after the job
    # ended: squeue (every state) shows it COMPLETED, sacct nothing yet.
    jobs = by_task(observed_jobs(captured("squeue-states-all.txt", "sacct-states-all.txt"), now=CAUGHT))
    intent = AttemptRecord(key=JobKey("quick", 1), fingerprint="fp0123456789abcd", indices=None, job_id=None,
                           recorded_at=CAUGHT - timedelta(seconds=5))
    runs = task_runs(indices=[None], fingerprint="fp0123456789abcd", observed=jobs["quick"], records=[intent],
                     accounting=True, accounting_complete_until=CAUGHT - ACCOUNTING_MAX_LAG)
    element = runs.elements[None]
    assert (element.phase, element.job_id, element.exit_code, element.submissions) == (
        TaskPhase.SUCCEEDED, "8420", 0, 1)
    # Found nowhere, the same intent is Unknown (never submitted again) until accounting caught up.
    runs = task_runs(indices=[None], fingerprint="fp0123456789abcd", observed=[], records=[intent],
                     accounting=True, accounting_complete_until=CAUGHT - ACCOUNTING_MAX_LAG)
    assert runs.elements[None].phase is TaskPhase.UNKNOWN
