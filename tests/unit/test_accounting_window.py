"""How far back each tick asks accounting, over in-memory edges (tests/fakes.py): what ran
lately while the loop runs, back to the oldest unfinished job on its first look, and the jobs of
a workflow the store holds no submission of by name, back to DISCOVERY_WINDOW, unless the loop
has been acting since before that. A loop that has acted for hours is one whose clock read that
long ago at its first tick, and the real time after."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.core.observed import JobKey
from reconciler.engine.controller import DISCOVERY_WINDOW, WINDOW_MARGIN, Controller
from reconciler.slurm.commands import command_name
from reconciler.store.database import Store
from tests.fakes import LoginNodes, MemorySource

CLUSTER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: a}
spec: {workdir: /work/a}
"""
WORKFLOW = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: one}
spec:
  defaults: {resources: {partition: debug, time: "00:05:00"}}
  tasks:
    - {name: step, script: "true"}
    - {name: after, dependsOn: [step], script: "true"}
    - {name: review, type: approval, dependsOn: [step]}
    - {name: later, dependsOn: [review], script: "true"}
"""


def loop(store: Store, tmp_path: Path, nodes: LoginNodes) -> Controller:
    return Controller(source=MemorySource(CLUSTER + "---\n" + WORKFLOW), store=store, state_dir=tmp_path,
                      interval=30.0, connect=nodes)


def sacct_calls(nodes: LoginNodes) -> list[tuple[str, ...]]:
    calls = nodes["/work/a"].calls
    found = [call for call in calls if command_name(call) == "sacct"]
    calls.clear()
    return found


def start_of(call: tuple[str, ...]) -> datetime:
    [word] = [word for word in call if word.startswith("--starttime=")]
    # sacct reads --starttime in the machine's local time.
    return datetime.strptime(word.split("=", 1)[1], "%Y-%m-%dT%H:%M:%S").astimezone(UTC)


def windows(calls: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The time windows among sacct calls (not a job's usage, nor jobs asked for by id)."""
    return [call for call in calls if "-X" in call and not any(word.startswith("--jobs=") for word in call)]


def names_of(call: tuple[str, ...]) -> list[str] | None:
    found = [word.split("=", 1)[1] for word in call if word.startswith("--name=")]
    return found[0].split(",") if found else None


def test_a_new_workflow_is_looked_for_by_name_and_then_only_what_ran_lately(store, tmp_path, nodes):
    controller = loop(store, tmp_path, nodes)
    before = datetime.now(UTC)
    controller.tick()
    # The store holds no submission on the cluster: nothing for a time window to find.
    [by_name] = sacct_calls(nodes)
    assert names_of(by_name) == ["one.after", "one.later", "one.review", "one.step"]
    assert start_of(by_name) <= before - DISCOVERY_WINDOW

    controller.tick()  # one.step is submitted and pending now, one.after after it
    [window] = sacct_calls(nodes)
    # The store holds a submission of it: no search by name, and the window asks only for the
    # jobs of its tasks (not everyone's that a privileged user sees).
    assert names_of(window) == ["one.after", "one.later", "one.step"]
    assert start_of(window) >= before - timedelta(minutes=3)


def test_the_first_look_goes_back_to_the_oldest_unfinished_job_and_later_ones_do_not(store, tmp_path, nodes):
    loop(store, tmp_path, nodes).tick()
    [stored] = store.active_workflows()
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    store.record_intent(stored.uid, key=JobKey("later", 1), fingerprint="f", indices=None, resources={},
                        cluster="a", now=long_ago)
    store.confirm_submission(stored.uid, key=JobKey("later", 1), job_id="77", now=long_ago)
    sacct_calls(nodes)

    restarted = loop(store, tmp_path, nodes)
    restarted.tick()
    [window] = windows(sacct_calls(nodes))
    assert start_of(window) <= long_ago  # a restart may have missed any end since

    restarted.tick()
    calls = sacct_calls(nodes)
    [window] = windows(calls)
    assert start_of(window) >= datetime.now(UTC) - timedelta(minutes=3)
    # The unfinished job the window no longer reaches is asked for by its id, however old.
    [by_id] = [call for call in calls if "--jobs=77" in call]
    assert start_of(by_id) <= long_ago


