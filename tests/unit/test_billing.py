"""Billed core-seconds through the store: an array element whose end squeue showed before
accounting had it counts what accounting bills once accounting reports it, also after its jobs
left sacct's window and the store alone speaks for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.core.observed import JobKey
from reconciler.core.taskruns import task_runs
from reconciler.slurm import commands as c
from reconciler.slurm.observation import observed_jobs
from reconciler.store.database import Store

# Two seconds before a whole minute: a running job's time so far counts to the last whole minute.
START = 1795940818
NOW = datetime.fromtimestamp(START + 10, UTC)
TAG = "slurm-reconciler.v1:{uid}:fan:1:0:fp0123456789abcd"


def squeue(uid: str, index: int, state: str, used: str) -> str:
    return f"{301 + index}|300|{index}|{state}|None|2|dev1|{START}|{used}|plan.fan|{TAG.format(uid=uid)}\n"


def sacct(uid: str, index: int, elapsed: int, billing: int) -> str:
    return (f"300_{index}|{301 + index}|COMPLETED|0:0|None|dev1|{START}|{START + elapsed}|{elapsed}|2|billed|"
            f"billing={billing},cpu=2,mem=200M,node=1|plan.fan|{TAG.format(uid=uid)}\n")


def test_an_element_squeue_saw_end_first_counts_the_billed_figure(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="plan", resource={"metadata": {"name": "plan"}},
                                    revision=None, source_file=None, now=NOW).uid
        key = JobKey("fan", 1)
        store.record_intent(uid, key=key, fingerprint="fp0123456789abcd", indices=(0, 1), resources={},
                            cluster="dev", now=NOW)
        store.confirm_submission(uid, key=key, job_id="300", now=NOW)

        # squeue shows element 0 ended (2 s x 2 CPUs) before accounting has it; element 1 runs.
        first = observed_jobs(c.parse_squeue(squeue(uid, 0, "COMPLETED", "0:02") + squeue(uid, 1, "RUNNING", "0:02")),
                              now=NOW)
        assert sorted(job.outcome.core_seconds for job in first) == [4, 4]
        store.update_from_observation(uid, first, now=NOW)
        # Accounting has both now: billing=4 per second (TRESBillingWeights).
        later = observed_jobs(c.parse_sacct(sacct(uid, 0, 2, 4) + sacct(uid, 1, 3, 4)), now=NOW)
        assert all(job.outcome.accounted for job in later)
        store.update_from_observation(uid, later, now=NOW + timedelta(seconds=1))

        # Out of sacct's window: the store alone says what the elements cost.
        runs = task_runs(indices=[0, 1], fingerprint="fp0123456789abcd", observed=[], records=store.attempts(uid),
                         accounting=True, accounting_complete_until=NOW)
        assert runs.core_seconds == 2 * 4 + 3 * 4
