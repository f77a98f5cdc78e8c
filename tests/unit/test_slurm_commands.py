"""Slurm argv builders and output parsers, on output captured from Slurm 22.05.8."""

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.slurm import commands as c
from reconciler.slurm.commands import ClusterLimits, PartitionInfo, SubmitErrorKind

DATA = Path(__file__).parent / "data" / "slurm-22.05"
UTC = UTC
T = "slurm-reconciler.v1:uid-123:"


def data(name: str) -> str:
    return (DATA / name).read_text()


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


# --- argv -------------------------------------------------------------------------------------


def test_squeue_argv_is_one_batched_query_with_the_comment_last():
    argv = c.squeue_argv(user=None)
    assert argv[:3] == ["env", "SLURM_BITSTR_LEN=0", "SLURM_TIME_FORMAT=%s"]
    assert argv[3:] == ["squeue", "--me", "--states=all", "--noheader",
                        "--format=%A|%F|%K|%T|%r|%C|%N|%S|%M|%j|%k"]
    assert "-r" not in argv and "--array" not in argv
    assert c.squeue_argv(user="alice")[4] == "--user=alice"
    with pytest.raises(ValueError):
        c.squeue_argv(user="-u root")


def test_sacct_argv_reads_allocations_since_a_local_time():
    since = datetime(2026, 11, 23, 5, 30, 15, tzinfo=UTC)
    argv = c.sacct_argv(since=since, user=None, tz=timezone(timedelta(hours=2)))
    assert argv == [
        "env", "SLURM_BITSTR_LEN=0", "SLURM_TIME_FORMAT=%s", "sacct", "-X", "-P", "-n",
        "--starttime=2026-11-23T07:30:15", "--endtime=now",
        "--format=JobID,JobIDRaw,State,ExitCode,Reason,NodeList,Start,End,ElapsedRaw,AllocCPUS,Partition,AllocTRES,"
        "JobName,Comment",
    ]
    # Without billing: no AllocTRES, whose names cost sacct a second round trip to slurmdbd.
    lean = c.sacct_argv(since=since, user=None, tz=timezone(timedelta(hours=2)), billing=False)
    assert lean == [*argv[:-1], "--format=JobID,JobIDRaw,State,ExitCode,Reason,NodeList,Start,End,ElapsedRaw,"
                                "AllocCPUS,Partition,JobName,Comment"]
    argv = c.sacct_argv(since=since, user="bob", job_ids=["26", "44_5"], tz=UTC)
    assert argv[-2:] == ["--user=bob", "--jobs=26,44_5"] and "--starttime=2026-11-23T05:30:15" in argv
    with pytest.raises(ValueError):
        c.sacct_argv(since=datetime(2026, 1, 1), user=None)  # a naive time has no meaning here
    assert c.sacct_argv(since=since, user=None, names=["nightly.prep", "nightly.run"])[-1] == \
        "--name=nightly.prep,nightly.run"
    with pytest.raises(ValueError):
        c.sacct_argv(since=since, user=None, names=["a,b"])  # a comma would split one name in two


def test_squeue_names_the_partitions_of_jobs_it_holds():
    assert c.squeue_partitions_argv(["149143", "149144"]) == [
        "squeue", "--states=all", "--noheader", "--format=%A|%P", "--jobs=149143,149144"]
    # As Slurm 22.05.8 printed it for array 149143 (elements 149144 and 149143) after both ended.
    assert c.parse_squeue_partitions("149144|debug\n149143|debug\n") == {"149144": "debug", "149143": "debug"}
    with pytest.raises(ValueError):
        c.parse_squeue_partitions("debug\n")


def test_command_name_skips_the_environment_prefix():
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert c.command_name(c.squeue_argv(user=None)) == "squeue"
    assert c.command_name(c.sacct_argv(since=since, user=None)) == "sacct"
    assert c.command_name(c.hold_argv(["1"])) == "scontrol" and c.command_name([]) == ""


