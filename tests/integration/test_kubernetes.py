"""Kubernetes mode end to end: the pinned kubectl and the operator against the test API server,
and the operator's jobs on the real dev cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from reconciler.kube.permissions import allowed
from tests.integration.gitops_world import sacct_jobs, sacct_states, squeue_jobs, squeue_reasons, unique, wait_until
from tests.integration.kube_world import Kubectl, Operator, control_plane
from tests.kube.apiserver import ApiServer
from tests.kube.handlers import RequestRecord
from tests.kube.tools import kubectl_binary

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_AGENT = "slurm-reconciler/"
HELD = {"JobHeldUser", "JobHeldAdmin"}  # squeue's reason for a job scontrol holds


def workflow(name: str, tasks: str, *, extra_spec: str = "") -> str:
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata:
  name: {name}
spec:
  cluster: dev
{extra_spec}  defaults:
    resources: {{partition: debug, time: "00:05:00", memory: 20M}}
  tasks:
{tasks}"""


def chain(*steps: tuple[str, str]) -> str:
    lines, previous = [], None
    for name, script in steps:
        lines.append(f"    - name: {name}")
        if previous:
            lines.append(f"      dependsOn: [{previous}]")
        lines.append(f"      script: {script!r}")
        previous = name
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory, dev_cluster: DevCluster) -> Iterator[ApiServer]:
    with control_plane(tmp_path_factory.mktemp("kube"), dev_cluster) as (server, kubectl):
        server.kubectl = kubectl  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def kubectl(apiserver: ApiServer) -> Kubectl:
    return apiserver.kubectl  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def operator(apiserver: ApiServer, kubectl: Kubectl, tmp_path: Path) -> Iterator[Operator]:
    started = Operator(kubeconfig=kubectl.kubeconfig, state_dir=tmp_path / "op-1", identity=unique("op")).start()
    yield started
    started.stop()


def test_apply_wait_and_get_the_three_step_chain(kubectl: Kubectl, operator: Operator, apiserver: ApiServer):
    plan = (ROOT / "examples" / "ultrasound-plan.yaml").read_text().replace("spec:\n", "spec:\n  cluster: dev\n", 1)
    kubectl.apply(plan)
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "workflow/ultrasound-plan", "--timeout=180s",
            timeout=200)
    table = kubectl("get", "workflows").stdout
    assert re.search(r"^NAME\s+PHASE\s+PROGRESS\s+ATTENTION\s+CORE-HOURS\s+AGE", table, re.M), table
    assert re.search(r"^ultrasound-plan\s+Succeeded\s+3/3\s+\S+\s+\S+", table, re.M), table
    wide = kubectl("get", "workflows", "-o", "wide").stdout
    assert re.search(r"CLUSTER\s+MESSAGE", wide) and "all 3 tasks succeeded" in wide, wide

    resource = kubectl.get("workflow", "ultrasound-plan")
    assert resource is not None
    status = resource["status"]
    assert status["observedGeneration"] == resource["metadata"]["generation"]
    assert {t["phase"] for t in status["tasks"].values()} == {"Succeeded"}
    assert "hpc.reconciler.dev/slurm-jobs" in resource["metadata"]["finalizers"]
    events = kubectl("get", "events", "-o", "json").stdout
    assert '"reason": "Submitted"' in events and '"reason": "WorkflowSucceeded"' in events

    # Every call the operator made is one its RBAC rules grant.
    calls = [r for r in apiserver.requests if r.user_agent.startswith(OPERATOR_AGENT)]
    assert calls
    denied = {(r.verb, r.api_group, r.resource) for r in calls if not allowed(r.api_group, r.resource, r.verb)}
    assert not denied


def reviewed(name: str, *, prepare: str) -> str:
    return workflow(name, chain(("prepare", prepare), ("publish", "echo published")).replace(
        "dependsOn: [prepare]", "dependsOn: [review]") + "    - name: review\n      type: approval\n"
                                                          "      dependsOn: [prepare]\n")


