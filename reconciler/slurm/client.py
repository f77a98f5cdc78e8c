"""Every operation the reconciler performs on one Slurm cluster, through one transport.

Called by the controller (once per tick: one :meth:`SlurmClient.observe`, then the plan's
actions), by ``reconciler submit`` and by the tests. Each operation is build / run / parse: a
pure argv builder from :mod:`.commands`, one call through the transport, a pure parser.

Guarantees:

* observation is batched: one ``squeue`` and one ``sacct`` per call, whatever the number of
  jobs, asked at once with the few others a tick may need (jobs by name, jobs that just
  recorded their end by id, their usage, the cluster's configuration when it is due): a tick
  waits for the slowest answer, usually sacct through slurmdbd, not for their sum, and never
  for accounting's submit limit; an observation that failed says so (``queue_ok`` /
  ``accounting_ok``) instead of returning an empty list that would read as "every job is gone";
* a job's billing is exact, yet sacct is asked for AllocTRES (which costs it a second round
  trip to slurmdbd) only while the last answer showed a job of ours that ran on a partition
  not known to bill its CPUs (one with TRESBillingWeights, or none that accounting or
  slurmctld can name): elsewhere billing is the CPU count, and such a job in an answer without
  AllocTRES is asked again by id with it, at once;
* errors are typed by what the caller should do next: :class:`SlurmUnavailable` (transient:
  retry later with backoff), :class:`SubmitRefused` with ``at_capacity`` (wait for capacity) or
  not (terminal for this request); a command never raises anything else for Slurm's answers;
* every command is bounded by a timeout.
"""

from __future__ import annotations

import getpass
import logging
import posixpath
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ..api import Resources, SlurmCluster, Task
from ..core.observed import ClusterView, JobSize, ObservedJob
from . import commands, endrecords
from .commands import ClusterLimits, JobRecord, PartitionInfo, SubmitErrorKind
from .observation import cluster_view, observed_by_workflow, observed_jobs, reported_ids
from .script import UpstreamFiles, render_script, task_paths
from .tags import JobTag, parse_tag
from .transport import CommandResult, Transport, TransportError

log = logging.getLogger(__name__)

# A row whose cost may need the billing TRES: a job's record or its usage.
_Billable = TypeVar("_Billable", JobRecord, commands.JobUsage)

COMMAND_TIMEOUT = 60.0
# Limits and partitions change rarely; reading them every tick would double the load on slurmctld.
INFO_TTL_SECONDS = 300.0
# Keeps a by-id sacct command line far below ARG_MAX however many jobs are missing.
_IDS_PER_QUERY = 500
# Jobs asked for by id are asked for however long ago they ran: their ids narrow the query enough.
_BY_ID_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
# The most job names one sacct is asked for (its command line stays short).
_NAMES_PER_QUERY = 500
# The most commands one observation has in flight: squeue, sacct's window, by name, by id and
# usage, and the four reads of the cluster's configuration (scontrol and sacctmgr twice each).
_QUERIES_AT_ONCE = 9


class SlurmError(Exception):
    """Slurm answered with an error (or could not be asked)."""


class SlurmUnavailable(SlurmError):
    """Slurm could not be reached or did not answer in time: retry later."""


class FileUnreadable(SlurmError):
    """A file on the cluster cannot be read (missing, a directory, no permission): asking again
    gives the same answer until something changes the file."""


class UnsafePath(SlurmError):
    """A path the reconciler was asked to remove is not safely inside the directory it owns."""


class SubmitRefused(SlurmError):
    def __init__(self, message: str, *, at_capacity: bool) -> None:
        super().__init__(message)
        self.at_capacity = at_capacity


@dataclass(frozen=True)
class SubmitRequest:
    """One submission: a task's attempt (for arrays, one chunk of it)."""

    namespace: str
    workflow: str
    task: Task
    tag: JobTag
    resources: Resources
    indices: tuple[int, ...] | None = None
    parallelism: int | None = None
    dependencies: tuple[str, ...] = ()
    hold: bool = False
    exclude_nodes: tuple[str, ...] = ()
    inputs_from: tuple[UpstreamFiles, ...] = ()  # earlier tasks' outputs the job copies at its start
    items_file: str | None = None  # an itemsFrom array's list on the cluster: element i reads line i + 1