def test_a_first_look_from_a_store_whose_jobs_all_ended_covers_the_last_minutes(store, tmp_path, nodes):
    text = CLUSTER + "---\n" + WORKFLOW.split("  tasks:\n")[0] + '  tasks:\n    - {name: only, script: "true"}\n'
    Controller(source=MemorySource(text), store=store, state_dir=tmp_path, interval=30.0, connect=nodes).tick()
    [job] = nodes["/work/a"].submitted()
    job.state = "COMPLETED"
    Controller(source=MemorySource(text), store=store, state_dir=tmp_path, interval=30.0, connect=nodes).tick()
    assert store.unfinished_job_ids("a") == []
    sacct_calls(nodes)

    before = datetime.now(UTC)
    Controller(source=MemorySource(text), store=store, state_dir=tmp_path, interval=30.0, connect=nodes).tick()
    # A window back over the last minutes, whose ends a crash may have kept from accounting's
    # word; beside it, the history's read of the job's usage, which accounting has not reported.
    [window] = windows(sacct_calls(nodes))
    assert names_of(window) == ["one.only"] and before - timedelta(minutes=3) <= start_of(window) <= before


def test_a_submission_whose_sbatch_never_answered_keeps_the_window_open_back_to_it(store, tmp_path, nodes):
    controller = loop(store, tmp_path, nodes)
    controller.tick()
    [stored] = store.active_workflows()
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    store.record_intent(stored.uid, key=JobKey("later", 1), fingerprint="f", indices=None, resources={},
                        cluster="a", now=long_ago)
    sacct_calls(nodes)

    controller.tick()
    [window] = windows(sacct_calls(nodes))
    assert start_of(window) <= long_ago  # its job, if any, can only be found by its tag


def test_a_great_many_new_tasks_are_looked_for_in_one_query_over_the_whole_window(store, tmp_path, nodes):
    tasks = "".join(f'    - {{name: t{i}, script: "true"}}\n' for i in range(600))
    text = CLUSTER + "---\n" + WORKFLOW.split("  tasks:\n")[0] + "  tasks:\n" + tasks
    before = datetime.now(UTC)
    controller = Controller(source=MemorySource(text), store=store, state_dir=tmp_path, interval=30.0,
                            connect=nodes)
    controller.tick()
    [call] = sacct_calls(nodes)  # no window either: the store holds no submission on the cluster
    assert names_of(call) is None and start_of(call) <= before - DISCOVERY_WINDOW
    controller.tick()
    [window] = windows(sacct_calls(nodes))
    assert names_of(window) is None  # 600 submitted tasks: the window names none


def started_at(moment: datetime) -> Callable[[], datetime]:
    """The clock of a loop whose first tick was at ``moment``: that, then the real time."""
    readings = iter([moment])
    return lambda: next(readings, None) or datetime.now(UTC)


def workflow(name: str, created: datetime | None = None) -> str:
    """WORKFLOW under another name; ``created`` as Kubernetes stamps an object it creates."""
    stamp = f", creationTimestamp: '{created.strftime('%Y-%m-%dT%H:%M:%SZ')}'" if created is not None else ""
    return WORKFLOW.replace("metadata: {name: one}", f"metadata: {{name: {name}{stamp}}}")


def acting_since(moment: datetime, store: Store, tmp_path: Path, nodes: LoginNodes) -> tuple[Controller, MemorySource]:
    """A loop that started acting at ``moment`` with workflow one, which it submitted then."""
    source = MemorySource(CLUSTER + "---\n" + WORKFLOW)
    controller = Controller(source=source, store=store, state_dir=tmp_path, interval=30.0, connect=nodes,
                            clock=started_at(moment))
    controller.tick()
    assert [job.name for job in nodes["/work/a"].submitted()] == ["one.step", "one.after"]
    sacct_calls(nodes)
    return controller, source


