"""The state directory's disk full: the loop says so, submits nothing it could not record, and
carries on by itself once there is room again. The state directory is a small tmpfs (the tests
run as root), filled with a file of zeros."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.cli.submit import Submission
from reconciler.devcluster import DevCluster
from reconciler.store.database import Store
from tests.integration.gitops_world import (
    ROOT,
    jobs_per_task,
    squeue_jobs,
    terminate,
    unique,
    wait_until,
    workflow_header,
)
from tests.ports import free_port

FULL = "is full"


@contextmanager
def small_tmpfs(directory: Path) -> Iterator[Path]:
    """``directory`` as an 8 MB tmpfs of its own, unmounted on exit."""
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "state") as state:
        yield state


def _fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system has no room left."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: closing it must not write again
        try:
            while True:
                out.write(bytes(64 * 1024))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _failures(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("reconciler_state_write_failures_total "):
                return float(line.split()[1])
    return 0.0


def _phase(state_dir: Path, name: str) -> str | None:
    with Store(state_dir / "state.db") as store:
        stored = store.workflow("default", name)
        return stored.status.phase.value if stored is not None and stored.status is not None else None


def _sacct_names(cluster: DevCluster, prefix: str) -> list[str]:
    done = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime=now-1hours", "--format=JobName"],
                          env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
    return [name for name in done.stdout.split() if name.startswith(prefix)]


def test_a_full_state_directory_stops_submissions_until_room_returns(
        tmp_path: Path, small_state_dir: Path, dev_cluster: DevCluster, overtime: Submission) -> None:
    full_state_directory(tmp_path, small_state_dir, dev_cluster)


def full_state_directory(tmp_path: Path, small_state_dir: Path, dev_cluster: DevCluster) -> None:
    """A loop whose state directory fills up before a workflow is declared: it says so, submits
    nothing, and runs the workflow once (one job per task) when the space comes back."""
    plans = tmp_path / "plans"
    (plans / "clusters").mkdir(parents=True)
    (plans / "clusters" / "dev.yaml").write_text(dev_cluster.manifest_path("local").read_text())
    port = free_port()
    log = tmp_path / "loop.log"
    argv = [sys.executable, "-m", "reconciler", "run", "--source", str(plans), "--state-dir", str(small_state_dir),
            "--interval", "0.5", "--metrics-port", str(port)]
    with open(log, "w") as output:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: (small_state_dir / "state.db").exists() and _failures(port) == 0.0, timeout=60,
                   what="the loop's store and metrics")
        filler = _fill(small_state_dir)

        name = unique("full")
        (plans / f"{name}.yaml").write_text(workflow_header(name) + "    - name: a\n      command: [\"true\"]\n"
                                            "    - name: b\n      dependsOn: [a]\n      command: [\"true\"]\n")
        # Two failed ticks after the manifest was written: each read the folder first, so the
        # loop has seen the workflow and could not record it.
        seen = _failures(port)
        wait_until(lambda: _failures(port) >= seen + 2, timeout=60, what="two ticks stopped by the full disk")
        assert process.poll() is None, log.read_text()[-3000:]
        assert FULL in log.read_text() and "Traceback" not in log.read_text()
        assert squeue_jobs(dev_cluster, f"{name}.") == []
        assert _sacct_names(dev_cluster, f"{name}.") == []

        filler.unlink()
        wait_until(lambda: _phase(small_state_dir, name) == "Succeeded", timeout=120,
                   what=f"{name} Succeeded once there is room")
        assert jobs_per_task(dev_cluster, name, tasks=2) == {"a": 1, "b": 1}
    finally:
        terminate(process)