@dataclass(frozen=True)
class Observation:
    """Everything one batched look at the cluster saw."""

    records: tuple[JobRecord, ...]
    queue_ok: bool
    accounting_ok: bool
    observed_at: datetime
    error: str | None = None

    def jobs(self) -> list[ObservedJob]:
        return observed_jobs(self.records, now=self.observed_at)

    def jobs_by_workflow(self) -> dict[str, list[ObservedJob]]:
        """Our tagged jobs, keyed by the workflow uid in their tag."""
        return observed_by_workflow(self.records, now=self.observed_at)


@dataclass(frozen=True)
class Discovery:
    """Jobs to look for in accounting by name, back to ``since``: those of workflows the store holds
    no submission of (a fresh or lost local state), which only their tags can tell apart."""

    since: datetime
    names: tuple[str, ...]


@dataclass
class _ClusterInfo:
    limits: ClusterLimits | None = None
    partitions: list[PartitionInfo] = field(default_factory=list)
    submit_limit: int | None = None
    read_at: float = float("-inf")


def _wants_billing(partition: str | None, started_at: datetime | None, elapsed_seconds: int,
                   unweighted: frozenset[str] | None) -> bool:
    """Whether a job's cost needs its billing TRES: it ran, on a partition not known to bill CPUs
    (``unweighted``: the partitions without TRESBillingWeights; None: not known). A list of
    partitions ("debug,billed") or none at all is not known to."""
    return (elapsed_seconds > 0 or started_at is not None) and (unweighted is None or partition not in unweighted)


def _element_id(job_id: str, array_job_id: str | None, index: int | None) -> str:
    """The id that asks sacct for this job alone: an element's raw id may be its array's own id,
    which stands for every element."""
    return job_id if array_job_id is None or index is None else f"{array_job_id}_{index}"


def _fresher(records: list[JobRecord], by_id: list[JobRecord]) -> list[JobRecord]:
    """``records`` with the accounting rows of the jobs ``by_id`` reports replaced by its rows:
    asked for by id, they are never older than the time window's."""
    answered = {r.job_id for r in by_id}
    return [r for r in records if r.source == "squeue" or r.job_id not in answered] + by_id


