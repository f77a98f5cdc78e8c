"""Approvals that carry values, and their iterations: parameters and references checked in the
model, --set words read as the declared types, values rendered at submission and folded into the
fingerprints after the approval, approving again (a new iteration) and rejecting, the
NeedsAttention condition, the store's iterations and migration 9, reconciler approve --set and
reject, the operator's annotations, describe, diff and submit."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.api import Task, TaskPhase, Workflow, WorkflowStatus
from reconciler.cli.approving import approve
from reconciler.cli.output import describe
from reconciler.core.approvals import Approval, ApprovalVia, declared_approvals
from reconciler.core.fingerprint import fingerprints
from reconciler.engine.controller import Controller
from reconciler.store.database import Store
from reconciler.store.schema import MIGRATIONS
from tests.fakes import FakeSlurm, LoginNodes, MemorySource
from tests.unit.reconcile_world import T0, job, later, plan, resolved
from tests.unit.test_approvals import REVIEWED, given, phases, resource, stored_with, submitted

TUNED = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: tuned}
spec:
  tasks:
    - {name: prepare, script: "echo prepare"}
    - name: review
      type: approval
      dependsOn: [prepare]
      parameters:
        - {name: gamma, type: number, default: 1.0, description: brightness}
        - {name: crop, type: string}
    - name: treat
      dependsOn: [review]
      script: "echo gamma={{ approvals.review.gamma }} crop={{approvals.review.crop}} >out"
      env: {CROP: "{{ approvals.review.crop }}"}
    - {name: report, dependsOn: [treat], command: [echo, "{{ approvals.review.gamma }}"]}
"""


def with_values(workflow, values: dict, *, at_seconds: int = 0, by: str = "alice",
                rejected: str | None = None) -> Approval:
    return Approval(task="review", fingerprint=fingerprints(workflow.graph)["review"], via=ApprovalVia.CLI, by=by,
                    at=later(at_seconds), values=values, rejected=rejected)


def manifest_problems(text: str) -> list[str]:
    from reconciler.manifests.loader import load_text
    from tests.unit.reconcile_world import CLUSTER

    result = load_text(CLUSTER + "---\n" + text, filename="tuned.yaml")
    return [str(error) for error in result.errors]


def test_an_approval_task_declares_parameters_and_approved_values_are_checked_with_file_and_line():
    assert manifest_problems(TUNED) == []
    approved = TUNED.replace("      parameters:",
                             '      approved: {gamma: 1.2, crop: "0,0,800,600"}\n      parameters:')
    assert manifest_problems(approved) == []
    for value, expected in (('{gamma: "bright", crop: x}', "'bright' expects a number"),
                            ("{gamma: 1.2}", "parameter 'crop' (string) needs a value: it has no default"),
                            ("{crop: x, zoom: 2}", "unknown parameter 'zoom' (declared: gamma, crop)"),
                            ("{crop: 3}", "3 expects a string (quote it)")):
        [problem] = manifest_problems(TUNED.replace("      parameters:", f"      approved: {value}\n      parameters:"))
        assert expected in problem and "tuned.yaml:" in problem, problem
        assert problem.split(":")[1].isdigit(), problem  # a line number
    [both] = manifest_problems(TUNED.replace("      parameters:", '      approved: true\n      rejected: "no"\n'
                                                                   "      parameters:"))
    assert "approved and rejected exclude each other" in both
    with pytest.raises(ValidationError, match="default 'x': expects a number"):
        Task(name="review", type="approval", parameters=[{"name": "gamma", "type": "number", "default": "x"}])
    with pytest.raises(ValidationError, match="apply only to approval tasks"):
        Task(name="t", script="x", parameters=[{"name": "gamma"}])


def test_a_reference_must_name_a_parameter_of_an_approval_before_the_task():
    [unordered] = manifest_problems(TUNED.replace("dependsOn: [treat], command", "command"))
    assert "task report: {{ approvals.review.gamma }}: 'review' must come before it" in unordered
    [unknown] = manifest_problems(TUNED.replace("{{ approvals.review.gamma }} crop",
                                                "{{ approvals.review.zoom }} crop"))
    assert "task 'review' declares no parameter 'zoom'" in unknown
    [missing] = manifest_problems(TUNED.replace("approvals.review.crop}}", "approvals.check.crop}}"))
    assert "no approval task 'check'" in missing
    # Other {{ }} expressions are a script's own business.
    assert manifest_problems(TUNED.replace("echo prepare", "echo {{ .Values.x }} {{ approvals }}")) == []


