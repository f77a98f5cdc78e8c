"""A Git-mode world for integration tests: a bare repository that plans are pushed into, a
working clone, the ``reconciler run`` loop as a real process, readers of its store and of Slurm,
and the waits the tests synchronise by (never a fixed sleep: a wait names the state it expects,
and a test that something does not happen waits for a witness that the loop has looked again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.devcluster import DevCluster
from reconciler.slurm.tags import parse_tag

ROOT = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Plan Author", "GIT_AUTHOR_EMAIL": "plans@example.org",
           "GIT_COMMITTER_NAME": "Plan Author", "GIT_COMMITTER_EMAIL": "plans@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.3) -> Any:
    """The predicate's first true value, polled every ``every`` seconds for at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(every)


def unique(name: str) -> str:
    """A workflow name no other test run uses (runs share the dev cluster's queue and accounting)."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def watch_to_end(loop: Loop, name: str, *, sample: Callable[[], int], timeout: float,
                 every: float = 0.2) -> tuple[int, dict[str, Any], set[str]]:
    """Poll a running workflow until it ends: the highest value ``sample`` gave meanwhile (how many
    jobs or elements Slurm held at once), the last status seen, and every task phase seen."""
    deadline = time.monotonic() + timeout
    peak, status, phases = 0, {}, set()
    while time.monotonic() < deadline:
        peak = max(peak, sample())
        status = loop.status(name)
        phases |= {task["phase"] for task in status.get("tasks", {}).values()}
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(every)
    return peak, status, phases


def terminate(process: subprocess.Popen[str] | None) -> int | None:
    """Stop a loop or operator process as a service manager would: SIGTERM, then SIGKILL."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class PlanRepo:
    """A bare repository (what the loop follows) and a clone to commit and push from."""

    def __init__(self, root: Path, cluster_manifest: str) -> None:
        self.bare = root / "plans.git"
        self.work = root / "checkout"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.write("clusters/dev.yaml", cluster_manifest)

    def write(self, relative: str, text: str) -> None:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def remove(self, relative: str) -> None:
        git("rm", "-q", relative, cwd=self.work)

    def push(self, message: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


class Loop:
    """``reconciler run`` as its own process, as a user would start it."""

    def __init__(self, repo: PlanRepo, state_dir: Path, *, interval: float = 1.0, extra: tuple[str, ...] = ()):
        self.repo = repo
        self.state_dir = state_dir
        self.interval = interval
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None
        self.log = state_dir.parent / f"{state_dir.name}.log"

    def argv(self, *more: str) -> list[str]:
        return [sys.executable, "-m", "reconciler", "run", "--source", f"file://{self.repo.bare}",
                "--state-dir", str(self.state_dir), "--interval", str(self.interval), *self.extra, *more]

    def start(self) -> Loop:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        output = open(self.log, "a")  # noqa: SIM115 - the child writes to it for its whole life
        self.process = subprocess.Popen(self.argv(), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True)
        return self

    def run_until_done(self, timeout: float = 300.0) -> int:
        done = subprocess.run(self.argv("--until-done"), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        self.log.write_text(done.stdout + done.stderr)
        return done.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        return terminate(self.process)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "reconciler", *args, "--state-dir", str(self.state_dir)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"reconciler {' '.join(args)} failed: {done.stderr}")
        return done

    def workflow(self, name: str) -> dict[str, Any] | None:
        done = self.cli("get", "workflow", name, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def status(self, name: str) -> dict[str, Any]:
        """The workflow's status as ``reconciler get workflow NAME -o json`` shows it, read from the
        store in-process: the tests poll often, and a process per poll would starve the loop."""
        from reconciler.cli import output
        from reconciler.store.database import Store

        if not (self.state_dir / "state.db").exists():
            return {}
        with Store(self.state_dir / "state.db") as store:
            stored = store.workflow("default", name)
            if stored is None:
                return {}
            return output.resource(stored.as_row()).get("status") or {}

    def wait_for(self, name: str, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 180.0,
                 what: str = "condition") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if status and predicate(status):
                return status
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the loop exited ({self.process.returncode}):\n{self.log.read_text()[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"{name}: {what} not reached in {timeout}s; last status {json.dumps(status, indent=1)}"
                             f"\nloop log:\n{self.log.read_text()[-4000:] if self.log.exists() else ''}")

    def wait_for_phase(self, name: str, phase: str, *, timeout: float = 180.0) -> dict[str, Any]:
        return self.wait_for(name, lambda s: s.get("phase") == phase, timeout=timeout, what=f"phase {phase}")

    def later_ticks(self, name: str, count: int = 1, *, timeout: float = 60.0) -> dict[str, Any]:
        """The workflow's status once ``count`` ticks that began after this call have planned it.
        Each is witnessed by an empty commit: a tick reads the source first and writes the status,
        with the revision it read, last. A cluster in backoff is not looked at, so its workflows
        show the new revision only once the loop has looked at the cluster again."""
        def read(revision: str) -> Callable[[dict[str, Any]], bool]:
            return lambda status: status.get("revision") == revision

        status: dict[str, Any] = {}
        for n in range(1, count + 1):
            revision = self.repo.push(f"look again ({n})")
            status = self.wait_for(name, read(revision), timeout=timeout, what=f"a tick that read {revision[:12]}")
        return status

    def holds_the_lock(self) -> bool:
        """The loop process has locked its state directory (the lock file names the holder's pid)."""
        lock = self.state_dir / "lock"
        return self.process is not None and lock.exists() and lock.read_text().strip() == str(self.process.pid)


def squeue_jobs(cluster: DevCluster, name_prefix: str) -> list[str]:
    """Jobs of a workflow in Slurm's queue right now (their job names start with the workflow's)."""
    done = subprocess.run(["squeue", "--me", "--noheader", "--format=%i %j"], env={**os.environ, **cluster.env},
                          capture_output=True, text=True, check=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.split()[1].startswith(name_prefix)]


def squeue_reasons(cluster: DevCluster, name_prefix: str) -> dict[str, str]:
    """Slurm's pending or running reason of each queued job of a workflow, by job name
    ("workflow.task"), e.g. "JobHeldAdmin" for a job ``scontrol hold`` holds."""
    done = subprocess.run(["squeue", "--me", "--noheader", "--format=%j|%r"], env={**os.environ, **cluster.env},
                          capture_output=True, text=True, check=True)
    rows = [line.split("|", 1) for line in done.stdout.splitlines() if line]
    return {job: reason for job, reason in rows if job.startswith(name_prefix)}


def sacct_jobs(cluster: DevCluster, job_name_prefix: str, *, since: str = "now-2hours",
               at_least: int = 1) -> list[tuple[str, str]]:
    """(job id, state) of every job with that name prefix that Slurm accounted for, once there
    are ``at_least`` and two answers a second apart agree (sacct's time window trails
    just-finished jobs)."""
    previous: list[tuple[str, str]] | None = None
    for _ in range(20):
        done = subprocess.run(["sacct", "-X", "-P", "-n", f"--starttime={since}", "--format=JobID,JobName,State"],
                              env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
        rows = [line.split("|") for line in done.stdout.splitlines() if line]
        current = sorted((row[0], row[2]) for row in rows if row[1].startswith(job_name_prefix))
        if current == previous and len(current) >= at_least:
            return current
        previous = current
        time.sleep(1.0)
    raise AssertionError(f"sacct kept changing for {job_name_prefix}: {previous}")


def sacct_states(cluster: DevCluster, job_ids: list[str], *, timeout: float = 20.0) -> list[str]:
    """The accounted state of each job, asked by id (jobs that were never eligible to start are
    missing from sacct's time window), once every one of them has ended."""
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        done = subprocess.run(["sacct", "-X", "-P", "-n", f"--jobs={','.join(job_ids)}", "--format=JobID,State"],
                              env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
        rows = dict(line.split("|") for line in done.stdout.splitlines() if line)
        states = [rows.get(job_id, "") for job_id in job_ids]
        if all(state and state not in ("PENDING", "RUNNING") for state in states):
            return states
        time.sleep(0.5)
    raise AssertionError(f"jobs {job_ids} still not ended: {states}")


def squeue_state(cluster: DevCluster, job_id: str) -> str:
    """The state slurmctld holds for one job, ended ones included ("" once it forgot the job)."""
    done = subprocess.run(["squeue", "--states=all", f"--jobs={job_id}", "--noheader", "--format=%T"],
                          env={**os.environ, **cluster.env}, capture_output=True, text=True)
    return done.stdout.strip()


def sacct_tags(cluster: DevCluster, job_name_prefix: str, *, since: str = "now-2hours",
               at_least: int = 1) -> list[tuple[str, str]]:
    """(job id, identity tag) of every ended job with that name prefix, once there are
    ``at_least`` and two answers a second apart agree (slurmdbd stores a job's comment, where the
    tag is, when the job ends)."""
    previous: list[tuple[str, str]] | None = None
    for _ in range(30):
        done = subprocess.run(["sacct", "-X", "-P", "-n", f"--starttime={since}", "--format=JobID,JobName,Comment"],
                              env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
        rows = [line.split("|", 2) for line in done.stdout.splitlines() if line]
        current = sorted((row[0], row[2]) for row in rows if row[1].startswith(job_name_prefix) and row[2])
        if current == previous and len(current) >= at_least:
            return current
        previous = current
        time.sleep(1.0)
    raise AssertionError(f"sacct kept changing for {job_name_prefix}: {previous}")


def jobs_per_task(cluster: DevCluster, name: str, *, tasks: int) -> Counter[str]:
    """How many jobs Slurm accounted for under each of the workflow's identity tags (by task; an
    array's elements one by one), once at least ``tasks`` are accounted for."""
    tags = [parse_tag(comment) for _, comment in sacct_tags(cluster, f"{name}.", at_least=tasks)]
    assert all(tag is not None for tag in tags), tags
    assert len({tag.uid for tag in tags if tag}) == 1
    return Counter(tag.task for tag in tags if tag)


def sacct_times(cluster: DevCluster, job_name_prefix: str, *, at_least: int,
                since: str = "now-2hours") -> list[tuple[str, str, str, str]]:
    """(job id, job name, start, end) of every ended job with that name prefix, an array's
    elements one by one ("1234_0"), once there are ``at_least`` and two answers a second apart
    agree. The times are sacct's ISO text to the second, so they compare as text."""
    previous: list[tuple[str, str, str, str]] | None = None
    for _ in range(30):
        done = subprocess.run(["sacct", "-X", "-P", "-n", f"--starttime={since}", "--format=JobID,JobName,Start,End"],
                              env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
        rows = [line.split("|") for line in done.stdout.splitlines() if line]
        current = sorted((job, name, start, end) for job, name, start, end in rows
                         if name.startswith(job_name_prefix) and end not in ("Unknown", "None"))
        if current == previous and len(current) >= at_least:
            return current
        previous = current
        time.sleep(1.0)
    raise AssertionError(f"sacct kept changing for {job_name_prefix}: {previous}")


def workflow_header(name: str, *, time: str = "00:05:00", memory: str = "20M") -> str:
    """A Workflow manifest up to its task list, on the dev cluster's debug partition: the tasks'
    YAML (indented four spaces) follows."""
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  defaults:
    resources: {{partition: debug, time: "{time}", memory: {memory}}}
  tasks:
"""


def gitops_world(transport: str, tmp_path: Path, dev_cluster: DevCluster, *,
                 interval: float = 1.0) -> tuple[PlanRepo, Loop, Path]:
    """A plan repository holding the dev cluster's SlurmCluster for ``transport``, a loop on it
    (not started yet), and the cluster's working directory."""
    repo = PlanRepo(tmp_path, dev_cluster.manifest_path(transport).read_text())
    return repo, Loop(repo, tmp_path / "state", interval=interval), Path(dev_cluster.cluster(transport).spec.workdir)
