"""The verbs a GitOps user reaches for, against the real loop and the real dev cluster:
``reconciler cancel`` and ``retry`` while the loop runs, ``reconciler diff`` against a real
Git repository and the state a real run left, and ``reconciler logs`` of finished and running
jobs, through both transports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import ROOT, squeue_jobs, terminate, unique, wait_until, workflow_header

pytestmark = pytest.mark.slurm


def workflow(name: str, *, dose: str = "1") -> str:
    """``first`` sleeps through its first attempt only (so a retry is quick), ``second`` after it;
    ``dose`` feeds ``simulate``, which ``report`` follows."""
    return workflow_header(name, time="00:10:00") + f"""\
    - name: first
      script: |
        if [ "$RECONCILER_ATTEMPT" = 1 ] && [ "$SLOW" = yes ]; then sleep 300; fi
        echo first
      env: {{SLOW: "yes"}}
    - name: second
      dependsOn: [first]
      script: echo second
    - name: simulate
      dependsOn: [first]
      env: {{DOSE: "{dose}"}}
      script: echo "dose $DOSE"
    - name: report
      dependsOn: [simulate]
      script: echo report
"""


def test_cancel_stops_the_job_for_good_and_retry_runs_a_new_attempt(world, dev_cluster: DevCluster):
    # Through the local transport: scancel through ssh is the backend tests' (test_slurm_backend).
    repo, loop = world
    name = unique("verbs")
    repo.write("plans/verbs.yaml", workflow(name))
    repo.push("a workflow with a long first step")
    loop.start()
    running = loop.wait_for(name, lambda s: s["tasks"]["first"]["phase"] == "Running", what="first running")
    job_id = running["tasks"]["first"]["jobId"]
    assert job_id in squeue_jobs(dev_cluster, name)

    done = loop.cli("cancel", name, "first")
    assert done.stdout == f"workflow.hpc.reconciler.dev/{name} task first cancelled\n"
    wait_until(lambda: not squeue_jobs(dev_cluster, name), timeout=60, what=f"{name}'s jobs gone from squeue")
    status = loop.wait_for(name, lambda s: s["tasks"]["first"]["phase"] == "Cancelled"
                           and s["tasks"]["second"]["phase"] == "Skipped", what="first Cancelled")
    first = status["tasks"]["first"]
    assert (first["reason"], first["attempts"], first["jobId"]) == ("CancelledByUser", 1, job_id)
    assert status["phase"] == "Failed"

    # Ticks that began after the cancel was carried out submit nothing more.
    status = loop.later_ticks(name, 2)
    assert status["tasks"]["first"]["phase"] == "Cancelled" and status["tasks"]["first"]["jobId"] == job_id
    assert squeue_jobs(dev_cluster, name) == []
    refused = loop.cli("cancel", name, "first", check=False)
    assert refused.returncode == 1 and "already finished (Cancelled)" in refused.stderr
    refused = loop.cli("retry", name, "second", check=False)
    assert refused.returncode == 1 and "only a Failed or Cancelled task can be retried" in refused.stderr

    loop.cli("retry", name, "first")
    status = loop.wait_for_phase(name, "Succeeded", timeout=120)
    first = status["tasks"]["first"]
    assert first["attempts"] == 2 and first["jobId"] != job_id
    assert {task: s["phase"] for task, s in status["tasks"].items()} == dict.fromkeys(
        ("first", "second", "simulate", "report"), "Succeeded")


def test_diff_names_the_tasks_a_push_reruns_and_why(world):
    repo, loop = world
    name = unique("dose")
    repo.write("plans/dose.yaml", workflow(name).replace('SLOW: "yes"', 'SLOW: "no"'))
    stored_revision = repo.push("dose 1")
    assert loop.run_until_done(timeout=180) == 0
    source = ("diff", "--source", f"file://{repo.bare}")

    unchanged = loop.cli(*source, check=False)
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout.endswith("no changes\n")

    repo.write("plans/dose.yaml", workflow(name, dose="2").replace('SLOW: "yes"', 'SLOW: "no"'))
    repo.push("dose 2")
    changed = loop.cli(*source, check=False)
    assert changed.returncode == 1, changed.stderr
    assert changed.stdout == (
        f"~ workflow.hpc.reconciler.dev/default/{name} changed (2 of 4 tasks rerun)\n"
        "  = task first keeps its result (Succeeded)\n"
        "  = task second keeps its result (Succeeded)\n"
        "  ~ task simulate reruns: env.DOSE: '1' -> '2'\n"
        "  ~ task report reruns: upstream simulate reruns\n"
    )
    report = json.loads(loop.cli(*source, "-o", "json", check=False).stdout)
    [entry] = report["workflows"]
    assert {t["name"]: t["why"] for t in entry["tasks"] if t["change"] == "reruns"} == {
        "simulate": ["env.DOSE: '1' -> '2'"], "report": ["upstream simulate reruns"]}

    # The revision the run was made from, by name and by commit: nothing to change.
    for revision in ("HEAD~1", stored_revision):
        older = loop.cli(*source, "--revision", revision, check=False)
        assert older.returncode == 0, older.stdout + older.stderr
    missing = loop.cli(*source, "--revision", "no-such-branch", check=False)
    assert missing.returncode == 2 and "revision 'no-such-branch' not found" in missing.stderr


@pytest.mark.timeout(180)  # the follower is read line by line: a hang fails here
def test_logs_print_each_stream_and_follow_a_running_job_to_its_end(transport_world):
    repo, loop, workdir = transport_world
    name = unique("logs")
    # ``stream`` writes its second line only once the test has read the first through --follow:
    # the gate is a file beside the task's run directory, which the test creates.
    repo.write(f"plans/{name}.yaml", workflow_header(name) + """\
    - name: speak
      script: |
        echo "to stdout"
        echo "to stderr" >&2
    - name: stream
      script: |
        echo "line 1"
        for i in $(seq 1200); do [ -e ../gate ] && break; sleep 0.05; done
        echo "line 2"
""")
    repo.push("two chatty tasks")
    loop.start()
    loop.wait_for(name, lambda s: s["tasks"]["stream"]["phase"] == "Running", timeout=60, what="stream running")
    follower = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "logs", name, "stream", "--follow", "--source", str(repo.work),
         "--state-dir", str(loop.state_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None and follower.stderr is not None
        assert follower.stdout.readline() == "line 1\n"
        (workdir / "default" / name / "gate").touch()
        assert follower.wait(timeout=60) == 0, follower.stderr.read()
        assert follower.stdout.read() == "line 2\n"
    finally:
        terminate(follower)

    loop.wait_for(name, lambda s: s["tasks"]["speak"]["phase"] == "Succeeded", timeout=60, what="speak done")
    # The cluster as the loop recorded it, or as the manifests declare it.
    assert loop.cli("logs", name, "speak").stdout == "to stdout\n"
    assert loop.cli("logs", name, "speak", "--stderr", "--source", str(repo.work)).stdout == "to stderr\n"