def test_set_words_are_read_as_the_declared_types():
    from reconciler.api.approval import ApprovalParameter
    from reconciler.core.approval_values import ApprovalValuesError, parse_assignments

    declared = [ApprovalParameter(name="gamma", type="number", default=1.0), ApprovalParameter(name="crop"),
                ApprovalParameter(name="tiles", type="integer", default=4),
                ApprovalParameter(name="sharpen", type="boolean", default=False)]
    assert parse_assignments(declared, ["gamma=1.2", "crop=0,0,800,600", "tiles=8", "sharpen=yes"]) == {
        "gamma": 1.2, "crop": "0,0,800,600", "tiles": 8, "sharpen": True}
    assert parse_assignments(declared, ["crop=a=b"]) == {"crop": "a=b"}
    with pytest.raises(ApprovalValuesError) as refused:
        parse_assignments(declared, ["gamma=bright", "tiles=2.5", "zoom=3", "sharpen=maybe", "oops"])
    assert refused.value.problems == [
        "parameter 'gamma': 'bright' expects a number", "parameter 'tiles': '2.5' expects an integer",
        "parameter 'sharpen': 'maybe' expects true or false", "'oops': expected NAME=VALUE",
        "unknown parameter 'zoom' (declared: gamma, crop, tiles, sharpen)",
        "parameter 'crop' (string) needs a value: it has no default"]


def test_values_reach_the_script_command_and_environment_only_at_submission():
    from reconciler.core.approval_values import ApprovedValues, env_name, with_approved

    wf = resolved(TUNED)
    treat = wf.tasks["treat"]
    rendered = with_approved(treat, (ApprovedValues("review", (("crop", "0,0,8,6"), ("gamma", 1.2))),))
    assert rendered.script == "echo gamma=1.2 crop=0,0,8,6 >out"
    assert rendered.env["CROP"] == "0,0,8,6"
    assert rendered.env["APPROVAL_REVIEW_GAMMA"] == "1.2" and rendered.env["APPROVAL_REVIEW_CROP"] == "0,0,8,6"
    assert with_approved(wf.tasks["report"], (ApprovedValues("review", (("gamma", 1.5),)),)).command == ["echo", "1.5"]
    assert "{{ approvals.review.gamma }}" in treat.script  # the declared task is left as declared
    assert env_name("tile-review.v2", "gamma") == "APPROVAL_TILE_REVIEW_V2_GAMMA"


def test_the_values_fold_into_the_fingerprints_after_the_approval_only():
    from reconciler.core.approvals import TaskApprovals

    wf = resolved(TUNED)
    plain = fingerprints(wf.graph)
    first = fingerprints(wf.graph, approvals=TaskApprovals((with_values(wf, {"crop": "a"}),)))
    second = fingerprints(wf.graph, approvals=TaskApprovals((with_values(wf, {"crop": "a"}),
                                                              with_values(wf, {"crop": "b"}, at_seconds=5))))
    defaults = fingerprints(wf.graph, approvals=TaskApprovals((with_values(wf, {"crop": "a", "gamma": 1.0}),)))
    assert plain["prepare"] == first["prepare"] == second["prepare"]
    assert plain["review"] == first["review"] == second["review"]  # what approvals are bound to
    assert len({plain["treat"], first["treat"], second["treat"]}) == 3
    assert len({plain["report"], first["report"], second["report"]}) == 3
    assert defaults == first  # a default given or left out is the same value
    # An approval task without parameters folds nothing: such workflows keep their fingerprints.
    reviewed = resolved(REVIEWED)
    assert fingerprints(reviewed.graph, approvals=TaskApprovals((given(reviewed),))) == fingerprints(reviewed.graph)


