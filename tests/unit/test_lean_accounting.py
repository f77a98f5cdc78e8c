"""When a look at the cluster asks sacct for AllocTRES (a second round trip to slurmdbd): only
while a job of ours that ran on a partition with TRESBillingWeights needs its billing TRES, and
then at once by id, so that every cost stays exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from reconciler.api import SlurmCluster
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.commands import command_name
from reconciler.slurm.transport import CommandResult
from tests.fakes import CAPTURED, FakeSlurm

CLUSTER = SlurmCluster.model_validate({"metadata": {"name": "fake"},
                                       "spec": {"transport": "local", "workdir": "/work/fake"}})
START = 1795940768
TAG = "slurm-reconciler.v1:uid-1:{task}:1:{part}:fp0123456789abcd"


@dataclass(frozen=True)
class Job:
    """A job as accounting holds it: ended after ``elapsed`` seconds, unless it never started."""

    job_id: str
    partition: str
    elapsed: int
    cpus: int
    billing: int
    comment: str
    element: tuple[str, int] | None = None  # (array id, index)
    started: bool = True

    def row(self, fields: Sequence[str], *, step: bool = False) -> str:
        job_text = f"{self.element[0]}_{self.element[1]}" if self.element else self.job_id
        suffix = ".batch" if step else ""
        start, end = (str(START), str(START + self.elapsed)) if self.started else ("Unknown", "Unknown")
        values = {
            "JobID": job_text + suffix, "JobIDRaw": self.job_id + suffix,
            "State": "COMPLETED" if self.started else "PENDING", "ExitCode": "0:0", "Reason": "None",
            "NodeList": "dev1", "Submit": str(START), "Start": start, "End": end, "ElapsedRaw": str(self.elapsed),
            "AllocCPUS": str(self.cpus), "NNodes": "1", "Partition": "" if step else self.partition,
            # Steps carry no billing TRES; a job that never started has none at all.
            "AllocTRES": f"{'' if step else f'billing={self.billing},'}cpu={self.cpus},node=1" if self.started else "",
            "TimelimitRaw": "5", "ReqMem": "100M", "MaxRSS": "1000K" if step else "", "TotalCPU": "00:01.000",
            "JobName": "plan.task", "Comment": "" if step else self.comment,
        }
        return "|".join(values[field] for field in fields) + "\n"


class Accounting(FakeSlurm):
    """A login node whose sacct answers ``jobs`` in the fields its --format asks (steps too
    without -X), by id when asked by id, whose slurmctld holds the partitions of ``held`` (ended
    jobs it has not forgotten yet), and whose partitions are ``debug`` (no weights) and ``billed``
    (TRESBillingWeights), as captured."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        super().__init__()
        self.jobs = list(jobs)
        self.held: dict[str, str] = {}

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60.0) -> CommandResult:
        words = tuple(argv)
        if command_name(words) == "scontrol" and "partition" in words:
            self.calls.append(words)
            return CommandResult(words, 0, (CAPTURED / "scontrol-show-partition-billed.txt").read_text(), "")
        if command_name(words) == "squeue" and "--format=%A|%P" in words:
            self.calls.append(words)
            rows = [f"{job_id}|{self.held[job_id]}\n" for job_id in by_id(words).split(",") if job_id in self.held]
            if not rows:
                return CommandResult(words, 1, "", "slurm_load_jobs error: Invalid job id specified")
            return CommandResult(words, 0, "".join(rows), "")
        if command_name(words) != "sacct":
            return super().run(argv, env=env, stdin=stdin, timeout=timeout)
        self.calls.append(words)
        fields = next(w for w in words if w.startswith("--format=")).removeprefix("--format=").split(",")
        ids = next((w.removeprefix("--jobs=").split(",") for w in words if w.startswith("--jobs=")), None)
        lines = []
        for job in self.jobs:
            names = {job.job_id} | ({f"{job.element[0]}_{job.element[1]}", job.element[0]} if job.element else set())
            if ids is not None and not names & set(ids):
                continue
            lines.append(job.row(fields))
            if "-X" not in words and job.started:
                lines.append(job.row(fields, step=True))
        return CommandResult(words, 0, "".join(lines), "")

    def sacct_since(self, mark: int) -> list[tuple[str, ...]]:
        return [call for call in self.calls[mark:] if command_name(call) == "sacct"]


def asks_billing(call: tuple[str, ...]) -> bool:
    return any(word.startswith("--format=") and "AllocTRES" in word for word in call)


def by_id(call: tuple[str, ...]) -> str:
    return next((word.removeprefix("--jobs=") for word in call if word.startswith("--jobs=")), "")


DEBUG = Job("7", "debug", elapsed=10, cpus=2, billing=2, comment=TAG.format(task="plain", part=0))
BILLED = Job("8", "billed", elapsed=10, cpus=2, billing=4, comment=TAG.format(task="weighted", part=0))
FOREIGN = Job("9", "billed", elapsed=10, cpus=2, billing=4, comment="someone else's")
WAITING = Job("10", "debug,billed", elapsed=0, cpus=2, billing=0, comment=TAG.format(task="waiting", part=0),
              started=False)
# The last element of array 300 runs under the array's own id: by that id, sacct would answer all.
ELEMENT = Job("300", "billed", elapsed=5, cpus=2, billing=4, comment=TAG.format(task="fan", part=0),
              element=("300", 1))


