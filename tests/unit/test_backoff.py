"""The one backoff rule: its bounds for every failure count, its cap, its jitter, and the
per-cluster state the control loop keeps."""

from __future__ import annotations

import math

import pytest

from reconciler.backoff import NO_JITTER, Backoff, backoff_delay


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8, 20, 1100])
@pytest.mark.parametrize(("base", "cap", "jitter"), [
    (30.0, 60.0, (0.8, 1.2)),  # the control loop, per cluster
    (1.0, 30.0, (0.8, 1.2)),  # the informers
    (0.5, math.inf, (0.5, 1.5)),  # SSH reconnects
    (0.05, 1.6, (0.0, 1.0)),  # status conflicts
])
def test_the_delay_stays_within_the_capped_doubling_times_the_jitter(failures, base, cap, jitter):
    nominal = min(cap, base * 2 ** min(failures - 1, 62))
    for _ in range(200):
        delay = backoff_delay(failures, base=base, cap=cap, jitter=jitter)
        assert math.isfinite(delay)
        assert nominal * jitter[0] <= delay <= nominal * jitter[1]


def test_the_delay_doubles_until_the_cap_then_stays_there():
    delays = [backoff_delay(n, base=1.0, cap=10.0, jitter=NO_JITTER) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_the_jitter_spreads_the_waits_over_its_whole_range():
    delays = [backoff_delay(3, base=1.0, cap=60.0, jitter=(0.5, 1.5)) for _ in range(2000)]
    assert min(delays) < 2.2 and max(delays) > 5.8  # nominal 4.0: spread from 2.0 to 6.0


@pytest.mark.parametrize("arguments", [
    (0, 1.0, 1.0, NO_JITTER),
    (1, -1.0, 1.0, NO_JITTER),
    (1, 1.0, 1.0, (1.2, 0.8)),
    (1, 1.0, 1.0, (-0.1, 1.0)),
])
def test_nonsense_is_refused(arguments):
    failures, base, cap, jitter = arguments
    with pytest.raises(ValueError):
        backoff_delay(failures, base=base, cap=cap, jitter=jitter)


def test_backoff_waits_after_a_failure_and_forgets_on_success():
    backoff = Backoff(base=60.0, cap=600.0, jitter=NO_JITTER)
    assert not backoff.waiting and backoff.remaining() == 0.0
    assert backoff.failed() == 60.0
    assert backoff.waiting and 59.0 < backoff.remaining() <= 60.0
    assert backoff.failed() == 120.0
    assert backoff.failures == 2
    backoff.succeeded()
    assert not backoff.waiting and backoff.failures == 0
    assert backoff.failed() == 60.0  # counting starts over