def test_approving_again_with_other_values_reruns_the_tasks_after_it():
    wf = resolved(TUNED)
    prepared = job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)
    waiting = plan(wf, observed=[prepared])
    assert phases(waiting)["review"] is TaskPhase.AWAITING_APPROVAL
    attention = {c.type: c for c in waiting.status.conditions}["NeedsAttention"]
    assert (attention.status.value, attention.reason) == ("True", "AwaitingApproval") and "review" in attention.message

    first = [with_values(wf, {"crop": "a"})]
    approved = plan(wf, observed=[prepared], approvals=first, previous=waiting.status, now=later(10))
    # report goes out too, after treat's job: both carry the values they are rendered with.
    submits = [a for a in approved.actions if type(a).__name__ == "Submit"]
    assert [s.key.task for s in submits] == ["treat", "report"]
    assert all([v.as_dict for v in s.approved] == [{"crop": "a", "gamma": 1.0}] for s in submits)
    review = approved.status.tasks["review"]
    assert review.phase is TaskPhase.SUCCEEDED and review.reason == "Approved"
    assert "approved by alice" in review.message and "crop=a, gamma=1.0" in review.message
    assert "NeedsAttention" not in {c.type for c in approved.status.conditions}

    # treat ran with crop=a; approving again with crop=b makes its fingerprint new: it runs again.
    folded = approved.status.tasks["treat"].fingerprint
    done = [job(wf, task, phase=TaskPhase.SUCCEEDED, exit_code=0, fingerprint=approved.status.tasks[task].fingerprint)
            for task in ("treat", "report")]
    settled = plan(wf, observed=[prepared, *done], approvals=first, previous=approved.status, now=later(20))
    assert settled.status.tasks["treat"].phase is TaskPhase.SUCCEEDED and submitted(settled) == []
    again = plan(wf, observed=[prepared, *done], approvals=[*first, with_values(wf, {"crop": "b"}, at_seconds=30)],
                 previous=settled.status, now=later(40))
    assert again.status.tasks["treat"].fingerprint != folded and submitted(again) == ["treat", "report"]
    submit = next(a for a in again.actions if type(a).__name__ == "Submit")
    assert submit.approved[0].as_dict == {"crop": "b", "gamma": 1.0}
    assert [e.message for e in approved.events if e.reason == "Approved"] == [
        "task review was approved with crop=a, gamma=1.0"]
    assert [e.message for e in again.events if e.reason == "Approved"] == [
        "task review was approved again with crop=b, gamma=1.0 (before: crop=a, gamma=1.0): the tasks after it run "
        "again"]
    assert not [e for e in settled.events if e.reason == "Approved"]


def test_a_rejection_fails_the_approval_with_its_reason_until_approved_again():
    wf = resolved(TUNED)
    prepared = job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)
    no = [with_values(wf, {}, rejected="the crop cuts the lesion", by="ana")]
    rejected = plan(wf, observed=[prepared], approvals=no)
    review = rejected.status.tasks["review"]
    assert (review.phase, review.reason) == (TaskPhase.FAILED, "Rejected")
    assert "the crop cuts the lesion" in review.message and "rejected by ana" in review.message
    assert phases(rejected)["treat"] is TaskPhase.SKIPPED and submitted(rejected) == []
    conditions = {c.type: c for c in rejected.status.conditions}
    assert conditions["Stalled"].status.value == "True"
    assert (conditions["NeedsAttention"].status.value, conditions["NeedsAttention"].reason) == ("True", "TaskFailed")
    assert [e.reason for e in rejected.events if e.type == "Warning"][:1] == ["Rejected"]

    again = plan(wf, observed=[prepared], approvals=[*no, with_values(wf, {"crop": "c"}, at_seconds=60)],
                 previous=rejected.status, now=later(90))
    assert phases(again)["review"] is TaskPhase.SUCCEEDED and submitted(again) == ["treat", "report"]
    assert "NeedsAttention" not in {c.type for c in again.status.conditions}


def test_values_recorded_unchecked_do_not_approve():
    wf = resolved(TUNED)
    result = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)],
                  approvals=[with_values(wf, {"gamma": "bright"})])
    review = result.status.tasks["review"]
    assert (review.phase, review.reason) == (TaskPhase.AWAITING_APPROVAL, "ApprovalInvalid")
    assert "'bright' expects a number" in review.message and submitted(result) == []


