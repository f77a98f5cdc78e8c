"""What the resilience scenarios watch while a fault lasts: every status the loop wrote, sampled
with the time it was read, so a scenario can say afterwards what status showed meanwhile and check
it against Slurm's accounting (a task shown Succeeded before its job had ended would be an
``Unknown`` counted as done)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, sacct_times


@dataclass(frozen=True)
class Sample:
    at: float  # time.time() when the status was read
    during_fault: bool
    status: dict[str, Any]

    def succeeded(self) -> set[str]:
        return {task for task, s in self.status.get("tasks", {}).items() if s.get("phase") == "Succeeded"}


@dataclass
class Watch:
    """Samples of one workflow's status, taken while a scenario waits."""

    loop: Loop
    name: str
    samples: list[Sample] = field(default_factory=list)
    fault_began: float | None = None
    fault_ended: float | None = None

    def sample(self) -> dict[str, Any]:
        status = self.loop.status(self.name)
        faulty = self.fault_began is not None and self.fault_ended is None
        self.samples.append(Sample(time.time(), faulty, status))
        if self.loop.process is not None and self.loop.process.poll() is not None:
            raise AssertionError(f"the loop exited ({self.loop.process.returncode}):\n"
                                 f"{self.loop.log.read_text()[-4000:]}")
        return status

    def until(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.sample()
            if status and predicate(status):
                return status
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name}: {what} not reached in {timeout}s; last status {status}\n"
                                     f"loop log:\n{self.loop.log.read_text()[-4000:]}")
            time.sleep(0.3)

    def for_seconds(self, seconds: float) -> None:
        """Keep sampling for ``seconds``: how long a scenario holds its fault, not a synchronisation."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sample()
            time.sleep(0.3)

    def begin_fault(self) -> None:
        self.fault_began = time.time()

    def end_fault(self) -> None:
        self.fault_ended = time.time()

    @property
    def fault_seconds(self) -> float:
        assert self.fault_began is not None and self.fault_ended is not None
        return self.fault_ended - self.fault_began

    def during(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.during_fault]

    def conditions_during(self) -> list[str]:
        """Each condition status showed while the fault lasted, as ``Type=Status(Reason)`` in the
        order first seen; Reconciling, which repeats Ready's reason, left out."""
        seen: dict[str, None] = {}
        for sample in self.during():
            for c in sample.status.get("conditions", []):
                if c["type"] != "Reconciling":
                    seen.setdefault(f"{c['type']}={c['status']}({c['reason']})")
        return list(seen)

    def phases_during(self) -> set[str]:
        return {t.get("phase", "") for sample in self.during() for t in sample.status.get("tasks", {}).values()}

    def shown_unreachable(self) -> bool:
        return any(c["type"] == "ClusterReachable" and c["status"] == "False"
                   for sample in self.during() for c in sample.status.get("conditions", []))

    def done_before_slurm(self, cluster: DevCluster, *, jobs: int) -> list[str]:
        """Every task some sample showed Succeeded before Slurm had accounted its job (the last
        element's, for an array) as ended: an outcome the loop did not know counted as done."""
        ends: dict[str, float] = {}
        for _, job_name, _, end in sacct_times(cluster, f"{self.name}.", at_least=jobs):
            task = job_name[len(self.name) + 1:]
            # sacct prints local time to the second, so an end read this way is never late.
            ends[task] = max(ends.get(task, 0.0), datetime.fromisoformat(end).timestamp())
        early = {f"{task} shown Succeeded at {datetime.fromtimestamp(sample.at).isoformat(timespec='seconds')}, "
                 f"its job ended {datetime.fromtimestamp(ends[task]).isoformat(timespec='seconds')}"
                 for sample in self.samples for task in sample.succeeded() if task in ends and ends[task] > sample.at}
        return sorted(early)


def ssh_sessions(cluster: DevCluster) -> list[int]:
    """The processes the dev cluster's sshd started for connections (its direct children)."""
    try:
        listener = int(cluster.layout.pid_file("sshd").read_text().strip())
    except (OSError, ValueError):
        return []
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == listener:
            children.append(int(entry.name))
    return children


def kill_processes(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
