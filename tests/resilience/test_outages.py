"""A daemon taken away mid-run: slurmctld for 30 s, slurmdbd for a minute (sacct fails, squeue
works), the SSH server restarted with its connections cut (the ssh transport). Each time the
workflow still Succeeded, every task ran once (counted from Slurm's accounting by the identity
tag), status said ``ClusterReachable=False`` while it lasted, and no task was shown Succeeded
before Slurm had its job ended: an outcome the loop could not know is never counted as done."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.devcluster import DevCluster
from reconciler.slurm.tags import parse_tag
from tests.integration.gitops_world import Loop, PlanRepo, jobs_per_task, sacct_tags, unique, workflow_header
from tests.resilience.faults import Watch, kill_processes, ssh_sessions

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(600)]

PARALLEL, CHAIN = 4, 4


def across_an_outage(name: str, *, step: int) -> tuple[str, set[str]]:
    """``first``; after it four parallel tasks short enough to end while the fault lasts and a
    chain of four steps of ``step`` seconds; ``last`` after all of them."""
    lines = ["    - name: first\n      script: sleep 1"]
    lines += [f"    - name: par-{i}\n      dependsOn: [first]\n      script: sleep {6 + 2 * i}"
              for i in range(PARALLEL)]
    lines += [f"    - name: step-{i}\n      dependsOn: [{f'step-{i - 1}' if i else 'first'}]\n"
              f"      script: sleep {step}" for i in range(CHAIN)]
    ends = [f"par-{i}" for i in range(PARALLEL)] + [f"step-{CHAIN - 1}"]
    lines.append(f"    - name: last\n      dependsOn: [{', '.join(ends)}]\n      script: echo done")
    tasks = {"first", "last", *(f"par-{i}" for i in range(PARALLEL)), *(f"step-{i}" for i in range(CHAIN))}
    return workflow_header(name) + "\n".join(lines) + "\n", tasks


def unreachable(status: dict) -> bool:
    return any(c["type"] == "ClusterReachable" and c["status"] == "False" for c in status.get("conditions", []))


def run_across(repo: PlanRepo, loop: Loop, dev_cluster: DevCluster, record_property: Callable[[str, object], None],
               *, label: str, fault: Callable[[Watch], None], restore: Callable[[], None], step: int = 3) -> None:
    """Start the workflow, apply ``fault`` once the parallel tasks run, ``restore``, and check
    what must hold."""
    name = unique(label)
    manifest, tasks = across_an_outage(name, step=step)
    repo.write(f"plans/{name}.yaml", manifest)
    repo.push("a workflow across an outage")
    loop.start()
    watch = Watch(loop, name)
    watch.until(lambda s: all(s["tasks"].get(f"par-{i}", {}).get("phase") == "Running" for i in range(PARALLEL)),
                timeout=120, what="the parallel tasks running")
    watch.begin_fault()
    try:
        fault(watch)
    finally:
        restore()
        watch.end_fault()
    record_property("fault", f"{watch.fault_seconds:.0f} s")
    phases = "/".join(sorted(watch.phases_during()))
    record_property("meanwhile", f"{', '.join(watch.conditions_during())}; tasks {phases}")
    # Ended, and ClusterReachable gone once the loop looked at the cluster again (its backoff
    # may hold that look back for half a minute after the fault).
    final = watch.until(lambda s: s.get("phase") == "Failed" or (s.get("phase") == "Succeeded" and not unreachable(s)),
                        timeout=300, what="the workflow's end, with the cluster seen again")
    accounted = jobs_per_task(dev_cluster, name, tasks=len(tasks))
    record_property("jobs", f"{sum(accounted.values())}/{len(tasks)}")
    assert final["phase"] == "Succeeded", final
    assert accounted == dict.fromkeys(tasks, 1)
    assert {tag.attempt for _, c in sacct_tags(dev_cluster, f"{name}.", at_least=len(tasks))
            if (tag := parse_tag(c))} == {1}
    assert watch.shown_unreachable(), watch.conditions_during()
    assert not any(sample.status.get("phase") == "Failed" for sample in watch.samples)
    assert watch.done_before_slurm(dev_cluster, jobs=len(tasks)) == []


def test_slurmctld_stopped_for_30_s_mid_run(local_loop: tuple[PlanRepo, Loop], dev_cluster: DevCluster,
                                            stopped_daemons: Callable[[str], None], record_property):
    repo, loop = local_loop

    def fault(watch: Watch) -> None:
        stopped_daemons("slurmctld")
        watch.for_seconds(30)

    run_across(repo, loop, dev_cluster, record_property, label="ctld-down", fault=fault,
               restore=lambda: dev_cluster.start("slurmctld"))


def test_slurmdbd_stopped_for_a_minute_mid_run(local_loop: tuple[PlanRepo, Loop], dev_cluster: DevCluster,
                                               stopped_daemons: Callable[[str], None], record_property):
    repo, loop = local_loop

    def fault(watch: Watch) -> None:
        stopped_daemons("slurmdbd")
        watch.for_seconds(60)

    # A chain longer than the outage: the workflow runs on after sacct answers again.
    run_across(repo, loop, dev_cluster, record_property, label="dbd-down", fault=fault,
               restore=lambda: dev_cluster.start("slurmdbd"), step=20)


def test_the_ssh_server_restarted_mid_run(ssh_loop: tuple[PlanRepo, Loop], dev_cluster: DevCluster,
                                          stopped_daemons: Callable[[str], None], record_property):
    repo, loop = ssh_loop

    def fault(watch: Watch) -> None:
        # A restart that also ends the open connections, as a reboot of the login node does:
        # stopping the listener alone would leave the loop's session running.
        sessions = ssh_sessions(dev_cluster)
        assert sessions, "the loop holds no SSH connection to cut"
        stopped_daemons("sshd")
        kill_processes(sessions)
        # Down until status says so (the loop notices at its next tick), and no longer.
        watch.until(unreachable, timeout=60, what="ClusterReachable=False while sshd is down")

    run_across(repo, loop, dev_cluster, record_property, label="sshd-restart", fault=fault,
               restore=lambda: dev_cluster.start("sshd"))