def pushed(source: MemorySource, *workflows: str) -> None:
    source.text += "".join("---\n" + text for text in workflows)


def searches(calls: list[tuple[str, ...]], before: datetime) -> list[tuple[str, ...]]:
    """The sacct calls reaching back past what ran lately (the window starts ~2 minutes back)."""
    return [call for call in calls if start_of(call) < before - timedelta(minutes=3)]


def test_a_workflow_pushed_soon_after_the_loop_started_is_looked_for_by_name(store, tmp_path, nodes):
    started = datetime.now(UTC) - timedelta(minutes=5)
    controller, source = acting_since(started, store, tmp_path, nodes)
    before = datetime.now(UTC)
    pushed(source, workflow("two"))
    controller.tick()
    # Its range reaches back before the loop acted: another incarnation may have submitted it.
    [by_name] = searches(sacct_calls(nodes), before)
    assert names_of(by_name) == ["two.after", "two.later", "two.review", "two.step"]
    assert start_of(by_name) <= before - DISCOVERY_WINDOW - WINDOW_MARGIN


def test_a_workflow_pushed_to_a_loop_acting_for_longer_than_the_window_is_not_looked_for(store, tmp_path, nodes):
    controller, source = acting_since(datetime.now(UTC) - timedelta(hours=2), store, tmp_path, nodes)
    before = datetime.now(UTC)
    pushed(source, workflow("two"))
    controller.tick()
    # Only the window over what ran lately, which names the new workflow's tasks too.
    [window] = sacct_calls(nodes)
    assert start_of(window) >= before - timedelta(minutes=3)
    assert names_of(window) == ["one.after", "one.later", "one.step", "two.after", "two.later", "two.step"]
    assert "two.step" in [job.name for job in nodes["/work/a"].submitted()]


def test_a_first_look_at_a_cluster_for_new_workflows_asks_accounting_nothing(store, tmp_path, nodes):
    source = MemorySource(CLUSTER)
    controller = Controller(source=source, store=store, state_dir=tmp_path, interval=30.0, connect=nodes,
                            clock=started_at(datetime.now(UTC) - timedelta(hours=2)))
    controller.tick()
    pushed(source, WORKFLOW)
    controller.tick()
    # No submission on the cluster for a window to find, none to search for by name.
    assert sacct_calls(nodes) == []
    assert [job.name for job in nodes["/work/a"].submitted()] == ["one.step", "one.after"]


@pytest.mark.parametrize("after_start", [timedelta(hours=-1), timedelta(seconds=30)],
                         ids=["before", "within-the-clocks-margin-after"])
def test_a_workflow_created_before_the_loop_acted_is_looked_for_back_to_its_creation(store, tmp_path, nodes,
                                                                                      after_start):
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    controller, source = acting_since(started, store, tmp_path, nodes)
    # Stamped by the API server's clock, which may be a little ahead of the loop's.
    created = started + after_start
    before = datetime.now(UTC)
    pushed(source, workflow("three", created=created))
    controller.tick()
    [by_name] = searches(sacct_calls(nodes), before)
    assert names_of(by_name) == ["three.after", "three.later", "three.review", "three.step"]
    assert start_of(by_name) == created - WINDOW_MARGIN


def test_in_one_tick_only_the_workflows_older_than_the_loop_are_looked_for(store, tmp_path, nodes):
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    controller, source = acting_since(started, store, tmp_path, nodes)
    before = datetime.now(UTC)
    created = started - timedelta(hours=1)
    pushed(source, workflow("two"), workflow("three", created=created), workflow("four", created=before))
    controller.tick()
    [by_name] = searches(sacct_calls(nodes), before)
    assert names_of(by_name) == ["three.after", "three.later", "three.review", "three.step"]
    assert start_of(by_name) == created - WINDOW_MARGIN
    assert {"two.step", "three.step", "four.step"} <= {job.name for job in nodes["/work/a"].submitted()}