def test_approval_by_annotation(kubectl: Kubectl, operator: Operator, dev_cluster: DevCluster):
    name = unique("reviewed")
    kubectl.apply(reviewed(name, prepare="echo prepared"))
    kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("review", {}).get("phase") == "AwaitingApproval",
                     what="awaiting approval", operators=(operator,))
    operator.later_ticks(2)
    assert kubectl.status(name)["tasks"]["publish"]["phase"] == "Waiting"
    kubectl("annotate", "workflow", name, "hpc.reconciler.dev/approve=review")
    status = kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    # The operator pinned the entry to the inputs it approved.
    annotations = (kubectl.get("workflow", name) or {})["metadata"]["annotations"]
    assert annotations["hpc.reconciler.dev/approve"] == f"review={status['tasks']['review']['fingerprint']}"

    # New inputs before the approval: the pinned entry no longer counts, publish waits for a person.
    kubectl.apply(reviewed(name, prepare="echo prepared again"))
    status = kubectl.wait_for(name, lambda s: s["tasks"]["prepare"]["phase"] == "Succeeded"
                              and s["tasks"]["review"]["phase"] == "AwaitingApproval",
                              what="awaiting approval again", operators=(operator,))
    assert status["tasks"]["review"]["reason"] == "ApprovalStale", status["tasks"]["review"]
    operator.later_ticks(2)
    assert kubectl.status(name)["tasks"]["publish"]["phase"] == "Waiting"
    assert len(sacct_jobs(dev_cluster, f"{name}.publish")) == 1
    kubectl("annotate", "--overwrite", "workflow", name, "hpc.reconciler.dev/approve=review")
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded again", operators=(operator,))
    assert len(sacct_jobs(dev_cluster, f"{name}.publish", at_least=2)) == 2


def test_cancel_and_retry_by_annotation(kubectl: Kubectl, operator: Operator, dev_cluster: DevCluster):
    name = unique("halted")
    slow_once = 'if [ "$RECONCILER_ATTEMPT" = 1 ]; then sleep 300; fi; echo first'
    kubectl.apply(workflow(name, chain(("first", slow_once), ("second", "echo second"))))
    running = kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("first", {}).get("phase") == "Running",
                               what="first running", operators=(operator,))
    job_id = running["tasks"]["first"]["jobId"]
    kubectl("annotate", "workflow", name, "hpc.reconciler.dev/cancel=first")
    wait_until(lambda: not squeue_jobs(dev_cluster, name), timeout=60, what=f"{name}'s jobs gone from squeue")
    status = kubectl.wait_for(name, lambda s: s["tasks"]["first"]["phase"] == "Cancelled"
                              and s["tasks"]["second"]["phase"] == "Skipped", what="first cancelled",
                              operators=(operator,))
    assert (status["tasks"]["first"]["reason"], status["tasks"]["first"]["jobId"]) == ("CancelledByUser", job_id)
    operator.later_ticks(2)
    assert kubectl.status(name)["tasks"]["first"]["phase"] == "Cancelled" and not squeue_jobs(dev_cluster, name)

    # A retry entry acts once: the second task, Skipped, is refused with an event.
    kubectl("annotate", "workflow", name, "hpc.reconciler.dev/retry=first@1,second@1")
    status = kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    assert status["tasks"]["first"]["attempts"] == 2 and status["tasks"]["first"]["jobId"] != job_id
    # Each entry acted once: the cancel left in place is not tried again on the ticks since.
    operator.later_ticks(2)
    events = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    refused = [e["message"] for e in events if e["reason"] == "RequestRefused"
               and e["involvedObject"]["name"] == name]
    assert refused == ["hpc.reconciler.dev/retry: second@1: task second is Skipped: only a Failed or Cancelled "
                       "task can be retried"]


