"""Slurm commands as pure data: an argv builder and an output parser for each operation.

The client runs each argv through a transport (locally or over SSH) and hands the output to the
matching parser; nothing here starts a process. Every argv is a list of strings for exec, never a
shell line. Parsers are written against the exact output of Slurm 22.05 (tests keep captured
samples) and fail only with ValueError, so a caller can tell "Slurm said something unreadable"
from a bug. Jobs the reconciler did not submit are parsed too: they count against the user's
capacity, and their names and comments may contain anything, which is why the comment is always
the last field and split off with a bounded split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import Enum

from ..api.units import time_to_seconds
from ..core.indexranges import expand
from ..core.observed import PartitionLimits
from .states import parse_exit_code

# Both squeue and sacct cut a job array's index expression at 64 bytes unless told otherwise
# (Slurm 22.05, SLURM_BITSTR_LEN); a pending array retried element by element easily needs more.
# SLURM_TIME_FORMAT=%s makes every time an epoch second, which no time zone can misread, and
# overrides whatever format a login shell on the cluster may have set.
OUTPUT_ENV = ("SLURM_BITSTR_LEN=0", "SLURM_TIME_FORMAT=%s")

SQUEUE_FIELDS = ("%A", "%F", "%K", "%T", "%r", "%C", "%N", "%S", "%M", "%j", "%k")
SACCT_FIELDS = (
    "JobID", "JobIDRaw", "State", "ExitCode", "Reason", "NodeList", "Start", "End", "ElapsedRaw", "AllocCPUS",
    "Partition", "AllocTRES", "JobName", "Comment",
)
# What a finished job asked for and used, its steps included (the batch step's MaxRSS is the
# memory a script used; the allocation's own line shows none).
SACCT_USAGE_FIELDS = (
    "JobID", "JobIDRaw", "State", "Submit", "Start", "End", "ElapsedRaw", "AllocCPUS", "AllocTRES", "NNodes",
    "Partition", "TimelimitRaw", "ReqMem", "MaxRSS", "TotalCPU",
)
# sacct answers with AllocTRES only after a second round trip to slurmdbd (the list of TRES, to
# name them), some 80 ms on a quiet cluster: the "lean" formats leave it out, and the rows they
# give have no billing.
_ALLOC_TRES = "AllocTRES"

_NOTHING = frozenset({"", "None", "N/A", "Unknown", "(null)", "None assigned", "NONE", "INVALID"})
_DIGITS = re.compile(r"[0-9]{1,18}")
_JOB_ID = re.compile(r"[0-9]{1,10}(?:_[0-9]{1,10})?")
_SACCT_ELEMENT = re.compile(r"([0-9]+)_([0-9]+)")
_SACCT_PENDING_ARRAY = re.compile(r"([0-9]+)_\[(.+)\]")
_MAX_INDICES = 4_000_001  # Slurm's own ceiling on MaxArraySize


@dataclass(frozen=True)
class JobRecord:
    """One line of squeue or sacct: a job, an array element, or array elements still pending together."""

    job_id: str  # the id to act on (a pending array record: the array's own id)
    array_job_id: str | None
    array_indices: tuple[int, ...] | None  # Slurm array task ids this record covers; None: not an array
    state: str
    reason: str | None
    exit_code: int | None
    signal: int | None
    node_list: str | None
    started_at: datetime | None  # timezone-aware UTC
    finished_at: datetime | None
    elapsed_seconds: int
    cpus: int
    name: str
    comment: str
    source: str  # "squeue" or "sacct"
    # The job's billing TRES (AllocTRES "billing=", from the partition's TRESBillingWeights, else
    # its CPU count): what accounting charges per second. None: squeue, or sacct did not say
    # (or was not asked).
    billing: int | None = None
    # Where it runs, or the partitions it may start in while pending ("debug,billed"). None:
    # squeue, or sacct did not say.
    partition: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobUsage:
    """One finished job or array element as accounting reports it, its steps folded in."""

    job_id: str  # the job's own id (an element's JobIDRaw)
    array_job_id: str | None
    array_index: int | None
    state: str
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime
    elapsed_seconds: int
    cpus: int
    billing: int | None  # see ``JobRecord.billing``
    nodes: int
    partition: str | None
    time_limit_seconds: int | None  # None: unlimited or not known
    memory_mib: float | None  # requested, per node
    max_rss_mib: float | None  # the largest of its steps' (the batch step's for a plain script)
    total_cpu_seconds: float | None  # user + system CPU time of all its steps
    # Whether accounting shows it ran steps and every one of them ended: a step's final record,
    # with its MaxRSS, can reach slurmdbd a moment after its job's end.
    steps_ended: bool

    @property
    def billed_core_seconds(self) -> int:
        """Elapsed x the billing TRES, else x the allocated CPUs."""
        return self.elapsed_seconds * (self.cpus if self.billing is None else self.billing)


@dataclass(frozen=True)
class ClusterLimits:
    max_array_size: int  # array task ids must be below this
    max_job_count: int  # jobs slurmctld keeps at once, all users together
    slurm_version: str | None = None  # as slurmctld reports it (SLURM_VERSION)


# What scontrol says of a partition is what the core plans by: one type for both.
PartitionInfo = PartitionLimits


@dataclass(frozen=True)
class StartEstimate:
    """What ``sbatch --test-only`` answered: when, where and on how many processors Slurm would
    start the job if it were submitted now (backfill's estimate, not a promise)."""

    start: datetime  # timezone-aware UTC
    processors: int
    nodes: str
    partition: str


@dataclass(frozen=True)
class Association:
    account: str
    partition: str | None
    max_submit_jobs: int | None
    qos: tuple[str, ...]


# --- builders -------------------------------------------------------------------------------


def squeue_argv(*, user: str | None) -> list[str]:
    """Every job slurmctld holds for the user, in one call. No -r: a pending array stays one line
    however large. ``--states=all``: squeue's default filter hides a job the moment it ends, yet
    slurmdbd may record it only a second later; slurmctld keeps a finished job for MinJobAge
    (300 s by default), so asking for every state closes the gap in which a job that just ended
    is in neither answer."""
    who = "--me" if user is None else f"--user={_word(user, 'user')}"
    return ["env", *OUTPUT_ENV, "squeue", who, "--states=all", "--noheader", f"--format={'|'.join(SQUEUE_FIELDS)}"]


def squeue_partitions_argv(job_ids: Sequence[str]) -> list[str]:
    """The partition of each of these jobs (raw ids; an array's id stands for its elements) that
    slurmctld still holds, ended ones included (for MinJobAge). squeue exits 1 when it holds none."""
    return ["squeue", "--states=all", "--noheader", "--format=%A|%P", f"--jobs={','.join(_job_ids(job_ids))}"]


def sacct_argv(
    *, since: datetime, user: str | None, job_ids: Sequence[str] = (), names: Sequence[str] = (),
    tz: tzinfo | None = None, billing: bool = True,
) -> list[str]:
    """Allocations (-X: the batch script's exit code and the allocation's end state, such as
    TIMEOUT or OUT_OF_MEMORY, which steps do not show) of jobs active since ``since``.

    A time window leaves out jobs that were never eligible to start (held, waiting on a
    dependency, or cancelled by --kill-on-invalid-dep before they ever were): Slurm 22.05 shows
    those only when asked by id. ``job_ids`` narrows the query to those jobs (never-eligible ones
    included, others only when active since ``since``): it is a filter, not an addition, so a
    caller that wants both runs this twice. ``names`` narrows it to jobs of those names, a filter too.
    ``tz`` is the cluster's time zone, in which sacct reads --starttime (default: this machine's).
    Without ``user`` sacct shows the calling user's jobs (root sees everyone's; tags tell ours).
    Without ``billing`` the answer has no AllocTRES, and costs one round trip to slurmdbd less.
    """
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    start = since.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")
    argv = ["env", *OUTPUT_ENV, "sacct", "-X", "-P", "-n", f"--starttime={start}", "--endtime=now",
            f"--format={','.join(_fields(SACCT_FIELDS, billing))}"]
    if user is not None:
        argv.append(f"--user={_word(user, 'user')}")
    if job_ids:
        argv.append(f"--jobs={','.join(_job_ids(job_ids))}")
    if names:
        argv.append(f"--name={','.join(_word(name, 'job name') for name in names)}")
    return argv


def sacct_usage_argv(*, job_ids: Sequence[str], user: str | None, billing: bool = True) -> list[str]:
    """What the given jobs (an array's id stands for all its elements) asked for and used, one
    line per allocation and one per step: no -X, since only steps carry MaxRSS. Asked by id, so
    no time window applies. Without ``billing``, no AllocTRES (see ``sacct_argv``)."""
    argv = ["env", *OUTPUT_ENV, "sacct", "-P", "-n", f"--format={','.join(_fields(SACCT_USAGE_FIELDS, billing))}",
            f"--jobs={','.join(_job_ids(job_ids))}"]
    if user is not None:
        argv.append(f"--user={_word(user, 'user')}")
    return argv


def _fields(fields: tuple[str, ...], billing: bool) -> tuple[str, ...]:
    return fields if billing else tuple(f for f in fields if f != _ALLOC_TRES)


def command_name(argv: Sequence[str]) -> str:
    """The Slurm command an argv runs, past the ``env`` prefix ("squeue", "sacct", "sbatch"...)."""
    if argv and argv[0] == "env":
        return next((word for word in argv[1:] if "=" not in word), "env")
    return argv[0] if argv else ""


def sbatch_argv(script_path: str) -> list[str]:
    return ["sbatch", "--parsable", script_path]


def hold_argv(job_ids: Sequence[str]) -> list[str]:
    return ["scontrol", "hold", ",".join(_job_ids(job_ids))]


def release_argv(job_ids: Sequence[str]) -> list[str]:
    return ["scontrol", "release", ",".join(_job_ids(job_ids))]


def cancel_argv(job_ids: Sequence[str]) -> list[str]:
    return ["scancel", *_job_ids(job_ids)]


def test_only_argv(*, partition: str, nodes: int, cpus: int, time_seconds: int,
                   memory_mib: int | None = None) -> list[str]:
    """``sbatch --test-only``: when Slurm would start a job of this size, without submitting
    one. The size is given as a task's job asks for it (``--nodes``, ``--cpus-per-task``,
    ``--mem``, ``--time``) and the job runs a trivial ``--wrap``. The answer is on stderr (see
    ``parse_test_only``); its time is an epoch second through ``OUTPUT_ENV``."""
    if min(nodes, cpus, time_seconds) < 1 or (memory_mib is not None and memory_mib < 1):
        raise ValueError(f"a job size must be positive: {nodes} nodes, {cpus} CPUs, {time_seconds} s, "
                         f"{memory_mib} MiB")
    # Slurm counts time limits in minutes and rounds seconds up, as this does.
    argv = ["env", *OUTPUT_ENV, "sbatch", "--test-only", f"--partition={_word(partition, 'partition')}",
            f"--nodes={int(nodes)}", f"--cpus-per-task={int(cpus)}", f"--time={-(-int(time_seconds) // 60)}"]
    if memory_mib is not None:
        argv.append(f"--mem={int(memory_mib)}M")
    return [*argv, "--wrap=true"]


def show_config_argv() -> list[str]:
    return ["scontrol", "show", "config"]


def show_partitions_argv() -> list[str]:
    return ["scontrol", "show", "partition", "--oneliner"]


def submit_limit_argv(user: str) -> list[str]:
    # "where" and each condition are separate words: sacctmgr rejects "where user=x" as one.
    return ["sacctmgr", "--noheader", "--parsable2", "show", "association", "where",
            f"user={_word(user, 'user')}", "format=Account,Partition,MaxSubmitJobs,QOS"]


def qos_limits_argv() -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable2", "show", "qos", "format=Name,MaxSubmitJobsPerUser"]


# --- parsers --------------------------------------------------------------------------------


def parse_squeue(text: str) -> list[JobRecord]:
    records: list[JobRecord] = []
    for fields in _rows(text, len(SQUEUE_FIELDS), "squeue"):
        job_id, array_id, array_text, state, reason, cpus, nodes, start, used, name, comment = fields
        indices = None if array_text.strip() in _NOTHING else _indices(array_text)
        pending = state.strip() in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
        if indices is not None and not _DIGITS.fullmatch(array_text.strip()):
            job_id = array_id  # elements not yet started, listed together under the array's id
        records.append(JobRecord(
            job_id=_id(job_id),
            array_job_id=_id(array_id) if indices is not None else None,
            array_indices=indices,
            state=state.strip(),
            reason=_optional(reason),
            exit_code=None,
            signal=None,
            node_list=_optional(nodes),
            started_at=None if pending else _instant(start),  # a pending job's %S is only an estimate
            finished_at=None,
            elapsed_seconds=_duration(used),
            cpus=_int(cpus, "CPUs"),
            name=name,
            comment=comment,
            source="squeue",
        ))
    return records


def parse_squeue_partitions(text: str) -> dict[str, str]:
    """Rows of ``squeue_partitions_argv``: each job's partition by its raw id."""
    return {_id(job_id): partition.strip() for job_id, partition in _rows(text, 2, "squeue")}


def parse_sacct(text: str, *, billing: bool = True) -> list[JobRecord]:
    """Rows of ``sacct_argv`` asked with the same ``billing``."""
    records: list[JobRecord] = []
    tres = ""
    for fields in _rows(text, len(SACCT_FIELDS) - (not billing), "sacct"):
        if billing:
            job_text, raw_id, state, exit_text, reason, nodes, start, end, elapsed, cpus, partition, tres, name, \
                comment = fields
        else:
            job_text, raw_id, state, exit_text, reason, nodes, start, end, elapsed, cpus, partition, name, \
                comment = fields
        job_text = job_text.strip()
        array_id: str | None = None
        indices: tuple[int, ...] | None = None
        if element := _SACCT_ELEMENT.fullmatch(job_text):
            array_id, indices = element.group(1), (int(element.group(2)),)
        elif pending := _SACCT_PENDING_ARRAY.fullmatch(job_text):
            array_id, indices = pending.group(1), _indices(pending.group(2))
        exit_code, signal = parse_exit_code(exit_text)
        records.append(JobRecord(
            job_id=_id(raw_id),
            array_job_id=array_id,
            array_indices=indices,
            state=state.strip(),
            reason=_optional(reason),
            exit_code=exit_code,
            signal=signal,
            node_list=_optional(nodes),
            started_at=_instant(start),
            finished_at=_instant(end),
            elapsed_seconds=_int(elapsed, "ElapsedRaw"),
            cpus=_int(cpus, "AllocCPUS"),
            name=name,
            comment=comment,
            source="sacct",
            billing=_billing(tres) if billing else None,
            partition=_optional(partition),
        ))
    return records


def parse_sacct_usage(text: str, *, billing: bool = True) -> list[JobUsage]:
    """Rows of ``sacct_usage_argv`` asked with the same ``billing``: each finished job or element
    with its steps folded in. Records still pending together (``123_[4-9]``) and jobs that have not
    ended are left out."""
    jobs: dict[str, list[str]] = {}
    steps: dict[str, list[list[str]]] = {}
    for fields in _rows(text, len(SACCT_USAGE_FIELDS) - (not billing), "sacct"):
        job_text, _, step = fields[0].strip().partition(".")
        if step:
            steps.setdefault(job_text, []).append(fields)
        elif not _SACCT_PENDING_ARRAY.fullmatch(job_text) and _instant(fields[5]) is not None:
            jobs[job_text] = fields
    return [_usage(fields, steps.get(job_text, []), billing=billing) for job_text, fields in jobs.items()]


def _usage(fields: list[str], steps: list[list[str]], *, billing: bool) -> JobUsage:
    if billing:
        job_text, raw_id, state, submit, start, end, elapsed, cpus, tres, nodes, partition, limit, memory, _, \
            total = fields
    else:
        job_text, raw_id, state, submit, start, end, elapsed, cpus, nodes, partition, limit, memory, _, total = fields
        tres = ""
    finished_at = _instant(end)
    assert finished_at is not None, "parse_sacct_usage keeps ended jobs only"
    element = _SACCT_ELEMENT.fullmatch(job_text.strip())
    # 0 where no sample was taken (a step shorter than JobAcctGatherFrequency): not a measurement.
    rss_at = len(fields) - 2  # MaxRSS, next to last in both forms
    rss = [value for step in steps if (value := _memory_mib(step[rss_at], "MaxRSS"))]
    return JobUsage(
        job_id=_id(raw_id),
        array_job_id=element.group(1) if element else None,
        array_index=int(element.group(2)) if element else None,
        state=state.strip().split(" ")[0],  # "CANCELLED by 0"
        submitted_at=_instant(submit),
        started_at=_instant(start),
        finished_at=finished_at,
        elapsed_seconds=_int(elapsed, "ElapsedRaw"),
        cpus=_int(cpus, "AllocCPUS"),
        billing=_billing(tres),
        nodes=_int(nodes, "NNodes"),
        partition=_optional(partition),
        # Minutes; "UNLIMITED", or "Partition_Limit" for a job that never got a limit of its own.
        time_limit_seconds=int(limit) * 60 if _DIGITS.fullmatch(limit.strip()) else None,
        memory_mib=_requested_memory(memory, cpus=_int(cpus, "AllocCPUS"), nodes=_int(nodes, "NNodes")),
        max_rss_mib=max(rss, default=None),
        total_cpu_seconds=None if _optional(total) is None else _cpu_time(total),
        steps_ended=bool(steps) and all(_instant(step[5]) is not None for step in steps),  # End
    )


def parse_sbatch(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` ("123", or "123;cluster" on a multi-cluster setup)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    match = re.fullmatch(r"([0-9]{1,10})(?:;\S+)?", lines[-1]) if lines else None
    if not match:
        raise ValueError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return match.group(1)


_WILL_RUN = re.compile(r"Job ([0-9]+) to start at (\S+) using ([0-9]+) processors on nodes (\S*) in partition (\S+)")


def parse_test_only(stderr: str) -> StartEstimate:
    """What ``test_only_argv`` printed when it exited 0 (Slurm 22.05: "sbatch: Job 7 to start at
    1795940978 using 2 processors on nodes dev1 in partition debug"). The time is an epoch second
    with SLURM_TIME_FORMAT=%s, else the cluster's local time, read in this machine's zone."""
    for line in stderr.splitlines():
        if found := _WILL_RUN.search(line):
            start = _instant(found.group(2))
            if start is None:
                raise ValueError(f"sbatch --test-only gave no start time: {line.strip()[:200]!r}")
            return StartEstimate(start=start, processors=int(found.group(3)), nodes=found.group(4),
                                 partition=found.group(5))
    raise ValueError(f"sbatch --test-only printed no start: {stderr.strip()[:200]!r}")


def parse_config(text: str) -> ClusterLimits:
    """MaxArraySize and MaxJobCount from ``scontrol show config`` (Slurm's defaults when absent),
    and the version of Slurm it reports."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    if not settings:
        raise ValueError("scontrol show config printed no settings")
    return ClusterLimits(
        max_array_size=_int(settings.get("MaxArraySize", "1001"), "MaxArraySize"),
        max_job_count=_int(settings.get("MaxJobCount", "10000"), "MaxJobCount"),
        slurm_version=settings.get("SLURM_VERSION") or None,
    )


def parse_partitions(text: str) -> list[PartitionInfo]:
    """``scontrol show partition --oneliner``: one partition a line, as Key=Value words."""
    partitions: list[PartitionInfo] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        settings = {key: value for key, _, value in (word.partition("=") for word in line.split())}
        if "PartitionName" not in settings:
            raise ValueError(f"not a partition line: {line[:200]!r}")
        partitions.append(PartitionLimits(
            name=settings["PartitionName"],
            max_time_seconds=_limit_seconds(settings.get("MaxTime", "UNLIMITED")),
            default=settings.get("Default", "NO") == "YES",
            state=settings.get("State", "UNKNOWN"),
            total_cpus=_int(settings.get("TotalCPUs", "0"), "TotalCPUs"),
            total_nodes=_int(settings.get("TotalNodes", "0"), "TotalNodes"),
            max_nodes=_limit(settings.get("MaxNodes", "UNLIMITED"), "MaxNodes"),
            max_cpus_per_node=_limit(settings.get("MaxCPUsPerNode", "UNLIMITED"), "MaxCPUsPerNode"),
            default_time_seconds=_limit_seconds(settings.get("DefaultTime", "NONE")),
            billing_weights=parse_billing_weights(settings.get("TRESBillingWeights", "")),
        ))
    return partitions


def _limit(text: str, what: str) -> int | None:
    return None if text.strip() in ("UNLIMITED", "INFINITE", "NONE") else _int(text, what)


def _limit_seconds(text: str) -> int | None:
    """A partition's MaxTime or DefaultTime: None when unlimited or not set."""
    return None if text.strip() in ("UNLIMITED", "INFINITE", "NONE") else time_to_seconds(text.strip())


# The TRES whose base unit is the megabyte (Slurm 22.05 slurmdb_get_tres_base_unit); the others
# count ones. Memory weights are returned per GB, the unit people price memory in.
_MEGABYTE_TRES = frozenset({"mem", "bb"})
_UNIT_POWER = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
_TRES_TYPES = {name.lower(): name for name in (
    "BB", "Billing", "CPU", "Energy", "FS", "GRES", "IC", "License", "Mem", "Node", "Pages", "VMem")}
_WEIGHT = re.compile(r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)([KMGTPkmgtp]?)")


def parse_billing_weights(text: str) -> dict[str, float]:
    """A partition's TRESBillingWeights ("CPU=2.0,Mem=0.25G,GRES/gpu=4"): the billing of one CPU,
    one GB of memory, one GPU... keyed by the TRES type in Slurm's spelling, with its name if any.

    As slurm.conf(5) says, a suffix K, M, G, T or P makes a weight count per that many of the
    TRES's base unit (megabytes for memory and burst buffers, ones for the rest), and a suffix no
    larger than the base unit changes nothing: "Mem=0.25G" and "Mem=0.000244140625" bill the same.
    """
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.strip().strip('"').split(","))):
        kind, sep, value = item.partition("=")
        found = _WEIGHT.fullmatch(value.strip())
        kind_type, slash, kind_name = kind.strip().partition("/")
        if not sep or found is None or kind_type.lower() not in _TRES_TYPES:
            raise ValueError(f"unreadable TRESBillingWeights entry {item[:80]!r}")
        base_power = 2 if kind_type.lower() in _MEGABYTE_TRES else 0
        steps = max(0, _UNIT_POWER.get(found.group(2).upper(), 0) - base_power)
        per_base_unit = float(found.group(1)) / 1024 ** steps
        # Per GB for megabyte TRES: 1024 of their base unit.
        per_unit = per_base_unit * 1024 if base_power else per_base_unit
        weights[_TRES_TYPES[kind_type.lower()] + slash + kind_name] = per_unit
    return weights


def parse_associations(text: str) -> list[Association]:
    """Rows of ``submit_limit_argv``: Account|Partition|MaxSubmitJobs|QOS."""
    result = []
    for fields in _rows(text, 4, "sacctmgr"):
        account, partition, max_submit, qos = fields
        result.append(Association(
            account=account,
            partition=partition or None,
            max_submit_jobs=None if max_submit.strip() == "" else _int(max_submit, "MaxSubmitJobs"),
            qos=tuple(q for q in qos.split(",") if q),
        ))
    return result


def parse_qos_limits(text: str) -> dict[str, int | None]:
    """Rows of ``qos_limits_argv``: Name|MaxSubmitJobsPerUser."""
    return {name: None if limit.strip() == "" else _int(limit, "MaxSubmitJobsPerUser")
            for name, limit in _rows(text, 2, "sacctmgr")}


def submit_limit(associations_text: str, qos_text: str) -> int | None:
    """The tightest MaxSubmitJobs the user can see: over their associations and every QOS those
    allow (the QOS a job ends up with is not known beforehand, so the smallest one counts)."""
    associations = parse_associations(associations_text)
    qos_limits = parse_qos_limits(qos_text)
    limits = [a.max_submit_jobs for a in associations if a.max_submit_jobs is not None]
    limits += [limit for a in associations for q in a.qos if (limit := qos_limits.get(q)) is not None]
    return min(limits, default=None)


# --- errors -------------------------------------------------------------------------------


class SubmitErrorKind(str, Enum):
    AT_CAPACITY = "AtCapacity"  # a submit limit refused the job: wait for the queue to drain
    TRANSIENT = "Transient"  # the controller could not be reached or was busy: retry with backoff
    INVALID = "Invalid"  # the request itself is wrong: retrying the same script cannot help


# Slurm 22.05 wording (slurm_errno.c, sbatch.c). "Job violates accounting/QOS policy" is also
# what a request above a QOS's per-job size or time limit gets: the same text for both causes.
_AT_CAPACITY = (
    "job violates accounting/qos policy",
    "maxsubmitjob",  # QOSMaxSubmitJobPerUserLimit, AssocMaxSubmitJobLimit, ...
    "grpsubmitjob",
    "maxjobcount",
    "job queue full",
    "resource temporarily unavailable",  # EAGAIN after sbatch's own retries: slurmctld's job table is full
)
_TRANSIENT = (
    "socket timed out", "unable to contact slurm controller", "slurm temporarily unable",
    "zero bytes were transmitted", "connection refused", "connection timed out",
    "communication connection failure", "message send failure", "message receive failure",
    "rate limit exceeded", "standby mode", "header lengths are longer than data received",
    "unexpected message received", "try again later", "unable to connect to database",
    "problem talking to the database", "slurmdbd",
)
# Hold, release or cancel of a job that has already moved on: nothing left to do.
_ALREADY_DONE = (
    "already completing or completed", "job has already finished", "job is no longer pending execution",
    "invalid job id specified", "job is not pending",
)


def classify_sbatch_error(stderr: str) -> SubmitErrorKind:
    """Why sbatch refused a job. A TRANSIENT failure of an sbatch call may still have created the
    job (the reply was lost), so the caller looks before it submits again."""
    text = stderr.lower()
    if any(pattern in text for pattern in _AT_CAPACITY):
        return SubmitErrorKind.AT_CAPACITY
    if any(pattern in text for pattern in _TRANSIENT):
        return SubmitErrorKind.TRANSIENT
    return SubmitErrorKind.INVALID


def classify_command_error(stderr: str) -> SubmitErrorKind:
    """TRANSIENT or INVALID for a failed scontrol, scancel, squeue, sacct or sacctmgr call."""
    text = stderr.lower()
    transient = any(p in text for p in _TRANSIENT) or "resource temporarily unavailable" in text
    return SubmitErrorKind.TRANSIENT if transient else SubmitErrorKind.INVALID


def ignorable_control_error(stderr: str) -> bool:
    """True when every line a failed hold, release or cancel printed says the job had already
    moved on (finished, started, or purged from slurmctld after MinJobAge)."""
    lines = [line.lower() for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all(any(p in line for p in _ALREADY_DONE) for line in lines)


# --- reading fields -----------------------------------------------------------------------


def _rows(text: str, width: int, command: str) -> list[list[str]]:
    """Lines split into ``width`` fields at "|", the last one taking any further "|".

    A line with too few fields continues the previous line's last field: a foreign job's comment
    may hold a newline. Such a line before any full line means the output is not what was asked.
    """
    rows: list[list[str]] = []
    for line in text.splitlines():
        fields = line.split("|", width - 1)
        if len(fields) == width:
            rows.append(fields)
        elif rows:
            rows[-1][-1] += "\n" + line
        elif line.strip():
            raise ValueError(f"unexpected {command} output line {line[:200]!r}")
    return rows


def _optional(text: str) -> str | None:
    text = text.strip()
    return None if text in _NOTHING else text


def _int(text: str, what: str) -> int:
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{what} {text[:50]!r} is not a number")
    return int(text)


def _id(text: str) -> str:
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"job id {text[:50]!r} is not a number")
    return text


def _indices(text: str) -> tuple[int, ...]:
    text = text.strip()
    if "..." in text:
        raise ValueError(f"array index list {text[:80]!r} was cut short (SLURM_BITSTR_LEN not applied)")
    indices = tuple(expand(text, limit=_MAX_INDICES))
    if not indices:
        raise ValueError(f"empty array index list {text!r}")
    return indices


def _instant(text: str) -> datetime | None:
    """A Slurm time: epoch seconds (with SLURM_TIME_FORMAT=%s) or the standard local-time form,
    which carries no zone and is read in this machine's zone."""
    text = text.strip()
    if text in _NOTHING:
        return None
    try:
        if _DIGITS.fullmatch(text):
            return None if int(text) == 0 else datetime.fromtimestamp(int(text), tz=UTC)
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"unreadable time {text[:50]!r}") from None


def _billing(tres: str) -> int | None:
    """The ``billing=`` count of an AllocTRES list ("billing=4,cpu=2,mem=200M,node=1")."""
    for item in tres.strip().split(","):
        name, _, value = item.partition("=")
        if name == "billing":
            return _int(value, "billing TRES")
    return None


_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMGTP]?)([nc]?)")
_MEMORY_UNITS = {"": 1 / 1024 / 1024, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2, "P": 1024.0**3}


def _memory_mib(text: str, what: str) -> float | None:
    """sacct's memory figures ("36272K", "200M", "4G", "0") in MiB; None when empty or unknown.

    Slurm 22.05 prints a figure past its largest unit with the unit "?": ReqMem "16?" is
    NO_VAL64 (about 16 EiB, no request recorded), seen while slurmdbd was catching up."""
    text = text.strip()
    if text in _NOTHING or text.endswith("?"):
        return None
    match = _MEMORY.fullmatch(text)
    if not match:
        raise ValueError(f"{what} {text[:50]!r} is not an amount of memory")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def _requested_memory(text: str, *, cpus: int, nodes: int) -> float | None:
    """ReqMem per node: a trailing "c" (older Slurm) means per CPU, "n" per node."""
    amount = _memory_mib(text, "ReqMem")
    if amount is None or not text.strip().endswith("c"):
        return amount
    return amount * cpus / max(1, nodes)


_CPU_TIME = re.compile(r"(?:([0-9]+)-)?(?:([0-9]+):)?([0-9]+):([0-9]+(?:\.[0-9]+)?)")


def _cpu_time(text: str) -> float:
    """TotalCPU: "00:01.174" (minutes:seconds), "01:02:03", "1-02:03:04", with or without fractions."""
    match = _CPU_TIME.fullmatch(text.strip())
    if not match:
        raise ValueError(f"TotalCPU {text[:50]!r} is not a duration")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def _duration(text: str) -> int:
    """squeue's time used: "0:05", "12:34", "1:02:03" or "2-01:02:03" ("INVALID" on clock skew)."""
    text = text.strip()
    if text in _NOTHING:
        return 0
    return time_to_seconds(text)


def _job_ids(job_ids: Sequence[str]) -> list[str]:
    if isinstance(job_ids, str):
        raise TypeError("job_ids must be a sequence of ids, not one string")
    ids = list(job_ids)
    if not ids:
        raise ValueError("no job ids given")
    for job_id in ids:
        if not _JOB_ID.fullmatch(job_id):  # also keeps an id from ever reading as an option
            raise ValueError(f"invalid job id {job_id!r}")
    return ids


def _word(value: str, what: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.@$-]*", value):
        raise ValueError(f"invalid {what} {value!r}")
    return value

