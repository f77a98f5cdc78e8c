"""What a look at the cluster waits for: slurmctld's limits, not accounting's submit limit; and a
job's usage asked for ahead is taken once, or asked again when it had not ended."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from reconciler.api import SlurmCluster
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.commands import command_name
from reconciler.slurm.transport import CommandResult
from tests.fakes import FakeSlurm
from tests.integration.gitops_world import wait_until

CLUSTER = SlurmCluster.model_validate({"metadata": {"name": "fake"},
                                       "spec": {"transport": "local", "workdir": "/work/fake"}})


class SlowAccounting(FakeSlurm):
    """sacctmgr answers only once ``answer`` is set; the user may submit 3 jobs."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = threading.Event()

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60.0) -> CommandResult:
        if command_name(argv) != "sacctmgr":
            return super().run(argv, env=env, stdin=stdin, timeout=timeout)
        self.calls.append(tuple(argv))
        assert self.answer.wait(timeout=30), "never let answer"
        limits = "root||3|normal\n" if "association" in argv else "normal|\n"
        return CommandResult(tuple(argv), 0, limits, "")


def client_of(node: FakeSlurm) -> SlurmClient:
    return SlurmClient(CLUSTER, node)


def test_a_first_look_has_slurmctlds_limits_without_waiting_for_accountings_submit_limit():
    node = SlowAccounting()
    client = client_of(node)
    try:
        view = client.view(client.observe(since=datetime.now(UTC)))
        assert view.submit_limit is None
        assert view.slurm_version == "22.05.8" and view.partitions  # the captured scontrol answers
        node.answer.set()
        # Taken by the first look after sacctmgr answered; the reads are not started again.
        wait_until(lambda: client.view(client.observe(since=datetime.now(UTC))).submit_limit == 3, timeout=10,
                   what="the submit limit taken")
        assert sum(command_name(call) == "sacctmgr" for call in node.calls) == 2
    finally:
        node.answer.set()
        client.close()


def test_a_refresh_waits_for_the_submit_limit():
    node = SlowAccounting()
    node.answer.set()
    client = client_of(node)
    try:
        assert client.info(refresh=True).submit_limit == 3
    finally:
        client.close()


def usage_reads(node: FakeSlurm) -> int:
    return sum(command_name(call) == "sacct" and "-X" not in call for call in node.calls)


def test_usage_asked_ahead_of_a_job_that_had_not_ended_is_asked_again():
    node = FakeSlurm()  # its accounting reports no job ended
    client = client_of(node)
    try:
        client.ask_usage_ahead(["100"])
        assert client.usage(["100", "101"]) == []
        assert usage_reads(node) == 2  # ahead (100), then both: 100 had not ended
        assert client.usage(["100"]) == [] and usage_reads(node) == 3  # what was ahead is taken once
    finally:
        client.close()
