"""Whole ticks of the control loop over in-memory edges (tests/fakes.py) once nothing changes any
more: no workflow is planned again and no status written, until something does change or a
status could not be written."""

from __future__ import annotations

from pathlib import Path

from reconciler.api import TaskPhase
from reconciler.engine.controller import Controller
from reconciler.store.database import Store
from tests.fakes import LoginNodes, MemoryPublisher, MemorySource

from .test_tick import TWO_CLUSTERS, status


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


def test_a_tick_with_nothing_changed_writes_no_status(store, tmp_path, nodes):
    publisher = MemoryPublisher()
    loop = settle(store, tmp_path, nodes, publisher)
    before = {name: status(store, name) for name in ("one", "two")}
    publisher.written.clear()
    loop.tick()
    assert publisher.written == {}
    assert {name: status(store, name) for name in ("one", "two")} == before


def test_a_job_that_changes_plans_its_workflow_again_and_only_that_one(store, tmp_path, nodes):
    publisher = MemoryPublisher()
    loop = settle(store, tmp_path, nodes, publisher)
    [job] = nodes["/work/a"].submitted()
    job.state = "RUNNING"
    publisher.written.clear()
    loop.tick()
    assert list(publisher.written) == [uid(store, "one")]
    assert status(store, "one").tasks["step"].phase is TaskPhase.RUNNING


def test_a_status_not_written_is_written_next_tick_though_nothing_changed(store, tmp_path, nodes):
    publisher = MemoryPublisher()
    loop = Controller(source=MemorySource(TWO_CLUSTERS), store=store, state_dir=tmp_path, interval=30.0,
                      publisher=publisher, connect=nodes)
    loop.tick()
    loop.tick()
    publisher.refuse_write("one", "500 Internal Server Error")
    loop.tick()  # the same status again, which the publisher refuses
    publisher.written.clear()
    loop.tick()
    assert list(publisher.written) == [uid(store, "one")]