@pytest.fixture
def node() -> Accounting:
    return Accounting([DEBUG, FOREIGN, WAITING])


@pytest.fixture
def client(node: Accounting):
    client = SlurmClient(CLUSTER, node)
    yield client
    client.close()


def look(client: SlurmClient) -> dict[str, int]:
    """One observation, as the controller makes it (its view reads the partitions when due):
    the core-seconds of each of our jobs, by id."""
    observation = client.observe(since=datetime(2026, 1, 1, tzinfo=UTC))
    client.view(observation)
    assert observation.accounting_ok, observation.error
    return {job.job_id: job.outcome.core_seconds for job in observation.jobs()}


def test_alloc_tres_is_asked_until_the_partitions_are_known_then_left_out(node: Accounting, client: SlurmClient):
    first = look(client)
    [asked] = node.sacct_since(0)
    assert asks_billing(asked)  # nothing is known of the partitions yet
    mark = len(node.calls)
    # A job of ours on debug, one of someone else's on billed, one of ours not yet started: no
    # cost needs the billing TRES, and none is asked again.
    assert look(client) == first == {"7": 20, "10": 0}
    [lean] = node.sacct_since(mark)
    assert not asks_billing(lean)


def test_a_job_on_a_weighted_partition_is_asked_again_by_id_in_the_same_look(node: Accounting,
                                                                              client: SlurmClient):
    look(client)
    node.jobs += [BILLED, ELEMENT]
    mark = len(node.calls)
    assert look(client) == {"7": 20, "8": 40, "300": 20, "10": 0}  # billing x elapsed, exactly
    window, again = node.sacct_since(mark)
    assert not asks_billing(window) and not by_id(window)
    assert asks_billing(again) and by_id(again) == "300_1,8"
    # The next look asks with AllocTRES at once, and no more.
    mark = len(node.calls)
    assert look(client) == {"7": 20, "8": 40, "300": 20, "10": 0}
    [full] = node.sacct_since(mark)
    assert asks_billing(full)
    # Once an answer shows no such job, the next look is lean again.
    node.jobs = [DEBUG]
    look(client)
    mark = len(node.calls)
    assert look(client) == {"7": 20}
    [lean] = node.sacct_since(mark)
    assert not asks_billing(lean)


def test_usage_on_a_weighted_partition_is_asked_again_by_id(node: Accounting, client: SlurmClient):
    look(client)
    node.jobs += [BILLED, ELEMENT]
    node.jobs.remove(FOREIGN)
    mark = len(node.calls)
    client.ask_usage_ahead(["7", "8"])
    usage = {u.job_id: (u.billing, u.billed_core_seconds, u.max_rss_mib) for u in client.usage(["7", "8", "300"])}
    assert usage == {"7": (None, 20, 1000 / 1024), "8": (4, 40, 1000 / 1024), "300": (4, 20, 1000 / 1024)}
    asked = [(asks_billing(call), by_id(call)) for call in node.sacct_since(mark)]
    # Ahead (lean, then 8 again with AllocTRES), then 300 with AllocTRES at once: the answer
    # before showed a job that needed it.
    assert asked == [(False, "7,8"), (True, "8"), (True, "300")]
    mark = len(node.calls)
    assert [u.billing for u in client.usage(["7"])] == [2]  # asked with AllocTRES: the last answer had 300
    assert [u.billing for u in client.usage(["7"])] == [None]  # and that one had no such job: lean
    assert [asks_billing(call) for call in node.sacct_since(mark)] == [True, False]


def partition_reads(node: Accounting, mark: int) -> list[tuple[str, bool, str]]:
    """The sacct calls since ``mark`` and the squeue calls asking for partitions: (command,
    whether it asks for AllocTRES, the ids it asks for)."""
    return [(command_name(call), asks_billing(call), by_id(call)) for call in node.calls[mark:]
            if command_name(call) == "sacct" or "--format=%A|%P" in call]


# Seen on 22.05.8: for a second or two after a short job ends, slurmdbd shows it ended, with its
# AllocTRES, but no partition. slurmctld still holds it (MinJobAge), and knows.
UNNAMED = Job("11", "", elapsed=3, cpus=2, billing=4, comment=TAG.format(task="just", part=0))


def test_a_job_accounting_names_no_partition_for_is_looked_up_in_the_queue(node: Accounting,
                                                                           client: SlurmClient):
    look(client)
    node.jobs.append(replace(UNNAMED, billing=2))
    node.held["11"] = "debug"
    mark = len(node.calls)
    assert look(client)["11"] == 6
    assert partition_reads(node, mark) == [("sacct", False, ""), ("squeue", False, "11")]
    mark = len(node.calls)
    client.ask_usage_ahead(["11"])
    assert [u.billed_core_seconds for u in client.usage(["11"])] == [6]
    assert partition_reads(node, mark) == [("sacct", False, "11"), ("squeue", False, "11")]


@pytest.mark.parametrize("held", [{"11": "billed"}, {}], ids=["weighted", "forgotten"])
def test_a_job_with_no_partition_named_elsewhere_is_asked_again_with_alloc_tres(node: Accounting,
                                                                                client: SlurmClient, held):
    look(client)
    node.jobs.append(UNNAMED)
    node.held = held
    mark = len(node.calls)
    assert look(client)["11"] == 12
    assert partition_reads(node, mark) == [("sacct", False, ""), ("squeue", False, "11"), ("sacct", True, "11")]
