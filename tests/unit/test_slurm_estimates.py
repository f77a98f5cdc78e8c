"""Start estimates (``sbatch --test-only``) and partition limits, on output captured from the dev
cluster's Slurm 22.05.8 (see data/slurm-22.05/README.md)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.observed import JobSize, PartitionLimits
from reconciler.slurm import commands as c
from reconciler.slurm.commands import StartEstimate, SubmitErrorKind

DATA = Path(__file__).parent / "data" / "slurm-22.05"


def data(name: str) -> str:
    return (DATA / name).read_text()


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


# --- sbatch --test-only ---------------------------------------------------------------------


def test_test_only_argv_asks_for_the_size_a_task_job_asks_for_and_submits_nothing():
    argv = c.test_only_argv(partition="debug", nodes=2, cpus=4, time_seconds=3600, memory_mib=512)
    assert argv == ["env", "SLURM_BITSTR_LEN=0", "SLURM_TIME_FORMAT=%s", "sbatch", "--test-only",
                    "--partition=debug", "--nodes=2", "--cpus-per-task=4", "--time=60", "--mem=512M", "--wrap=true"]
    assert c.command_name(argv) == "sbatch"
    # Slurm counts minutes and rounds seconds up; no --mem leaves the partition's default.
    assert "--time=2" in c.test_only_argv(partition="debug", nodes=1, cpus=1, time_seconds=61)
    assert not [w for w in c.test_only_argv(partition="debug", nodes=1, cpus=1, time_seconds=60)
                if w.startswith("--mem")]


@pytest.mark.parametrize("size", [
    {"nodes": 0, "cpus": 1, "time_seconds": 60},
    {"nodes": 1, "cpus": 0, "time_seconds": 60},
    {"nodes": 1, "cpus": 1, "time_seconds": 0},
    {"nodes": 1, "cpus": 1, "time_seconds": 60, "memory_mib": 0},
])
def test_test_only_argv_refuses_sizes_slurm_would_read_as_defaults(size):
    with pytest.raises(ValueError, match="positive"):
        c.test_only_argv(partition="debug", **size)


@given(st.text(min_size=1, max_size=30))
def test_a_partition_name_never_becomes_another_word(name):
    try:
        argv = c.test_only_argv(partition=name, nodes=1, cpus=1, time_seconds=60)
    except ValueError:
        return
    assert argv.count(f"--partition={name}") == 1 and not name.startswith("-") and " " not in name


def test_an_idle_cluster_would_start_the_job_now():
    # Captured at epoch 1795940978 (the file's own answer), SLURM_TIME_FORMAT=%s.
    assert c.parse_test_only(data("sbatch-test-only-idle.stderr.txt")) == StartEstimate(
        start=at(1795940978), processors=2, nodes="dev2-1", partition="debug")


def test_a_busy_cluster_would_start_it_when_the_blocking_job_ends():
    # Asked at 1795940980 while one job with --time=5 held all 16 CPUs: five minutes later.
    estimate = c.parse_test_only(data("sbatch-test-only-busy.stderr.txt"))
    assert estimate.start == at(1795941279) and (estimate.start - at(1795940980)).total_seconds() == 299


def test_without_the_output_environment_the_time_is_the_clusters_local_time():
    # The same question without SLURM_TIME_FORMAT: "2026-11-29T08:29:38", local and zone-less,
    # read in this machine's zone (the cluster's, for the local transport).
    estimate = c.parse_test_only(data("sbatch-test-only-local-time.stderr.txt"))
    assert estimate.start == datetime(2026, 11, 29, 8, 29, 38).astimezone(UTC)


@pytest.mark.parametrize("name", [
    "sbatch-test-only-too-many-cpus.stderr.txt",
    "sbatch-test-only-too-much-memory.stderr.txt",
    "sbatch-test-only-invalid-partition.stderr.txt",
])
def test_a_size_the_cluster_cannot_run_is_refused_not_a_transport_failure(name):
    stderr = data(name)
    assert stderr.startswith(("allocation failure:", "sbatch: error:"))
    assert c.classify_command_error(stderr) is SubmitErrorKind.INVALID
    with pytest.raises(ValueError, match="no start"):
        c.parse_test_only(stderr)


def test_an_unreachable_controller_is_transient():
    assert c.classify_command_error(data("sbatch-test-only-controller-down.stderr.txt")) is SubmitErrorKind.TRANSIENT


def test_over_the_partitions_max_time_slurm_still_answers_a_start():
    # EnforcePartLimits=NO (Slurm's default, the dev cluster's): --time=600 on a partition of
    # MaxTime=01:00:00 gets a start although the job would pend for ever; the limits tell.
    assert c.parse_test_only(data("sbatch-test-only-over-max-time.stderr.txt")).start == at(1795940978)
    [debug, _] = c.parse_partitions(data("scontrol-show-partition-billed.txt"))
    assert not debug.admits(JobSize("debug", nodes=1, cpus=2, time_seconds=600 * 60))
    assert debug.admits(JobSize("debug", nodes=1, cpus=2, time_seconds=3600))


def test_a_line_that_is_no_estimate_is_unreadable():
    for text in ["", "sbatch: Job 7 to start at soon using 2 processors on nodes n1 in partition debug",
                 "Submitted batch job 7"]:
        with pytest.raises(ValueError):
            c.parse_test_only(text)


# --- partition limits ---------------------------------------------------------------------


def test_partitions_with_billing_weights():
    debug, billed = c.parse_partitions(data("scontrol-show-partition-billed.txt"))
    assert debug == PartitionLimits(name="debug", max_time_seconds=3600, default=True, state="UP", total_cpus=16,
                                    total_nodes=1, max_nodes=None, max_cpus_per_node=None,
                                    default_time_seconds=None, billing_weights={})
    assert billed.name == "billed" and not billed.default
    assert billed.billing_weights == {"CPU": 2.0, "Mem": 0.25}


def test_partition_limits_that_are_set():
    # The billed partition after `scontrol update MaxNodes=1 MaxCPUsPerNode=8 DefaultTime=00:10:00 State=DRAIN`.
    _, billed = c.parse_partitions(data("scontrol-show-partition-limits.txt"))
    assert (billed.max_nodes, billed.max_cpus_per_node, billed.default_time_seconds) == (1, 8, 600)
    assert (billed.total_nodes, billed.total_cpus, billed.max_time_seconds, billed.state) == (1, 16, 3600, "DRAIN")


def test_what_a_partition_admits():
    limits = PartitionLimits(name="p", max_time_seconds=3600, default=False, state="UP", total_cpus=32,
                             total_nodes=2, max_nodes=None, max_cpus_per_node=8)
    assert limits.admits(JobSize("p", nodes=2, cpus=8, time_seconds=3600))
    assert not limits.admits(JobSize("p", nodes=3, cpus=1, time_seconds=60))  # more nodes than it has
    assert not limits.admits(JobSize("p", nodes=1, cpus=9, time_seconds=60))
    assert not limits.admits(JobSize("p", nodes=1, cpus=1, time_seconds=3601))
    assert not PartitionLimits(name="p", max_time_seconds=None, default=False, state="DRAIN", total_cpus=8).admits(
        JobSize("p", nodes=1, cpus=1, time_seconds=60))
    capped = PartitionLimits(name="p", max_time_seconds=None, default=False, state="UP", total_cpus=8, max_nodes=1)
    assert capped.admits(JobSize("p", nodes=1, cpus=64, time_seconds=10**7))
    assert not capped.admits(JobSize("p", nodes=2, cpus=1, time_seconds=60))


@pytest.mark.parametrize("text, weights", [
    ("CPU=2.0,Mem=0.25G", {"CPU": 2.0, "Mem": 0.25}),
    ("CPU=1.0,Mem=0.25G,GRES/gpu=2.0", {"CPU": 1.0, "Mem": 0.25, "GRES/gpu": 2.0}),
    # Without a suffix a memory weight is per MB; K and M are no larger than that base unit.
    ("mem=.25", {"Mem": 256.0}),
    ("Mem=1K", {"Mem": 1024.0}),
    ("Mem=1T", {"Mem": 1 / 1024}),
    # Any TRES takes a suffix; a CPU's base unit is one.
    ("cpu=1K,node=-0.5,GRES/gpu:tesla=2e1", {"CPU": 1 / 1024, "Node": -0.5, "GRES/gpu:tesla": 20.0}),
    ("", {}),
])
def test_billing_weights_as_slurm_conf_describes_them(text, weights):
    assert c.parse_billing_weights(text) == weights


@pytest.mark.parametrize("text", ["CPU", "CPU=", "CPU=two", "Wattage=1", "Mem=1X", "CPU=1;Mem=2"])
def test_unreadable_billing_weights(text):
    with pytest.raises(ValueError):
        c.parse_billing_weights(text)


def test_the_slurm_conf_example_bills_as_the_manual_computes():
    # slurm.conf(5): 1 CPU and 8 GB under "CPU=1.0,Mem=0.25G,GRES/gpu=2.0" bill 3.0.
    weights = c.parse_billing_weights("CPU=1.0,Mem=0.25G,GRES/gpu=2.0")
    assert 1 * weights["CPU"] + 8 * weights["Mem"] + 0 * weights["GRES/gpu"] == 3.0
