"""Billing and usage as Slurm 22.05's accounting reports them, on captured output."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.slurm import commands as c
from reconciler.slurm.observation import observed_jobs

DATA = Path(__file__).parent / "data" / "slurm-22.05"


def data(name: str) -> str:
    return (DATA / name).read_text()


def test_sacct_reads_the_billing_tres():
    billing = {r.job_id: r.billing for r in c.parse_sacct(data("sacct-billing.txt"))}
    assert billing == {"14686": 4, "14687": 1, "14688": 4, "14689": 4, "14685": 4, "14690": 4, "14691": 2,
                       "14692": None, "14693": 1}


def test_sacct_without_alloc_tres_has_no_billing():
    assert {r.billing for r in c.parse_sacct(data("sacct-finished.txt"))} == {None}


def test_sacct_reads_the_partition_with_or_without_alloc_tres():
    full = {r.job_id: r for r in c.parse_sacct(data("sacct-billing.txt"))}
    lean = {r.job_id: r for r in c.parse_sacct(data("sacct-lean.txt"), billing=False)}
    assert {job_id: r.partition for job_id, r in lean.items()} == {
        "14686": "billed", "14687": "debug", "14688": "billed", "14689": "billed", "14685": "billed",
        "14690": "billed", "14691": "debug", "14692": "debug", "14693": "debug"}
    assert {r.billing for r in lean.values()} == {None}
    # The rest reads the same either way (14693 ended between the two captures).
    assert [replace(r, billing=None) for job_id, r in full.items() if job_id != "14693"] == \
        [r for job_id, r in lean.items() if job_id != "14693"]
    with pytest.raises(ValueError):
        c.parse_sacct(data("sacct-lean.txt"))  # one field short of what was asked


def test_usage_without_alloc_tres_bills_the_cpus():
    argv = c.sacct_usage_argv(job_ids=["14690"], user=None, billing=False)
    assert argv[6] == ("--format=JobID,JobIDRaw,State,Submit,Start,End,ElapsedRaw,AllocCPUS,NNodes,Partition,"
                       "TimelimitRaw,ReqMem,MaxRSS,TotalCPU")
    usage = {u.job_id: u for u in c.parse_sacct_usage(data("sacct-usage-lean.txt"), billing=False)}
    long = usage["14690"]
    assert (long.partition, long.cpus, long.billing, long.elapsed_seconds, long.billed_core_seconds) == (
        "billed", 2, None, 4, 8)
    assert (long.max_rss_mib, long.total_cpu_seconds, long.memory_mib) == (36272 / 1024, 3.125, 300.0)
    assert (usage["14689"].array_job_id, usage["14689"].array_index, usage["14687"].partition) == ("14685", 1, "debug")


def test_usage_argv_asks_by_id_with_steps():
    argv = c.sacct_usage_argv(job_ids=["14685", "14686"], user="bob")
    assert argv == [
        "env", "SLURM_BITSTR_LEN=0", "SLURM_TIME_FORMAT=%s", "sacct", "-P", "-n",
        "--format=JobID,JobIDRaw,State,Submit,Start,End,ElapsedRaw,AllocCPUS,AllocTRES,NNodes,Partition,"
        "TimelimitRaw,ReqMem,MaxRSS,TotalCPU",
        "--jobs=14685,14686", "--user=bob",
    ]
    with pytest.raises(ValueError):
        c.sacct_usage_argv(job_ids=["--all"], user=None)


def test_usage_folds_steps_into_their_job():
    usage = {u.job_id: u for u in c.parse_sacct_usage(data("sacct-usage.txt"))}
    assert "14693" not in usage  # still running
    long = usage["14690"]
    assert (long.state, long.partition, long.nodes, long.cpus, long.billing, long.elapsed_seconds) == (
        "COMPLETED", "billed", 1, 2, 4, 4)
    assert (long.memory_mib, long.max_rss_mib, long.total_cpu_seconds, long.time_limit_seconds) == (
        300.0, 36272 / 1024, 3.125, 300)
    assert long.billed_core_seconds == 16
    assert (long.submitted_at, long.started_at, long.finished_at) == (
        datetime.fromtimestamp(1795940781, UTC), datetime.fromtimestamp(1795940781, UTC),
        datetime.fromtimestamp(1795940785, UTC))
    short = usage["14686"]
    assert short.max_rss_mib is None  # MaxRSS 0: ended before the first sample, not a measurement
    assert (short.total_cpu_seconds, short.time_limit_seconds, short.billed_core_seconds) == (0.002, 120, 4)


def test_usage_of_array_elements_and_jobs_without_weights():
    usage = {u.job_id: u for u in c.parse_sacct_usage(data("sacct-usage.txt"))}
    elements = sorted((u.array_index, u.array_job_id, u.billed_core_seconds, u.total_cpu_seconds)
                      for u in usage.values() if u.array_job_id == "14685")
    assert elements == [(0, "14685", 8, 1.174), (1, "14685", 8, 1.14), (2, "14685", 8, 1.074)]
    plain = usage["14687"]
    assert (plain.partition, plain.billing, plain.billed_core_seconds, plain.time_limit_seconds) == (
        "debug", 1, 1, 3600)
    per_cpu = usage["14691"]
    assert (per_cpu.memory_mib, per_cpu.billed_core_seconds) == (300.0, 4)
    never_ran = usage["14692"]  # held, then cancelled
    assert (never_ran.state, never_ran.elapsed_seconds, never_ran.billing, never_ran.time_limit_seconds) == (
        "CANCELLED", 0, None, None)
    assert never_ran.billed_core_seconds == 0


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:01.174", 1.174), ("01:02:03", 3723.0), ("1-02:03:04", 93784.0), ("12:34", 754.0), ("01:02:03.5", 3723.5),
])
def test_total_cpu_forms(text, seconds):
    line = f"5|5|COMPLETED|1|1|2|1|1|billing=1|1|p|1|1G||{text}\n"
    [usage] = c.parse_sacct_usage(line)
    assert usage.total_cpu_seconds == pytest.approx(seconds) and usage.memory_mib == 1024.0


def test_unreadable_usage_is_a_value_error():
    with pytest.raises(ValueError):
        c.parse_sacct_usage("5|5|COMPLETED|1|1|2|1|1|billing=x|1|p|1|1G||00:01\n")
    with pytest.raises(ValueError):
        c.parse_sacct_usage("5|5|COMPLETED|1|1|2|1|1|billing=1|1|p|1|lots||00:01\n")


TAG = "slurm-reconciler.v1:uid-9:prep:1:0:fp0123456789abcd"


def test_an_ended_job_costs_its_billing_tres_and_a_live_one_its_cpus():
    now = datetime.fromtimestamp(1795940900, UTC)
    ended = data("sacct-billing.txt").splitlines()[0] + TAG  # 14686: 1 s, 2 CPUs, billing=4
    [job] = observed_jobs(c.parse_sacct(ended + "\n"), now=now)
    assert (job.outcome.core_seconds, job.outcome.core_hours) == (4, 4 / 3600)
    unweighted = "14686|14686|COMPLETED|0:0|None|dev1|1795940768|1795940778|10|2|debug||wrap|" + TAG
    [job] = observed_jobs(c.parse_sacct(unweighted + "\n"), now=now)
    assert job.outcome.core_seconds == 20  # no AllocTRES: elapsed x CPUs
    # Started 10 s before the last whole minute (1795940880), to which a running job's time counts.
    live = f"14686|14686|N/A|RUNNING|None|2|dev1|1795940870|0:30|wrap|{TAG}\n"
    [job] = observed_jobs(c.parse_squeue(live), now=now)
    assert job.outcome.core_seconds == 20


def test_a_memory_figure_beyond_slurms_units_is_unknown_not_an_error():
    # Slurm 22.05 prints NO_VAL64 in ReqMem as "16?" (its unit list ends in "?").
    line = "5|5|COMPLETED|1|1|2|1|1|billing=1|1|p|1|16?|0|00:01.000\n"
    [usage] = c.parse_sacct_usage(line)
    assert usage.memory_mib is None and usage.elapsed_seconds == 1
