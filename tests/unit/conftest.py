"""Fixtures the unit tests share: a store in a fresh file, and two in-memory login nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store.database import Store
from tests.fakes import FakeSlurm, LoginNodes


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state.db") as opened:
        yield opened


@pytest.fixture
def nodes() -> LoginNodes:
    """The login nodes of clusters a (workdir /work/a) and b (/work/b)."""
    return LoginNodes({"/work/a": FakeSlurm("login-a"), "/work/b": FakeSlurm("login-b", first_job_id=500)})