def test_control_argv():
    assert c.sbatch_argv("/w/a b.sh") == ["sbatch", "--parsable", "/w/a b.sh"]
    assert c.hold_argv(["25", "26"]) == ["scontrol", "hold", "25,26"]
    assert c.release_argv(["25"]) == ["scontrol", "release", "25"]
    assert c.cancel_argv(["25", "44_5"]) == ["scancel", "25", "44_5"]
    assert c.show_config_argv() == ["scontrol", "show", "config"]
    assert c.show_partitions_argv() == ["scontrol", "show", "partition", "--oneliner"]
    assert c.submit_limit_argv("root") == [
        "sacctmgr", "--noheader", "--parsable2", "show", "association", "where", "user=root",
        "format=Account,Partition,MaxSubmitJobs,QOS"]
    assert c.qos_limits_argv() == ["sacctmgr", "--noheader", "--parsable2", "show", "qos",
                                   "format=Name,MaxSubmitJobsPerUser"]


@pytest.mark.parametrize("ids", [[], ["-u"], ["25;rm"], ["--me"], ["1 2"], ["25_[1-3]"]])
def test_control_argv_refuses_anything_but_job_ids(ids):
    for build in (c.hold_argv, c.release_argv, c.cancel_argv):
        with pytest.raises(ValueError):
            build(ids)
    with pytest.raises(TypeError):
        c.cancel_argv("25")  # type: ignore[arg-type]


# --- squeue ----------------------------------------------------------------------------------


def test_squeue_pending_array_is_one_record_beside_its_running_elements():
    records = {r.job_id: r for r in c.parse_squeue(data("squeue-array-split.txt"))}
    assert len(records) == 7
    pending = records["25"]
    assert (pending.array_job_id, pending.array_indices) == ("25", tuple(range(2, 10)))
    assert (pending.state, pending.reason, pending.started_at, pending.node_list) == (
        "PENDING", "JobArrayTaskLimit", None, None)
    element = records["31"]
    seen = (element.array_job_id, element.array_indices, element.state, element.node_list)
    assert seen == ("25", (0,), "RUNNING", "dev1")
    assert element.started_at == at(1795413367) and element.elapsed_seconds == 10 and element.cpus == 1
    assert element.comment == T + "tiles:1:1000:fp0123456789abcd" and element.name == "cap.array"
    assert records["30"].array_indices == tuple(range(0, 301, 3))  # "0-300:3"
    plain = records["26"]
    assert (plain.array_job_id, plain.array_indices, plain.reason) == (None, None, "JobHeldUser")
    assert {r.source for r in records.values()} == {"squeue"}
    assert all(r.exit_code is None and r.finished_at is None for r in records.values())


def test_squeue_foreign_name_with_a_bar_lands_in_the_comment_never_in_our_fields():
    [foreign] = [r for r in c.parse_squeue(data("squeue-array-split.txt")) if r.job_id == "29"]
    assert (foreign.state, foreign.cpus, foreign.name) == ("RUNNING", 1, "not")
    assert foreign.comment == "ours x|someone else's | job # with spaces"


def test_squeue_last_element_runs_under_the_array_id_and_long_index_lists_arrive_whole():
    records = c.parse_squeue(data("squeue-running.txt"))
    last = next(r for r in records if r.array_indices == (9,))
    assert (last.job_id, last.array_job_id) == ("25", "25")
    irregular = next(r for r in records if r.job_id == "44")
    assert irregular.array_indices == (0, 2, 5, 9, 14, 20, 27, 35, 44, 54, 65, 77, 90, 104, 119, 135, 152, 170,
                                       189, 209, 230, 252, 275, 299)


def test_squeue_joined_reasons_are_kept():
    records = c.parse_squeue(data("squeue-finished.txt"))
    assert records[0].reason == "JobHeldUser,JobHeldAdmin"


