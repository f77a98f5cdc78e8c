"""Declared outputs and ``ttlSecondsAfterFinished`` on the real dev cluster, through both
transports: a fetch that fails is tried again until the files are here, a pattern that matches
nothing fails the workflow with the reason, each variant of a rerun keeps its own files, and a
finished workflow's files go once its TTL has passed while its status and history stay."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import unique
from tests.integration.kube_world import KubeWorld

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slurm


def workflow(name: str, *, variant: int = 1, extra: str = "", ttl: int | None = None) -> str:
    """``made`` writes a report and two masks, all declared as outputs."""
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  {f"ttlSecondsAfterFinished: {ttl}" if ttl is not None else ""}
  defaults:
    resources: {{partition: debug, time: "00:05:00", memory: 20M}}
  tasks:
    - name: made
      outputs: [report.txt, "masks/*.png"]
      script: |
        echo "variant={variant}" > report.txt
        mkdir -p masks && echo a > masks/a.png && echo b > masks/b.png && echo x > masks/skip.tmp
{extra}"""


ABSENT = """\
    - name: absent
      outputs: ["results/*.csv"]
      script: |
        echo "nothing to declare" > other.txt
"""


def outputs_of(status: dict, task: str) -> dict:
    return status.get("tasks", {}).get(task, {}).get("outputs") or {}


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_a_fetch_that_fails_is_tried_again_until_the_outputs_are_here(transport_world):
    repo, loop, _ = transport_world
    name = unique("fetch")
    # Where the workflow's outputs go is taken by a plain file: every fetch fails until it is gone.
    blocker = loop.state_dir / "outputs" / "default" / name
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    repo.write(f"plans/{name}.yaml", workflow(name, extra=ABSENT))
    repo.push("segment the slide")
    loop.start()

    failing = loop.wait_for(name, lambda s: outputs_of(s, "made").get("phase") == "Failed", timeout=120,
                            what="a failed fetch")
    assert failing["tasks"]["made"]["phase"] == "Succeeded"  # the job did; its outputs are not here
    assert failing["phase"] == "Running" and condition(failing, "Ready")["status"] == "False"
    assert outputs_of(failing, "made")["reason"] == "OutputsFetchFailed"
    assert outputs_of(failing, "made")["tries"] >= 1

    blocker.unlink()
    done = loop.wait_for(name, lambda s: s["phase"] == "Failed" and outputs_of(s, "made").get("phase") == "Fetched",
                         timeout=60, what="the outputs fetched after all")
    made = outputs_of(done, "made")
    fingerprint = done["tasks"]["made"]["fingerprint"]
    variant = loop.state_dir / "outputs" / "default" / name / "made" / fingerprint
    assert made["path"] == str(variant) and made["files"] == 3
    assert (variant / "report.txt").read_text() == "variant=1\n"
    assert sorted(p.name for p in (variant / "masks").iterdir()) == ["a.png", "b.png"]
    assert os.readlink(variant.parent / "latest") == fingerprint

    # The pattern that matched nothing fails the workflow, and says which.
    absent = outputs_of(done, "absent")
    assert absent["phase"] == "Missing" and "results/*.csv" in absent["message"]
    assert done["tasks"]["absent"]["phase"] == "Succeeded"
    assert condition(done, "Ready")["reason"] == "OutputsMissing"
    assert condition(done, "OutputsFetched")["status"] == "False"
    assert condition(done, "OutputsFetched")["reason"] == "OutputsMissing"
    reasons = loop.cli("describe", "workflow", name).stdout
    assert "OutputsFetchFailed" in reasons and "OutputsMissing" in reasons and str(variant) in reasons


def test_a_rerun_with_new_parameters_keeps_the_earlier_variants_files(transport_world):
    repo, loop, _ = transport_world
    name = unique("variants")
    repo.write(f"plans/{name}.yaml", workflow(name, variant=1))
    repo.push("first parameters")
    loop.start()
    first = loop.wait_for_phase(name, "Succeeded", timeout=120)
    repo.write(f"plans/{name}.yaml", workflow(name, variant=2))
    repo.push("second parameters")
    second = loop.wait_for(name, lambda s: s["phase"] == "Succeeded" and s["tasks"]["made"]["fingerprint"]
                           != first["tasks"]["made"]["fingerprint"], timeout=120, what="the rerun")

    task_dir = loop.state_dir / "outputs" / "default" / name / "made"
    old, new = first["tasks"]["made"]["fingerprint"], second["tasks"]["made"]["fingerprint"]
    assert (task_dir / old / "report.txt").read_text() == "variant=1\n"
    assert (task_dir / new / "report.txt").read_text() == "variant=2\n"
    assert (task_dir / "latest" / "report.txt").read_text() == "variant=2\n"
    assert outputs_of(second, "made")["path"] == str(task_dir / new)


