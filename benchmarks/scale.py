"""Many workflows reconciled at once by one loop: the whole controller (source, store, planner,
executor) against a Slurm held in memory (:mod:`benchmarks.memslurm`), counting the Slurm
commands each tick runs and its CPU time. Called by :mod:`benchmarks.__main__`
(``scripts/bench --scale``).

Seven ticks: the first submits everything, the second sees every job running, the third sees
them still running and plans every workflow once more, confirming its status, the fourth is
the steady tick of running jobs (within the same minute, to which a running job's time counts,
so no workflow is planned again), the fifth sees every job completed, the sixth finds nothing
left to do (and plans every workflow once more), the seventh is the steady tick the loop then
runs over and over, in which no workflow is planned again. Observing a cluster should cost
one ``squeue`` and one ``sacct`` whatever the number of jobs; the table shows what each tick ran.
"""

from __future__ import annotations

import gc
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.api import SlurmClusterSpec
from reconciler.engine.controller import Controller
from reconciler.engine.heap import settle_for_the_loop
from reconciler.manifests.loader import load_text
from reconciler.sources.base import Snapshot
from reconciler.store.database import Store

from .memslurm import MemorySlurm

CLUSTER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: dev}
spec: {workdir: /work/dev}
"""


def manifests(workflows: int, tasks: int) -> str:
    documents = [CLUSTER]
    for w in range(workflows):
        lines = "\n".join(f'    - {{name: t{i}, script: "true"}}' for i in range(tasks))
        documents.append("apiVersion: hpc.reconciler.dev/v1alpha1\nkind: Workflow\n"
                         f"metadata: {{name: w{w}}}\nspec:\n  tasks:\n{lines}\n")
    return "---\n".join(documents)


class TextSource:
    """Manifests held as one YAML text."""

    description = "manifests in memory"

    def __init__(self, text: str) -> None:
        self._snapshot = Snapshot(load=load_text(text, filename="plans.yaml"), revision=None, files=("plans.yaml",))
        self._woken = threading.Event()

    def read(self) -> Snapshot:
        return self._snapshot

    def wait(self, timeout: float) -> bool:
        woken = self._woken.wait(timeout)
        self._woken.clear()
        return woken

    def wake(self) -> None:
        self._woken.set()

    def close(self) -> None:
        pass


@contextmanager
def loop_heap() -> Iterator[None]:
    """The collector as ``reconciler run`` sets it before its first tick, for the ticks measured;
    as it was afterwards."""
    thresholds = gc.get_threshold()
    settle_for_the_loop()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@contextmanager
def controller(workflows: int, tasks: int, slurm: MemorySlurm) -> Iterator[Controller]:
    def connect(spec: SlurmClusterSpec, *, private_key: str | None) -> MemorySlurm:
        return slurm

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory, \
            Store(Path(directory) / "state.db") as store:
        loop = Controller(source=TextSource(manifests(workflows, tasks)), store=store, state_dir=Path(directory),
                          interval=10.0, connect=connect)
        try:
            yield loop
        finally:
            loop.close()


def measure(workflows: int = 200, tasks: int = 50) -> dict[str, object]:
    slurm = MemorySlurm()
    ticks = []
    with controller(workflows, tasks, slurm) as loop, loop_heap():
        for label, state in (("submit", None), ("all running", "RUNNING"), ("still running", None),
                             ("running, steady", None), ("all completed", "COMPLETED"), ("nothing left to do", None),
                             ("steady", None)):
            if state is not None:
                slurm.advance(state)
            slurm.counts.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            loop.tick()
            ticks.append({"tick": label, "cpu_s": round(time.process_time() - cpu, 3),
                          "wall_s": round(time.perf_counter() - wall, 3),
                          "commands": dict(sorted(slurm.counts.items()))})
        phases = [w.status.phase.value if w.status else "Pending" for w in loop.store.active_workflows()]
    return {"workflows": workflows, "tasks_per_workflow": tasks, "jobs": len(slurm.jobs), "ticks": ticks,
            "succeeded": phases.count("Succeeded")}
