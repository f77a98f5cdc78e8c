"""``reconciler logs`` through the real CLI: a store in a temporary state directory holding a
workflow's attempts as the loop records them, a SlurmCluster manifest whose workdir is a
temporary folder, and the job files where Slurm writes them, read through the local transport.
(The same command against the real dev cluster, local and over SSH, is in
tests/integration/test_verbs.py.)"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.api import Resources, TaskPhase, WorkflowStatus
from reconciler.api.workflow import TaskStatus
from reconciler.cli import logs as logs_module
from reconciler.cli.main import main
from reconciler.core.observed import JobKey, JobOutcome, ObservedJob
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.transport import LocalTransport
from reconciler.store.database import Store
from reconciler.store.rows import AttemptHistory

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FP = "fp"


def _resource() -> dict:
    return {"apiVersion": "hpc.reconciler.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "scan", "namespace": "default"},
            "spec": {"cluster": "dev", "tasks": [
                {"name": "prep", "command": ["true"]},
                {"name": "fan", "command": ["true"], "array": {"count": 4}, "dependsOn": ["prep"]},
                {"name": "review", "type": "approval", "dependsOn": ["fan"]},
                {"name": "report", "command": ["true"], "dependsOn": ["review"]},
            ]}}


def _observed(key: JobKey, job_id: str, phase: TaskPhase, indices: tuple[int, ...] | None = None) -> ObservedJob:
    return ObservedJob(key=key, job_id=job_id, fingerprint=FP, indices=indices,
                       outcome=JobOutcome(phase=phase, started_at=None if phase is TaskPhase.SUBMITTED else NOW,
                                          exit_code=0 if phase is TaskPhase.SUCCEEDED else None))


class World:
    """A state directory, a manifests folder with the SlurmCluster, and its log directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.manifests = tmp_path / "manifests"
        self.manifests.mkdir()
        workdir = tmp_path / "work"
        (self.manifests / "cluster.yaml").write_text(
            "apiVersion: hpc.reconciler.dev/v1alpha1\nkind: SlurmCluster\nmetadata: {name: dev}\n"
            f"spec: {{workdir: {workdir}}}\n")
        self.log_dir = workdir / "default" / "scan" / ".reconciler" / "logs"
        self.log_dir.mkdir(parents=True)
        with Store(self.state / "state.db") as store:
            self.uid = store.upsert_workflow(namespace="default", name="scan", resource=_resource(), revision="r1",
                                             source_file="plans/scan.yaml", now=NOW).uid
            store.save_status(self.uid, WorkflowStatus(tasks={
                "prep": TaskStatus(phase=TaskPhase.SUCCEEDED, attempts=2),
                "fan": TaskStatus(phase=TaskPhase.RUNNING, attempts=1),
                "review": TaskStatus(phase=TaskPhase.WAITING),
                "report": TaskStatus(phase=TaskPhase.WAITING)}))

    def submit(self, key: JobKey, job_id: str, phase: TaskPhase, indices: tuple[int, ...] | None = None) -> None:
        with Store(self.state / "state.db") as store:
            store.record_intent(self.uid, key=key, fingerprint=FP, indices=indices, resources={}, cluster="dev",
                                now=NOW)
            store.confirm_submission(self.uid, key=key, job_id=job_id, now=NOW)
            store.update_from_observation(self.uid, [_observed(key, job_id, phase, indices)], now=NOW)

    def logs(self, *args: str) -> int:
        return main(["logs", "scan", *args, "--source", str(self.manifests), "--state-dir", str(self.state)])


@pytest.fixture
def world(tmp_path: Path) -> World:
    made = World(tmp_path)
    made.submit(JobKey("prep", 1, 0), "100", TaskPhase.FAILED)
    made.submit(JobKey("prep", 2, 0), "101", TaskPhase.SUCCEEDED)
    made.submit(JobKey("fan", 1, 0), "200", TaskPhase.RUNNING, indices=(0, 1, 2, 3))
    (made.log_dir / "prep.a1.100.out").write_text("first try\n")  # from before .err files: one stream
    (made.log_dir / "prep.a2.101.out").write_text("prepared ünïcödé\n")
    (made.log_dir / "prep.a2.101.err").write_text("a warning\n")
    for index in range(4):
        (made.log_dir / f"fan.a1.p0.200_{index}.out").write_text(f"element {index}\n")
    return made