def test_squeue_without_the_output_environment_is_refused_not_misread():
    # Slurm cuts index lists at 64 bytes with "..." unless SLURM_BITSTR_LEN=0.
    with pytest.raises(ValueError, match="cut short"):
        c.parse_squeue(data("squeue-without-env.txt"))
    # The rest of that output (local times without a zone) is still readable.
    lines = [line for line in data("squeue-without-env.txt").splitlines() if "..." not in line]
    records = c.parse_squeue("\n".join(lines))
    running = next(r for r in records if r.state == "RUNNING")
    assert running.started_at is not None and running.started_at.tzinfo is not None


def test_squeue_of_every_state_shows_jobs_that_just_ended_before_sacct_does():
    records = {r.job_id: r for r in c.parse_squeue(data("squeue-states-all.txt"))}
    assert c.parse_sacct(data("sacct-states-all.txt")) == []  # slurmdbd has none of them yet
    # squeue's default filter shows only the job still running: the others would be nowhere.
    assert [r.job_id for r in c.parse_squeue(data("squeue-default-filter.txt"))] == ["8419"]
    assert {job_id: r.state for job_id, r in records.items()} == {
        "8419": "RUNNING", "8420": "COMPLETED", "8421": "FAILED", "8422": "CANCELLED", "8424": "CANCELLED",
        "8425": "COMPLETED", "8426": "COMPLETED", "8427": "COMPLETED", "8428": "COMPLETED", "8423": "COMPLETED"}
    quick = records["8420"]
    assert (quick.array_indices, quick.node_list, quick.exit_code, quick.finished_at) == (None, "dev1", None, None)
    assert quick.started_at == at(1795930225)
    assert quick.comment == "slurm-reconciler.v1:uid-456:quick:1:0:fp0123456789abcd"
    assert records["8421"].reason == "NonZeroExitCode"  # squeue's %-format has no exit code
    # Never started: no node; the dependency's failure is the reason squeue keeps.
    assert (records["8422"].reason, records["8422"].node_list) == ("DependencyNeverSatisfied", None)
    elements = [records[j] for j in ("8426", "8427", "8428", "8423")]
    assert [(r.array_job_id, r.array_indices) for r in elements] == [("8423", (i,)) for i in range(4)]


def test_squeue_comment_with_a_newline_continues_the_last_field():
    text = "29|29|N/A|RUNNING|None|1|dev1|1795413367|1:10|x|first line\nsecond | line\n"
    [record] = c.parse_squeue(text)
    assert record.comment == "first line\nsecond | line"


def test_squeue_empty_output_is_no_jobs():
    assert c.parse_squeue("") == [] and c.parse_squeue("\n") == []


@pytest.mark.parametrize("used, seconds", [("0:00", 0), ("12:34", 754), ("1:02:03", 3723),
                                           ("2-01:02:03", 176523), ("INVALID", 0)])
def test_squeue_time_used(used, seconds):
    [record] = c.parse_squeue(f"5|5|N/A|RUNNING|None|2|n1|1795413367|{used}|x|\n")
    assert record.elapsed_seconds == seconds


# --- sacct -----------------------------------------------------------------------------------


def test_sacct_finished_jobs_and_array_elements():
    records = {r.job_id: r for r in c.parse_sacct(data("sacct-finished.txt"))}
    failed = records["24"]  # exited 3: -P's ExitCode says so (sacct --json said 0 on 22.05)
    assert (failed.state, failed.exit_code, failed.signal) == ("FAILED", 3, 0)
    assert (failed.array_job_id, failed.array_indices, failed.comment) == (None, None, T + "exit3:2:0:fp0123456789abcd")
    timeout = records["27"]
    assert (timeout.state, timeout.elapsed_seconds, timeout.started_at, timeout.finished_at) == (
        "TIMEOUT", 65, at(1795413367), at(1795413432))
    element = records["36"]
    assert (element.array_job_id, element.array_indices, element.state, element.exit_code) == ("25", (4,), "FAILED", 2)
    last = records["25"]  # the last element to run takes the array's own id
    assert (last.array_job_id, last.array_indices) == ("25", (9,))
    killed = records["28"]  # over its memory: killed with SIGKILL by OverMemoryKill
    assert (killed.state, killed.exit_code, killed.signal) == ("FAILED", 0, 9)
    assert {r.source for r in records.values()} == {"sacct"}


