"""A store whose file can grow no more: a write leaves nothing behind and says the state
directory is full, and writes work again once there is room. SQLite's page limit gives the
same SQLITE_FULL a full disk gives (tests/integration/test_disk_full.py fills a real one)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.core.observed import JobKey
from reconciler.engine.controller import Controller
from reconciler.store.connection import StateWriteFailed
from reconciler.store.database import Store
from tests.fakes import LoginNodes, MemorySource
from tests.unit.test_tick import cluster, manifests, workflow

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _limit_growth(store: Store, *, pages: int | None) -> None:
    """Let the file grow by at most ``pages`` pages, or without limit (None)."""
    db = store._db  # the page limit is a setting of this one connection
    (count,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {count + pages if pages is not None else 4_000_000_000}")


def test_an_intent_the_disk_has_no_room_for_is_refused_whole_and_recorded_once_room_returns(
        tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        stored = store.upsert_workflow(namespace="default", name="w", resource={"spec": {}}, revision=None,
                                       source_file=None, now=NOW)
        _limit_growth(store, pages=0)
        big = {"note": "x" * 20_000}  # needs pages the file cannot get
        with pytest.raises(StateWriteFailed, match=r"state directory .* is full"):
            store.record_intent(stored.uid, key=JobKey(task="a", attempt=1), fingerprint="f", indices=None,
                                resources=big, cluster="dev", now=NOW)
        assert store.attempts(stored.uid) == []
        assert store.workflow("default", "w") is not None  # the store is still usable for reading

        _limit_growth(store, pages=None)
        store.record_intent(stored.uid, key=JobKey(task="a", attempt=1), fingerprint="f", indices=None,
                            resources=big, cluster="dev", now=NOW)
        assert [record.key.task for record in store.attempts(stored.uid)] == ["a"]


def test_other_database_errors_are_not_taken_for_a_full_disk(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store, pytest.raises(sqlite3.IntegrityError):
        # An attempt of a workflow the store does not hold: refused by its foreign key, as before.
        store.record_intent("no-such-workflow", key=JobKey(task="a", attempt=1), fingerprint="f", indices=None,
                            resources={}, cluster="dev", now=NOW)


def test_the_loop_submits_nothing_while_the_store_is_full_and_goes_on_when_it_is_not(
        store: Store, tmp_path: Path, nodes: LoginNodes, caplog: pytest.LogCaptureFixture) -> None:
    source = MemorySource(manifests(cluster("a"), workflow("one", on="a")))
    loop = Controller(source=source, store=store, state_dir=tmp_path, interval=0.01, connect=nodes)
    assert loop.run(once=True) == 0
    login = nodes["/work/a"]
    assert [job.name for job in login.submitted()] == ["one.step"]

    # A workflow whose manifest alone needs pages the file can no longer get.
    big = workflow("two", on="a").replace('"echo two"', '"echo two # ' + "x" * 20_000 + '"')
    source.text = manifests(cluster("a"), workflow("one", on="a"), big)
    _limit_growth(store, pages=0)
    assert loop.run(once=True) == 1
    assert [job.name for job in login.submitted()] == ["one.step"]
    assert loop.metrics.registry.get_sample_value("reconciler_state_write_failures_total") == 1
    assert any("is full" in record.getMessage() and record.exc_info is None for record in caplog.records)

    _limit_growth(store, pages=None)
    assert loop.run(once=True) == 0
    assert sorted(job.name for job in login.submitted()) == ["one.step", "two.step"]
