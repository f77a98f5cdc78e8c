"""Generated broken manifests in a folder among good ones: the loop names each broken file with
its line, without a traceback, and the good workflows run to the end as if alone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from reconciler.cli.submit import Submission
from reconciler.devcluster import DevCluster
from reconciler.store.database import Store
from tests.broken_manifests import good_workflow, sample
from tests.integration.gitops_world import ROOT, jobs_per_task, unique

# The suite's share; scripts/resilience runs the same with 500 (tests/resilience/test_bad_state.py).
BROKEN = 50


def test_broken_files_are_named_with_their_line_and_the_good_workflows_succeed(
        tmp_path: Path, dev_cluster: DevCluster, overtime: Submission) -> None:
    broken_among_good(tmp_path, dev_cluster, count=BROKEN)


def broken_among_good(tmp_path: Path, dev_cluster: DevCluster, *, count: int) -> None:
    """``count`` generated broken manifests and two good workflows in one folder, run by one
    loop until done: each broken file named with a line, no traceback, the good ones Succeeded
    with one job per task."""
    plans = tmp_path / "plans"
    (plans / "broken").mkdir(parents=True)
    (plans / "cluster.yaml").write_text(dev_cluster.manifest_path("local").read_text())
    base = unique("mix")
    good = [f"{base}-g{index}" for index in range(2)]
    for name in good:
        (plans / f"{name}.yaml").write_text(good_workflow(name, tasks=2, partition="debug"))
    manifests = sample(count)
    assert len(manifests) == count
    for index, manifest in enumerate(manifests):
        (plans / "broken" / f"b{index:03d}.yaml").write_text(manifest.render(f"{base}-b{index}"))

    state = tmp_path / "state"
    done = subprocess.run([sys.executable, "-m", "reconciler", "run", "--source", str(plans), "--state-dir",
                           str(state), "--interval", "0.5", "--until-done"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180 + count)
    log = done.stdout + done.stderr
    assert "Traceback" not in log, log[-4000:]

    with Store(state / "state.db") as store:
        for name in good:
            stored = store.workflow("default", name)
            assert stored is not None and stored.status is not None, name
            assert stored.status.phase.value == "Succeeded", (name, stored.status)
        conditions = " ".join(c.message or "" for w in store.all_workflows() if w.status
                              for c in w.status.conditions)
    for index, manifest in enumerate(manifests):
        where = re.compile(rf"broken/b{index:03d}\.yaml:\d+: ")
        assert where.search(log) or where.search(conditions), (f"b{index:03d}.yaml ({manifest.kind}) is named "
                                                               f"nowhere with a line", manifest.render("x"))
    # The broken files stopped nothing: the loop ended once the good workflows had (1: some
    # workflows it keeps are Invalid).
    assert done.returncode in (0, 1), log[-4000:]
    for name in good:
        assert jobs_per_task(dev_cluster, name, tasks=2) == {"t0": 1, "t1": 1}