def test_sacct_running_jobs_have_no_end_and_no_comment_yet():
    records = {r.job_id: r for r in c.parse_sacct(data("sacct-running.txt"))}
    running = records["43"]
    assert (running.state, running.finished_at, running.comment, running.elapsed_seconds) == ("RUNNING", None, "", 9)


def test_sacct_job_id_query_shows_pending_and_never_eligible_jobs():
    records = {r.job_id: r for r in c.parse_sacct(data("sacct-jobs.txt"))}
    held = records["26"]
    assert (held.state, held.reason, held.node_list, held.started_at) == ("PENDING", "JobHeldUser", None, None)
    pending = records["44"]
    assert pending.array_job_id == "44" and 5 not in pending.array_indices and 299 in pending.array_indices
    split_off = records["46"]
    assert (split_off.array_job_id, split_off.array_indices, split_off.reason) == ("44", (5,), "JobHeldAdmin")
    assert (records["33"].state, records["33"].reason) == ("CANCELLED", None)
    assert (records["39"].state, records["39"].reason, records["39"].started_at) == ("CANCELLED", "Dependency", None)


def test_sacct_cancelled_spelling():
    records = {r.job_id: r for r in c.parse_sacct(data("sacct-cancelled.txt"))}
    assert records["47"].state == "CANCELLED by 0"
    assert records["30"].array_indices == tuple(range(0, 301, 3))


# --- cluster settings ------------------------------------------------------------------------


def test_config_partitions_and_limits():
    assert c.parse_config(data("scontrol-show-config.txt")) == ClusterLimits(max_array_size=1001, max_job_count=10000,
                                                                             slurm_version="22.05.8")
    assert c.parse_partitions(data("scontrol-show-partition.txt")) == [
        PartitionInfo(name="debug", max_time_seconds=3600, default=True, state="UP", total_cpus=16, total_nodes=1)]
    assert c.parse_associations(data("sacctmgr-show-association.txt")) == [
        c.Association(account="root", partition=None, max_submit_jobs=None, qos=("normal",))]
    assert c.parse_qos_limits(data("sacctmgr-show-qos.txt")) == {"normal": None, "capqos": 7}
    assert c.submit_limit(data("sacctmgr-show-association.txt"), data("sacctmgr-show-qos.txt")) is None


def test_partitions_unlimited_and_several():
    text = ("PartitionName=long Default=NO MaxTime=UNLIMITED State=UP TotalCPUs=64\n"
            "PartitionName=short Default=YES MaxTime=1-12:00:00 State=DRAIN TotalCPUs=8\n")
    assert c.parse_partitions(text) == [
        PartitionInfo(name="long", max_time_seconds=None, default=False, state="UP", total_cpus=64),
        PartitionInfo(name="short", max_time_seconds=129600, default=True, state="DRAIN", total_cpus=8)]


def test_submit_limit_is_the_smallest_over_associations_and_their_qos():
    associations = "acct|||normal,high\nacct|gpu|40|normal\n"
    qos = "normal|25\nhigh|\nunused|1\n"
    assert c.submit_limit(associations, qos) == 25
    assert c.submit_limit("acct||10|high\n", qos) == 10
    assert c.submit_limit("", qos) is None


