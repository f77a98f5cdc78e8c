"""The reconciler against the floor, on the dev cluster: the same DAG run by
:file:`benchmarks/floor.sh` (plain ``sbatch`` with ``afterok``, waiting until ``squeue`` is empty),
by ``reconciler run --until-done`` on a manifest folder (a process started for it: Python's
start and the first look at the cluster included), and by a loop already running on a folder
(as a service meets a new workflow: from the manifest landing in the folder to the store saying
Succeeded), alternately, N times each; and the time from a ``git push`` into a repository the
loop follows to the loop's first ``sbatch``.

slurmctld starts jobs on a one-second cadence (its background loop wakes every second to
schedule what became eligible), so a run's time depends on where in that second its first
``sbatch`` lands. Run back to back, each case would always start at about the same place in the
second, set by how the case before it ended, and the ratio would measure that phase rather than
the reconciler. Each timed run therefore starts after a random pause of up to a second: every
case then meets the cadence at a uniformly random phase, and its median and mean hold the
cadence's half second on average alike.

Called by :mod:`benchmarks.__main__` (``scripts/bench --floor``). Needs the dev cluster (started
here, which needs root) and the lock the tests share it through: the caller runs this under
``flock /tmp/slurm-tests.lock``. Every run gets a fresh state directory; nothing is left behind.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reconciler.api import WorkflowPhase
from reconciler.devcluster import DevCluster
from reconciler.store.database import Store

ROOT = Path(__file__).resolve().parent.parent
# slurmctld's background loop wakes once a second to start jobs that became eligible.
SCHEDULER_CADENCE_S = 1.0
FLOOR = Path(__file__).resolve().parent / "floor.sh"
HEADER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  defaults:
    resources: {{partition: debug, time: "00:05:00", memory: 20M}}
  tasks:
"""


@dataclass(frozen=True)
class Shape:
    key: str
    title: str
    floor: tuple[str, ...]  # floor.sh's arguments
    tasks: str  # the workflow's task list, YAML indented four spaces

    def manifest(self, name: str) -> str:
        return HEADER.format(name=name) + self.tasks


def _fan(width: int) -> str:
    return (f'    - {{name: first, script: "true"}}\n'
            f'    - {{name: middle, dependsOn: [first], script: "true", array: {{count: {width}}}}}\n'
            f'    - {{name: last, dependsOn: [middle], script: "true"}}\n')


