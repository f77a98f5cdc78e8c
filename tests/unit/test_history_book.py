"""The history book on a real SQLite file, fed by the recording edge's pure half (``runs_of``)
from captured sacct output; and the migration that keeps earlier core-hours."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.api import TaskPhase, Workflow
from reconciler.core.history import RunSample, TaskUsage
from reconciler.core.observed import JobKey, JobOutcome, ObservedJob
from reconciler.engine.history import record_history, runs_of
from reconciler.slurm import commands as c
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.transport import TransportError
from reconciler.store import schema
from reconciler.store.database import Store
from tests.fakes import FakeSlurm
from tests.unit.reconcile_world import T0, resolved

DATA = Path(__file__).parent / "data" / "slurm-22.05"
FP = "fp-1"
MANIFEST = {
    "metadata": {"name": "plan", "namespace": "default"},
    "spec": {"cluster": "dev", "tasks": [
        {"name": "prep", "command": ["true"], "kind": "prep-kind", "sizeHint": 2.5},
        {"name": "fan", "command": ["run"], "array": {"count": 3}}]},
}


def resolved_plan():
    return resolved(yaml.safe_dump(Workflow.model_validate(MANIFEST).to_wire()))


def ended(store: Store, uid: str, key: JobKey, job_id: str, *, indices=None, at=T0) -> None:
    store.record_intent(uid, key=key, fingerprint=FP, indices=indices, resources={}, cluster="dev", now=T0)
    store.confirm_submission(uid, key=key, job_id=job_id, now=T0)
    outcome = JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0, started_at=T0, finished_at=at)
    jobs = [ObservedJob(key=key, job_id=job_id, fingerprint=FP, indices=None if indices is None else (i,),
                        outcome=outcome) for i in (indices or [None])]
    store.update_from_observation(uid, jobs, now=at)


def test_ended_attempts_become_runs_once(store: Store):
    uid = store.upsert_workflow(namespace="default", name="plan", resource=MANIFEST, revision=None,
                                source_file=None, now=T0).uid
    resolved = resolved_plan()
    ended(store, uid, JobKey("prep", 1), "14686", at=T0)
    ended(store, uid, JobKey("fan", 1), "14685", indices=[0, 1, 2], at=T0)
    assert store.unrecorded_attempts("other", [uid]) == [] and store.unrecorded_attempts("dev", []) == []
    attempts = store.unrecorded_attempts("dev", [uid])
    assert [(a.key.task, a.job_id, a.elements, a.array) for a in attempts] == [
        ("fan", "14685", 3, True), ("prep", "14686", 1, False)]

    usage = c.parse_sacct_usage((DATA / "sacct-usage.txt").read_text())
    runs, taken = runs_of(attempts, usage, {uid: resolved}, cluster="dev", now=T0 + timedelta(seconds=5))
    assert taken == attempts
    assert store.history_mark() == 0
    store.record_runs(runs, attempts=taken)
    mark = store.history_mark()
    store.record_runs(runs, attempts=taken)  # again: nothing changes
    assert store.unrecorded_attempts("dev", [uid]) == []
    assert store.history_mark() == mark > 0

    prep, fan = sorted(store.runs(), key=lambda s: s.task, reverse=True)
    assert prep == RunSample(
        kind="prep-kind", workflow="default/plan", task="prep", attempt=1, job_id="14686", cluster="dev",
        partition="billed", nodes=1, cpus=2, memory_mib=200.0, time_limit_seconds=120, size_hint=2.5,
        state="COMPLETED", elements=1, elapsed_seconds=1.0, queue_wait_seconds=2.0, max_rss_mib=None,
        total_cpu_seconds=0.002, billed_core_seconds=4, finished_at=prep.finished_at)
    assert (fan.kind, fan.elements, fan.elapsed_seconds, fan.billed_core_seconds, fan.size_hint) == (
        "plan/fan", 3, 2.0, 24, None)
    assert fan.total_cpu_seconds == pytest.approx(1.174 + 1.14 + 1.074)
    assert store.runs("prep-kind") == [prep] and store.runs("nothing") == [] and len(store.runs(limit=1)) == 1

    usage_by_task = store.usage(uid)
    assert usage_by_task[("fan", FP)] == TaskUsage(attempt=1, cpu_efficiency=round(3.388 / 12, 3),
                                                   memory_efficiency=None)


def test_an_attempt_accounting_has_not_got_yet_waits_until_it_must_have(store: Store):
    uid = store.upsert_workflow(namespace="default", name="plan", resource=MANIFEST, revision=None,
                                source_file=None, now=T0).uid
    ended(store, uid, JobKey("prep", 1), "99999", at=T0)
    attempts = store.unrecorded_attempts("dev", [uid])
    runs, taken = runs_of(attempts, [], {uid: resolved_plan()}, cluster="dev", now=T0 + timedelta(seconds=5))
    assert (runs, taken) == ([], [])
    runs, taken = runs_of(attempts, [], {uid: resolved_plan()}, cluster="dev", now=T0 + timedelta(minutes=5))
    assert (runs, taken) == ([], attempts)  # never in accounting: given up on, without a run


def test_a_run_waits_for_its_steps_end_in_accounting(store: Store):
    """slurmdbd may have a job's end before its batch step's final record (with its MaxRSS): the
    run is not recorded from the first answer, but from one that has the step ended."""
    uid = store.upsert_workflow(namespace="default", name="plan", resource=MANIFEST, revision=None,
                                source_file=None, now=T0).uid
    ended(store, uid, JobKey("prep", 1), "14686", at=T0)
    attempts = store.unrecorded_attempts("dev", [uid])
    job, step = (DATA / "sacct-usage.txt").read_text().splitlines()[:2]
    running_step = step.replace("|COMPLETED|1795940768|1795940768|1795940769|", "|RUNNING|1795940768|1795940768||")
    running_step = running_step.replace("||0|", "|||", 1)
    early = c.parse_sacct_usage(f"{job}\n{running_step}\n")
    assert [u.steps_ended for u in early] == [False]
    assert runs_of(attempts, early, {uid: resolved_plan()}, cluster="dev", now=T0 + timedelta(seconds=5)) == ([], [])

    final = c.parse_sacct_usage(f"{job}\n{step.replace('||0|', '||120M|', 1)}\n")
    runs, taken = runs_of(attempts, final, {uid: resolved_plan()}, cluster="dev", now=T0 + timedelta(seconds=6))
    assert taken == attempts and [run.sample.max_rss_mib for run in runs] == [120.0]
    # Past the time accounting may lag, what it has is taken as it is.
    runs, taken = runs_of(attempts, early, {uid: resolved_plan()}, cluster="dev", now=T0 + timedelta(minutes=5))
    assert taken == attempts and [run.sample.max_rss_mib for run in runs] == [None]


def test_a_job_cancelled_before_it_ran_leaves_no_run(store: Store):
    uid = store.upsert_workflow(namespace="default", name="plan", resource=MANIFEST, revision=None,
                                source_file=None, now=T0).uid
    ended(store, uid, JobKey("prep", 2), "14692", at=T0)
    attempts = store.unrecorded_attempts("dev", [uid])
    usage = c.parse_sacct_usage((DATA / "sacct-usage.txt").read_text())
    runs, taken = runs_of(attempts, usage, {uid: resolved_plan()}, cluster="dev", now=T0)
    assert (runs, taken) == ([], attempts)


def test_usage_of_the_latest_attempt():
    base = RunSample(kind="k", workflow="d/w", task="t", attempt=1, job_id="1", cluster="dev", partition=None,
                     nodes=1, cpus=4, memory_mib=1000.0, time_limit_seconds=None, size_hint=None, state="COMPLETED",
                     elements=2, elapsed_seconds=100.0, queue_wait_seconds=None, max_rss_mib=500.0,
                     total_cpu_seconds=400.0, billed_core_seconds=800, finished_at=T0)
    later = replace(base, attempt=2, job_id="2", total_cpu_seconds=800.0, max_rss_mib=1200.0)
    assert TaskUsage.of([base, later]) == TaskUsage(attempt=2, cpu_efficiency=1.0, memory_efficiency=1.2)
    assert TaskUsage.of([base]) == TaskUsage(attempt=1, cpu_efficiency=0.5, memory_efficiency=0.5)
    assert TaskUsage.of([]) is None


def test_migration_keeps_earlier_core_hours_as_seconds(tmp_path: Path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("BEGIN")
    for version in range(1, 7):
        schema.MIGRATIONS[version](db)
    db.execute("PRAGMA user_version = 6")
    db.execute("INSERT INTO workflows (uid, namespace, name, generation, resource, spec_hash, labels, created_at) "
               "VALUES ('u1', 'default', 'w', 1, '{}', 'h', '{}', '2026-01-01T11:00:00+00:00')")
    groups = json.dumps([{"phase": "Succeeded", "indices": "0-1", "coreHours": 0.5}])
    db.execute("INSERT INTO attempts (uid, task, attempt, part, fingerprint, resources, cluster, recorded_at, job_id, "
               "phase, core_hours, done) VALUES ('u1', 'seg', 1, 0, 'fp', '{}', 'dev', "
               "'2026-01-01T11:00:00+00:00', '7', 'Succeeded', 0.25, 1)")
    db.execute("INSERT INTO attempts (uid, task, attempt, part, fingerprint, indices, resources, cluster, recorded_at, "
               "job_id, phase, core_hours, outcomes, done) VALUES ('u1', 'fan', 1, 0, 'fp', '0-1', '{}', 'dev', "
               "'2026-01-01T11:00:00+00:00', '8', 'Succeeded', 0.5, ?, 1)", (groups,))
    db.execute("COMMIT")
    db.close()
    with Store(path) as store:
        records = {r.key.task: r for r in store.attempts("u1")}
        assert records["seg"].outcome is not None and records["seg"].outcome.core_seconds == 900
        assert records["fan"].outcome is not None and records["fan"].outcome.core_seconds == 1800
        # Runs that ended before are taken into the history on the next tick that sees them.
        assert [a.job_id for a in store.unrecorded_attempts("dev", ["u1"])] == ["8", "7"]


def test_recording_asks_slurm_only_for_ended_attempts_and_never_fails_the_tick(store: Store):
    uid = store.upsert_workflow(namespace="default", name="plan", resource=MANIFEST, revision=None,
                                source_file=None, now=T0).uid
    plan = resolved_plan()
    slurm = FakeSlurm()
    client = SlurmClient(plan.cluster, slurm)
    record_history(store, client, {uid: plan}, now=T0)
    assert slurm.calls == []  # nothing ended: nothing asked

    ended(store, uid, JobKey("prep", 1), "14686", at=T0)
    slurm.fail("sacct", TransportError("connection reset"))
    record_history(store, client, {uid: plan}, now=T0 + timedelta(seconds=2))  # logged, not raised
    assert [a.job_id for a in store.unrecorded_attempts("dev", [uid])] == ["14686"]

    slurm = FakeSlurm()  # reachable again; its accounting has not heard of the job yet
    client = SlurmClient(plan.cluster, slurm)
    record_history(store, client, {uid: plan}, now=T0 + timedelta(seconds=4))
    [call] = slurm.calls
    assert "--jobs=14686" in call and "-X" not in call
    assert [a.job_id for a in store.unrecorded_attempts("dev", [uid])] == ["14686"]
    record_history(store, client, {uid: plan}, now=T0 + timedelta(minutes=5))
    assert store.unrecorded_attempts("dev", [uid]) == [] and store.runs() == []
    record_history(store, client, {uid: plan}, now=T0 + timedelta(minutes=6))
    assert len(slurm.calls) == 2
