"""The dashboard without a browser: page models from statuses, the DAG layout, the HTML and JSON,
the token check, and the HTTP server over a real store on loopback."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import (
    ArrayStatus,
    Condition,
    ConditionStatus,
    TaskPhase,
    TaskStatus,
    WorkflowPhase,
    WorkflowStatus,
)
from reconciler.core.selectors import parse_selector
from reconciler.dashboard import layout, model, render
from reconciler.dashboard.access import ApprovePolicy, TokenFileError, presented_token, read_token, token_matches
from reconciler.dashboard.command import DashboardOptions
from reconciler.dashboard.server import Dashboard
from reconciler.store.database import Store
from reconciler.store.rows import EventRow, WorkflowRow
from tests.unit.reconcile_world import T0

TASKS = [
    {"name": "prepare", "script": "echo"},
    {"name": "sweep", "dependsOn": ["prepare"], "script": "echo", "array": {"count": 10}},
    {"name": "review", "type": "approval", "dependsOn": ["sweep"],
     "parameters": [{"name": "gamma", "type": "number", "default": 1.0, "description": "contrast"}]},
    {"name": "render", "dependsOn": ["review"], "script": "echo"},
]
SWEEPING = {"prepare": TaskStatus(phase=TaskPhase.SUCCEEDED, job_id="11", attempts=1, exit_code=0),
            "sweep": TaskStatus(phase=TaskPhase.RUNNING, job_id="12", attempts=1,
                                array=ArrayStatus(total=10, counts={"Succeeded": 6, "Running": 4})),
            "review": TaskStatus(phase=TaskPhase.WAITING),
            "render": TaskStatus(phase=TaskPhase.WAITING)}
REVIEWING = {**SWEEPING, "sweep": TaskStatus(phase=TaskPhase.SUCCEEDED, array=ArrayStatus(total=10, counts={
    "Succeeded": 10})), "review": TaskStatus(phase=TaskPhase.AWAITING_APPROVAL, fingerprint="fp-review")}


def condition(kind: str, reason: str, message: str = "") -> Condition:
    return Condition(type=kind, status=ConditionStatus.TRUE, reason=reason, message=message, last_transition_time=T0)


def row(name: str, tasks: dict[str, TaskStatus] | None, *, labels: dict[str, str] | None = None,
        conditions: tuple[Condition, ...] = (), namespace: str = "default") -> WorkflowRow:
    status = None if tasks is None else WorkflowStatus(
        phase=WorkflowPhase.RUNNING, tasks=tasks, conditions=list(conditions), core_hours=1.5, revision="abc123def4567")
    return WorkflowRow(namespace=namespace, name=name, uid=f"uid-{name}", generation=1, created_at=T0,
                       spec={"cluster": "dev", "tasks": TASKS}, labels=labels or {}, status=status)


# -- the page models -----------------------------------------------------------------------------

def test_progress_counts_array_elements_one_by_one():
    assert model.progress(WorkflowStatus(tasks=SWEEPING)) == model.Progress(done=7, total=13)
    assert model.progress(None, 4).text == "0/4"
    assert model.Progress(done=7, total=13).percent == 54


def test_workflows_waiting_for_a_person_come_first_with_their_reasons():
    rows = [row("a-done", SWEEPING), row("b-stalled", SWEEPING, conditions=(condition("Stalled", "InvalidSpec"),)),
            row("c-review", REVIEWING), row("d-new", None)]
    listed = model.workflow_list(rows, parse_selector(""))
    assert [s.name for s in listed] == ["b-stalled", "c-review", "a-done", "d-new"]
    assert listed[0].attention == ("InvalidSpec",) and listed[1].awaiting_approval == ("review",)
    assert not listed[2].needs_person


def test_needs_attention_speaks_for_stalled_when_the_loop_sets_it():
    both = row("w", SWEEPING, conditions=(condition("Stalled", "InvalidSpec", "bad"),
                                          condition("NeedsAttention", "BudgetHold", "over budget")))
    assert model.summary(both).attention == ("BudgetHold: over budget",)


def test_an_awaited_approval_is_listed_by_its_task_not_again_as_a_condition():
    waiting = row("w", REVIEWING, conditions=(condition("NeedsAttention", "AwaitingApproval", "approve: review"),
                                              condition("Stalled", "Rejected", "no")))
    item = model.summary(waiting)
    assert item.awaiting_approval == ("review",) and item.attention == ("Rejected: no",)


def test_the_list_filters_by_label_selector():
    rows = [row("tile-1", SWEEPING, labels={"team": "imaging", "stage": "fit"}),
            row("tile-2", SWEEPING, labels={"team": "imaging", "stage": "render"}),
            row("other", SWEEPING, labels={"team": "genomics"})]
    chosen = model.workflow_list(rows, parse_selector("team=imaging,stage notin (render)"))
    assert [s.name for s in chosen] == ["tile-1"]


def test_the_graph_has_a_node_per_task_an_array_with_its_counts_and_an_edge_per_dependency():
    nodes, edges = model.graph(row("w", SWEEPING))
    assert [(n.name, n.kind, n.phase) for n in nodes] == [
        ("prepare", "job", "Succeeded"), ("sweep", "job", "Running"), ("review", "approval", "Waiting"),
        ("render", "job", "Waiting")]
    sweep = nodes[1]
    assert sweep.size == 10 and sweep.elements == {"Succeeded": 6, "Running": 4}
    assert sweep.detail == "6/10 Runn=4"
    assert edges == (("prepare", "sweep"), ("sweep", "review"), ("review", "render"))


def test_a_template_instance_shows_its_status_tasks_without_edges():
    instance = WorkflowRow(namespace="default", name="t", uid="u", generation=1, created_at=T0,
                           spec={"templateRef": {"name": "tpl"}}, labels={},
                           status=WorkflowStatus(tasks={"a": TaskStatus(), "b": TaskStatus()}))
    nodes, edges = model.graph(instance)
    assert [n.name for n in nodes] == ["a", "b"] and edges == ()


def test_an_approval_request_carries_the_declared_parameters_and_fingerprint():
    page = model.workflow_page(row("w", REVIEWING), [])
    (request,) = page.approvals
    assert request.task == "review" and request.fingerprint == "fp-review"
    assert request.fields == (model.ApprovalField(name="gamma", type="number", default="1.0", description="contrast"),)


def test_only_an_approval_task_awaiting_a_person_can_be_approved():
    assert model.approval_target(row("w", REVIEWING), "review") == "fp-review"
    assert model.approval_target(row("w", REVIEWING), "render") == model.Refusal(
        status=404, message="workflow w has no approval task 'render' (approval tasks: review)")
    waiting = model.approval_target(row("w", SWEEPING), "review")
    assert isinstance(waiting, model.Refusal) and waiting.status == 409
    assert isinstance(model.approval_target(row("w", None), "review"), model.Refusal)


def test_approval_values_are_read_as_the_declared_types_and_bad_ones_refused():
    reviewing = row("w", REVIEWING)
    assert model.approval_values(reviewing, "review", {"gamma": "1.2"}) == {"gamma": 1.2}
    assert model.approval_values(reviewing, "review", {"gamma": ""}) == {}  # its default applies
    refused = model.approval_values(reviewing, "review", {"gamma": "bright", "crop": "1"})
    assert isinstance(refused, model.Refusal) and refused.status == 400
    assert "'bright' expects a number" in refused.message and "unknown parameter 'crop'" in refused.message


def test_the_json_holds_what_the_page_shows():
    page = model.workflow_page(row("w", REVIEWING, labels={"team": "imaging"}),
                               [EventRow(at=T0, type="Normal", reason="Submitted", message="job 11")])
    document = model.page_json(page)
    assert document["needsPerson"] is True and document["awaitingApproval"] == ["review"]
    assert document["progress"] == {"done": 11, "total": 13}
    assert [n["name"] for n in document["graph"]["nodes"]] == ["prepare", "sweep", "review", "render"]
    assert document["graph"]["edges"][0] == {"from": "prepare", "to": "sweep"}
    assert document["approvals"][0]["inputs"][0]["name"] == "gamma"
    assert document["events"][0]["at"] == "2026-01-01T12:00:00Z"
    json.dumps(document)  # every value is JSON


# -- the layout ----------------------------------------------------------------------------------

def test_layers_are_topological_generations_ordered_by_their_prerequisites():
    names = ["a", "b", "x", "y", "z"]
    edges = [("a", "y"), ("b", "x"), ("a", "z"), ("x", "z")]
    assert layout.layers(names, edges) == [["a", "b"], ["y", "x"], ["z"]]


def test_boxes_do_not_overlap_and_every_edge_points_right():
    names = [f"t{i}" for i in range(7)]
    edges = [("t0", "t1"), ("t0", "t2"), ("t0", "t3"), ("t1", "t4"), ("t2", "t4"), ("t3", "t5"), ("t4", "t6")]
    places = layout.layout(names, edges)
    boxes = list(places.boxes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
    for before, after in edges:
        assert places.boxes[before].right_middle[0] < places.boxes[after].left_middle[0]
    assert all(b.x + b.width <= places.width and b.y + b.height <= places.height for b in boxes)


def test_a_cycle_is_drawn_one_node_per_layer_rather_than_not_at_all():
    assert layout.layers(["a", "b"], [("a", "b"), ("b", "a")]) == [["a"], ["b"]]
    assert layout.layout([], []).width == 2 * layout.MARGIN


# -- the HTML ------------------------------------------------------------------------------------

def test_the_dag_svg_has_a_node_per_task_coloured_by_phase_and_a_path_per_edge():
    nodes, edges = model.graph(row("w", SWEEPING))
    svg = render.dag_svg(nodes, edges)
    assert len(re.findall(r'<g class="node ', svg)) == 4
    assert len(re.findall(r'<path class="edge"', svg)) == 3
    assert 'class="node phase-Running kind-job" data-task="sweep"' in svg
    assert "6/10 Runn=4" in svg


def test_the_list_page_escapes_what_it_shows_and_marks_who_waits():
    rows = [row("c-review", REVIEWING, labels={"note": "a<b"}), row("a-done", SWEEPING)]
    html = render.list_page(model.workflow_list(rows, parse_selector("")), selector='x="1"')
    assert "a&lt;b" in html and "a<b" not in html
    assert 'value="x=&quot;1&quot;"' in html
    assert html.index("c-review") < html.index("a-done")
    assert '<tr class="workflow attention" data-workflow="default/c-review">' in html
    assert "approve review" in html and "<strong>1</strong> waiting for a person" in html


def test_the_approval_form_appears_only_when_approving_is_on():
    page = model.workflow_page(row("w", REVIEWING), [])
    on = render.workflow_html(page, now=T0, approving=True)
    off = render.workflow_html(page, now=T0, approving=False)
    assert '<form class="approval" method="post" action="/workflows/default/w/approve"' in on
    assert 'name="value.gamma" placeholder="1.0"' in on and 'name="fingerprint" value="fp-review"' in on
    assert "<form class=\"approval\"" not in off and "reconciler approve w review" in off


def test_events_show_newest_first_with_their_age():
    page = model.workflow_page(row("w", SWEEPING), [
        EventRow(at=T0, type="Normal", reason="Submitted", message="first"),
        EventRow(at=T0 + timedelta(seconds=50), type="Warning", reason="Retrying", message="second")])
    html = render.workflow_html(page, now=T0 + timedelta(minutes=2), approving=False)
    assert html.index("second") < html.index("first") and "<td>1m</td>" in html and "<td>2m</td>" in html


# -- the token -----------------------------------------------------------------------------------

def test_the_token_must_match_exactly_and_approving_off_allows_nobody():
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret", "s3cre") and not token_matches("s3cret", "s3cret ")
    assert not token_matches("s3cret", None) and not token_matches("s3cret", "")
    assert not token_matches(None, "anything") and not ApprovePolicy().allows("anything")


def test_a_bearer_token_comes_before_the_form_field():
    assert presented_token(authorization="Bearer abc", form_token="def") == "abc"
    assert presented_token(authorization="bearer  abc ", form_token=None) == "abc"
    assert presented_token(authorization="Basic abc", form_token="def") == "def"
    assert presented_token(authorization=None, form_token="") is None


def test_a_token_file_must_hold_a_token(tmp_path: Path):
    (tmp_path / "token").write_text("  tok\n")
    assert read_token(tmp_path / "token") == "tok"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenFileError, match="is empty"):
        read_token(tmp_path / "empty")
    with pytest.raises(TokenFileError, match="cannot read"):
        read_token(tmp_path / "missing")
    with pytest.raises(TokenFileError, match="needs --token-file"):
        DashboardOptions(allow_approve=True).policy()
    assert not DashboardOptions(token_file=tmp_path / "token").policy().enabled


# -- the server, over a real store ---------------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Dashboard, Store]]:
    store = Store(tmp_path / "state.db")
    resource = {"metadata": {"name": "tile", "labels": {"team": "imaging"}}, "spec": {"cluster": "dev", "tasks": TASKS}}
    stored = store.upsert_workflow(namespace="default", name="tile", resource=resource, revision="r1",
                                   source_file="plans/tile.yaml", now=T0)
    store.save_status(stored.uid, WorkflowStatus(phase=WorkflowPhase.RUNNING, tasks=REVIEWING))
    dashboard = Dashboard(store=store, policy=ApprovePolicy(token="s3cret"), port=0).start()
    yield dashboard, store
    dashboard.stop()
    store.close()


def fetch(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post_json(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    status, text = fetch(url, data=json.dumps(body).encode(), headers=headers)
    return status, json.loads(text)


def test_the_server_lists_and_shows_workflows(served: tuple[Dashboard, Store]):
    dashboard, _ = served
    status, text = fetch(dashboard.url + "api/workflows?selector=team%3Dimaging")
    assert status == 200 and [i["name"] for i in json.loads(text)["items"]] == ["tile"]
    assert json.loads(fetch(dashboard.url + "api/workflows?selector=team%3Dother")[1])["items"] == []
    assert fetch(dashboard.url + "api/workflows?selector=%3D%3D")[0] == 400
    status, html = fetch(dashboard.url + "workflows/default/tile")
    assert status == 200 and html.count('<g class="node ') == 4
    assert fetch(dashboard.url + "api/workflows/default/nope")[0] == 404
    assert fetch(dashboard.url + "static/dashboard.js")[0] == 200
    assert fetch(dashboard.url + "static/../model.py")[0] == 404


def test_approving_needs_the_token_and_records_the_approval(served: tuple[Dashboard, Store]):
    dashboard, store = served
    url = dashboard.url + "api/workflows/default/tile/approve"
    assert post_json(url, {"task": "review"})[0] == 403
    assert post_json(url, {"task": "review"}, token="wrong")[0] == 403
    assert post_json(url, {"task": "render"}, token="s3cret")[0] == 404
    assert post_json(url, {"task": "review", "fingerprint": "older"}, token="s3cret")[0] == 409
    assert not store.approvals(store.workflow("default", "tile").uid).given
    status, answer = post_json(url, {"task": "review", "fingerprint": "fp-review"}, token="s3cret")
    assert status == 200 and answer["approved"] == "review" and answer["fingerprint"] == "fp-review"
    (approval,) = store.approvals(store.workflow("default", "tile").uid).given
    assert approval.task == "review" and approval.fingerprint == "fp-review" and "dashboard" in approval.by


def test_the_form_approves_with_its_token_field_and_comes_back_to_the_page(served: tuple[Dashboard, Store]):
    dashboard, store = served
    url = dashboard.url + "workflows/default/tile/approve"
    status, html = fetch(url, data=b"task=review&fingerprint=fp-review&value.gamma=1.2&token=nope")
    assert status == 403 and "token" in html
    status, html = fetch(url, data=b"task=review&fingerprint=fp-review&value.gamma=dark&token=s3cret")
    assert status == 400 and "expects a number" in html and "nothing changed" in html
    assert not store.approvals(store.workflow("default", "tile").uid).given
    status, html = fetch(url, data=b"task=review&fingerprint=fp-review&value.gamma=1.2&token=s3cret")
    assert status == 200 and "task review approved with gamma=1.2" in html  # after the 303 back to the page
    (approval,) = store.approvals(store.workflow("default", "tile").uid).given
    assert approval.values == {"gamma": 1.2}


def test_the_json_endpoint_takes_typed_values(served: tuple[Dashboard, Store]):
    dashboard, store = served
    url = dashboard.url + "api/workflows/default/tile/approve"
    assert post_json(url, {"task": "review", "values": {"gamma": [1]}}, token="s3cret")[0] == 400
    status, answer = post_json(url, {"task": "review", "values": {"gamma": 0.8}}, token="s3cret")
    assert status == 200 and answer["values"] == {"gamma": 0.8}
    assert store.approvals(store.workflow("default", "tile").uid).given[0].values == {"gamma": 0.8}


def test_approving_is_refused_when_it_is_off(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        dashboard = Dashboard(store=store, policy=ApprovePolicy(), port=0).start()
        try:
            status, answer = post_json(dashboard.url + "api/workflows/default/tile/approve", {"task": "review"},
                                       token="anything")
        finally:
            dashboard.stop()
    assert status == 403 and "--allow-approve" in answer["error"]


# -- the command line ----------------------------------------------------------------------------

def test_approving_without_a_token_file_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from reconciler.cli.main import main

    assert main(["serve", "--allow-approve", "--state-dir", str(tmp_path)]) == 2
    assert "needs --token-file" in capsys.readouterr().err
    # Beside the loop too, before the loop starts: the source is never read.
    assert main(["run", "--source", str(tmp_path / "nowhere"), "--state-dir", str(tmp_path), "--once",
                 "--dashboard-port", "0", "--dashboard-allow-approve",
                 "--dashboard-token-file", str(tmp_path / "missing")]) == 2
    assert "the dashboard cannot start: cannot read the token file" in capsys.readouterr().err


# -- output tails --------------------------------------------------------------------------------

def test_a_tail_keeps_the_end_of_what_it_read_in_bounded_reads():
    from reconciler.cli.logs import FOLLOW_CHUNK
    from reconciler.dashboard.logtail import read_tail

    data = bytes(range(256)) * 1000  # 256,000 bytes: several reads
    reads: list[int] = []

    def read(offset: int) -> bytes | None:
        reads.append(offset)
        return data[offset:offset + FOLLOW_CHUNK]

    assert read_tail(read, keep=100) == (data[-100:], True, False)
    assert reads == list(range(0, len(data), FOLLOW_CHUNK))
    assert read_tail(read, limit=FOLLOW_CHUNK, keep=10) == (data[FOLLOW_CHUNK - 10:FOLLOW_CHUNK], True, True)
    assert read_tail(lambda offset: None) is None
    assert read_tail(lambda offset: b"short\n" if offset == 0 else b"") == (b"short\n", False, False)


def test_the_tail_page_escapes_the_output_and_says_what_is_left_out():
    tail = model.Tail(task="tiles", job_id="12", index=0, path="/w/logs/tiles.a1.p0.12_0.out", text="<b>tile 0</b>\n",
                      cut=True, unread=False)
    html = render.tail_page("default", "w", tail)
    assert "&lt;b&gt;tile 0&lt;/b&gt;" in html and "the start is left out" in html and "element 0" in html


def test_job_output_is_a_link_when_the_dashboard_reads_it_else_the_command(served: tuple[Dashboard, Store]):
    page = model.workflow_page(row("w", SWEEPING), [])
    linked = render.workflow_html(page, now=T0, approving=False, logs_linked=True)
    assert '<a class="logs" href="/workflows/default/w/logs/prepare">output</a>' in linked
    assert "reconciler logs w prepare" in render.workflow_html(page, now=T0, approving=False)
    dashboard, _ = served  # started without --source
    status, answer = fetch(dashboard.url + "api/workflows/default/tile/logs/prepare")
    assert status == 404 and "reconciler logs" in json.loads(answer)["error"]


# -- approving again -----------------------------------------------------------------------------

APPROVED = {**REVIEWING, "review": TaskStatus(phase=TaskPhase.SUCCEEDED, fingerprint="fp-review"),
            "render": TaskStatus(phase=TaskPhase.SUCCEEDED)}


def test_a_succeeded_approval_with_parameters_may_be_approved_again_with_its_values_shown():
    from reconciler.core.approvals import Approval, ApprovalVia, TaskApprovals

    given = TaskApprovals((Approval(task="review", fingerprint="fp-review", via=ApprovalVia.CLI, by="ana", at=T0,
                                    values={"gamma": 1.2}),))
    page = model.workflow_page(row("w", APPROVED), [], given)
    (request,) = page.approvals
    assert request.again and request.values == {"gamma": "1.2"}
    assert model.approval_target(row("w", APPROVED), "review") == "fp-review"
    html = render.workflow_html(page, now=T0, approving=True)
    assert '<section class="iterate"><h2>Approve again</h2>' in html and 'name="value.gamma" placeholder="1.0" ' \
        'value="1.2"' in html and "Waiting for a person" not in html
    assert "reconciler approve w review --set gamma=VALUE" in render.workflow_html(page, now=T0, approving=False)


def test_approving_again_needs_other_values(tmp_path: Path):
    from reconciler.core.approvals import ApprovalVia

    with Store(tmp_path / "state.db") as store:
        stored = store.upsert_workflow(namespace="default", name="tile", resource={
            "metadata": {"name": "tile"}, "spec": {"tasks": TASKS}}, revision="r1", source_file=None, now=T0)
        store.save_status(stored.uid, WorkflowStatus(phase=WorkflowPhase.SUCCEEDED, tasks=APPROVED))
        store.approve("default", "tile", "review", fingerprint="fp-review", via=ApprovalVia.CLI, by="ana", now=T0,
                      values={"gamma": 1.2})
        dashboard = Dashboard(store=store, policy=ApprovePolicy(token="s3cret"), port=0).start()
        url = dashboard.url + "api/workflows/default/tile/approve"
        try:
            assert post_json(url, {"task": "review"}, token="s3cret")[0] == 409
            status, answer = post_json(url, {"task": "review", "values": {"gamma": 1.2}}, token="s3cret")
            assert status == 409 and "other values" in answer["error"]
            assert post_json(url, {"task": "review", "values": {"gamma": 1.4}}, token="s3cret")[0] == 200
        finally:
            dashboard.stop()
        assert [a.values for a in store.approvals(stored.uid).iterations("review")] == [{"gamma": 1.2}, {"gamma": 1.4}]
