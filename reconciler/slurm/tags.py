"""The identity tag that ties a Slurm job to a workflow's task attempt.

Rendered into ``--comment`` by the script renderer and parsed back from squeue and sacct output
by the observation layer. The tag is what lets a restarted reconciler find its jobs instead of
submitting them twice, so it is deterministic, round-trips exactly, and parsing never raises:
anything that is not a well-formed tag of this version is simply not ours. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.observed import JobKey

TAG_PREFIX = "slurm-reconciler.v1"

# Kept to characters that need no quoting in an #SBATCH line, a squeue/sacct field separated by
# "|", or a shell word; ":" separates the fields, so it is excluded too.
_WORD = re.compile(r"[A-Za-z0-9._-]+")
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() would also accept "٣" or " 3"


@dataclass(frozen=True)
class JobTag:
    uid: str  # the workflow's uid
    task: str
    attempt: int
    part: int  # first task index of an array chunk; 0 for a plain job
    fingerprint: str

    @property
    def key(self) -> JobKey:
        return JobKey(task=self.task, attempt=self.attempt, part=self.part)


def format_tag(tag: JobTag) -> str:
    """The ``--comment`` text for a job: ``slurm-reconciler.v1:<uid>:<task>:<attempt>:<part>:<fp>``."""
    for field_name, value in (("uid", tag.uid), ("task", tag.task), ("fingerprint", tag.fingerprint)):
        if not _WORD.fullmatch(value):
            raise ValueError(f"{field_name} {value!r} must be made of [A-Za-z0-9._-]")
    for field_name, number in (("attempt", tag.attempt), ("part", tag.part)):
        if not _NUMBER.fullmatch(str(number)):
            raise ValueError(f"{field_name} {number!r} must be an integer from 0 to 999999999")
    return f"{TAG_PREFIX}:{tag.uid}:{tag.task}:{tag.attempt}:{tag.part}:{tag.fingerprint}"


def parse_tag(comment: str | None) -> JobTag | None:
    """The tag in a job's comment, or None for jobs that are not ours (or carry a damaged tag)."""
    if not comment:
        return None
    fields = comment.strip().split(":")
    if len(fields) != 6 or fields[0] != TAG_PREFIX:
        return None
    _, uid, task, attempt, part, fingerprint = fields
    if not all(_WORD.fullmatch(value) for value in (uid, task, fingerprint)):
        return None
    if not (_NUMBER.fullmatch(attempt) and _NUMBER.fullmatch(part)):
        return None
    return JobTag(uid=uid, task=task, attempt=int(attempt), part=int(part), fingerprint=fingerprint)
