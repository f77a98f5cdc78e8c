"""WorkflowTemplate instances and the cluster's core budget on the real dev cluster, in Git mode:
templates and their instances pushed into a real repository, the real ``reconciler run`` loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, PlanRepo, sacct_times, squeue_jobs, unique, watch_to_end

pytestmark = pytest.mark.slurm

DEFAULTS = 'resources: {partition: debug, time: "00:05:00", memory: 20M}'


def template(name: str, *, parameters: list[str], tasks: str) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: WorkflowTemplate
metadata: {{name: {name}}}
spec:
  parameters: [{", ".join(f"{{name: {p}}}" for p in parameters)}]
  defaults: {{{DEFAULTS}}}
  tasks:
{tasks}"""


def instance(name: str, *, template_name: str, arguments: dict[str, object]) -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  templateRef: {{name: {template_name}}}
  arguments: {json.dumps(arguments)}
"""


# Every element writes its part into the workflow's shared directory; the fan-in fails unless it
# finds one part per element, each written for this instance's tag.
SCATTER_GATHER = """\
    - name: scatter
      array: {count: "{{ params.parts }}"}
      labels: {stage: scatter}
      script: |
        mkdir -p ../parts
        echo "{{ params.tag }}" > "../parts/part-$TASK_INDEX"
    - name: gather
      dependsOn: [scatter]
      labels: {stage: gather, kind: fan-in}
      script: |
        found=$(grep -lx "{{ params.tag }}" ../parts/part-* | wc -l)
        echo "$found" > gathered.txt
        [ "$found" -eq "{{ params.parts }}" ] || exit 4
"""


def test_a_template_instance_fans_out_and_gathers_every_part(world, dev_cluster: DevCluster):
    repo, loop = world
    name, parts = unique("mosaic"), 5
    repo.write("templates/scatter-gather.yaml",
               template("scatter-gather", parameters=["parts", "tag"], tasks=SCATTER_GATHER))
    repo.write("plans/mosaic.yaml", instance(name, template_name="scatter-gather",
                                             arguments={"parts": parts, "tag": name}))
    repo.push("a scatter-gather template and one instance of it")

    assert loop.run_until_done(timeout=120) == 0, loop.log.read_text()[-3000:]
    status = loop.status(name)
    assert status["phase"] == "Succeeded" and status["progress"] == "2/2", status
    assert status["tasks"]["scatter"]["array"]["indices"] == {"Succeeded": f"0-{parts - 1}"}
    gathered = Path(dev_cluster.cluster("local").spec.workdir) / "default" / name / "gather" / "gathered.txt"
    assert gathered.read_text().split() == [str(parts)]

    # Slurm ran the fan-in after the last element had ended (times to the second).
    jobs = sacct_times(dev_cluster, f"{name}.", at_least=parts + 1)
    elements = [job for job in jobs if job[1] == f"{name}.scatter"]
    [gather] = [job for job in jobs if job[1] == f"{name}.gather"]
    assert len(elements) == parts, jobs
    assert gather[2] >= max(end for _, _, _, end in elements), jobs

    # The instance's tasks carry the labels its template gives them.
    listed = json.loads(loop.cli("get", "tasks", "-l", "kind=fan-in", "-o", "json").stdout)["items"]
    assert [(item["workflow"], item["task"], item["labels"]) for item in listed] == [
        (name, "gather", {"kind": "fan-in", "stage": "gather"})]
    table = loop.cli("get", "tasks", "--workflow", name, "-l", "stage in (scatter,gather)").stdout
    assert [line.split()[2] for line in table.splitlines()[1:]] == ["scatter", "gather"], table


@pytest.mark.usefixtures("quiet_queue")
def test_max_cores_keeps_the_workflow_within_the_clusters_core_budget(tmp_path: Path, dev_cluster: DevCluster):
    # The dev node has 16 CPUs: without the budget all six would run at once.
    manifest = dev_cluster.manifest_path("local").read_text().replace(
        "spec:\n", "spec:\n  capacity: {maxCores: 2}\n", 1)
    repo = PlanRepo(tmp_path, manifest)
    name = unique("cores")
    tasks = "\n".join(f"    - {{name: part-{i}, script: sleep 1, resources: {{cpus: 1}}}}" for i in range(6))
    repo.write("plans/cores.yaml", f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  defaults: {{{DEFAULTS}}}
  tasks:
{tasks}
""")
    repo.push("six one-core parts against a budget of two cores")
    loop = Loop(repo, tmp_path / "state").start()
    try:
        most, status, phases = watch_to_end(loop, name, sample=lambda: len(squeue_jobs(dev_cluster, name)),
                                            timeout=120, every=0.1)
    finally:
        loop.stop()
    assert status.get("phase") == "Succeeded", (status, loop.log.read_text()[-3000:])
    assert most == 2
    assert "Queued" in phases
    assert {task["attempts"] for task in status["tasks"].values()} == {1}


# measure uses the argument; control neither uses it nor follows measure; report follows measure.
ARGUMENT_USERS = """\
    - name: measure
      script: echo "threshold={{ params.threshold }}"
    - name: control
      script: echo control
    - name: report
      dependsOn: [measure]
      script: echo report
"""


def test_a_changed_argument_reruns_exactly_the_tasks_that_use_it(world, dev_cluster: DevCluster):
    repo, loop = world
    name = unique("tuned")
    repo.write("templates/tuned.yaml", template("tuned", parameters=["threshold"], tasks=ARGUMENT_USERS))
    repo.write("plans/tuned.yaml", instance(name, template_name="tuned", arguments={"threshold": 0.5}))
    repo.push("a template instance")
    assert loop.run_until_done(timeout=120) == 0, loop.log.read_text()[-3000:]
    before = loop.status(name)["tasks"]
    assert {task: s["phase"] for task, s in before.items()} == dict.fromkeys(("measure", "control", "report"),
                                                                             "Succeeded")

    repo.write("plans/tuned.yaml", instance(name, template_name="tuned", arguments={"threshold": 0.6}))
    revision = repo.push("a new threshold")
    loop.start()
    loop.wait_for(name, lambda s: s.get("revision") == revision and s.get("phase") == "Succeeded",
                  timeout=120, what="the rerun finished")
    # A tick after the end: one that would resubmit anything more has had its chance.
    after = loop.later_ticks(name)["tasks"]
    loop.stop()

    for task in ("measure", "report"):
        assert after[task]["fingerprint"] != before[task]["fingerprint"], task
        assert after[task]["jobId"] != before[task]["jobId"], task
    # Untouched: the same job, attempt and status, save the efficiency accounting may report
    # only once the job's steps are recorded, a tick or two after it ended.
    assert {k: v for k, v in after["control"].items() if k != "efficiency"} == {
        k: v for k, v in before["control"].items() if k != "efficiency"}
    jobs = sacct_times(dev_cluster, f"{name}.", at_least=5)
    runs = {task: sum(job[1] == f"{name}.{task}" for job in jobs) for task in before}
    assert runs == {"measure": 2, "control": 1, "report": 2}, jobs
    assert before["control"]["jobId"] in {job[0] for job in jobs}