def test_the_latest_attempts_output_and_error_streams(world: World, capsysbinary):
    assert world.logs("prep") == 0
    assert capsysbinary.readouterr().out == "prepared ünïcödé\n".encode()
    assert world.logs("prep", "--stderr") == 0
    assert capsysbinary.readouterr().out == b"a warning\n"
    assert world.logs("prep", "--attempt", "1") == 0
    assert capsysbinary.readouterr().out == b"first try\n"


def test_a_job_from_before_the_error_file_says_its_streams_are_one(world: World, capsys):
    assert world.logs("prep", "--attempt", "1", "--stderr") == 1
    err = capsys.readouterr().err
    assert "job 100 was submitted before the error stream had a file of its own" in err
    assert "without --stderr" in err


def test_an_array_shows_its_first_element_unless_told_which(world: World, capsysbinary):
    assert world.logs("fan") == 0
    captured = capsysbinary.readouterr()
    assert captured.out == b"element 0\n"
    assert b"Defaulted index 0 out of: 0-3 of task fan attempt 1 (choose one with --index)" in captured.err
    assert world.logs("fan", "--index", "3") == 0
    captured = capsysbinary.readouterr()
    assert (captured.out, captured.err) == (b"element 3\n", b"")


def test_an_element_of_a_later_part_is_named_by_its_slurm_array_task_id(world: World, capsysbinary):
    world.submit(JobKey("fan", 2, 0), "300", TaskPhase.SUCCEEDED, indices=(0, 1))
    world.submit(JobKey("fan", 2, 2), "301", TaskPhase.SUCCEEDED, indices=(2, 3))
    (world.log_dir / "fan.a2.p2.301_1.out").write_text("element 3, second try\n")
    assert world.logs("fan", "--index", "3") == 0
    assert capsysbinary.readouterr().out == b"element 3, second try\n"