def test_a_workflow_stalled_for_any_reason_needs_attention_and_one_progressing_does_not():
    from reconciler.core.conditions import needs_attention
    from reconciler.core.status import invalid_status

    broken = invalid_status(previous=None, errors=["spec.tasks: bad"], generation=1, revision=None, now=T0)
    assert needs_attention(broken)
    attention = {c.type: c for c in broken.conditions}["NeedsAttention"]
    assert (attention.reason, attention.message) == ("InvalidSpec", "spec.tasks: bad")
    wf = resolved(REVIEWED)
    running = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.RUNNING)])
    assert not needs_attention(running.status)


def test_the_store_keeps_every_iteration_and_a_repeated_decision_adds_none(tmp_path: Path):
    with stored_with(tmp_path, None) as store:
        uid = store.workflow("default", "reviewed").uid
        for at, values, rejected in ((0, {"gamma": 1.2}, None), (1, {"gamma": 1.2}, None), (2, None, "too dark"),
                                     (3, {"gamma": 1.5}, None), (4, {"gamma": 1.2}, None)):
            store.approve("default", "reviewed", "review", fingerprint="fp", via=ApprovalVia.CLI, by="ana",
                          now=later(at), values=values, rejected=rejected)
        approvals = store.approvals(uid)
        iterations = approvals.iterations("review")
        assert [(dict(a.values), a.rejected) for a in iterations] == [
            ({"gamma": 1.2}, None), ({}, "too dark"), ({"gamma": 1.5}, None), ({"gamma": 1.2}, None)]
        assert iterations[0].at == T0  # who approved first stays on record
        assert dict(approvals.current("review", fingerprint="fp").values) == {"gamma": 1.2}


def test_a_version_8_approval_is_the_first_iteration_without_values(tmp_path: Path):
    path = tmp_path / "state.db"
    raw = sqlite3.connect(path, isolation_level=None)
    for version in sorted(v for v in MIGRATIONS if v <= 8):
        MIGRATIONS[version](raw)
    raw.execute("PRAGMA user_version = 8")
    raw.execute("INSERT INTO workflows (uid, namespace, name, generation, resource, spec_hash, revision, "
                "source_file, labels, created_at, removed_at, status) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,NULL)",
                ("u1", "default", "reviewed", 1, json.dumps(resource()), "h", "r1", None, "{}", T0.isoformat()))
    raw.execute("INSERT INTO task_approvals (uid, task, fingerprint, via, approved_by, approved_at, revision) "
                "VALUES (?,?,?,?,?,?,?)", ("u1", "review", "fp-review", "manifest", "true", T0.isoformat(), "r1"))
    raw.close()
    with Store(path) as store:
        [kept] = store.approvals("u1").given
        assert (kept.task, kept.fingerprint, kept.via, kept.by, kept.revision) == (
            "review", "fp-review", ApprovalVia.MANIFEST, "true", "r1")
        assert kept.values == {} and kept.rejected is None and kept.at == T0


def tuned_store(tmp_path: Path, phase: str) -> Store:
    wire = Workflow.model_validate(load_yaml(TUNED)).to_wire()
    store = Store(tmp_path / "state.db")
    uid = store.upsert_workflow(namespace="default", name="tuned", resource=wire, revision="r1", source_file=None,
                                now=T0).uid
    store.save_status(uid, WorkflowStatus.model_validate({"tasks": {"review": {"phase": phase,
                                                                               "fingerprint": "fp-shown"}}}))
    return store


