"""Slurm job states as squeue and sacct (22.05) print them, mapped to task phases."""

import pytest

from reconciler.api import FailureKind, TaskPhase
from reconciler.slurm.states import job_phase, parse_exit_code

P, F = TaskPhase, FailureKind


@pytest.mark.parametrize("state, reason, expected", [
    ("PENDING", "Priority", (P.SUBMITTED, None)),
    ("PENDING", None, (P.SUBMITTED, None)),
    ("PENDING", "Dependency", (P.SUBMITTED, None)),
    ("PENDING", "JobHeldUser", (P.HELD, None)),
    ("PENDING", "JobHeldAdmin", (P.HELD, None)),
    ("PENDING", "JobHeldUser,JobHeldAdmin", (P.HELD, None)),  # squeue joins reasons of merged elements
    ("REQUEUED", None, (P.SUBMITTED, None)),
    ("REQUEUE_FED", None, (P.SUBMITTED, None)),
    ("REQUEUE_HOLD", None, (P.HELD, None)),
    ("RUNNING", "None", (P.RUNNING, None)),
    ("COMPLETING", None, (P.RUNNING, None)),
    ("CONFIGURING", None, (P.RUNNING, None)),
    ("SUSPENDED", None, (P.RUNNING, None)),
    ("STAGE_OUT", None, (P.RUNNING, None)),
    ("SIGNALING", None, (P.RUNNING, None)),
    ("RESIZING", None, (P.RUNNING, None)),
    ("COMPLETED", None, (P.SUCCEEDED, None)),
    ("FAILED", None, (P.FAILED, F.FAILED)),
    ("SPECIAL_EXIT", None, (P.FAILED, F.FAILED)),
    ("TIMEOUT", None, (P.FAILED, F.TIMEOUT)),
    ("DEADLINE", None, (P.FAILED, F.TIMEOUT)),
    ("OUT_OF_MEMORY", None, (P.FAILED, F.OUT_OF_MEMORY)),
    ("NODE_FAIL", None, (P.FAILED, F.NODE_FAIL)),
    ("BOOT_FAIL", None, (P.FAILED, F.NODE_FAIL)),
    ("PREEMPTED", None, (P.FAILED, F.PREEMPTED)),
    ("CANCELLED", None, (P.CANCELLED, None)),
    ("CANCELLED by 0", "JobHeldUser", (P.CANCELLED, None)),  # sacct's spelling; a held job cancelled
    ("CANCELLED+", None, (P.CANCELLED, None)),  # sacct without -P truncates
    ("REVOKED", None, (P.CANCELLED, None)),
    ("  COMPLETED ", None, (P.SUCCEEDED, None)),
    ("BRAND_NEW_STATE", None, (P.UNKNOWN, None)),
    ("", None, (P.UNKNOWN, None)),
    ("R", None, (P.UNKNOWN, None)),  # short codes are never asked for
])
def test_job_phase(state, reason, expected):
    assert job_phase(state, reason) == expected


@pytest.mark.parametrize("text, expected", [
    ("0:0", (0, 0)), ("3:0", (3, 0)), ("0:9", (0, 9)), ("0:15", (0, 15)), ("255:0", (255, 0)),
    ("2", (2, None)), ("", (None, None)), ("x:y", (None, None)), ("-1:0", (None, None)), (" 1:0\n", (1, 0)),
])
def test_parse_exit_code(text, expected):
    assert parse_exit_code(text) == expected