@pytest.mark.parametrize(("args", "message"), [
    (("nosuch",), "workflow scan has no task 'nosuch' (its tasks: prep, fan, review, report)"),
    (("review",), "task review is an approval: it runs no job, so it has no logs"),
    (("report",), "task report of workflow scan has not been submitted yet"),
    (("prep", "--attempt", "7"), "task prep has no attempt 7 (its attempts: 1, 2)"),
    (("prep", "--index", "0"), "task prep is not an array: leave out --index"),
    (("fan", "--index", "9"), "task fan attempt 1 has no index 9 (its indices: 0-3)"),
])
def test_refusals_say_what_to_do(world: World, capsys, args, message):
    assert world.logs(*args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_unknown_workflow_and_a_source_without_the_cluster(world: World, tmp_path: Path, capsys):
    assert main(["logs", "nope", "prep", "--source", str(world.manifests), "--state-dir", str(world.state)]) == 1
    assert 'workflow "nope" not found' in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert main(["logs", "scan", "prep", "--source", str(elsewhere), "--state-dir", str(world.state)]) == 1
    assert "the job ran on cluster dev, and" in capsys.readouterr().err


def test_a_pending_job_has_no_file_yet_and_removed_files_are_named(world: World, capsys):
    world.submit(JobKey("report", 1, 0), "400", TaskPhase.SUBMITTED)
    assert world.logs("report") == 1
    assert "job 400 has not started yet, so it has no output file: try again once it runs, or add --follow" in (
        capsys.readouterr().err)
    (world.log_dir / "prep.a2.101.out").unlink()
    assert world.logs("prep") == 1
    assert "left no file" in capsys.readouterr().err
    with Store(world.state / "state.db") as store:
        stored = store.workflow("default", "scan")
        assert stored is not None and stored.status is not None
        store.save_status(world.uid, stored.status.model_copy(update={"cleaned_at": NOW}))
    assert world.logs("prep") == 1
    assert "removed at 2026-01-01 00:00:00Z (ttlSecondsAfterFinished): the logs of job 101 are gone" in (
        capsys.readouterr().err)


def test_follow_of_a_finished_job_prints_it_whole_in_bounded_reads(world: World, capsysbinary, monkeypatch):
    big = bytes(range(256)) * (3 * logs_module.FOLLOW_CHUNK // 256 + 5)
    (world.log_dir / "prep.a2.101.out").write_bytes(big)
    reads: list[int] = []
    original = SlurmClient.read_part

    def recording(self, path, *, offset, limit):
        data = original(self, path, offset=offset, limit=limit)
        reads.append(len(data or b""))
        return data

    monkeypatch.setattr(SlurmClient, "read_part", recording)
    assert world.logs("prep", "--follow") == 0
    assert capsysbinary.readouterr().out == big
    assert max(reads) <= logs_module.FOLLOW_CHUNK and len(reads) >= 4


def test_a_followed_element_ends_with_its_own_phase():
    key = JobKey("fan", 1, 0)
    attempt = AttemptHistory(key=key, fingerprint=FP, cluster="dev", job_id="200", resources=Resources(),
                             recorded_at=NOW, submitted_at=NOW, outcome=JobOutcome(phase=TaskPhase.RUNNING),
                             message=None, cancelled_by_reconciler=False, indices="0-3",
                             states={TaskPhase.SUCCEEDED: "0-1", TaskPhase.RUNNING: "2-3"})
    assert logs_module.finished(attempt, 1) and not logs_module.finished(attempt, 2)
    assert logs_module.element_phase(attempt, 3) is TaskPhase.RUNNING


def test_follow_prints_what_the_job_wrote_last_before_its_end_was_seen(tmp_path: Path):
    # The job writes its last line just as the loop records its end: the follower, told it
    # ended, reads once more, so that line is printed and nothing after it is waited for.
    job_file = tmp_path / "job.out"
    transport = LocalTransport()
    answers = iter([False, True])

    def ended() -> bool:
        answer = next(answers)
        if answer:
            with job_file.open("a") as stream:
                stream.write("last line\n")
        return answer

    out = io.BytesIO()
    assert logs_module.copy_stream(lambda offset: transport.read_file(str(job_file), offset=offset, limit=1024),
                                   out=out, ended=ended) is True
    assert out.getvalue() == b"last line\n"


def test_without_manifests_logs_reach_the_cluster_the_loop_recorded(world: World, capsys):
    from reconciler.manifests.loader import load_paths

    world.submit(JobKey("prep", 2), "200", TaskPhase.SUCCEEDED)
    (world.log_dir / "prep.a2.200.out").write_text("prepared\n")
    assert main(["logs", "scan", "prep", "--state-dir", str(world.state)]) == 1
    refused = capsys.readouterr().err
    assert "which this state has no record of" in refused and "give --source" in refused
    [cluster] = [r.resource for r in load_paths([world.manifests]).resources]
    with Store(world.state / "state.db") as store:
        store.record_cluster(cluster, now=NOW)
    assert main(["logs", "scan", "prep", "--state-dir", str(world.state)]) == 0
    assert capsys.readouterr().out == "prepared\n"
    wire = cluster.to_wire()
    wire["spec"].update(transport="ssh", ssh={"host": "login", "user": "svc", "keySecretRef": "login-key"})
    with Store(world.state / "state.db") as store:
        store.record_cluster(type(cluster).model_validate(wire), now=NOW)
        assert store.cluster("dev").spec.ssh.key_secret_ref == "login-key"
    assert main(["logs", "scan", "prep", "--state-dir", str(world.state)]) == 1
    assert "Secret login-key, which is not on this machine" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["logs", "scan", "fan", "--index", "first", "--source", str(world.manifests)])
