"""A Slurm login node held in memory, for measuring the loop at a scale no small cluster runs in
minutes. Called by :mod:`benchmarks.scale`. It implements the transport protocol and answers in
the formats of Slurm 22.05 (the lines the parsers in :mod:`reconciler.slurm.commands` read):
``sbatch`` queues a job named and tagged by its script's ``#SBATCH`` lines, ``squeue`` and
``sacct`` list the queue in the state :meth:`MemorySlurm.advance` last set (sacct in the fields
its ``--format`` asks, every job on partition ``debug``, which has no TRESBillingWeights), and
every command run is counted by name in :attr:`MemorySlurm.counts`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.slurm.commands import command_name
from reconciler.slurm.transport import CommandResult

CONFIG = "Configuration data as of 2026-01-01T00:00:00\nMaxArraySize            = 1001\n" \
         "MaxJobCount             = 100000\nSLURM_VERSION           = 22.05.8\n"
PARTITION = ("PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL Default=YES MaxNodes=UNLIMITED "
             "MaxTime=01:00:00 MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=n1 State=UP TotalCPUs=100000 "
             "TotalNodes=1000\n")
# When every job "started", in epoch seconds, as squeue and sacct print times for the loop
# (SLURM_TIME_FORMAT=%s).
STARTED = 1795413165
# What sacct prints of a job that ran one second on one CPU of ``debug``, by field; "{0}" stands
# for the job's id (also its raw id), "{1}" and "{2}" for its name and comment.
_SACCT = {"JobID": "{0}", "JobIDRaw": "{0}", "State": "COMPLETED", "ExitCode": "0:0", "Reason": "None",
          "NodeList": "n1", "Start": str(STARTED), "End": str(STARTED + 1), "ElapsedRaw": "1", "AllocCPUS": "1",
          "Partition": "debug", "AllocTRES": "billing=1,cpu=1,node=1", "JobName": "{1}", "Comment": "{2}"}


@dataclass
class Job:
    job_id: str
    name: str
    comment: str


class MemorySlurm:
    description = "login node in memory"

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.state = "PENDING"
        self.counts: Counter[str] = Counter()
        self._next_id = 1000

    def advance(self, state: str) -> None:
        """Every queued job is in ``state`` from now on (RUNNING, COMPLETED)."""
        self.state = state

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60.0) -> CommandResult:
        words = tuple(argv)
        name = command_name(words)
        self.counts[name] += 1
        rest = words[words.index(name) + 1:]
        if name == "squeue":
            return _ok(words, "".join(self._squeue_line(job) for job in self.jobs.values()))
        if name == "sacct":
            if self.state != "COMPLETED" or "-X" not in rest:
                return _ok(words, "")
            asked = next(word for word in rest if word.startswith("--format=")).removeprefix("--format=")
            line = "|".join(_SACCT[field] for field in asked.split(",")) + "\n"
            return _ok(words, "".join(line.format(j.job_id, j.name, j.comment) for j in self.jobs.values()))
        if name == "sbatch":
            return self._sbatch(words, rest[-1])
        if name == "scontrol" and rest[:2] == ("show", "config"):
            return _ok(words, CONFIG)
        if name == "scontrol" and rest[:2] == ("show", "partition"):
            return _ok(words, PARTITION)
        if name == "sacctmgr":
            return _ok(words, "")
        return _ok(words, "")

    def _squeue_line(self, job: Job) -> str:
        state = self.state
        started = "N/A" if state == "PENDING" else str(STARTED)
        nodes = "" if state == "PENDING" else "n1"
        return f"{job.job_id}|{job.job_id}|N/A|{state}|None|1|{nodes}|{started}|0:01|{job.name}|{job.comment}\n"

    def _sbatch(self, words: tuple[str, ...], script_path: str) -> CommandResult:
        script = self.files.get(script_path)
        if script is None:
            return CommandResult(words, 1, "", f"sbatch: error: Unable to open file {script_path}")
        directives = dict(line.removeprefix("#SBATCH --").partition("=")[::2]
                          for line in script.decode().splitlines() if line.startswith("#SBATCH --"))
        job_id = str(self._next_id)
        self._next_id += 1
        self.jobs[job_id] = Job(job_id, directives["job-name"], directives["comment"])
        return _ok(words, f"{job_id}\n")

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.files[path] = data

    def make_dirs(self, *paths: str) -> None:
        pass

    def fetch(self, directory: str, patterns: Sequence[str], destination: Path) -> list[Path]:
        return []

    def read_file(self, path: str, *, offset: int, limit: int) -> bytes | None:
        data = self.files.get(path)
        return None if data is None else data[offset:offset + limit]

    def watch_names(self, directory: str, found: Callable[[list[str]], None], stop: threading.Event) -> None:
        stop.wait()  # no script runs here, so no job ever writes an end record

    def close(self) -> None:
        pass


def _ok(argv: tuple[str, ...], stdout: str) -> CommandResult:
    return CommandResult(argv, 0, stdout, "")
