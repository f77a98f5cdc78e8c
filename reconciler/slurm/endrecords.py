"""End records: how a job the reconciler submitted tells the loop it ended, without slurmctld.

Called by :mod:`.script` (the lines every batch script starts with), by the transports (the
folder they watch, and which names in it are records) and by the engine's end watch (which
records Slurm already reports ended, and removing them).

The format: one file per job, or per array element, in ``<cluster workdir>/.reconciler/ends/``,
named as Slurm names the job (``1234``, or ``1234_7`` for element 7 of array 1234: the array's
own id and Slurm's array task id), holding one line ``<job id> <array task id or -> <exit code>``.
The job writes it from a bash ``EXIT`` trap, so a failing script records too (one ended by a
signal as well, with the status of its last command: bash tells the trap no more), under a
temporary name starting with "." and then renamed: a watcher never sees half a record, on NFS
as well (where appending is not atomic). The trap keeps the script's exit code (or its death by
a signal) and writes nothing to the job's output or error streams.

Why one file per job in one folder, and who removes them: a record only wakes the loop, and the
loop removes the records of every job Slurm reports ended in one batched ``rm`` per cluster per
tick, so the folder holds only the jobs that ended since the last tick or two: a 30,000-element
array ending at once makes a folder of at most 30,000 short names for a moment, listed cheaply.
A record is never the truth: a job killed before its trap could run (scancel of a pending job,
TIMEOUT, OOM, NODE_FAIL) writes nothing, or its record arrives late, and Slurm's accounting
still tells the regular tick how it ended.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from ..core.observed import DONE_PHASES
from .commands import JobRecord
from .states import job_phase

FOLDER = posixpath.join(".reconciler", "ends")
_NAME = re.compile(r"([0-9]{1,12})(?:_([0-9]{1,9}))?")
_LINE = re.compile(r"([0-9]{1,12}) ([0-9]{1,9}|-) ([0-9]{1,3})")
# Removing records: one rm per this many names keeps its command line far below ARG_MAX.
REMOVE_BATCH = 2000


def folder(cluster_workdir: str) -> str:
    """Where a cluster's jobs write their end records."""
    return posixpath.join(cluster_workdir, FOLDER)


def is_record_name(name: str) -> bool:
    """Whether a file name in the folder is a finished record (not a temporary one, not foreign)."""
    return _NAME.fullmatch(name) is not None


def plain_jobs(names: Iterable[str]) -> set[str]:
    """The ids of the jobs that are not array elements among these record names."""
    return {name for name in names if (match := _NAME.fullmatch(name)) is not None and match.group(2) is None}


@dataclass(frozen=True)
class EndRecord:
    """What a job wrote as it ended: its id, its array task id (None: not an array element),
    and the exit code of its script."""

    job_id: str
    array_task: int | None
    exit_code: int

    @property
    def name(self) -> str:
        return self.job_id if self.array_task is None else f"{self.job_id}_{self.array_task}"


def parse_record(text: str) -> EndRecord:
    """The record in a record file's text; ValueError when it is not one."""
    match = _LINE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an end record: {text[:80]!r}")
    job_id, task, code = match.groups()
    return EndRecord(job_id=job_id, array_task=None if task == "-" else int(task), exit_code=int(code))


def trap_lines(directory: str) -> list[str]:
    """The lines a batch script starts with (after its first command): on exit, whatever ended
    it, write the job's record into ``directory``. The trap calls no ``exit``, so bash ends
    with the status (or the signal) the script ended with."""
    quoted = shlex.quote(directory)
    # $? is read first: anything the trap runs before would change it. SLURM_ARRAY_JOB_ID is the
    # array's own id, the one the record is named after. "|| true": a failed write must not end
    # a script running under `set -e` with the write's status.
    return [
        "reconciler_ended() {",
        "  code=$?",
        "  ( id=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}; task=${SLURM_ARRAY_TASK_ID:--}",
        f'    [ -n "$id" ] || exit 0; dir={quoted}; name=$id; [ "$task" = - ] || name=${{id}}_$task',
        '    mkdir -p -- "$dir" && printf \'%s %s %s\\n\' "$id" "$task" "$code" > "$dir/.$name.$$" &&'
        ' mv -f -- "$dir/.$name.$$" "$dir/$name" ) >/dev/null 2>&1 || true',
        "}",
        "trap reconciler_ended EXIT",
    ]


def ended_names(records: Iterable[JobRecord]) -> set[str]:
    """The record names of the jobs and array elements that accounting (sacct) reports ended:
    those the loop has learnt the end of from Slurm itself, whose records can go. squeue's ended
    states are not enough: the observation waits for sacct's word on a failure."""
    names: set[str] = set()
    for record in records:
        if record.source != "sacct" or job_phase(record.state, record.reason)[0] not in DONE_PHASES:
            continue
        if record.array_job_id is not None and record.array_indices is not None:
            names.update(f"{record.array_job_id}_{index}" for index in record.array_indices)
        else:
            names.add(record.job_id)
    return names