class SlurmClient:
    def __init__(self, cluster: SlurmCluster, transport: Transport) -> None:
        self.cluster = cluster
        self.transport = transport
        self._env = {"SLURM_CONF": cluster.spec.slurm_conf} if cluster.spec.slurm_conf else None
        self._info = _ClusterInfo()
        self._info_reading: Callable[[], tuple[ClusterLimits, list[PartitionInfo]]] | None = None
        self._limit_reading: tuple[Future[str], Future[str]] | None = None
        self._usage_ahead: Future[list[commands.JobUsage]] | None = None
        # The partitions without TRESBillingWeights, where Slurm bills a job its CPU count (None
        # until the partitions are read), and the partitions of the jobs of ours in the last sacct
        # answer that were not known to be among them then. Each query reads both once, on
        # whatever thread it runs: a race between two answers only changes which form the next
        # asks, never what a cost comes to.
        self._unweighted: frozenset[str] | None = None
        self._billed_on: frozenset[str | None] = frozenset()
        self._queries = ThreadPoolExecutor(max_workers=_QUERIES_AT_ONCE,
                                           thread_name_prefix=f"slurm {cluster.metadata.name}")

    @property
    def name(self) -> str:
        return self.cluster.metadata.name

    # -- one round trip ----------------------------------------------------------------------

    def _run(self, argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        try:
            return self.transport.run(argv, env=self._env, timeout=timeout)
        except TransportError as exc:
            raise SlurmUnavailable(f"{commands.command_name(argv)} on {self.transport.description}: {exc}") from exc

    def _checked(self, argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT) -> str:
        result = self._run(argv, timeout=timeout)
        if result.exit_code != 0:
            message = (f"{commands.command_name(argv)} failed ({result.exit_code}): "
                       f"{result.stderr.strip() or result.stdout.strip()}")
            if commands.classify_command_error(result.stderr) is SubmitErrorKind.TRANSIENT:
                raise SlurmUnavailable(message)
            raise SlurmError(message)
        return result.stdout

    # -- submission --------------------------------------------------------------------------

    def render(self, request: SubmitRequest) -> tuple[str, str]:
        """The script path on the cluster and the script text of ``request``."""
        paths = task_paths(cluster_workdir=self.cluster.spec.workdir, namespace=request.namespace,
                           workflow=request.workflow, task=request.task, tag=request.tag)
        script = render_script(
            workflow=request.workflow, namespace=request.namespace, task=request.task, tag=request.tag,
            resources=request.resources, run_dir=paths.run_dir, log_dir=paths.log_dir, indices=request.indices,
            parallelism=request.parallelism, dependencies=request.dependencies, hold=request.hold,
            exclude_nodes=request.exclude_nodes, inputs_from=request.inputs_from,
            items_file=request.items_file, end_records=endrecords.folder(self.cluster.spec.workdir),
        )
        return paths.script, script

    def submit(self, request: SubmitRequest) -> str:
        """Place the script and ``sbatch`` it; the job id.

        Not idempotent by itself: callers find an earlier submission by its identity tag
        (``observe``) before calling this again for the same key.
        """
        paths = task_paths(cluster_workdir=self.cluster.spec.workdir, namespace=request.namespace,
                           workflow=request.workflow, task=request.task, tag=request.tag)
        script_path, script = self.render(request)
        try:
            self.transport.make_dirs(paths.run_dir, paths.log_dir, posixpath.dirname(script_path))
            self.transport.write_file(script_path, script.encode(), mode=0o755)
        except TransportError as exc:
            raise SlurmUnavailable(f"placing {script_path} on {self.transport.description}: {exc}") from exc
        except OSError as exc:
            raise SubmitRefused(f"cannot write {script_path}: {exc}", at_capacity=False) from exc
        result = self._run(commands.sbatch_argv(script_path))
        if result.exit_code != 0:
            stderr = result.stderr.strip() or result.stdout.strip()
            kind = commands.classify_sbatch_error(stderr)
            message = f"sbatch refused {request.workflow}.{request.task.name}: {stderr}"
            if kind is SubmitErrorKind.TRANSIENT:
                raise SlurmUnavailable(message)
            raise SubmitRefused(message, at_capacity=kind is SubmitErrorKind.AT_CAPACITY)
        job_id = commands.parse_sbatch(result.stdout)
        log.info("submitted %s.%s attempt %d as job %s", request.workflow, request.task.name,
                 request.tag.attempt, job_id, extra={"job_id": job_id})
        return job_id

    # -- observation -------------------------------------------------------------------------

    def observe(self, *, since: datetime | None, job_ids: Sequence[str] = (),
                discover: Discovery | None = None, ending: Iterable[str] = (),
                names: Sequence[str] = ()) -> Observation:
        """Every job slurmctld still holds for the user, ended ones included (squeue), and those
        active since ``since`` (sacct; None: no time window, only the queries below), of these
        job ``names`` when given and no more than a few hundred (the window then leaves out the
        jobs of everyone else a privileged user sees, which can be thousands of rows).

        ``job_ids`` are jobs the caller knows it submitted: any of them that sacct's window does
        not show and squeue does not show live is asked for by id, because Slurm 22.05's time
        window leaves out jobs that were never eligible to start (held, or cancelled by
        --kill-on-invalid-dep while waiting). Usually every id is in one of the two answers, and
        a tick costs one squeue and one sacct. (Seen on 22.05.8: for about a second after a job
        ended, sacct by id already has it, with its exit code, but the time window does not.)
        ``discover`` adds, in the same answer, the jobs of those names active since its own start
        (one more sacct, beside the window's).

        ``ending`` are plain jobs (not arrays) that just recorded their end: the window lags them,
        so they are asked for by id at once, beside it, and their rows come from that answer.

        These queries leave AllocTRES out when the module's guarantees allow; our jobs whose cost
        needs it after all are asked for again by id, with it, before this returns.
        """
        now = datetime.now(UTC)
        billing, unweighted = self._asks_billing()
        queue = self._queries.submit(self._checked, commands.squeue_argv(user=None))
        window = None
        if since is not None:
            only = names if len(names) <= _NAMES_PER_QUERY else ()
            window = self._queries.submit(self._checked, commands.sacct_argv(since=since, user=None, names=only,
                                                                             billing=billing))
        by_name = None
        if discover is not None:
            # Past a few hundred names, one look over the whole window costs less than many by name.
            sought = discover.names if len(discover.names) <= _NAMES_PER_QUERY else ()
            by_name = self._queries.submit(self._checked, commands.sacct_argv(since=discover.since, user=None,
                                                                              names=sought, billing=billing))
        ended_now = sorted(set(ending))[:_IDS_PER_QUERY]
        by_id = None
        if ended_now:
            by_id = self._queries.submit(self._checked, commands.sacct_argv(since=_BY_ID_SINCE, user=None,
                                                                            job_ids=ended_now, billing=billing))
        if self._info_reading is None and self._info_due():
            self._info_reading = self._read_info()
        records: list[JobRecord] = []
        errors: list[str] = []
        queue_ok = accounting_ok = True
        try:
            records.extend(commands.parse_squeue(queue.result()))
        except (SlurmError, ValueError) as exc:
            queue_ok = False
            errors.append(str(exc))
        try:
            if window is not None:
                records.extend(commands.parse_sacct(window.result(), billing=billing))
            if by_id is not None:
                records = _fresher(records, commands.parse_sacct(by_id.result(), billing=billing))
            known = {(r.job_id, r.array_indices) for r in records if r.source != "squeue"}
            if by_name is not None:
                records.extend(r for r in commands.parse_sacct(by_name.result(), billing=billing)
                               if (r.job_id, r.array_indices) not in known)
            seen = reported_ids(records)
            missing = sorted({j for j in job_ids if j not in seen})
            for start in range(0, len(missing), _IDS_PER_QUERY):
                records.extend(commands.parse_sacct(self._checked(
                    commands.sacct_argv(since=_BY_ID_SINCE, user=None, job_ids=missing[start:start + _IDS_PER_QUERY],
                                        billing=billing)), billing=billing))
            if window is not None or by_id is not None or by_name is not None or missing:
                records = self._billed_records(records, asked=billing, unweighted=unweighted)
        except (SlurmError, ValueError) as exc:
            accounting_ok = False
            errors.append(str(exc))
        return Observation(tuple(records), queue_ok, accounting_ok, now, "; ".join(errors) or None)

    def _asks_billing(self) -> tuple[bool, frozenset[str] | None]:
        """Whether the next sacct asks for AllocTRES, and the partitions known to bill CPUs to
        judge its answer by: it does until those are known, and while the last answer had a job
        of ours on any other partition."""
        unweighted = self._unweighted
        return unweighted is None or not self._billed_on <= unweighted, unweighted

    def _billed_records(self, records: list[JobRecord], *, asked: bool,
                        unweighted: frozenset[str] | None) -> list[JobRecord]:
        """``records`` with the billing TRES of each of our jobs that needs it (``_wants_billing``):
        when the answers were ``asked`` without it, those jobs are asked again by id with it and
        their rows take the place of the lean ones. Sets what the next query asks."""
        # Past the partitions known to bill CPUs first: on such a cluster that is every row.
        unknown = records if unweighted is None else [r for r in records if r.partition not in unweighted]
        wanting = [r for r in unknown if r.source == "sacct"
                   and _wants_billing(r.partition, r.started_at, r.elapsed_seconds, unweighted)
                   and parse_tag(r.comment) is not None]
        wanting = self._unvouched(wanting, asked=asked, unweighted=unweighted)
        if asked or not wanting:
            return records
        ids = sorted({_element_id(r.job_id, r.array_job_id, r.array_indices[0] if r.array_indices else None)
                      for r in wanting})
        wanted = {(r.job_id, r.array_indices) for r in wanting}
        billed: dict[tuple[str, tuple[int, ...] | None], JobRecord] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            for r in commands.parse_sacct(self._checked(
                    commands.sacct_argv(since=_BY_ID_SINCE, user=None, job_ids=ids[start:start + _IDS_PER_QUERY]))):
                if (r.job_id, r.array_indices) in wanted:
                    billed[r.job_id, r.array_indices] = r
        return [billed.get((r.job_id, r.array_indices), r) if r.source == "sacct" else r for r in records]

    def _unvouched(self, wanting: list[_Billable], *, asked: bool,
                   unweighted: frozenset[str] | None) -> list[_Billable]:
        """Of the rows whose cost needs the billing TRES, those squeue does not place on a
        partition known to bill CPUs (when the answer was asked without AllocTRES); they set what
        the next query asks."""
        if not asked and unweighted is not None:
            billing_cpus = self._held_on(unweighted, {row.job_id for row in wanting if row.partition is None})
            wanting = [row for row in wanting if row.job_id not in billing_cpus]
        self._billed_on = frozenset(row.partition for row in wanting)
        return wanting

    def _held_on(self, unweighted: frozenset[str], unnamed: set[str]) -> set[str]:
        """Of these jobs (raw ids) accounting names no partition for, those slurmctld holds on one
        of ``unweighted``. slurmdbd names none for a second or two after a short job ends, which
        is when its end is first read; squeue, which holds an ended job for MinJobAge, answers in
        milliseconds where sacct with AllocTRES takes a round trip more. When squeue cannot say,
        none: the caller asks sacct."""
        if not unnamed:
            return set()
        try:
            result = self._run(commands.squeue_partitions_argv(sorted(unnamed)[:_IDS_PER_QUERY]))
            held = commands.parse_squeue_partitions(result.stdout) if result.exit_code == 0 else {}
        except (SlurmUnavailable, ValueError) as exc:
            log.debug("cluster %s: partitions of %d jobs: %s", self.name, len(unnamed), exc)
            return set()
        return {job_id for job_id in unnamed if held.get(job_id) in unweighted}

    def ask_usage_ahead(self, job_ids: Iterable[str]) -> None:
        """Starts reading the usage of these plain jobs (ones that just recorded their end) now,
        beside the observation that will report them ended, for the next :meth:`usage` to take:
        the history of a job's end then costs no sacct after the observation's. Forgets what an
        earlier call asked."""
        ids = sorted(set(job_ids))[:_IDS_PER_QUERY]
        self._usage_ahead = self._queries.submit(self._usage_of, ids) if ids else None

    def usage(self, job_ids: Sequence[str]) -> list[commands.JobUsage]:
        """What these finished jobs (an array's id: all its elements) asked for and used, as
        accounting reports them; jobs accounting does not have (yet) are missing from the answer.
        Jobs asked for ahead (:meth:`ask_usage_ahead`) are taken from that answer when it reports
        them ended. Raises SlurmError (SlurmUnavailable when worth a retry) or ValueError."""
        ids = set(job_ids)
        found: list[commands.JobUsage] = []
        ahead, self._usage_ahead = self._usage_ahead, None
        if ahead is not None:
            try:
                found = [u for u in ahead.result() if u.array_job_id is None and u.job_id in ids]
            except (SlurmError, ValueError) as exc:  # asked again below, in order
                log.debug("cluster %s: usage asked ahead: %s", self.name, exc)
            ids -= {u.job_id for u in found}
        return found + self._usage_of(sorted(ids))

    def _usage_of(self, job_ids: Sequence[str]) -> list[commands.JobUsage]:
        """Usage as ``usage`` reads it, asked without AllocTRES on the same terms as ``observe``."""
        if not job_ids:
            return []
        billing, unweighted = self._asks_billing()
        found = self._usage_read(job_ids, billing=billing)
        wanting = [u for u in found if _wants_billing(u.partition, u.started_at, u.elapsed_seconds, unweighted)]
        wanting = self._unvouched(wanting, asked=billing, unweighted=unweighted)
        if billing or not wanting:
            return found
        ids = sorted({_element_id(u.job_id, u.array_job_id, u.array_index) for u in wanting})
        wanted = {u.job_id for u in wanting}
        billed = {u.job_id: u for u in self._usage_read(ids, billing=True) if u.job_id in wanted}
        return [billed.get(u.job_id, u) for u in found]

    def _usage_read(self, job_ids: Sequence[str], *, billing: bool) -> list[commands.JobUsage]:
        found: list[commands.JobUsage] = []
        for start in range(0, len(job_ids), _IDS_PER_QUERY):
            argv = commands.sacct_usage_argv(job_ids=job_ids[start:start + _IDS_PER_QUERY], user=None, billing=billing)
            found.extend(commands.parse_sacct_usage(self._checked(argv), billing=billing))
        return found

    def info(self, *, refresh: bool = False) -> _ClusterInfo:
        """The cluster's limits, partitions and the user's visible submit limit, cached (read
        again every INFO_TTL_SECONDS, or now with ``refresh``). Raises SlurmError or ValueError.

        Waits for slurmctld's answers (limits, partitions) but not for accounting's submit limit
        unless ``refresh``: sacctmgr takes a few tenths of a second, and until its answer the last
        one known stands (none at first). Slurm enforces the limit itself, and a submission it
        refuses for it waits for capacity, so a first tick need not wait to learn it."""
        reading, self._info_reading = self._info_reading, None
        if reading is None and (refresh or self._info_due()):
            reading = self._read_info()
        if reading is not None:
            limits, partitions = reading()
            self._info = replace(self._info, limits=limits, partitions=partitions, read_at=time.monotonic())
            self._unweighted = frozenset(p.name for p in partitions if not p.billing_weights)
        self._take_submit_limit(wait=refresh)
        return self._info

    def _info_due(self) -> bool:
        return time.monotonic() - self._info.read_at > INFO_TTL_SECONDS

    def _read_info(self) -> Callable[[], tuple[ClusterLimits, list[PartitionInfo]]]:
        """Starts the four reads at once; the function returned waits for slurmctld's two and reads
        them. Accounting's two are taken by :meth:`_take_submit_limit` once answered."""
        spec = self.cluster.spec
        user = spec.ssh.user if spec.ssh is not None else getpass.getuser()
        config = self._queries.submit(self._checked, commands.show_config_argv())
        partitions = self._queries.submit(self._checked, commands.show_partitions_argv())
        self._limit_reading = (self._queries.submit(self._checked, commands.submit_limit_argv(user), timeout=20),
                               self._queries.submit(self._checked, commands.qos_limits_argv(), timeout=20))

        def answers() -> tuple[ClusterLimits, list[PartitionInfo]]:
            return commands.parse_config(config.result()), commands.parse_partitions(partitions.result())

        return answers

    def _take_submit_limit(self, *, wait: bool) -> None:
        if self._limit_reading is None:
            return
        associations, qos = self._limit_reading
        if not wait and not (associations.done() and qos.done()):
            return
        self._limit_reading = None
        try:
            submit_limit = commands.submit_limit(associations.result(), qos.result())
        except SlurmError as exc:
            # Accounting may be off or hidden from the user: no visible limit then, not an error.
            log.info("no submit limit visible on %s: %s", self.name, exc)
            submit_limit = None
        self._info = replace(self._info, submit_limit=submit_limit)

    def view(self, observation: Observation) -> ClusterView:
        """The cluster as the reconcile core sees it this tick."""
        info = self._info
        error = observation.error
        try:
            info = self.info()
        except (SlurmError, ValueError) as exc:
            error = "; ".join(filter(None, [error, f"cluster limits: {exc}"]))
        return cluster_view(
            name=self.name, records_ok=observation.queue_ok, accounting_ok=observation.accounting_ok,
            error=error, records=observation.records, limits=info.limits, partitions=info.partitions,
            submit_limit=info.submit_limit, observed_at=observation.observed_at,
        )

    def estimate_starts(self, queries: Iterable[JobSize]) -> dict[JobSize, datetime | None]:
        """When Slurm would start a job of each size if it were submitted now (``sbatch
        --test-only``: nothing is submitted), one call per distinct query. None for a size that
        cannot run here: one Slurm refuses (an unknown partition, more CPUs or memory than a node
        has) or one over its partition's limits, which Slurm's default EnforcePartLimits=NO
        would accept and leave pending for ever. Raises :class:`SlurmUnavailable` when the
        cluster cannot be asked, :class:`SlurmError` when its answer cannot be read."""
        answers: dict[JobSize, datetime | None] = {}
        for query in dict.fromkeys(queries):
            answers[query] = self._estimate_start(query)
        return answers

    def _estimate_start(self, query: JobSize) -> datetime | None:
        try:
            partitions = {partition.name: partition for partition in self.info().partitions}
        except ValueError as exc:
            raise SlurmError(f"partitions of {self.name}: {exc}") from exc
        known = partitions.get(query.partition)
        if known is not None and not known.admits(query):
            return None
        argv = commands.test_only_argv(partition=query.partition, nodes=query.nodes, cpus=query.cpus,
                                       time_seconds=query.time_seconds, memory_mib=query.memory_mib)
        result = self._run(argv)
        stderr = result.stderr.strip() or result.stdout.strip()
        if result.exit_code != 0:
            if commands.classify_command_error(stderr) is SubmitErrorKind.TRANSIENT:
                raise SlurmUnavailable(f"sbatch --test-only on {self.name} failed ({result.exit_code}): {stderr}")
            log.debug("%s cannot run %s: %s", self.name, query, stderr)
            return None
        try:
            return commands.parse_test_only(result.stderr).start
        except ValueError as exc:
            raise SlurmError(f"sbatch --test-only on {self.name}: {exc}") from exc

    # -- acting on jobs ----------------------------------------------------------------------

    def hold(self, job_ids: Sequence[str]) -> None:
        self._act(commands.hold_argv(job_ids))

    def release(self, job_ids: Sequence[str]) -> None:
        self._act(commands.release_argv(job_ids))

    def cancel(self, job_ids: Sequence[str]) -> None:
        self._act(commands.cancel_argv(job_ids))

    def _act(self, argv: Sequence[str]) -> None:
        result = self._run(argv)
        if result.exit_code == 0:
            return
        stderr = result.stderr.strip()
        if commands.ignorable_control_error(stderr):
            # The job moved on between our observation and this action; the next one shows where.
            log.info("%s: %s", commands.command_name(argv), stderr)
            return
        message = f"{' '.join(argv[:2])} failed ({result.exit_code}): {stderr}"
        if commands.classify_command_error(stderr) is SubmitErrorKind.TRANSIENT:
            raise SlurmUnavailable(message)
        raise SlurmError(message)

    def fetch_outputs(self, *, run_dir: str, patterns: Sequence[str], destination: Path) -> list[Path]:
        try:
            return self.transport.fetch(run_dir, patterns, destination)
        except TransportError as exc:
            raise SlurmUnavailable(f"fetching outputs from {run_dir}: {exc}") from exc

    def read_head(self, path: str, *, max_bytes: int) -> tuple[str, int]:
        """At most ``max_bytes + 1`` bytes of the file at ``path`` as text (bytes that are not
        UTF-8 become U+FFFD), and how many bytes that text stands for; more than ``max_bytes``
        says the file is larger than the caller accepts. Raises :class:`SlurmUnavailable` when the
        cluster cannot be reached, :class:`FileUnreadable` when the file cannot be read."""
        try:
            result = self.transport.run(["head", "-c", str(max_bytes + 1), "--", path],
                                        timeout=COMMAND_TIMEOUT)
        except TransportError as exc:
            raise SlurmUnavailable(f"reading {path} on {self.transport.description}: {exc}") from exc
        if result.exit_code != 0:
            raise FileUnreadable(result.stderr.strip() or f"head exited {result.exit_code}")
        # U+FFFD is three bytes, and stands for at least one: never less than what was read.
        return result.stdout, len(result.stdout.encode())

    def read_part(self, path: str, *, offset: int, limit: int) -> bytes | None:
        """At most ``limit`` bytes of the file at ``path`` from byte ``offset`` (fewer at its end),
        None when there is no such file: no Slurm command, so it may be asked every second.
        Raises :class:`SlurmUnavailable` when the cluster cannot be reached or the file read."""
        try:
            return self.transport.read_file(path, offset=offset, limit=limit)
        except TransportError as exc:
            raise SlurmUnavailable(f"reading {path} on {self.transport.description}: {exc}") from exc

    def ensure_file(self, path: str, data: bytes) -> bool:
        """Write ``data`` to ``path`` (read-only, atomically) unless a file is there already;
        whether it was written. For content-addressed files, whose name says what they hold."""
        try:
            if self.transport.run(["test", "-f", path], timeout=COMMAND_TIMEOUT).exit_code == 0:
                return False
            self.transport.make_dirs(posixpath.dirname(path))
            self.transport.write_file(path, data, mode=0o444)
        except TransportError as exc:
            raise SlurmUnavailable(f"writing {path} on {self.transport.description}: {exc}") from exc
        return True

    def fetch_declared(self, *, run_dir: str, patterns: Sequence[str],
                       destination: Path) -> tuple[list[Path], tuple[str, ...]]:
        """Fetch each pattern's files from ``run_dir`` into ``destination``: the files fetched, and
        the patterns that matched no file (one fetch per pattern, so each can be told apart)."""
        fetched: list[Path] = []
        unmatched: list[str] = []
        for pattern in patterns:
            found = self.fetch_outputs(run_dir=run_dir, patterns=[pattern], destination=destination)
            fetched.extend(path for path in found if path not in fetched)
            if not found:
                unmatched.append(pattern)
        return fetched, tuple(unmatched)

    def remove_tree(self, path: str, *, inside: str) -> str | None:
        """Remove the directory ``path`` and everything in it on the cluster (``rm -rf``); the
        path removed, None when there was nothing to remove.

        ``path`` must lie strictly inside ``inside``, both as written and once the cluster has
        resolved every symlink on the way, and ``inside`` must not resolve to ``/``: a workdir
        of "/" or a symlink planted on the way can never make this remove anything else
        (:class:`UnsafePath`, which is not worth retrying). ``--one-file-system`` keeps it from
        following into a filesystem mounted below.
        """
        if not (path.startswith("/") and inside.startswith("/")):
            raise UnsafePath(f"refusing to remove {path!r}: both it and {inside!r} must be absolute")
        written, root = posixpath.normpath(path), posixpath.normpath(inside)
        if root == "/" or not written.startswith(root + "/"):
            raise UnsafePath(f"refusing to remove {path}: it is not strictly inside {inside}, or that is /")
        resolved_root = self._resolved(root)
        resolved = self._resolved(written)
        if resolved_root is None or resolved is None:
            return None  # nothing there
        if resolved_root == "/" or not resolved.startswith(resolved_root.rstrip("/") + "/"):
            raise UnsafePath(f"refusing to remove {path}: it resolves to {resolved}, which is not strictly inside "
                             f"{inside} (resolved: {resolved_root})")
        result = self._run(["rm", "-rf", "--one-file-system", "--", resolved])
        if result.exit_code != 0:
            raise SlurmError(f"rm -rf {resolved} failed ({result.exit_code}): {result.stderr.strip()}")
        return resolved

    def _resolved(self, path: str) -> str | None:
        """``path`` with every symlink resolved on the cluster; None when it does not exist."""
        result = self._run(["realpath", "-e", "--", path])
        if result.exit_code == 0 and result.stdout.strip():
            return result.stdout.strip()
        if "No such file or directory" in result.stderr:
            return None
        raise SlurmError(f"realpath {path} failed ({result.exit_code}): {result.stderr.strip()}")

    def close(self) -> None:
        self._queries.shutdown(wait=False, cancel_futures=True)
        self.transport.close()