def load_yaml(text: str) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def test_approve_with_values_checks_them_first_and_approving_again_is_an_iteration(tmp_path: Path, capsys):
    tuned_store(tmp_path, "AwaitingApproval").close()
    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["gamma=bright"]) == 1
    err = capsys.readouterr().err
    assert "is not approved (nothing changed)" in err and "'bright' expects a number" in err
    assert "parameter 'crop' (string) needs a value" in err
    with Store(tmp_path / "state.db") as store:
        assert store.approvals(store.workflow("default", "tuned").uid).given == ()

    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["gamma=1.2", "crop=0,0,8,6"]) == 0
    assert "task review approved with crop=0,0,8,6, gamma=1.2 (inputs fp-shown)" in capsys.readouterr().out
    with Store(tmp_path / "state.db") as store:
        uid = store.workflow("default", "tuned").uid
        store.save_status(uid, WorkflowStatus.model_validate({"tasks": {"review": {"phase": "Succeeded",
                                                                                   "fingerprint": "fp-shown"}}}))
    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["gamma=1.2", "crop=0,0,8,6"]) == 0
    assert "already approved" in capsys.readouterr().out
    # The same values in another order, or a default spelled out, are no new iteration either.
    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["crop=0,0,8,6", "gamma=1.2"]) == 0
    assert "already approved" in capsys.readouterr().out
    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["gamma=1.5", "crop=0,0,8,6"]) == 0
    assert "approved with crop=0,0,8,6, gamma=1.5 (inputs fp-shown) again" in capsys.readouterr().out
    with Store(tmp_path / "state.db") as store:
        assert [dict(a.values) for a in store.approvals(uid).iterations("review")] == [
            {"gamma": 1.2, "crop": "0,0,8,6"}, {"gamma": 1.5, "crop": "0,0,8,6"}]
    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["crop=0,0,8,6"]) == 0
    assert "approved with crop=0,0,8,6 (inputs fp-shown) again" in capsys.readouterr().out
    assert approve(state=str(tmp_path), name="tuned", task="review", assignments=["crop=0,0,8,6", "gamma=1.0"]) == 0
    assert "already approved" in capsys.readouterr().out  # the default spelled out: the same values
    with Store(tmp_path / "state.db") as store:
        assert len(store.approvals(uid).iterations("review")) == 3


def test_reject_records_the_reason_and_who(tmp_path: Path, capsys):
    from reconciler.cli.approving import reject

    tuned_store(tmp_path, "AwaitingApproval").close()
    assert reject(state=str(tmp_path), name="tuned", task="review", reason="  ") == 1
    assert reject(state=str(tmp_path), name="tuned", task="treat", reason="no") == 1
    assert "has no approval task 'treat'" in capsys.readouterr().err
    assert reject(state=str(tmp_path), name="tuned", task="review", reason="too dark") == 0
    assert "task review rejected (inputs fp-shown)" in capsys.readouterr().out
    with Store(tmp_path / "state.db") as store:
        [decision] = store.approvals(store.workflow("default", "tuned").uid).given
    assert (decision.rejected, decision.by, decision.fingerprint) == ("too dark", getpass.getuser(), "fp-shown")


def test_manifest_values_and_rejections_are_recorded_as_iterations(tmp_path: Path):
    from reconciler.core.approvals import declared_decisions

    approved = resolved(TUNED.replace("      parameters:", "      approved: {crop: a}\n      parameters:"))
    refused = resolved(TUNED.replace("      parameters:", '      rejected: "too dark"\n      parameters:'))
    with stored_with(tmp_path, None) as store:
        uid = store.workflow("default", "reviewed").uid
        for at, workflow in enumerate((approved, refused, approved)):
            assert store.record_declared(uid, declared_decisions(workflow.tasks), fingerprints={"review": "fp"},
                                         revision=f"r{at}", now=later(at)) == ["review"]
        decisions = store.approvals(uid).iterations("review")
    assert [(dict(d.values), d.rejected, d.via) for d in decisions] == [
        ({"crop": "a"}, None, ApprovalVia.MANIFEST), ({}, "too dark", ApprovalVia.MANIFEST),
        ({"crop": "a"}, None, ApprovalVia.MANIFEST)]
    assert declared_approvals(approved.tasks) == {"review": '{"crop":"a"}'}


def test_the_values_and_reject_annotations_are_checked():
    from reconciler.api.approval import ApprovalParameter
    from reconciler.core.approvals import annotation_decisions

    declared = {"review": [ApprovalParameter(name="gamma", type="number")]}
    ok = annotation_decisions('{"review": {"gamma": 1.2}}', '{"gate": "not today"}', parameters=declared)
    assert ok.values == {"review": {"gamma": 1.2}} and ok.rejected == {"gate": "not today"} and not ok.problems
    assert ok.approves("review") and not ok.approves("gate")
    bad = annotation_decisions('{"review": {"gamma": "x"}}', None, parameters=declared)
    assert not bad.approves("review") and "task review: parameter 'gamma': 'x' expects a number" in bad.problems[0]
    broken = annotation_decisions("{not json", None, parameters=declared)
    assert broken.unreadable and not broken.approves("review") and "approve-values" in broken.problems[0]
    unchecked = annotation_decisions('{"review": {"gamma": "x"}}', None, parameters=None)
    assert unchecked.approves("review")  # a template instance's: the planner checks them