SHAPES = {
    shape.key: shape for shape in (
        Shape("chain", "3-step chain of `sleep 1`", ("chain", "3"),
              '    - {name: a, script: "sleep 1"}\n'
              '    - {name: b, dependsOn: [a], script: "sleep 1"}\n'
              '    - {name: c, dependsOn: [b], script: "sleep 1"}\n'),
        Shape("fan100", "1 → 100-element array of `true` → 1", ("fan", "100"), _fan(100)),
        Shape("fan1000", "1 → 1,000 → 1", ("fan", "1000"), _fan(1000)),
        Shape("array30000", "30,000 `true` elements, split by MaxArraySize", ("array", "30000"),
              '    - {name: tiles, script: "true", array: {count: 30000}}\n'),
    )
}
QUICK = ("chain", "fan100", "fan1000")
# Too long to run a third way: the running loop is timed on the other shapes.
COLD_ONLY = ("array30000",)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class Bench:
    def __init__(self, cluster: DevCluster, scratch: Path, *, interval: float | None, timeout: float) -> None:
        self.cluster = cluster
        self.scratch = scratch
        self.interval = interval
        self.timeout = timeout
        self.env = {**os.environ, **cluster.env, "RECONCILER_LOG_LEVEL": "WARNING"}
        self.cluster_manifest = cluster.manifest_path("local").read_text()
        self._runs = 0
        self._phases = random.Random()

    def random_phase(self) -> None:
        """Waits up to one cadence of slurmctld's scheduler (see the module's docstring)."""
        time.sleep(self._phases.random() * SCHEDULER_CADENCE_S)

    def floor(self, shape: Shape) -> float:
        return _timed(lambda: subprocess.run(["bash", str(FLOOR), *shape.floor], env=self.env, check=True,
                                             timeout=self.timeout))

    def reconciler(self, shape: Shape) -> float:
        self._runs += 1
        folder = self.scratch / f"run{self._runs}"
        (folder / "plans").mkdir(parents=True)
        (folder / "plans" / "cluster.yaml").write_text(self.cluster_manifest)
        (folder / "plans" / "workflow.yaml").write_text(shape.manifest(f"bench-{os.getpid()}-{self._runs}"))
        argv = [sys.executable, "-m", "reconciler", "run", "--source", str(folder / "plans"),
                "--state-dir", str(folder / "state"), "--until-done",
                *(("--interval", f"{self.interval:g}") if self.interval is not None else ())]

        def run() -> None:
            done = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=self.timeout)
            if done.returncode != 0:
                raise RuntimeError(f"reconciler run --until-done exited {done.returncode}: {done.stderr[-2000:]}")

        seconds = _timed(run)
        shutil.rmtree(folder, ignore_errors=True)
        return seconds

    def compare(self, shape: Shape, runs: int, say: Callable[[str], None]) -> dict[str, object]:
        floors: list[float] = []
        reconcilers: list[float] = []
        running: list[float] = []
        busy: list[dict[str, float]] = []
        with RunningLoop(self, shape.key) as service:
            for n in range(runs):
                self.random_phase()
                floors.append(self.floor(shape))
                self.random_phase()
                reconcilers.append(self.reconciler(shape))
                if shape.key not in COLD_ONLY:
                    self.random_phase()
                    seconds, spent = service.time(shape)
                    running.append(seconds)
                    busy.append(spent)
                say(f"  {shape.key} run {n + 1}/{runs}: floor {floors[-1]:.2f}s, reconciler {reconcilers[-1]:.2f}s"
                    + (f", running loop {running[-1]:.2f}s" if running else ""))
        floor, ours = statistics.median(floors), statistics.median(reconcilers)
        floor_mean = statistics.fmean(floors)
        row: dict[str, object] = {
            "key": shape.key, "workflow": shape.title, "runs": runs, "floor_s": round(floor, 2),
            "reconciler_s": round(ours, 2), "ratio": round(ours / floor, 2),
            "ratio_of_means": round(statistics.fmean(reconcilers) / floor_mean, 3),
            "floor_all_s": [round(s, 2) for s in floors], "reconciler_all_s": [round(s, 2) for s in reconcilers]}
        if running:
            median = sorted(range(len(running)), key=running.__getitem__)[len(running) // 2]
            row.update(running_s=round(running[median], 2), running_ratio=round(running[median] / floor, 2),
                       running_all_s=[round(s, 2) for s in running],
                       running_ratio_of_means=round(statistics.fmean(running) / floor_mean, 3),
                       running_loop_busy={key: round(value, 3) for key, value in busy[median].items()})
        return row

    def push_latency(self, runs: int, say: Callable[[str], None]) -> dict[str, object]:
        """The loop follows a bare repository; each push adds a one-task workflow, and the time
        from the push's return to the loop's first ``sbatch`` after it is read from an ``sbatch``
        first in the loop's PATH that notes the time and hands over to Slurm's."""
        real = shutil.which("sbatch", path=self.env.get("PATH"))
        if real is None:
            raise RuntimeError("sbatch is not on PATH")
        folder = self.scratch / "push"
        bin_dir, stamps = folder / "bin", folder / "sbatch-times"
        bin_dir.mkdir(parents=True)
        wrapper = bin_dir / "sbatch"
        wrapper.write_text(f'#!/bin/sh\ndate +%s.%N >> "{stamps}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
        bare, work = folder / "plans.git", folder / "checkout"

        def git(*args: str, cwd: Path = work) -> None:
            subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args], cwd=cwd,
                           check=True, capture_output=True)

        git("init", "-q", "--bare", "-b", "main", str(bare), cwd=folder)
        git("init", "-q", "-b", "main", str(work), cwd=folder)
        git("remote", "add", "origin", str(bare))
        (work / "clusters").mkdir()
        (work / "clusters" / "dev.yaml").write_text(self.cluster_manifest)
        git("add", "-A")
        git("commit", "-qm", "the cluster")
        git("push", "-q", "origin", "main")
        env = {**self.env, "PATH": f"{bin_dir}:{self.env.get('PATH', '')}"}
        # A long interval: only the push can wake the loop in time.
        loop = subprocess.Popen([sys.executable, "-m", "reconciler", "run", "--source", f"file://{bare}",
                                 "--state-dir", str(folder / "state"), "--interval", "60"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        latencies = []
        try:
            for n in range(runs + 1):
                before = len(stamps.read_text().splitlines()) if stamps.exists() else 0
                (work / f"w{n}.yaml").write_text(HEADER.format(name=f"push-{os.getpid()}-{n}")
                                                 + '    - {name: only, script: "true"}\n')
                git("add", "-A")
                git("commit", "-qm", f"workflow {n}")
                git("push", "-q", "origin", "main")
                pushed = time.time()
                deadline = time.monotonic() + 60
                while not (stamps.exists() and len(stamps.read_text().splitlines()) > before):
                    if time.monotonic() > deadline or loop.poll() is not None:
                        raise RuntimeError("the loop did not submit the pushed workflow within 60s")
                    time.sleep(0.01)
                submitted = float(stamps.read_text().splitlines()[before])
                if n:  # the first push also pays for the loop's start, its first clone and tick
                    latencies.append(submitted - pushed)
                    say(f"  push {n}/{runs}: first sbatch {submitted - pushed:.3f}s after the push")
                # The next push must not land while this tick still runs.
                time.sleep(1.5)
        finally:
            loop.terminate()
            loop.wait(timeout=30)
        return {"runs": runs, "median_s": round(statistics.median(latencies), 3),
                "all_s": [round(s, 3) for s in latencies]}


class RunningLoop:
    """``reconciler run --interval 60`` on a folder of its own, started (and warmed up by a
    one-task workflow) before any clock runs. ``time`` drops a workflow's manifest into the folder,
    written aside and renamed in as an editor or a checkout does, and times until the loop's store
    says it Succeeded: only the folder's watch and the jobs' end records can wake the loop in time.
    It also says where the loop's own time went meanwhile, from its metrics endpoint: ticks, the
    seconds they took, and the seconds of each Slurm command (squeue and sacct run at once, so
    their sum can exceed the ticks')."""

    def __init__(self, bench: Bench, key: str) -> None:
        self.bench = bench
        self.folder = bench.scratch / f"running-{key}"
        self.plans = self.folder / "plans"
        self._runs = 0
        self._loop: subprocess.Popen[bytes] | None = None
        self._store: Store | None = None
        self._metrics_port = _free_port()

    def __enter__(self) -> RunningLoop:
        self.plans.mkdir(parents=True)
        (self.plans / "cluster.yaml").write_text(self.bench.cluster_manifest)
        self._loop = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run", "--source", str(self.plans),
             "--state-dir", str(self.folder / "state"), "--interval", "60",
             "--metrics-port", str(self._metrics_port)],
            cwd=ROOT, env=self.bench.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        warm = f"warm-{os.getpid()}"
        self._drop(warm, HEADER.format(name=warm) + '    - {name: only, script: "true"}\n')
        return self

    def __exit__(self, *_: object) -> None:
        if self._store is not None:
            self._store.close()
        if self._loop is not None:
            self._loop.terminate()
            self._loop.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def time(self, shape: Shape) -> tuple[float, dict[str, float]]:
        self._runs += 1
        name = f"running-{os.getpid()}-{shape.key}-{self._runs}"
        before = self._spent()
        seconds = self._drop(name, shape.manifest(name))
        after = self._spent()
        return seconds, {key: value - before.get(key, 0.0) for key, value in after.items()}

    def _spent(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self._metrics_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        spent: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = {"reconciler_ticks_total": "ticks", "reconciler_tick_seconds_sum": "tick_s"}.get(sample.name)
                if sample.name == "reconciler_command_seconds_sum":
                    key = f"{sample.labels['command']}_s"
                if key is not None:
                    spent[key] = spent.get(key, 0.0) + sample.value
        return spent

    def _drop(self, workflow: str, manifest: str) -> float:
        """Times ``manifest``, which declares the workflow ``workflow``, from landing to Succeeded."""
        aside = self.folder / f".{workflow}.yaml"
        aside.write_text(manifest)
        started = time.perf_counter()
        aside.rename(self.plans / f"{workflow}.yaml")
        deadline = time.monotonic() + self.bench.timeout
        while (phase := self._phase(workflow)) is not WorkflowPhase.SUCCEEDED:
            if phase in (WorkflowPhase.FAILED, WorkflowPhase.INVALID) or time.monotonic() > deadline:
                raise RuntimeError(f"workflow {workflow} in the running loop: {phase}")
            if self._loop is not None and self._loop.poll() is not None:
                raise RuntimeError(f"the running loop exited {self._loop.returncode}")
            time.sleep(0.01)
        return time.perf_counter() - started

    def _phase(self, workflow: str) -> WorkflowPhase | None:
        if self._store is None:
            database = self.folder / "state" / "state.db"
            if not database.exists():
                return None
            self._store = Store(database)
        stored = self._store.workflow("default", workflow)
        return stored.status.phase if stored is not None and stored.status is not None else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(shapes: tuple[str, ...], *, runs: int, push_runs: int, interval: float | None,
            say: Callable[[str], None]) -> dict[str, object]:
    cluster = DevCluster()
    cluster.up()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        bench = Bench(cluster, Path(scratch), interval=interval, timeout=3600)
        # Pushes first, on a quiet cluster: right after five 1 -> 1,000 -> 1 runs the same pushes
        # took 0.65 s against 0.28 s, as slurmdbd answers slower with 15,000 jobs of the last
        # minutes to scan (a by-name sacct over 30 minutes of them: 0.53 s, over one: 0.08 s).
        push = bench.push_latency(push_runs, say) if push_runs else None
        rows = []
        for key in shapes:
            shape = SHAPES[key]
            # The 30,000 elements take minutes a run on a small machine: once is enough to see the ratio.
            rows.append(bench.compare(shape, 1 if key == "array30000" else runs, say))
    return {"floor": rows, "push_to_sbatch": push}