def test_suspend_by_patch_holds_and_resume_releases(kubectl: Kubectl, operator: Operator, dev_cluster: DevCluster):
    name = unique("suspended")
    kubectl.apply(workflow(name, chain(("first", "sleep 12"), ("second", "echo second"))))
    kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("first", {}).get("phase") == "Running",
                     what="first running", operators=(operator,))
    kubectl("patch", "workflow", name, "--type", "merge", "-p", '{"spec":{"suspend":true}}')
    kubectl.wait_for(name, lambda s: s.get("phase") == "Suspended" and s["tasks"]["second"]["phase"] == "Held",
                     what="held", operators=(operator,))
    # The held one must not run once the first step has ended: the operator has seen that end,
    # and has ticked twice more since (what one tick does, the next one observes).
    kubectl.wait_for(name, lambda s: s["tasks"]["first"]["phase"] == "Succeeded", what="first succeeded",
                     operators=(operator,))
    operator.later_ticks(2)
    status = kubectl.status(name)
    assert status["tasks"]["first"]["phase"] == "Succeeded" and status["tasks"]["second"]["phase"] == "Held"
    assert squeue_reasons(dev_cluster, f"{name}.second").get(f"{name}.second") in HELD
    kubectl("patch", "workflow", name, "--type", "merge", "-p", '{"spec":{"suspend":false}}')
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))


def test_delete_cancels_the_running_jobs_through_the_finalizer(kubectl: Kubectl, operator: Operator,
                                                               dev_cluster: DevCluster):
    name = unique("deleted")
    kubectl.apply(workflow(name, chain(("long", "sleep 300"), ("after", "echo never"))))
    kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("long", {}).get("phase") == "Running",
                     what="running", operators=(operator,))
    jobs = squeue_jobs(dev_cluster, name)
    assert len(jobs) == 2
    kubectl("delete", "workflow", name, "--timeout=60s", timeout=90)
    assert kubectl.get("workflow", name) is None
    # Cancelled before the finalizer went; a running job may still be COMPLETING for a moment.
    assert sacct_states(dev_cluster, jobs) == ["CANCELLED by 0", "CANCELLED by 0"]
    wait_until(lambda: not squeue_jobs(dev_cluster, name), timeout=60, what="the jobs leaving the queue")


def test_an_invalid_workflow_is_rejected_by_kubectl_apply(kubectl: Kubectl):
    done = kubectl("apply", "-f", "-", check=False, stdin=workflow("bad-name", chain(("Bad_Name", "echo x"))))
    assert done.returncode != 0
    assert done.stderr.startswith('The Workflow "bad-name" is invalid: spec.tasks[0].name: Invalid value: '
                                  '"Bad_Name": spec.tasks[0].name in body should match'), done.stderr
    assert kubectl.get("workflow", "bad-name") is None


def test_a_status_conflict_storm_is_survived(kubectl: Kubectl, operator: Operator, apiserver: ApiServer):
    name = unique("contended")
    apiserver.inject_conflicts("workflows/status", 25)
    kubectl.apply(workflow(name, chain(("one", "echo one"), ("two", "echo two"))))
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    assert (operator.metric("reconciler_status_conflicts_total") or 0) > 0
    # The controller's metrics, as in Git mode (recorded just after the status is written).
    wait_until(lambda: (operator.metric('reconciler_workflows{phase="Succeeded"}') or 0) >= 1, timeout=30,
               what="the succeeded workflow counted")
    assert (operator.metric('reconciler_submissions_total{cluster="dev"}') or 0) >= 2
    assert operator.process is not None and operator.process.poll() is None


def standby_reads(requests: list[RequestRecord]) -> int:
    leases = [r for r in requests if r.resource == "leases"]
    return sum(r.verb == "get" for r in leases) - sum(r.verb in ("create", "update") for r in leases)


