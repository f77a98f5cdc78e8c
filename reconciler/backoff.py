"""Jittered exponential backoff: how long to wait after a run of failures before trying again.

Called by the control loop (per cluster, and after a tick that failed as a whole), by the
informers' list/watch loop, by the SSH transport between reconnects and by the status writer
between conflicting writes. Each caller keeps its own base, cap and jitter; the rule is the same
for all:

* the wait after the n-th failure in a row is ``base * 2**(n-1)``, at most ``cap``, times a
  factor drawn uniformly from ``jitter`` (``(low, high)``); the cap applies before the jitter,
  so waits that reached the cap stay spread out too, and callers that failed together (replicas,
  informers, clusters behind one network fault) do not all retry at the same moment;
* any number of failures gives a finite wait (no overflow after a long outage), and a wait is
  never negative.

Pure apart from the random jitter and, in :class:`Backoff`, the monotonic clock.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

# A factor that leaves the wait exactly as computed: for a caller nobody retries alongside.
NO_JITTER = (1.0, 1.0)
# Past this many doublings every cap in use has long been reached; stopping the exponent here
# keeps the arithmetic finite however long an outage lasts.
_MAX_DOUBLINGS = 62


def backoff_delay(failures: int, *, base: float, cap: float, jitter: tuple[float, float]) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
    low, high = jitter
    if failures < 1:
        raise ValueError(f"failures counts from 1, got {failures}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap cannot be negative")
    if not 0 <= low <= high:
        raise ValueError(f"jitter must be (low, high) with 0 <= low <= high, got {jitter}")
    return min(cap, base * 2.0 ** min(failures - 1, _MAX_DOUBLINGS)) * random.uniform(low, high)


@dataclass
class Backoff:
    """Failures in a row of one thing the caller retries later (a cluster the loop cannot
    reach), and the moment (``time.monotonic``) before which it should not be tried again."""

    base: float
    cap: float
    jitter: tuple[float, float]
    failures: int = 0
    retry_at: float = 0.0

    def failed(self) -> float:
        """Count a failure; the wait before the next try."""
        self.failures += 1
        delay = backoff_delay(self.failures, base=self.base, cap=self.cap, jitter=self.jitter)
        self.retry_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    @property
    def waiting(self) -> bool:
        return time.monotonic() < self.retry_at

    def remaining(self) -> float:
        """Seconds left before the next try (0 when it may be tried now)."""
        return max(0.0, self.retry_at - time.monotonic())
