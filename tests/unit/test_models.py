import pytest
from pydantic import ValidationError

from reconciler.api import Resources, SlurmCluster, Task, TaskDefaults, Workflow
from reconciler.api.units import memory_to_mib, mib_to_memory, seconds_to_time, time_to_seconds


def wf(**spec) -> Workflow:
    return Workflow.model_validate({"metadata": {"name": "w"}, "spec": spec})


def test_defaults_merge_under_tasks():
    workflow = wf(
        defaults={"resources": {"partition": "debug", "time": "00:10:00"}, "env": {"A": "1", "B": "2"}},
        tasks=[{"name": "t", "script": "x", "resources": {"time": "01:00:00"}, "env": {"B": "3"}}],
    )
    [task] = workflow.spec.effective_tasks()
    assert task.resources.partition == "debug" and task.resources.time == "01:00:00"
    assert task.env == {"A": "1", "B": "3"}


@pytest.mark.parametrize(
    "task, message",
    [
        ({"name": "t"}, "exactly one of script or command"),
        ({"name": "t", "script": "x", "command": ["y"]}, "exactly one of script or command"),
        ({"name": "t", "type": "approval", "script": "x"}, "runs nothing"),
        ({"name": "t", "script": "x", "approved": True}, "only to approval"),
        ({"name": "t", "script": "x", "array": {"count": 2, "items": ["a"]}},
             "exactly one of count, items, countFrom or itemsFrom"),
        ({"name": "t", "script": "x", "dependsOn": ["a", "a"]}, "twice"),
        ({"name": "T", "script": "x"}, "pattern"),
        ({"name": "t", "script": "x", "env": {"1BAD": "v"}}, "pattern"),
        ({"name": "t", "script": "x", "resources": {"partition": "debug\n#SBATCH --x"}}, "pattern"),
        ({"name": "t", "script": "x", "retry": {"onFailures": ["SEGFAULT"]}}, "FAILED"),
    ],
)
def test_invalid_tasks(task, message):
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(task)


def test_workflow_needs_tasks_xor_template():
    with pytest.raises(ValidationError, match="needs tasks or a templateRef"):
        wf()
    with pytest.raises(ValidationError, match="takes its tasks from the template"):
        wf(templateRef={"name": "t"}, tasks=[{"name": "a", "script": "x"}])
    with pytest.raises(ValidationError, match="duplicate task names: a"):
        wf(tasks=[{"name": "a", "script": "x"}, {"name": "a", "script": "y"}])


def test_cluster_transport_and_ssh_section_agree():
    with pytest.raises(ValidationError, match="needs an ssh section"):
        SlurmCluster.model_validate({"metadata": {"name": "c"}, "spec": {"workdir": "/w", "transport": "ssh"}})
    cluster = SlurmCluster.model_validate({
        "metadata": {"name": "c"},
        "spec": {"workdir": "/w", "transport": "ssh", "ssh": {"host": "login", "user": "alice"},
                 "partitions": [{"name": "gpu", "costPerCoreHour": 0.5}]},
    })
    assert cluster.spec.ssh.port == 22 and cluster.spec.partition_cost("gpu") == 0.5


def test_wire_form_is_camel_case_and_round_trips():
    workflow = wf(tasks=[{"name": "a", "script": "x", "dependsOn": [], "retry": {"limit": 2, "backoffSeconds": 5}}])
    wire = workflow.to_wire()
    assert wire["spec"]["tasks"][0]["retry"]["backoffSeconds"] == 5
    assert Workflow.model_validate(wire) == workflow


def test_labels_follow_kubernetes_rules():
    with pytest.raises(ValidationError, match="invalid label value"):
        Workflow.model_validate({"metadata": {"name": "w", "labels": {"a": "x y"}},
                                 "spec": {"tasks": [{"name": "a", "script": "x"}]}})


@pytest.mark.parametrize("text, seconds", [
    ("30", 1800), ("10:30", 630), ("01:30:00", 5400), ("2-00:00:00", 172800), ("1-2", 93600), ("1-02:03", 93780),
])
def test_slurm_time(text, seconds):
    assert time_to_seconds(text) == seconds


def test_time_and_memory_round_trip_upwards():
    assert seconds_to_time(5400 * 2) == "03:00:00"
    assert seconds_to_time(61) == "00:02:00"
    assert seconds_to_time(2 * 86400 + 1) == "2-00:01:00"
    assert memory_to_mib("4G") == 4096 and memory_to_mib("512") == 512 and memory_to_mib("1T") == 1024 * 1024
    assert mib_to_memory(4096 * 1.5) == "6G" and mib_to_memory(100.2) == "101M"


def test_task_defaults_model_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        TaskDefaults.model_validate({"resource": {}})


def test_auto_resources_are_named_and_fall_back_to_the_declared_defaults():
    resources = Resources.model_validate({"cpus": "auto", "time": "auto", "memory": "2G", "partition": "auto"})
    assert resources.auto == ("partition", "cpus", "time")
    assert resources.cores == 1
    defaults = Resources.model_validate({"cpus": 4, "time": "auto", "partition": "debug"})
    declared = resources.declared(defaults)
    assert (declared.cpus, declared.time, declared.memory, declared.partition) == (4, None, "2G", "debug")
    assert declared.auto == ()
    for bad in ({"cpus": "many"}, {"time": "later"}, {"memory": "auto4G"}, {"nodes": 0}):
        with pytest.raises(ValidationError):
            Resources.model_validate(bad)