def test_describe_lists_each_iteration_with_what_followed(tmp_path: Path):
    from reconciler.core.approvals import TaskApprovals
    from reconciler.store.rows import WorkflowRow

    wf = resolved(TUNED)
    decisions = TaskApprovals((with_values(wf, {"crop": "a"}), with_values(wf, {"crop": "b"}, at_seconds=60)))
    result = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)],
                  approvals=list(decisions.given))
    row = WorkflowRow(namespace="default", name="tuned", uid="uid-1", generation=1, created_at=T0, spec={},
                      labels={}, status=result.status, source_file=None, task_labels={})
    text = describe(row, [], now=later(120), approvals=decisions)
    lines = text.split("Approvals:\n")[1].splitlines()
    assert "ITERATION" in lines[0] and "VALUES" in lines[0] and "THEN" in lines[0]
    assert lines[1].split()[:4] == ["review", "1", "Approved", "crop=a"] and "alice (cli)" in lines[1]
    assert lines[2].split()[:4] == ["review", "2", "Approved", "crop=b"]


def test_workflows_waiting_for_a_person_are_listed_first(tmp_path: Path, capsys):
    from reconciler.cli.commands import get_workflows

    wf = resolved(REVIEWED)
    waiting = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)]).status
    running = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.RUNNING)]).status
    with Store(tmp_path / "state.db") as store:
        for name, status in (("a-running", running), ("b-waiting", waiting), ("c-running", running)):
            uid = store.upsert_workflow(namespace="default", name=name, resource=resource(), revision="r1",
                                        source_file=None, now=T0).uid
            store.save_status(uid, status)
    assert get_workflows(state=str(tmp_path), selector=None, output="json") == 0
    assert [item["metadata"]["name"] for item in json.loads(capsys.readouterr().out)["items"]] == [
        "b-waiting", "a-running", "c-running"]
    assert get_workflows(state=str(tmp_path), selector=None, output="table") == 0
    rows = capsys.readouterr().out.splitlines()
    assert "! b-waiting" in rows[1] and "a-running" in rows[2]


def test_the_status_shows_what_an_approval_asks_for_and_describe_how_to_give_it(tmp_path: Path):
    from reconciler.store.rows import WorkflowRow

    wf = resolved(TUNED)
    prepared = job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)
    waiting = plan(wf, observed=[prepared]).status
    asked = waiting.tasks["review"].approval
    assert [(p.name, p.type.value, p.default) for p in asked.parameters] == [("gamma", "number", 1.0),
                                                                              ("crop", "string", None)]
    assert asked.values == {}
    row = WorkflowRow(namespace="default", name="tuned", uid="uid-1", generation=1, created_at=T0, spec={},
                      labels={}, status=waiting, source_file=None, task_labels={})
    text = describe(row, [], now=T0)
    assert "reconciler approve tuned review --set gamma=1.0 --set crop=VALUE  (approves inputs" in text
    assert "gamma (number, default 1.0): brightness" in text
    from reconciler.cli.output import workflows_table

    assert "    reconciler approve tuned review --set gamma=1.0 --set crop=VALUE\n" in workflows_table([row], now=T0)
    approved = plan(wf, observed=[prepared], approvals=[with_values(wf, {"crop": "a"})]).status
    assert approved.tasks["review"].approval.values == {"gamma": 1.0, "crop": "a"}
    # A workflow whose approvals ask for nothing keeps the status it always had.
    plain = resolved(REVIEWED)
    assert plan(plain, observed=[job(plain, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)]
                ).status.tasks["review"].approval is None


