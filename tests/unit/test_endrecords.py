"""End records: the batch script's trap (run in bash), the record format, and the end watch
on a real folder of this machine."""

from __future__ import annotations

import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.api import Task
from reconciler.engine.endwatch import EndWatch
from reconciler.slurm import endrecords
from reconciler.slurm.commands import JobRecord
from reconciler.slurm.script import render_script
from reconciler.slurm.tags import JobTag
from reconciler.slurm.transport import LocalTransport

TAG = JobTag(uid="uid-1", task="step", attempt=1, part=0, fingerprint="0123456789abcdef")


def run_job(tmp_path: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``script`` as a task's script, rendered with end records into ``tmp_path``'s folder and
    run by bash the way slurmd runs a batch script."""
    task = Task(name="step", script=script)
    path = tmp_path / "job.sh"
    path.write_text(render_script(workflow="plan", namespace="default", task=task, tag=TAG, resources=task.resources,
                                  run_dir=str(tmp_path), log_dir=str(tmp_path), indices=None, parallelism=None,
                                  end_records=endrecords.folder(str(tmp_path))))
    return subprocess.run(["bash", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **env})


def records(tmp_path: Path) -> dict[str, str]:
    folder = Path(endrecords.folder(str(tmp_path)))
    return {entry.name: entry.read_text() for entry in folder.iterdir()} if folder.exists() else {}


def test_a_failing_script_records_its_end_and_keeps_its_exit_code_and_streams(tmp_path: Path) -> None:
    done = run_job(tmp_path, "echo out; echo err >&2; exit 3", {"SLURM_JOB_ID": "42"})
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert records(tmp_path) == {"42": "42 - 3\n"}
    assert endrecords.parse_record(records(tmp_path)["42"]) == endrecords.EndRecord("42", None, 3)


def test_a_succeeding_array_element_records_its_end_under_the_arrays_id(tmp_path: Path) -> None:
    done = run_job(tmp_path, "echo fine", {"SLURM_JOB_ID": "51", "SLURM_ARRAY_JOB_ID": "40",
                                           "SLURM_ARRAY_TASK_ID": "7"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "fine\n", "")
    assert records(tmp_path) == {"40_7": "40 7 0\n"}


def test_set_e_and_an_unwritable_folder_change_nothing_the_job_reports(tmp_path: Path) -> None:
    # The folder's place is taken by a file: the record cannot be written.
    (tmp_path / ".reconciler").write_text("in the way")
    done = run_job(tmp_path, "set -eu\nfalse\necho never", {"SLURM_JOB_ID": "43"})
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "")


def test_a_script_killed_by_a_signal_still_dies_of_it(tmp_path: Path) -> None:
    done = run_job(tmp_path, "kill -TERM $$; sleep 5", {"SLURM_JOB_ID": "44"})
    assert done.returncode == -15
    # bash gives the trap the status of the last command, not the signal: one more reason the
    # record only wakes the loop and accounting says how the job ended.
    assert list(records(tmp_path)) == ["44"]


@pytest.mark.parametrize("text", ["", "42", "42 - x", "42 - 3 more", "../x - 1", "42 -1 3"])
def test_what_is_not_a_record_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        endrecords.parse_record(text)


def test_record_names() -> None:
    assert [endrecords.is_record_name(n) for n in ("42", "40_7", ".42.123", "42_", "x", "42_7_1")] == [
        True, True, False, False, False, False]


def record(job_id: str, state: str, source: str = "sacct", array: tuple[str, tuple[int, ...]] | None = None
           ) -> JobRecord:
    return JobRecord(job_id=job_id, array_job_id=array[0] if array else None, array_indices=array[1] if array else None,
                     state=state, reason=None, exit_code=0, signal=None, node_list=None, started_at=None,
                     finished_at=None, elapsed_seconds=0, cpus=1, name="plan.step", comment="", source=source)


def test_only_ends_accounting_reports_settle_a_record() -> None:
    names = endrecords.ended_names([
        record("1", "COMPLETED"), record("2", "RUNNING"), record("3", "COMPLETED", source="squeue"),
        record("4", "CANCELLED by 1000"), record("9_2", "FAILED", array=("9", (2,))),
        record("9", "PENDING", array=("9", (3, 4))),
    ])
    assert names == {"1", "4", "9_2"}


def test_the_watch_wakes_on_a_record_and_removes_it_once_accounting_has_the_end(tmp_path: Path) -> None:
    rang = threading.Event()
    watch = EndWatch(LocalTransport(), workdir=str(tmp_path), wake=rang.set, name="here")
    try:
        folder = Path(endrecords.folder(str(tmp_path)))
        # The watch creates the folder once it is in place; the first ring may come from a
        # record written before.
        deadline = datetime.now(UTC).timestamp() + 10
        while not folder.exists() and datetime.now(UTC).timestamp() < deadline:
            rang.wait(0.05)
        (folder / ".77.1").write_text("77 - 0\n")
        os.replace(folder / ".77.1", folder / "77")
        assert rang.wait(10), "no wake for the record"
        assert watch.pending == {"77"}
        rang.clear()
        watch.settle([record("77", "RUNNING", source="squeue")])
        assert rang.wait(10), "no second look while the job still ran"
        watch.settle([record("77", "COMPLETED")])
        assert watch.pending == frozenset()
        assert not (folder / "77").exists()
    finally:
        watch.close()
