"""An element sighted once, as most elements of a big array are, is summed up by a shorter path
than one tried several times: both must say the same."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.api import FailureKind, TaskPhase
from reconciler.core.observed import JobOutcome
from reconciler.core.taskruns import _element_of, _first_element, _Sighting

from .reconcile_world import T0

OUTCOMES = [
    JobOutcome(phase=TaskPhase.SUBMITTED, reason="Priority"),
    JobOutcome(phase=TaskPhase.RUNNING, started_at=T0, node_list="cn01"),
    JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0, started_at=T0, finished_at=T0 + timedelta(minutes=1),
               core_seconds=60),
    JobOutcome(phase=TaskPhase.FAILED, failure=FailureKind.OUT_OF_MEMORY, exit_code=137, started_at=T0,
               finished_at=T0, node_list="cn02"),
    JobOutcome(phase=TaskPhase.CANCELLED, reason="DependencyNeverSatisfied"),
    JobOutcome(phase=TaskPhase.CANCELLED, reason=None, node_list=None),
    JobOutcome(phase=TaskPhase.CANCELLED, reason="None", node_list="cn03", started_at=T0),
    JobOutcome(phase=TaskPhase.UNKNOWN),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: f"{o.phase.value}-{o.reason}")
@pytest.mark.parametrize("by_reconciler", [False, True])
@pytest.mark.parametrize("index", [None, 7])
def test_an_element_sighted_once_is_summed_up_as_any_other(outcome, by_reconciler, index):
    sighting = _Sighting(attempt=2, job_id="123_7", outcome=outcome, by_reconciler=by_reconciler)
    assert _first_element(index, sighting) == _element_of(index, [sighting])
