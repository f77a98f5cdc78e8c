"""Bad input and a full disk, at the resilience suite's size: 500 generated broken manifests
among good workflows in one folder, and the loop's state directory filled up mid-run. The
default suite runs the same scenarios smaller (tests/integration/test_broken_among_good.py with
50 files, tests/integration/test_disk_full.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.test_broken_among_good import broken_among_good
from tests.integration.test_disk_full import full_state_directory, small_tmpfs

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(900)]

BROKEN = 500


def test_five_hundred_broken_manifests_among_good_ones(tmp_path: Path, dev_cluster: DevCluster,
                                                       record_property) -> None:
    broken_among_good(tmp_path, dev_cluster, count=BROKEN)
    record_property("jobs", "4/4")
    record_property("meanwhile", f"{BROKEN} files each named with a line, no traceback")


def test_the_state_directory_full_then_freed(tmp_path: Path, dev_cluster: DevCluster, record_property) -> None:
    with small_tmpfs(tmp_path / "state") as state:
        full_state_directory(tmp_path, state, dev_cluster)
    record_property("jobs", "2/2")
    record_property("meanwhile", "'is full' logged, ticks counted as failed, nothing submitted")