def test_ttl_after_finished_removes_the_run_directory_and_the_copies_and_keeps_the_status(transport_world):
    repo, loop, workdir = transport_world
    name = unique("ttl")
    repo.write(f"plans/{name}.yaml", workflow(name, ttl=2))
    repo.push("short-lived scratch")
    loop.start()
    finished = loop.wait_for_phase(name, "Succeeded", timeout=120)
    run_dir = workdir / "default" / name
    copies = loop.state_dir / "outputs" / "default" / name
    assert (copies / "made" / "latest" / "report.txt").exists()
    assert finished.get("cleanedAt") is None and (run_dir / "made" / "report.txt").exists()

    cleaned = loop.wait_for(name, lambda s: s.get("cleanedAt"), timeout=60, what="the cleanup")
    assert not run_dir.exists() and not copies.exists()
    assert workdir.is_dir() and (workdir / "default").is_dir()
    # Status and history stay as they were.
    assert cleaned["phase"] == "Succeeded" and cleaned["finishedAt"] == finished["finishedAt"]
    assert cleaned["tasks"]["made"]["phase"] == "Succeeded"
    described = loop.cli("describe", "workflow", name).stdout
    assert "Cleaned" in described and "Attempts:" in described
    # Done once: later ticks neither clean again nor fetch the outputs again.
    later = loop.later_ticks(name, count=2)
    assert later["cleanedAt"] == cleaned["cleanedAt"] and not copies.exists()
    assert described.count("ttlSecondsAfterFinished") == loop.cli("describe", "workflow", name).stdout.count(
        "ttlSecondsAfterFinished")


def test_ttl_in_kubernetes_mode_cleans_once_even_after_the_operator_lost_its_state(
        kube_world: KubeWorld, dev_cluster: DevCluster):
    """The field is in the Workflow's spec, so the operator honours it too; the cleanup is
    recorded in the status it writes, which is what an operator on a fresh disk still has: it
    neither cleans again nor fetches outputs from the removed run directory."""
    name, kubectl, namespace = unique("kttl"), kube_world.kubectl, kube_world.namespace
    cluster = dev_cluster.cluster("local").metadata.name
    manifest = workflow(name, ttl=2).replace("spec:\n", f"spec:\n  cluster: {cluster}\n", 1)
    kubectl.apply(manifest)
    # The same replica (it holds the Lease it held) stopped and started again on an empty disk.
    state, identity = kube_world.directory / "state", unique("a")
    first = kube_world.operator(state_dir=state, identity=identity)
    cleaned = kubectl.wait_for(name, lambda s: s.get("cleanedAt"), timeout=120, what="the cleanup",
                               operators=(first,))
    first.stop()
    assert cleaned["phase"] == "Succeeded" and outputs_of(cleaned, "made")["phase"] == "Fetched"
    assert not kube_world.run_dir(name).exists()
    assert not (state / "outputs" / namespace / name).exists()

    shutil.rmtree(state)
    kubectl.apply(manifest.replace("ttlSecondsAfterFinished: 2", "ttlSecondsAfterFinished: 3"))
    generation = (kubectl.get("workflow", name) or {})["metadata"]["generation"]
    second = kube_world.operator(state_dir=state, identity=identity)
    again = kubectl.wait_for(name, lambda s: s.get("observedGeneration") == generation, timeout=120,
                             what="a tick of the new operator", operators=(second,))
    second.stop()
    assert again["phase"] == "Succeeded" and again["cleanedAt"] == cleaned["cleanedAt"]
    assert outputs_of(again, "made") == outputs_of(cleaned, "made")
    assert not (state / "outputs" / namespace / name).exists()
    events = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == name]
    assert reasons.count("Cleaned") == 1 and "OutputsMissing" not in reasons
