"""The SQLite store on real files: workflow runs, the attempt history the core reads back,
arrays kept as outcome groups, approvals, events, and readers in another connection."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.api import FailureKind, Resources, TaskPhase, Workflow, WorkflowPhase, WorkflowStatus
from reconciler.core.approvals import ApprovalVia
from reconciler.core.observed import JobKey, JobOutcome, ObservedJob
from reconciler.core.plan import Event
from reconciler.core.taskruns import task_runs
from reconciler.store.database import MAX_EVENTS, Store, state_dir_default
from reconciler.store.schema import SCHEMA_VERSION
from tests.unit.reconcile_world import T0

FP = "fp-1"


def resource(*, command: str = "echo hi", labels: dict[str, str] | None = None, name: str = "plan") -> dict:
    return Workflow.model_validate({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"cluster": "dev", "tasks": [{"name": "prep", "command": command.split()},
                                             {"name": "fan", "command": ["run"], "array": {"count": 10}}]},
    }).to_wire()


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "state" / "state.db") as opened:
        yield opened


@pytest.fixture
def uid(store: Store) -> str:
    return store.upsert_workflow(namespace="default", name="plan", resource=resource(), revision="r1",
                                 source_file="plan.yaml", now=T0).uid


def observed(key: JobKey, phase: TaskPhase, *, job_id: str = "100", indices=None, failure=None, exit_code=None,
             reason=None, node_list=None, core_seconds: int = 0, finished=None) -> ObservedJob:
    return ObservedJob(key=key, job_id=job_id, fingerprint=FP, indices=indices,
                       outcome=JobOutcome(phase=phase, failure=failure, exit_code=exit_code, reason=reason,
                                          node_list=node_list, core_seconds=core_seconds,
                                          started_at=T0 if phase is not TaskPhase.SUBMITTED else None,
                                          finished_at=finished))


def runs(store: Store, uid: str, *, indices=(None,), observed_jobs=(), accounting: bool = True, task: str = "prep"):
    records = [r for r in store.attempts(uid) if r.key.task == task]
    # Accounting caught up past every intent these tests record (at T0).
    return task_runs(indices=list(indices), fingerprint=FP, observed=observed_jobs, records=records,
                     accounting=accounting, accounting_complete_until=T0 + timedelta(seconds=1))


# -- state directory and schema --------------------------------------------------------------------

def test_state_dir_prefers_the_explicit_variable_then_xdg_then_home(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir_default() == tmp_path / "explicit"
    monkeypatch.delenv("RECONCILER_STATE_DIR")
    assert state_dir_default() == tmp_path / "xdg" / "slurm-reconciler"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir_default() == tmp_path / "home" / ".local" / "state" / "slurm-reconciler"


def test_schema_is_versioned_in_wal_mode_and_a_newer_file_is_refused(tmp_path: Path):
    path = tmp_path / "nested" / "state.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Store(path).close()  # reopening an up-to-date file migrates nothing
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="newer than this reconciler"):
        Store(path)


# -- workflows ---------------------------------------------------------------------------------------

def test_generation_moves_only_when_the_spec_changes(store: Store):
    first = store.upsert_workflow(namespace="default", name="plan", resource=resource(), revision="r1",
                                  source_file="plan.yaml", now=T0)
    assert first.generation == 1 and first.created_at == T0 and first.resource == resource()
    relabelled = store.upsert_workflow(namespace="default", name="plan", resource=resource(labels={"team": "a"}),
                                       revision="r2", source_file="plan.yaml", now=T0 + timedelta(minutes=1))
    assert (relabelled.uid, relabelled.generation, relabelled.revision) == (first.uid, 1, "r2")
    assert relabelled.labels == {"team": "a"} and relabelled.created_at == T0
    changed = store.upsert_workflow(namespace="default", name="plan", resource=resource(command="echo bye"),
                                    revision="r3", source_file="plan.yaml", now=T0 + timedelta(minutes=2))
    assert changed.uid == first.uid and changed.generation == 2
    assert changed.resource["spec"]["tasks"][0]["command"] == ["echo", "bye"]
    again = store.upsert_workflow(namespace="default", name="plan", resource=resource(command="echo bye"),
                                  revision="r4", source_file="plan.yaml", now=T0 + timedelta(minutes=3))
    assert again.generation == 2 and again.spec_hash == changed.spec_hash


def test_a_pruned_workflow_keeps_its_history_and_comes_back_as_a_new_run(store: Store, uid: str):
    store.add_events(uid, [Event("Normal", "Submitted", "old run")], now=T0)
    store.mark_removed(uid, now=T0 + timedelta(hours=1))
    assert store.active_workflows() == []
    pruned = store.workflow("default", "plan")
    assert pruned is not None and pruned.uid == uid and pruned.removed_at == T0 + timedelta(hours=1)

    again = store.upsert_workflow(namespace="default", name="plan", resource=resource(), revision="r9",
                                  source_file="plan.yaml", now=T0 + timedelta(hours=2))
    assert again.uid != uid and again.generation == 1 and again.active
    assert store.workflow("default", "plan") == again
    assert [w.uid for w in store.active_workflows()] == [again.uid]
    assert [w.uid for w in store.all_workflows()] == [again.uid]
    assert {w.uid for w in store.all_workflows(include_removed=True)} == {uid, again.uid}
    assert store.events(again.uid) == [] and [e.message for e in store.events(uid)] == ["old run"]


def test_status_round_trips_and_renders_as_a_row(store: Store, uid: str):
    assert store.workflow_by_uid(uid).status is None
    status = WorkflowStatus(observed_generation=1, phase=WorkflowPhase.RUNNING, progress="1/2", core_hours=0.5,
                            started_at=T0)
    store.save_statuses({uid: status})
    stored = store.workflow_by_uid(uid)
    assert stored.status == status
    row = stored.as_row()
    assert (row.uid, row.name, row.generation, row.status) == (uid, "plan", 1, status)
    assert row.spec["cluster"] == "dev" and row.source_file == "plan.yaml"
    with pytest.raises(KeyError):
        store.save_statuses({uid: WorkflowStatus(), "nope": WorkflowStatus()})
    assert store.workflow_by_uid(uid).status == status  # the failed batch wrote nothing


def test_an_unchanged_row_is_decoded_once_and_a_changed_one_again(store: Store, uid: str):
    store.save_statuses({uid: WorkflowStatus(phase=WorkflowPhase.RUNNING)})
    first, again = store.workflow_by_uid(uid), store.workflow_by_uid(uid)
    assert first is again  # a tick reads each row several times: once decoded is enough
    store.save_statuses({uid: WorkflowStatus(phase=WorkflowPhase.SUCCEEDED)})
    assert store.workflow_by_uid(uid).status.phase is WorkflowPhase.SUCCEEDED
    assert first.status.phase is WorkflowPhase.RUNNING  # what was handed out stays as it was

    key = JobKey("prep", 1)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={}, cluster="dev", now=T0)
    [before] = store.attempts(uid)
    assert store.attempts(uid)[0] is before
    store.update_from_observation(uid, [observed(key, TaskPhase.RUNNING)], now=T0)
    [after] = store.attempts(uid)
    assert after.outcome is not None and after.outcome.phase is TaskPhase.RUNNING and before.outcome is None


def test_a_second_store_reads_committed_state_while_another_connection_writes(tmp_path: Path):
    path = tmp_path / "state.db"
    with Store(path) as loop, Store(path) as reader:
        uid = loop.upsert_workflow(namespace="default", name="plan", resource=resource(), revision=None,
                                   source_file=None, now=T0).uid
        loop.save_status(uid, WorkflowStatus(phase=WorkflowPhase.RUNNING))
        assert reader.workflow("default", "plan").status.phase is WorkflowPhase.RUNNING

        # A writer in the middle of a transaction holds the write lock; WAL lets readers go on
        # and see the last committed state.
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE workflows SET status = NULL")
        assert reader.workflow_by_uid(uid).status.phase is WorkflowPhase.RUNNING
        writer.execute("COMMIT")
        writer.close()
        assert reader.workflow_by_uid(uid).status is None


# -- attempts ------------------------------------------------------------------------------------------

def test_an_unconfirmed_intent_is_nothing_when_accounting_works_and_unknown_when_it_does_not(store: Store, uid: str):
    key = JobKey("prep", 1)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={"cpus": 2}, cluster="dev", now=T0)
    [record] = store.attempts(uid)
    assert (record.job_id, record.phase, record.recorded_at) == (None, None, T0)
    assert runs(store, uid).elements[None].phase is TaskPhase.WAITING
    assert runs(store, uid, accounting=False).elements[None].phase is TaskPhase.UNKNOWN
    assert store.unconfirmed_intents("dev") == 1 and store.unfinished_job_ids("dev") == []
    assert store.oldest_unfinished_at("dev") == T0 and store.oldest_unfinished_at("other") is None


def test_intent_confirm_observe_feeds_the_core(store: Store, uid: str):
    key = JobKey("prep", 1)
    assert not store.has_attempts(uid)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={"cpus": 2}, cluster="dev", now=T0)
    assert store.has_attempts(uid)
    store.confirm_submission(uid, key=key, job_id="100", now=T0)
    assert store.unfinished_job_ids("dev") == ["100"] and store.unconfirmed_intents("dev") == 0
    # Confirmed but never seen: Slurm does not say, so it is Unknown (never Waiting, never done).
    assert runs(store, uid).elements[None].phase is TaskPhase.UNKNOWN

    store.update_from_observation(uid, [observed(key, TaskPhase.RUNNING, node_list="n1")], now=T0)
    assert runs(store, uid, accounting=False).elements[None].phase is TaskPhase.UNKNOWN
    assert store.unfinished_job_ids("dev") == ["100"]

    done = observed(key, TaskPhase.SUCCEEDED, exit_code=0, core_seconds=7200, finished=T0 + timedelta(hours=1))
    store.update_from_observation(uid, [done], now=T0 + timedelta(hours=1))
    result = runs(store, uid, accounting=False)
    assert result.elements[None].phase is TaskPhase.SUCCEEDED and result.core_seconds == 7200
    assert result.latest_job_ids == ("100",)
    # Seen this tick too: the observation counts, the record does not count it twice.
    assert runs(store, uid, observed_jobs=[done]).core_seconds == 7200
    assert store.unfinished_job_ids("dev") == [] and store.oldest_unfinished_at("dev") is None

    [entry] = store.history(uid)
    assert entry.job_id == "100" and entry.resources == Resources(cpus=2) and entry.outcome.phase is TaskPhase.SUCCEEDED
    assert entry.outcome.exit_code == 0 and entry.outcome.core_seconds == 7200 and entry.submitted_at == T0


def test_a_report_that_says_again_what_the_row_holds_writes_nothing(store: Store, uid: str):
    key = JobKey("prep", 1)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={}, cluster="dev", now=T0)
    store.confirm_submission(uid, key=key, job_id="100", now=T0)
    done = observed(key, TaskPhase.SUCCEEDED, exit_code=0, core_seconds=60, finished=T0 + timedelta(minutes=1))
    store.update_from_observation(uid, [done], now=T0)

    def attempt_writes() -> int:
        with store._lock:  # the store's own connection counts the rows it changed
            return int(store._db.execute("SELECT total_changes()").fetchone()[0])

    before = attempt_writes()
    for _ in range(3):
        store.update_from_observation(uid, [replace(done, outcome=replace(done.outcome))], now=T0)
    assert attempt_writes() == before
    # Slurm requeued it: the finished job is pending again, and the row says so.
    store.update_from_observation(uid, [observed(key, TaskPhase.SUBMITTED, reason="BeginTime")], now=T0)
    assert attempt_writes() == before + 1
    [record] = store.attempts(uid)
    assert record.outcome is not None and record.outcome.phase is TaskPhase.SUBMITTED
    assert store.unfinished_job_ids("dev") == ["100"]


def test_intents_are_idempotent_rejections_fail_and_forgotten_intents_vanish(store: Store, uid: str):
    key = JobKey("prep", 1)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={}, cluster="dev", now=T0)
    store.confirm_submission(uid, key=key, job_id="100", now=T0)
    store.record_intent(uid, key=key, fingerprint="other", indices=None, resources={}, cluster="dev",
                        now=T0 + timedelta(minutes=1))
    [record] = store.attempts(uid)
    assert (record.job_id, record.fingerprint, record.recorded_at) == ("100", FP, T0)

    at_capacity = JobKey("prep", 2)
    store.record_intent(uid, key=at_capacity, fingerprint=FP, indices=None, resources={}, cluster="dev", now=T0)
    store.forget_intent(uid, key=at_capacity)
    store.forget_intent(uid, key=key)  # confirmed: kept
    assert [r.key for r in store.attempts(uid)] == [key]

    refused = JobKey("fan", 1)
    store.record_intent(uid, key=refused, fingerprint=FP, indices=tuple(range(10)), resources={}, cluster="dev",
                        now=T0)
    store.record_rejection(uid, key=refused, reason="SubmitRejected", message="Invalid account", now=T0)
    result = runs(store, uid, indices=range(10), task="fan")
    assert {e.phase for e in result.elements.values()} == {TaskPhase.FAILED}
    assert result.elements[3].reason == "SubmitRejected"
    [entry] = [h for h in store.history(uid) if h.key.task == "fan"]
    assert (entry.message, entry.job_id, entry.states) == ("Invalid account", None, {TaskPhase.FAILED: "0-9"})
    assert store.unconfirmed_intents("dev") == 0
    with pytest.raises(KeyError):
        store.confirm_submission(uid, key=JobKey("prep", 9), job_id="1", now=T0)


def test_an_unconfirmed_intent_takes_the_new_intent_for_its_key(store: Store, uid: str):
    key = JobKey("prep", 1)
    store.record_intent(uid, key=key, fingerprint="old", indices=None, resources={"cpus": 1}, cluster="dev", now=T0)
    later = T0 + timedelta(minutes=5)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={"cpus": 2}, cluster="dev", now=later)
    [record] = store.attempts(uid)
    assert (record.fingerprint, record.recorded_at) == (FP, later)


def test_a_job_whose_intent_was_lost_is_adopted(store: Store, uid: str):
    store.record_intent(uid, key=JobKey("prep", 1), fingerprint=FP, indices=None, resources={}, cluster="dev",
                        now=T0)
    store.update_from_observation(uid, [observed(JobKey("prep", 2), TaskPhase.RUNNING, job_id="200")], now=T0)
    adopted = [r for r in store.attempts(uid) if r.key.attempt == 2]
    assert [(r.job_id, r.phase, r.fingerprint) for r in adopted] == [("200", TaskPhase.RUNNING, FP)]
    assert store.unfinished_job_ids("dev") == ["200"]


def test_cancelled_by_the_reconciler_is_remembered(store: Store, uid: str):
    key = JobKey("prep", 1)
    store.record_intent(uid, key=key, fingerprint=FP, indices=None, resources={}, cluster="dev", now=T0)
    store.confirm_submission(uid, key=key, job_id="100", now=T0)
    store.mark_cancelled(uid, job_ids=["100", "999"])
    store.update_from_observation(uid, [observed(key, TaskPhase.CANCELLED, reason="DependencyNeverSatisfied")],
                                  now=T0)
    [record] = store.attempts(uid)
    assert record.cancelled_by_reconciler
    # Cancelled by us, so not a dependency's doing even with that reason.
    assert not runs(store, uid).elements[None].cancelled_by_dependency


def test_array_elements_with_mixed_outcomes(store: Store, uid: str):
    key = JobKey("fan", 1)
    store.record_intent(uid, key=key, fingerprint=FP, indices=tuple(range(10)), resources={}, cluster="dev", now=T0)
    store.confirm_submission(uid, key=key, job_id="300", now=T0)
    end = T0 + timedelta(minutes=30)
    tick = [observed(key, TaskPhase.SUCCEEDED, job_id="300", indices=(i,), exit_code=0, core_seconds=1800, finished=end)
            for i in range(6)]
    tick += [
        observed(key, TaskPhase.FAILED, job_id="300", indices=(6,), failure=FailureKind.OUT_OF_MEMORY, exit_code=0,
                 node_list="n1", core_seconds=900, finished=end),
        observed(key, TaskPhase.FAILED, job_id="300", indices=(7,), failure=FailureKind.NODE_FAIL, exit_code=1,
                 node_list="n2", core_seconds=900, finished=end),
        observed(key, TaskPhase.SUBMITTED, job_id="300", indices=(8, 9), reason="Priority"),
    ]
    store.update_from_observation(uid, tick, now=end)
    store.update_from_observation(uid, tick, now=end + timedelta(minutes=1))  # sacct repeats itself
    assert store.unfinished_job_ids("dev") == ["300"]

    records = store.attempts(uid)
    assert {r.indices: r.phase for r in records} == {
        (0, 1, 2, 3, 4, 5): TaskPhase.SUCCEEDED, (6,): TaskPhase.FAILED, (7,): TaskPhase.FAILED,
        (8, 9): TaskPhase.SUBMITTED,
    }
    result = runs(store, uid, indices=range(10), task="fan")
    phases = {i: e.phase for i, e in result.elements.items()}
    assert phases == {**dict.fromkeys(range(6), TaskPhase.SUCCEEDED), 6: TaskPhase.FAILED, 7: TaskPhase.FAILED,
                      8: TaskPhase.UNKNOWN, 9: TaskPhase.UNKNOWN}
    assert result.elements[6].failures[0].kind is FailureKind.OUT_OF_MEMORY
    assert result.elements[7].failures[0].node_list == "n2" and result.elements[7].failures[0].finished_at == end
    assert result.core_seconds == 12600  # counted once despite the repeated report

    # The rest finish; then Slurm requeues element 0, which leaves its finished group.
    store.update_from_observation(uid, [observed(key, TaskPhase.SUCCEEDED, job_id="300", indices=(8, 9),
                                                 exit_code=0, core_seconds=3600, finished=end)], now=end)
    assert store.unfinished_job_ids("dev") == []
    [entry] = [h for h in store.history(uid) if h.key.task == "fan"]
    assert entry.states == {TaskPhase.FAILED: "6-7", TaskPhase.SUCCEEDED: "0-5,8-9"}
    assert entry.outcome.phase is TaskPhase.FAILED
    store.update_from_observation(uid, [observed(key, TaskPhase.SUBMITTED, job_id="300", indices=(0,))], now=end)
    assert store.unfinished_job_ids("dev") == ["300"]
    assert runs(store, uid, indices=range(10), task="fan").core_seconds == 14400


def test_a_30000_element_array_stays_small(store: Store, uid: str, tmp_path: Path):
    key = JobKey("fan", 1, 0)
    size = 30_000
    store.record_intent(uid, key=key, fingerprint=FP, indices=tuple(range(size)), resources={}, cluster="dev",
                        now=T0)
    store.confirm_submission(uid, key=key, job_id="400", now=T0)
    failed = {17, 1234, 29_999}
    store.update_from_observation(uid, [observed(key, TaskPhase.SUBMITTED, job_id="400", indices=tuple(range(size)))],
                                  now=T0)
    tick = [
        observed(key, TaskPhase.FAILED if i in failed else TaskPhase.SUCCEEDED, job_id="400", indices=(i,),
                 failure=FailureKind.FAILED if i in failed else None, exit_code=3 if i in failed else 0,
                 node_list=f"n{i % 4}", core_seconds=36, finished=T0 + timedelta(seconds=i))
        for i in range(size)
    ]
    store.update_from_observation(uid, tick, now=T0)
    records = store.attempts(uid)
    assert sum(len(r.indices) for r in records) == size
    result = runs(store, uid, indices=range(size), task="fan")
    assert {i for i, e in result.elements.items() if e.phase is TaskPhase.FAILED} == failed
    assert sum(e.phase is TaskPhase.SUCCEEDED for e in result.elements.values()) == size - len(failed)
    assert result.core_seconds == size * 36

    raw = sqlite3.connect(store.path)
    [(outcomes, indices)] = raw.execute("SELECT outcomes, indices FROM attempts WHERE task = 'fan'").fetchall()
    raw.close()
    assert indices == "0-29999" and len(outcomes) < 5000


# -- approvals and events ---------------------------------------------------------------------------------

def test_approvals_belong_to_the_active_run(store: Store, uid: str):
    assert store.approve("default", "plan", "review", fingerprint=FP, via=ApprovalVia.CLI, by="alice", now=T0) == uid
    store.approve("default", "plan", "review", fingerprint=FP, via=ApprovalVia.CLI, by="bob", now=T0)
    assert store.approvals(uid).tasks == frozenset({"review"})
    with pytest.raises(KeyError, match="no active workflow default/ghost"):
        store.approve("default", "ghost", "review", fingerprint=FP, via=ApprovalVia.CLI, by="alice", now=T0)
    store.mark_removed(uid, now=T0)
    with pytest.raises(KeyError):
        store.approve("default", "plan", "review", fingerprint=FP, via=ApprovalVia.CLI, by="alice", now=T0)
    again = store.upsert_workflow(namespace="default", name="plan", resource=resource(), revision=None,
                                  source_file=None, now=T0)
    assert store.approvals(again.uid).tasks == frozenset()


def test_events_are_newest_last_and_trimmed(store: Store, uid: str):
    for n in range(MAX_EVENTS + 50):
        store.add_events(uid, [Event("Normal", "Tick", f"event {n}")], now=T0 + timedelta(seconds=n))
    latest = store.events(uid, limit=3)
    assert [e.message for e in latest] == [f"event {n}" for n in range(MAX_EVENTS + 47, MAX_EVENTS + 50)]
    assert latest[-1].at == T0 + timedelta(seconds=MAX_EVENTS + 49) and latest[0].type == "Normal"
    everything = store.events(uid, limit=10 * MAX_EVENTS)
    assert len(everything) == MAX_EVENTS and everything[0].message == "event 50"


def test_writes_from_two_threads_share_one_store(store: Store, uid: str):
    def approve(task: str) -> None:
        for n in range(50):
            store.approve("default", "plan", f"{task}-{n}", fingerprint=FP, via=ApprovalVia.CLI, by="webhook", now=T0)

    threads = [threading.Thread(target=approve, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for n in range(50):
        store.add_events(uid, [Event("Normal", "Tick", str(n))], now=T0)
    for thread in threads:
        thread.join()
    assert len(store.approvals(uid).tasks) == 100 and len(store.events(uid, limit=100)) == 50


def test_naive_times_are_refused(store: Store):
    with pytest.raises(ValueError, match="naive"):
        store.upsert_workflow(namespace="default", name="plan", resource=resource(), revision=None,
                              source_file=None, now=T0.replace(tzinfo=None))


def test_observations_of_an_unknown_workflow_are_refused(store: Store):
    with pytest.raises(KeyError, match="no workflow with uid ghost"):
        store.update_from_observation("ghost", [observed(JobKey("prep", 1), TaskPhase.RUNNING)], now=T0)
