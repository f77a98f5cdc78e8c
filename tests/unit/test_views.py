from datetime import timedelta

from reconciler.api import FailureKind, Resources, TaskPhase, TaskStatus, WorkflowPhase, WorkflowStatus
from reconciler.cli.output import EventRow, WorkflowRow, age, describe, dump, resource, workflows_table
from reconciler.core.observed import JobKey, JobOutcome
from reconciler.store.rows import AttemptHistory
from tests.unit.reconcile_world import T0


def attempt(task: str, number: int, *, job_id: str, resources: Resources, outcome: JobOutcome) -> AttemptHistory:
    return AttemptHistory(key=JobKey(task, number), fingerprint="f", cluster="dev", job_id=job_id, resources=resources,
                          recorded_at=T0, submitted_at=T0, outcome=outcome, message=None, cancelled_by_reconciler=False,
                          indices=None, states=None)


def row(name: str, status: WorkflowStatus | None) -> WorkflowRow:
    return WorkflowRow(namespace="default", name=name, uid=f"uid-{name}", generation=2, created_at=T0,
                       spec={"cluster": "dev", "tasks": []}, labels={"project": "x"}, status=status)


WAITING = WorkflowStatus(phase=WorkflowPhase.RUNNING, progress="2/4", core_hours=1.25, revision="abcdef1234567890",
                         tasks={"review": TaskStatus(phase=TaskPhase.AWAITING_APPROVAL)})
DONE = WorkflowStatus(phase=WorkflowPhase.SUCCEEDED, progress="3/3", core_hours=0.5)


def test_age_is_compact():
    assert [age(T0, T0 + timedelta(seconds=s)) for s in (5, 150, 7300, 3 * 86400)] == ["5s", "2m", "2h", "3d"]


def test_table_marks_workflows_waiting_for_a_person():
    text = workflows_table([row("plan", DONE), row("slide", WAITING)], now=T0 + timedelta(minutes=3))
    lines = text.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "PROGRESS", "CORE-HOURS", "AGE"]
    assert lines[1].split() == ["default", "plan", "Succeeded", "3/3", "0.50", "3m"]
    assert lines[2].split() == ["default", "!", "slide", "Running", "2/4", "1.25", "3m"]
    assert "reconciler approve slide review" in text


def test_wide_table_adds_cluster_revision_and_message():
    text = workflows_table([row("plan", WAITING)], now=T0, wide=True)
    assert "CLUSTER" in text and "abcdef123456" in text and "abcdef1234567" not in text


def test_resource_has_the_kubernetes_shape_and_round_trips_through_yaml():
    from ruamel.yaml import YAML

    document = resource(row("plan", DONE))
    assert document["apiVersion"] == "hpc.reconciler.dev/v1alpha1" and document["kind"] == "Workflow"
    assert document["metadata"]["creationTimestamp"] == "2026-01-01T12:00:00Z"
    assert document["status"]["phase"] == "Succeeded" and document["status"]["coreHours"] == 0.5
    parsed = YAML(typ="safe").load(dump(document, output="yaml"))
    assert parsed == document


def test_describe_lists_tasks_conditions_and_events():
    text = describe(row("slide", WAITING), [EventRow(T0, "Normal", "AwaitingApproval", "task review waits")],
                    now=T0 + timedelta(seconds=30))
    assert "review   AwaitingApproval" in text
    assert "reconciler approve slide review" in text
    assert "30s   Normal   AwaitingApproval   task review waits" in text


def test_describe_lists_attempts_in_dag_order_with_request_and_outcome():
    status = WorkflowStatus(phase=WorkflowPhase.SUCCEEDED, tasks={"simulate": TaskStatus(phase=TaskPhase.SUCCEEDED),
                                                                  "report": TaskStatus(phase=TaskPhase.SUCCEEDED)})
    attempts = [
        attempt("report", 1, job_id="12", resources=Resources(time="00:05:00"),
                outcome=JobOutcome(phase=TaskPhase.SUCCEEDED, reason="Dependency", exit_code=0, core_seconds=36)),
        attempt("simulate", 2, job_id="11", resources=Resources(time="00:02:00", memory="1G"),
                outcome=JobOutcome(phase=TaskPhase.SUCCEEDED, exit_code=0, core_seconds=1800)),
        attempt("simulate", 1, job_id="10", resources=Resources(time="00:01:00", memory="1G"),
                outcome=JobOutcome(phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT, exit_code=0, core_seconds=900)),
    ]
    text = describe(row("plan", status), [], now=T0, attempts=attempts)
    assert text.count("Attempts:") == 1
    rows = [line.split() for line in text.split("Attempts:\n")[1].split("Events:")[0].splitlines()[1:]]
    assert rows == [
        ["simulate", "1", "10", "time=00:01:00", "memory=1G", "TIMEOUT", "0", "0.2500"],
        ["simulate", "2", "11", "time=00:02:00", "memory=1G", "Succeeded", "0", "0.5000"],
        ["report", "1", "12", "time=00:05:00", "Succeeded", "0", "0.0100"],
    ]