def test_a_standby_takes_over_from_a_killed_leader_without_duplicate_jobs(
        kubectl: Kubectl, apiserver: ApiServer, tmp_path: Path, dev_cluster: DevCluster):
    first = Operator(kubeconfig=kubectl.kubeconfig, state_dir=tmp_path / "a", identity=unique("a")).start()
    second = Operator(kubeconfig=kubectl.kubeconfig, state_dir=tmp_path / "b", identity=unique("b")).start()
    try:
        wait_until(lambda: first.leading() or second.leading(), timeout=30, what="a leader")
        leader, standby = (first, second) if first.leading() else (second, first)
        # The standby reads the Lease every few seconds and writes it only to take it; the leader
        # reads, then writes it to renew. Three reads more than writes (one may be a renewal's
        # read whose write is still to come): the standby has looked at the held lease twice.
        looked = len(apiserver.requests)
        wait_until(lambda: standby_reads(apiserver.requests[looked:]) >= 3, timeout=30,
                   what="the standby reading the held lease twice")
        assert not standby.leading() and leader.leading()
        name = unique("handover")
        tasks = "".join(f"    - name: t{i:02d}\n" + (f"      dependsOn: [t{i - 1:02d}]\n" if i else "")
                        + f"      script: echo t{i:02d} >> ../runs.log; sleep 1\n" for i in range(12))
        kubectl.apply(workflow(name, tasks))
        kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("t02", {}).get("phase") == "Succeeded",
                         what="under way", operators=(leader,))
        leader.kill()
        # The standby waits out the dead leader's lease, then adopts its jobs by their tags.
        kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", timeout=240, what="Succeeded",
                         operators=(standby,))
        assert standby.leading()
        runs = (Path(dev_cluster.cluster("local").spec.workdir) / "default" / name / "runs.log").read_text().split()
        assert sorted(runs) == [f"t{i:02d}" for i in range(12)]
        assert len(sacct_jobs(dev_cluster, f"{name}.", at_least=12)) == 12
    finally:
        first.stop()
        second.stop()


def test_losing_the_operator_state_loses_nothing(kubectl: Kubectl, tmp_path: Path, dev_cluster: DevCluster):
    name = unique("stateless")
    first = Operator(kubeconfig=kubectl.kubeconfig, state_dir=tmp_path / "state", identity=unique("x")).start()
    try:
        kubectl.apply(workflow(name, chain(("one", "sleep 4"), ("two", "echo two"))))
        kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("one", {}).get("phase") == "Running",
                         what="running", operators=(first,))
    finally:
        first.stop()
    subprocess.run(["rm", "-rf", str(tmp_path / "state")], check=True)
    second = Operator(kubeconfig=kubectl.kubeconfig, state_dir=tmp_path / "state", identity=unique("y")).start()
    try:
        kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", timeout=120, what="Succeeded",
                         operators=(second,))
    finally:
        second.stop()
    assert len(sacct_jobs(dev_cluster, f"{name}.", at_least=2)) == 2


@pytest.mark.skipif(not os.environ.get("RECONCILER_REAL_KUBECONFIG"),
                    reason="set RECONCILER_REAL_KUBECONFIG to a real cluster's kubeconfig (kind, k3d) to run")
def test_the_same_flow_on_a_real_cluster(tmp_path: Path, dev_cluster: DevCluster):
    kubeconfig = Path(os.environ["RECONCILER_REAL_KUBECONFIG"])
    kubectl = Kubectl(kubectl_binary(), kubeconfig)
    kubectl("apply", "-f", str(ROOT / "crds"))
    cluster = dev_cluster.manifest_path("local").read_text()
    kubectl.apply(cluster)
    name = unique("real")
    running = Operator(kubeconfig=kubeconfig, state_dir=tmp_path / "state", identity=unique("real")).start()
    try:
        kubectl.apply(workflow(name, chain(("one", "echo one"), ("two", "echo two"))))
        kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", f"workflow/{name}", "--timeout=180s",
                timeout=200)
        kubectl("delete", "workflow", name, "--timeout=60s", timeout=90)
    finally:
        running.stop()


