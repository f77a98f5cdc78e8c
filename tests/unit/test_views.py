from datetime import timedelta

from reconciler.api import TaskPhase, TaskStatus, WorkflowPhase, WorkflowStatus
from reconciler.views import EventRow, WorkflowRow, age, describe, dump, resource, workflows_table
from tests.unit.reconcile_world import T0


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