def test_a_template_instance_is_approved_with_the_parameters_its_status_shows(tmp_path: Path, capsys):
    wf = resolved(TUNED)
    waiting = plan(wf, observed=[job(wf, "prepare", phase=TaskPhase.SUCCEEDED, exit_code=0)]).status
    with Store(tmp_path / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="instance", resource=Workflow.model_validate(
            {"metadata": {"name": "instance"}, "spec": {"templateRef": {"name": "tuned"}}}).to_wire(),
            revision="r1", source_file=None, now=T0).uid
        store.save_status(uid, waiting)
    assert approve(state=str(tmp_path), name="instance", task="review", assignments=["gamma=x", "crop=a"]) == 1
    assert "'x' expects a number" in capsys.readouterr().err
    assert approve(state=str(tmp_path), name="instance", task="review", assignments=["crop=a"]) == 0
    with Store(tmp_path / "state.db") as store:
        [decision] = store.approvals(uid).given
    assert dict(decision.values) == {"crop": "a"}


def test_submit_renders_the_values_the_manifest_approves_with():
    from reconciler.cli.submit import submit_workflow
    from reconciler.slurm.client import SlurmClient
    from reconciler.slurm.commands import command_name
    from tests.unit.reconcile_world import resolved as resolved_with_cluster

    fake = FakeSlurm()
    wf = resolved_with_cluster(TUNED.replace("      parameters:", "      approved: {crop: a}\n      parameters:"))
    submission = submit_workflow(wf, SlurmClient(wf.cluster, fake))
    assert not submission.blocked
    scripts = [fake.files[call[-1]].decode() for call in fake.calls if command_name(call) == "sbatch"]
    treat = next(script for script in scripts if "echo gamma=" in script)
    assert "echo gamma=1.0 crop=a >out" in treat and "export APPROVAL_REVIEW_CROP=a" in treat
    refused = resolved_with_cluster(TUNED.replace("      parameters:", '      rejected: "no"\n      parameters:'))
    blocked = submit_workflow(refused, SlurmClient(refused.cluster, FakeSlurm())).blocked
    assert "review" in blocked and blocked["treat"] == "waits for review"


def test_diff_counts_the_approved_values_of_a_stored_run_and_changes_nothing():
    from reconciler.api import TaskStatus
    from reconciler.core.approvals import TaskApprovals
    from reconciler.core.desired import classify_desired
    from reconciler.core.diff import StoredRun, TaskChange, diff
    from reconciler.manifests.loader import load_text
    from tests.unit.reconcile_world import CLUSTER

    wf = resolved(TUNED)
    decisions = TaskApprovals((with_values(wf, {"crop": "a"}),))
    fps = fingerprints(wf.graph, approvals=decisions)
    status = WorkflowStatus(tasks={name: TaskStatus(phase=TaskPhase.SUCCEEDED, fingerprint=fps[name])
                                   for name in wf.order})
    load = load_text(CLUSTER + "---\n" + TUNED, filename="plan.yaml")
    for approvals, expected in ((decisions, TaskChange.KEEPS), (TaskApprovals(), TaskChange.RERUNS)):
        run = StoredRun(namespace="default", name="tuned", resource=wf.workflow.to_wire(), status=status,
                        approvals=approvals)
        report = diff(desired=classify_desired(load, active={("default", "tuned"): "plan.yaml"}), stored=[run],
                      resources=load.resources)
        [found] = report.workflows
        assert {t.name: t.change for t in found.tasks}["treat"] is expected


