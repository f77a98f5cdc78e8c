"""Kubernetes mode end to end: the pinned kubectl and the operator (as the chart's ServiceAccount)
against the real kube-apiserver and etcd, and the operator's jobs on the real dev cluster. Each
test has a namespace, a SlurmCluster and operators of its own (kube_world.py)."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.devcluster import DevCluster
from reconciler.kube.leader import LeaderElector
from reconciler.kube.permissions import allowed
from tests.controlplane.fixtures import install_operator_account
from tests.integration.gitops_world import sacct_jobs, sacct_states, squeue_jobs, squeue_reasons, unique, wait_until
from tests.integration.kube_world import Kubectl, KubeWorld, Operator

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture
def kubectl(kube_world: KubeWorld) -> Kubectl:
    return kube_world.kubectl


@pytest.fixture
def operator(kube_world: KubeWorld) -> Operator:
    return kube_world.operator()


def test_apply_wait_and_get_the_three_step_chain(kube_world: KubeWorld, kubectl: Kubectl, operator: Operator):
    plan = (ROOT / "examples" / "ultrasound-plan.yaml").read_text().replace("spec:\n", "spec:\n  cluster: dev\n", 1)
    kubectl.apply(plan)
    # The watch prints a line per change: the plan passes through Running on its way.
    kubectl.watch_until("get", "workflows", "-w", until=lambda line: bool(
        re.match(r"ultrasound-plan\s+Running\s", line)))
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "workflow/ultrasound-plan", "--timeout=180s",
            timeout=200)
    table = kubectl("get", "workflows").stdout
    assert re.search(r"^NAME\s+PHASE\s+PROGRESS\s+ATTENTION\s+CORE-HOURS\s+AGE", table, re.M), table
    assert re.search(r"^ultrasound-plan\s+Succeeded\s+3/3\s+\S+\s+\S+", table, re.M), table
    wide = kubectl("get", "workflows", "-o", "wide").stdout
    assert re.search(r"CLUSTER\s+MESSAGE", wide) and "all 3 tasks succeeded" in wide, wide

    resource = YAML(typ="safe").load(kubectl("get", "workflow", "ultrasound-plan", "-o", "yaml").stdout)
    status = resource["status"]
    assert status["observedGeneration"] == resource["metadata"]["generation"]
    assert {t["phase"] for t in status["tasks"].values()} == {"Succeeded"}
    assert "hpc.reconciler.dev/slurm-jobs" in resource["metadata"]["finalizers"]
    events = kubectl("get", "events", "-o", "json").stdout
    assert '"reason": "Submitted"' in events and '"reason": "WorkflowSucceeded"' in events
    described = kubectl("describe", "workflow", "ultrasound-plan").stdout
    [listed] = re.findall(r"^Events:\n((?:  .*\n?)+)", described, re.M)
    assert re.search(r"Normal\s+Submitted\s", listed) and re.search(r"Normal\s+WorkflowSucceeded\s", listed), described

    # The controller's metrics, as in Git mode (recorded just after the status is written).
    wait_until(lambda: (operator.metric('reconciler_workflows{phase="Succeeded"}') or 0) >= 1, timeout=30,
               what="the succeeded workflow counted")
    assert (operator.metric('reconciler_submissions_total{cluster="dev"}') or 0) >= 3

    # Every call the operator made is one its RBAC rules grant, and the server refused none.
    calls = kube_world.operator_calls()
    assert calls
    denied = {(c["verb"], c["apiGroup"], c["resource"]) for c in calls
              if not allowed(c["apiGroup"], c["resource"], c["verb"])}
    assert not denied
    refused = {(c["verb"], c["resource"]) for c in calls if c["responseStatus"]["code"] == 403}
    assert not refused


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


def lease_timing() -> tuple[float, float]:
    """The operator's Lease duration and the period at which a standby tries to take it."""
    defaults = inspect.signature(LeaderElector).parameters
    return float(defaults["lease_seconds"].default), float(defaults["retry_seconds"].default)


