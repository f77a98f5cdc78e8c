"""Task inputs end to end, through both transports: files of the pushed commit reach the job's
run directory, a changed input reruns its task (and only the blob that changed is sent again), a
missing input is a condition rather than a failed job, and an earlier task's outputs arrive."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from reconciler.store.database import Store
from tests.integration.gitops_world import Loop, PlanRepo, sacct_jobs, unique, wait_until, workflow_header

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]


def workflow(name: str) -> str:
    return workflow_header(name) + """\
    - name: tile
      script: mkdir -p tiles && echo zero > tiles/0.tif && echo one > tiles/1.tif && echo no > tiles/x.txt
    - name: segment
      dependsOn: [tile]
      script: ./segment.sh
      inputs: [segment.sh, "params/*.json", {task: tile, path: "tiles/*.tif"}]
    - name: report
      dependsOn: [segment]
      script: cp ../segment/seen.txt report.txt
"""


SEGMENT = """\
#!/bin/sh
# {name}
cat params/*.json > seen.txt
ls tiles >> seen.txt
"""


def uploads(loop: Loop) -> list[str]:
    return re.findall(r"uploaded input blob ([0-9a-f]{12})", loop.log.read_text())


def test_inputs_reach_the_job_and_a_changed_one_reruns_only_what_it_feeds(transport_world):
    repo, loop, workdir = transport_world
    name = unique("inputs")
    repo.write(f"plans/{name}.yaml", workflow(name))
    repo.write("plans/segment.sh", SEGMENT.format(name=name))
    (repo.work / "plans" / "segment.sh").chmod(0o755)
    repo.write("plans/params/a.json", f'{{"run": "{name}", "threshold": 1}}\n')
    repo.push("a workflow with inputs")
    loop.start()
    first = loop.wait_for_phase(name, "Succeeded", timeout=120)
    run_dir = workdir / "default" / name
    assert (run_dir / "segment" / "seen.txt").read_text() == f'{{"run": "{name}", "threshold": 1}}\n0.tif\n1.tif\n'
    assert (run_dir / "report" / "report.txt").exists()
    script_blob = workdir / ".reconciler" / "blobs" / hashlib.sha256(SEGMENT.format(name=name).encode()).hexdigest()
    before = script_blob.stat()
    assert len(uploads(loop)) == 2  # the script and the parameters, each new to the cluster

    repo.write("plans/params/a.json", f'{{"run": "{name}", "threshold": 2}}\n')
    repo.push("only a parameter changes")
    second = loop.wait_for(
        name, lambda s: s["phase"] == "Succeeded" and s["tasks"]["report"]["fingerprint"]
        != first["tasks"]["report"]["fingerprint"], timeout=120, what="the rerun after the parameter change")
    assert (run_dir / "segment" / "seen.txt").read_text().startswith(f'{{"run": "{name}", "threshold": 2}}')
    assert second["tasks"]["tile"] == first["tasks"]["tile"]  # upstream of the change: not run again
    assert second["tasks"]["segment"]["fingerprint"] != first["tasks"]["segment"]["fingerprint"]
    after = script_blob.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(uploads(loop)) == 3  # only the changed parameters were sent

    repo.remove("plans/params/a.json")
    repo.push("the parameters are gone")
    held = loop.wait_for(name, lambda s: any(c["type"] == "InputsReady" for c in s.get("conditions", [])),
                         timeout=60, what="the InputsReady condition")
    [condition] = [c for c in held["conditions"] if c["type"] == "InputsReady"]
    assert (condition["status"], condition["reason"]) == ("False", "InputMissing")
    assert f"input params/*.json not found (named in plans/{name}.yaml)" in condition["message"]
    segment = held["tasks"]["segment"]
    assert (segment["phase"], segment["reason"]) == ("Waiting", "InputMissing")
    assert held["tasks"]["tile"] == first["tasks"]["tile"]
    assert "Failed" not in {task["phase"] for task in held["tasks"].values()}


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_a_staging_failure_submits_nothing_and_the_next_tick_stages_again(transport: str, tmp_path: Path,
                                                                           dev_cluster: DevCluster):
    # A cluster working directory of this test's own, where the blob store cannot be created yet.
    workdir = tmp_path / "work"
    manifest = re.sub(r"workdir: .*", f"workdir: {workdir}", dev_cluster.manifest_path(transport).read_text())
    repo = PlanRepo(tmp_path, manifest)
    name = unique("staged")
    repo.write(f"plans/{name}.yaml", workflow_header(name) + """\
    - {name: run, script: "cat settings.txt > seen.txt", inputs: [settings.txt]}
""")
    repo.write("plans/settings.txt", name)
    repo.push("a task with an input")
    (workdir / ".reconciler").mkdir(parents=True)
    (workdir / ".reconciler" / "blobs").write_text("in the way")
    loop = Loop(repo, tmp_path / "state", interval=0.5).start()
    try:
        wait_until(lambda: f"staging inputs into {workdir}" in loop.log.read_text(), timeout=60,
                   what="a failed staging")
        with Store(loop.state_dir / "state.db") as store:
            stored = store.workflow("default", name)
            assert stored is not None and not store.has_attempts(stored.uid)  # no intent was recorded
        (workdir / ".reconciler" / "blobs").unlink()
        loop.wait_for_phase(name, "Succeeded", timeout=120)
    finally:
        loop.stop()
    assert (workdir / "default" / name / "run" / "seen.txt").read_text() == name
    assert len(sacct_jobs(dev_cluster, f"{name}.run")) == 1


def test_reconciler_submit_stages_inputs_as_the_loop_does(tmp_path: Path, dev_cluster: DevCluster):
    """The one-shot path: a folder's script reaches the run directory before sbatch, and an
    earlier task's outputs are copied in by the job itself."""
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "cluster.yaml").write_text(dev_cluster.manifest_path("local").read_text())
    name = unique("oneshot")
    (plans / "workflow.yaml").write_text(workflow_header(name) + """\
    - {name: tile, script: "mkdir -p tiles && echo zero > tiles/0.tif"}
    - name: segment
      dependsOn: [tile]
      script: ./segment.sh
      inputs: [segment.sh, {task: tile, path: "tiles/*.tif"}]
""")
    (plans / "segment.sh").write_text("#!/bin/bash\ncat tiles/0.tif > seen.txt\n")
    (plans / "segment.sh").chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "reconciler", "submit", name, "--source", str(plans), "--wait",
                           "--timeout", "120"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = Path(dev_cluster.cluster("local").spec.workdir) / "default" / name / "segment"
    assert (run_dir / "seen.txt").read_text() == "zero\n"