def test_the_operator_records_annotation_values_refuses_bad_ones_and_rejects(tmp_path: Path):
    from reconciler.engine.metrics import Metrics
    from reconciler.kube.publisher import FINALIZER, KubernetesPublisher
    from reconciler.kube.source import KubernetesSource
    from reconciler.manifests.loader import load_text
    from reconciler.sources.base import Snapshot
    from tests.fakes import FakeCoreV1, FakeCustomObjects

    custom, core = FakeCustomObjects(), FakeCoreV1()
    source = KubernetesSource(custom, namespace="default")
    wire = Workflow.model_validate(load_yaml(TUNED)).to_wire()
    EMPTY = Snapshot(load=load_text("", filename="none.yaml"), revision=None, files=())

    def annotated(**annotations: str) -> None:
        obj = {**wire, "metadata": {"name": "tuned", "namespace": "default", "uid": "uid-tuned", "generation": 1,
                                    "finalizers": [FINALIZER], "annotations": {
                                        "hpc.reconciler.dev/approve": "review=fp-shown", **annotations}}}
        source.workflows.remember(custom.add(obj))

    with Store(tmp_path / "state.db") as store:
        publisher = KubernetesPublisher(custom=custom, core=core, source=source, state_dir=tmp_path,
                                        metrics=Metrics(stale_after=60))
        store.upsert_workflow(namespace="default", name="tuned", resource=wire, revision=None, source_file=None,
                              now=T0, uid="uid-tuned")
        store.save_status("uid-tuned", WorkflowStatus.model_validate(
            {"tasks": {"review": {"phase": "AwaitingApproval", "fingerprint": "fp-shown"}}}))

        def decisions() -> list[tuple[dict, str | None]]:
            return [(dict(a.values), a.rejected) for a in store.approvals("uid-tuned").given]

        annotated(**{"hpc.reconciler.dev/approve-values": '{"review": {"gamma": "bright", "crop": "a"}}'})
        publisher.prepare(EMPTY, store, now=T0)
        publisher.prepare(EMPTY, store, now=later(1))
        assert decisions() == []
        refusals = [e for e in core.events if e["reason"] == "ApprovalRefused"]
        assert len(refusals) == 1 and "'bright' expects a number" in refusals[0]["message"]  # once, not per tick

        annotated(**{"hpc.reconciler.dev/approve-values": '{"review": {"gamma": 1.2, "crop": "a"}}'})
        publisher.prepare(EMPTY, store, now=later(2))
        publisher.prepare(EMPTY, store, now=later(3))
        assert decisions() == [({"gamma": 1.2, "crop": "a"}, None)]

        annotated(**{"hpc.reconciler.dev/approve-values": '{"review": {"gamma": 1.2, "crop": "a"}}',
                     "hpc.reconciler.dev/reject": '{"review": "tiles 12-14 are blurred"}'})
        publisher.prepare(EMPTY, store, now=later(4))
        assert decisions()[-1] == ({}, "tiles 12-14 are blurred")


def valued_text(approved: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {{name: dev}}
spec: {{workdir: /work/dev}}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: valued}}
spec:
  defaults: {{resources: {{partition: debug, time: "00:05:00"}}}}
  tasks:
    - name: review
      type: approval
      approved: {approved}
      parameters: [{{name: gamma, type: number}}]
    - {{name: show, dependsOn: [review], script: "echo {{{{ approvals.review.gamma }}}}"}}
"""


def test_whole_ticks_a_committed_mapping_approves_with_its_values_and_a_new_one_reruns(tmp_path: Path):
    node = FakeSlurm("login")
    source = MemorySource(valued_text("{gamma: 1.2}"))
    with Store(tmp_path / "state.db") as store:
        loop = Controller(source=source, store=store, state_dir=tmp_path, interval=30.0, connect=LoginNodes(
            {"/work/dev": node}))

        def scripts() -> list[str]:
            return [node.files[call[-1]].decode() for call in node.calls
                    if call and "sbatch" in call[0] and "/scripts/show." in call[-1]]

        loop.tick()
        assert len(scripts()) == 1 and "echo 1.2" in scripts()[0] and "APPROVAL_REVIEW_GAMMA=1.2" in scripts()[0]
        node.submitted()[-1].state, node.submitted()[-1].reason = "COMPLETED", "None"
        loop.tick()
        status = store.workflow("default", "valued").status
        assert status.phase.value == "Succeeded" and status.tasks["review"].approval.values == {"gamma": 1.2}

        source.text = valued_text("{gamma: 1.5}")
        loop.tick()
        assert len(scripts()) == 2 and "echo 1.5" in scripts()[1]
        uid = store.workflow("default", "valued").uid
        assert [dict(a.values) for a in store.approvals(uid).iterations("review")] == [{"gamma": 1.2}, {"gamma": 1.5}]

        source.text = valued_text('{gamma: "bright"}')
        loop.tick()
        stored = store.workflow("default", "valued")
        assert stored.status.phase.value == "Invalid" and "expects a number" in stored.status.conditions[0].message
        assert len(scripts()) == 2 and len(store.approvals(uid).given) == 2
