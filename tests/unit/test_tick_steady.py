"""Whole ticks of the control loop over in-memory edges (tests/fakes.py) once nothing changes any
more: no workflow is planned again and no status saved, until something does change; a
publisher is still handed every status, since what it wrote may have been edited since."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.api import TaskPhase, WorkflowStatus
from reconciler.engine.controller import Controller
from reconciler.store.database import Store
from tests.fakes import LoginNodes, MemoryPublisher, MemorySource

from .test_tick import TWO_CLUSTERS, status


class SavingStore(Store):
    """The store, noting the statuses each tick saves."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saved: list[set[str]] = []

    def save_statuses(self, statuses: Mapping[str, WorkflowStatus]) -> None:
        self.saved.append(set(statuses))
        super().save_statuses(statuses)


def settle(store: Store, tmp_path: Path, nodes: LoginNodes, publisher: MemoryPublisher) -> Controller:
    """A loop whose workflows submitted their job and whose status stopped changing."""
    loop = Controller(source=MemorySource(TWO_CLUSTERS), store=store, state_dir=tmp_path, interval=30.0,
                      publisher=publisher, connect=nodes)
    loop.tick()  # submits
    loop.tick()  # sees the jobs queued
    loop.tick()  # plans the same status again: the plan is kept from now on
    return loop


def uid(store: Store, name: str) -> str:
    stored = store.workflow("default", name)
    assert stored is not None
    return stored.uid


def test_a_tick_with_nothing_changed_saves_no_status_and_publishes_every_one(tmp_path, nodes):
    publisher = MemoryPublisher()
    with SavingStore(tmp_path / "state.db") as store:
        loop = settle(store, tmp_path, nodes, publisher)
        assert store.saved[-1] == {uid(store, "one"), uid(store, "two")}  # planned again, saved again
        before = {name: status(store, name) for name in ("one", "two")}
        publisher.written.clear()
        loop.tick()
        assert store.saved[-1] == set()
        assert {name: status(store, name) for name in ("one", "two")} == before
        assert publisher.written == {uid(store, name): before[name] for name in ("one", "two")}


def test_a_job_that_changes_plans_its_workflow_again_and_only_that_one(tmp_path, nodes):
    publisher = MemoryPublisher()
    with SavingStore(tmp_path / "state.db") as store:
        loop = settle(store, tmp_path, nodes, publisher)
        [job] = nodes["/work/a"].submitted()
        job.state = "RUNNING"
        loop.tick()
        assert store.saved[-1] == {uid(store, "one")}
        assert status(store, "one").tasks["step"].phase is TaskPhase.RUNNING
        assert publisher.written[uid(store, "one")] == status(store, "one")


def test_a_status_not_written_is_planned_and_written_next_tick_though_nothing_changed(tmp_path, nodes):
    publisher = MemoryPublisher()
    with SavingStore(tmp_path / "state.db") as store:
        loop = Controller(source=MemorySource(TWO_CLUSTERS), store=store, state_dir=tmp_path, interval=30.0,
                          publisher=publisher, connect=nodes)
        loop.tick()
        loop.tick()
        loop.tick()  # the same status again: kept from now on
        publisher.refuse_write("one", "500 Internal Server Error")
        publisher.written.clear()
        loop.tick()
        assert uid(store, "one") not in publisher.written and uid(store, "two") in publisher.written
        loop.tick()
        assert store.saved[-1] == {uid(store, "one")}
        assert publisher.written[uid(store, "one")] == status(store, "one")
