"""The identity tag that ties a Slurm job to a workflow's task attempt.

Rendered into ``--comment`` by the script renderer and parsed back from squeue and sacct output
by the observation layer. The tag is what lets a restarted reconciler find its jobs instead of
submitting them twice, so it is deterministic, round-trips exactly, and parsing never raises:
anything that is not a well-formed tag of this version is simply not ours. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..core.observed import JobKey

TAG_PREFIX = "slurm-reconciler.v1"

# Kept to characters that need no quoting in an #SBATCH line, a squeue/sacct field separated by
# "|", or a shell word; ":" separates the fields, so it is excluded too.
_WORD = re.compile(r"[A-Za-z0-9._-]+")
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() would also accept "٣" or " 3"
_TAG = re.compile(rf"{re.escape(TAG_PREFIX)}:({_WORD.pattern}):({_WORD.pattern}):({_NUMBER.pattern}):"
                  rf"({_NUMBER.pattern}):({_WORD.pattern})")
# Every tick reads the same comments again, one per job Slurm still reports (tens of thousands on
# a large fan-out): their tags are remembered rather than parsed again. JobTag is immutable.
_REMEMBERED_TAGS = 1 << 17


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


@lru_cache(maxsize=_REMEMBERED_TAGS)
def parse_tag(comment: str | None) -> JobTag | None:
    """The tag in a job's comment, or None for jobs that are not ours (or carry a damaged tag)."""
    if not comment:
        return None
    found = _TAG.fullmatch(comment.strip())
    if found is None:
        return None
    uid, task, attempt, part, fingerprint = found.groups()
    return JobTag(uid=uid, task=task, attempt=int(attempt), part=int(part), fingerprint=fingerprint)