def test_a_standby_takes_over_from_a_killed_leader_without_duplicate_jobs(kube_world: KubeWorld, kubectl: Kubectl,
                                                                          dev_cluster: DevCluster):
    lease_seconds, retry_seconds = lease_timing()
    first, second = kube_world.operator(identity=unique("a")), kube_world.operator(identity=unique("b"))
    wait_until(lambda: first.leading() or second.leading(), timeout=30, what="a leader")
    leader, standby = (first, second) if first.leading() else (second, first)

    # The standby reads the held Lease at each try and never writes it.
    def standby_reads() -> int:
        return len(kube_world.operator_calls("leases", verb="get", identity=standby.identity))

    looked = standby_reads()
    wait_until(lambda: standby_reads() >= looked + 2, timeout=3 * retry_seconds + 5,
               what="the standby reading the held lease twice")
    written = [c for c in kube_world.operator_calls("leases", identity=standby.identity)
               if c["verb"] in ("create", "update") and c["responseStatus"]["code"] < 400]
    assert not written
    assert not standby.leading() and leader.leading()

    name = unique("handover")
    tasks = "".join(f"    - name: t{i:02d}\n" + (f"      dependsOn: [t{i - 1:02d}]\n" if i else "")
                    + f"      script: echo t{i:02d} >> ../runs.log; sleep 1\n" for i in range(12))
    kubectl.apply(workflow(name, tasks))
    kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("t02", {}).get("phase") == "Succeeded",
                     what="under way", operators=(leader,))
    killed_at = time.time()
    leader.kill()
    # The standby waits out the dead leader's lease, then adopts its jobs by their tags.
    wait_until(standby.leading, timeout=lease_seconds + retry_seconds + 10, what="the standby leading", every=0.1)
    lease = (kubectl.get("lease", "slurm-reconciler") or {})["spec"]
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == (standby.identity, 1)
    took = datetime.fromisoformat(lease["acquireTime"].replace("Z", "+00:00")).timestamp() - killed_at
    assert 0 < took <= lease_seconds + retry_seconds, f"took over {took:.1f} s after the kill"

    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", timeout=240, what="Succeeded",
                     operators=(standby,))
    assert standby.leading()
    runs = (kube_world.run_dir(name) / "runs.log").read_text().split()
    assert sorted(runs) == [f"t{i:02d}" for i in range(12)]
    assert len(sacct_jobs(dev_cluster, f"{name}.", at_least=12)) == 12


def test_losing_the_operator_state_loses_nothing(kube_world: KubeWorld, kubectl: Kubectl, dev_cluster: DevCluster):
    name = unique("stateless")
    # The same replica (the same identity: it holds the Lease it held) restarted on an empty disk.
    state, identity = kube_world.directory / "state", unique("x")
    first = kube_world.operator(state_dir=state, identity=identity)
    kubectl.apply(workflow(name, chain(("one", "sleep 4"), ("two", "echo two"))))
    kubectl.wait_for(name, lambda s: s.get("tasks", {}).get("one", {}).get("phase") == "Running",
                     what="running", operators=(first,))
    first.stop()
    shutil.rmtree(state)
    second = kube_world.operator(state_dir=state, identity=identity)
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", timeout=120, what="Succeeded",
                     operators=(second,))
    assert len(sacct_jobs(dev_cluster, f"{name}.", at_least=2)) == 2


def test_an_expired_watch_is_relisted_and_the_work_goes_on(kube_world: KubeWorld, kubectl: Kubectl,
                                                            operator: Operator):
    name = unique("relisted")
    kubectl.apply(workflow(name, chain(("one", "sleep 3"), ("two", "echo two"))))
    kubectl.wait_for(name, lambda s: s.get("phase") == "Running", what="running", operators=(operator,))
    lists_before = len(kube_world.operator_calls("workflows", verb="list"))
    # A restarted API server's watch cache begins at the store's current revision: the watch
    # the operator resumes from the last version it saw is too old for it (410 Gone), and only
    # a fresh list brings the operator back, while the object goes on changing.
    kube_world.plane.restart_apiserver()
    kubectl("annotate", "workflow", name, "example.org/touched=yes")
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    wait_until(lambda: len(kube_world.operator_calls("workflows", verb="list")) > lists_before,
               timeout=30, what="a relist after 410")
    assert "workflows: watch expired (410 Gone); listing again" in operator.log.read_text()
    # Its Lease outlived the outage: the same process led throughout.
    assert operator.process is not None and operator.process.poll() is None and operator.leading()


def test_an_ssh_cluster_takes_its_key_and_known_hosts_from_a_secret(kube_world: KubeWorld, kubectl: Kubectl,
                                                                   dev_cluster: DevCluster):
    layout = dev_cluster.layout
    kubectl("create", "secret", "generic", "dev-login", "--type=kubernetes.io/ssh-auth",
            f"--from-file=ssh-privatekey={layout.client_key}", f"--from-file=known_hosts={layout.known_hosts}")
    # The operator may read the Secret once the chart's values name it, as they would in production.
    install_operator_account(kube_world.plane, kube_world.namespace, kube_world.directory,
                             "--set", "secretAccess[0].name=dev-login")
    operator = kube_world.operator()
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


def test_a_config_map_input_reaches_the_job_and_a_missing_one_is_a_condition(kube_world: KubeWorld, kubectl: Kubectl,
                                                                            operator: Operator):
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
    assert f"no ConfigMap {config} in namespace {kube_world.namespace}" in condition["message"]
    assert held["tasks"]["segment"]["phase"] == "Waiting"

    kubectl("create", "configmap", config, '--from-literal=settings.json={"scale": 2}', "--from-literal=threshold=7")
    kubectl.wait_for(name, lambda s: s.get("phase") == "Succeeded", what="Succeeded", operators=(operator,))
    assert (kube_world.run_dir(name) / "segment" / "seen.txt").read_text() == '{"scale": 2}7'
    reads = kube_world.operator_calls("configmaps")
    assert reads and {r["verb"] for r in reads} == {"get"}