def test_sbatch_output():
    assert c.parse_sbatch(data("sbatch-parsable.stdout.txt")) == "23"
    assert c.parse_sbatch("123;dev\n") == "123"
    for garbage in ["", "Submitted batch job 5", "abc", "12 13"]:
        with pytest.raises(ValueError):
            c.parse_sbatch(garbage)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stderr, kind", [
    ("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, "
     "user's size and/or time limits)", SubmitErrorKind.AT_CAPACITY),
    ("sbatch: error: QOSMaxSubmitJobPerUserLimit", SubmitErrorKind.AT_CAPACITY),
    ("sbatch: error: AssocMaxSubmitJobLimit", SubmitErrorKind.AT_CAPACITY),
    ("sbatch: error: Batch job submission failed: MaxJobCount limit reached", SubmitErrorKind.AT_CAPACITY),
    ("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
     "sbatch: error: Batch job submission failed: Resource temporarily unavailable", SubmitErrorKind.AT_CAPACITY),
    ("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying", SubmitErrorKind.TRANSIENT),
    ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", SubmitErrorKind.TRANSIENT),
    ("sbatch: error: Batch job submission failed: Zero Bytes were transmitted or received", SubmitErrorKind.TRANSIENT),
    (data("sbatch-controller-down.stderr.txt"), SubmitErrorKind.TRANSIENT),
    (data("sbatch-invalid-partition.stderr.txt"), SubmitErrorKind.INVALID),
    (data("sbatch-invalid-time.stderr.txt"), SubmitErrorKind.INVALID),
    (data("sbatch-invalid-account.stderr.txt"), SubmitErrorKind.INVALID),
    (data("sbatch-invalid-qos.stderr.txt"), SubmitErrorKind.INVALID),
    (data("sbatch-array-too-large.stderr.txt"), SubmitErrorKind.INVALID),
    ("", SubmitErrorKind.INVALID),
])
def test_classify_sbatch_error(stderr, kind):
    assert c.classify_sbatch_error(stderr) is kind


def test_classify_command_error():
    assert c.classify_command_error(data("squeue-controller-down.stderr.txt")) is SubmitErrorKind.TRANSIENT
    assert c.classify_command_error("sacct: error: Problem talking to the database: Connection refused") \
        is SubmitErrorKind.TRANSIENT
    assert c.classify_command_error(data("scontrol-hold-gone.stderr.txt")) is SubmitErrorKind.INVALID
    assert c.classify_command_error("squeue: error: Invalid user: nobody1") is SubmitErrorKind.INVALID


def test_ignorable_control_error():
    assert c.ignorable_control_error(data("scontrol-hold-gone.stderr.txt"))
    assert c.ignorable_control_error(
        "scancel: error: Kill job error on job id 5: Job/step already completing or completed")
    assert not c.ignorable_control_error(data("squeue-controller-down.stderr.txt"))
    assert not c.ignorable_control_error("")


# --- any text --------------------------------------------------------------------------------

PARSERS = [c.parse_squeue, c.parse_sacct, c.parse_config, c.parse_partitions, c.parse_associations,
           c.parse_qos_limits, c.parse_sbatch]
FIELD_TEXT = st.one_of(
    st.text(alphabet="0123456789_[]-,:%|N/A .\né", max_size=12),
    st.sampled_from(["None", "PENDING", "RUNNING", "Unknown", "0:00", "3:0", "1795413367", "2026-11-23T05:56:07",
                     "100_3", "100_[5-99%25]", "0-9%2", "N/A", "None assigned", ""]),
)


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
@given(text=st.text(max_size=300))
def test_any_text_parses_or_fails_cleanly(parse, text):
    with contextlib.suppress(ValueError):
        parse(text)


@pytest.mark.parametrize("parse, width", [(c.parse_squeue, 11), (c.parse_sacct, 12)], ids=["squeue", "sacct"])
@given(rows=st.lists(st.lists(FIELD_TEXT, min_size=1, max_size=14), max_size=4))
def test_row_shaped_text_parses_or_fails_cleanly(parse, width, rows):
    text = "\n".join("|".join(fields) for fields in rows)
    try:
        records = parse(text)
    except ValueError:
        return
    for record in records:
        assert record.job_id.isdigit()
        assert record.array_indices is None or len(record.array_indices) > 0