def test_an_expired_watch_is_relisted_and_the_work_goes_on(kubectl: Kubectl, operator: Operator,
                                                            apiserver: ApiServer):
    name = unique("relisted")
    kubectl.apply(workflow(name, chain(("one", "sleep 2"), ("two", "echo two"))))
    kubectl.wait_for(name, lambda s: s.get("phase") == "Running", what="running", operators=(operator,))
    lists_before = sum(1 for r in apiserver.requests_for("workflows")
                       if r.verb == "list" and r.user_agent.startswith(OPERATOR_AGENT))
    # Cut off while the object changes and the history is compacted: resuming from the last
    # resourceVersion it saw is then impossible (410), and only a relist brings it back.
    apiserver.pause_watches()
    try:
        kubectl("annotate", "workflow", name, "example.org/touched=yes")
        apiserver.expire_history()
    finally:
        apiserver.resume_watches()
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    wait_until(lambda: sum(1 for r in apiserver.requests_for("workflows")
                           if r.verb == "list" and r.user_agent.startswith(OPERATOR_AGENT)) > lists_before,
               timeout=30, what="a relist after 410")


def test_an_ssh_cluster_takes_its_key_and_known_hosts_from_a_secret(kubectl: Kubectl, operator: Operator,
                                                                   dev_cluster: DevCluster):
    layout = dev_cluster.layout
    kubectl("create", "secret", "generic", "dev-login", "--type=kubernetes.io/ssh-auth",
            f"--from-file=ssh-privatekey={layout.client_key}", f"--from-file=known_hosts={layout.known_hosts}")
    ssh = dev_cluster.cluster("ssh").spec.ssh
    assert ssh is not None
    kubectl.apply(f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {{name: dev-ssh}}
spec:
  transport: ssh
  ssh: {{host: 127.0.0.1, port: {ssh.port}, user: {ssh.user}, keySecretRef: dev-login}}
  slurmConf: {dev_cluster.slurm_conf}
  workdir: {dev_cluster.cluster("ssh").spec.workdir}
""")
    name = unique("over-ssh")
    kubectl.apply(workflow(name, chain(("one", "hostname > ../where"), ("two", "echo two"))).replace(
        "cluster: dev\n", "cluster: dev-ssh\n"))
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    assert "BEGIN OPENSSH PRIVATE KEY" not in operator.log.read_text()


def test_a_config_map_input_reaches_the_job_and_a_missing_one_is_a_condition(kubectl: Kubectl, operator: Operator,
                                                                            apiserver: ApiServer,
                                                                            dev_cluster: DevCluster):
    name, config = unique("tuned"), unique("tuning")
    kubectl.apply(workflow(name, f"""\
    - name: segment
      script: cat settings.json threshold > seen.txt
      inputs: [{{configMap: {config}}}]
"""))
    held = kubectl.wait_for(name, lambda s: any(c["type"] == "InputsReady" for c in s.get("conditions", [])),
                            what="InputsReady", operators=(operator,))
    [condition] = [c for c in held["conditions"] if c["type"] == "InputsReady"]
    assert (condition["status"], condition["reason"]) == ("False", "InputMissing")
    assert f"no ConfigMap {config} in namespace default" in condition["message"]
    assert held["tasks"]["segment"]["phase"] == "Waiting"

    kubectl("create", "configmap", config, '--from-literal=settings.json={"scale": 2}', "--from-literal=threshold=7")
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    run_dir = Path(dev_cluster.cluster("local").spec.workdir) / "default" / name / "segment"
    assert (run_dir / "seen.txt").read_text() == '{"scale": 2}7'
    reads = [r for r in apiserver.requests_for("configmaps") if r.user_agent.startswith(OPERATOR_AGENT)]
    assert reads and {r.verb for r in reads} == {"get"}
