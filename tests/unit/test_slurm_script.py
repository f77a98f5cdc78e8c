"""Batch script rendering: the exact #SBATCH header, and user values that cannot break out."""

import subprocess

import pytest

from reconciler.api import ArraySpec, Resources, Task
from reconciler.slurm.script import Stream, TaskPaths, job_log_path, log_dir_of, render_script, task_paths
from reconciler.slurm.tags import JobTag

TAG = JobTag(uid="uid-1", task="simulate", attempt=2, part=0, fingerprint="0123456789abcdef")
HOSTILE = [
    "plain",
    "it's \"quoted\" \\ back\\slash",
    "$(touch {marker}) `touch {marker}` ${{HOME}} $HOME",
    "line one\n#SBATCH --partition=evil\nline three\n",
    "; touch {marker} # && || | > < & * ? ~ !",
    "  leading and trailing spaces  ",
    "tab\there\r\nwindows",
    "",
    "ünïcödé ✓",
    "'",
    "--not-an-option",
]


def render(task: Task, **overrides) -> str:
    arguments = {"workflow": "plan", "namespace": "default", "task": task, "tag": TAG, "resources": task.resources,
                     "run_dir": "/w/default/plan/simulate", "log_dir": "/w/default/plan/.reconciler/logs",
                     "indices": None, "parallelism": None}
    arguments.update(overrides)
    return render_script(**arguments)


def header(script: str) -> list[str]:
    """The lines sbatch reads directives from: everything before the first non-comment line."""
    lines = []
    for line in script.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return lines


def test_plain_job_header_is_exact():
    task = Task(name="simulate", command=["kwave-sim", "--grid", "256"],
                resources=Resources(partition="debug", nodes=1, cpus=2, memory="4G", time="00:10:00",
                                    gres="gpu:1", account="proj", qos="normal"))
    script = render(task, dependencies=["7", "8_3"], hold=True, exclude_nodes=["n1", "n[2-3]"])
    assert header(script) == [
        "#!/bin/bash",
        "#SBATCH --job-name=plan.simulate",
        "#SBATCH --comment=slurm-reconciler.v1:uid-1:simulate:2:0:0123456789abcdef",
        "#SBATCH --chdir=/w/default/plan/simulate",
        "#SBATCH --output=/w/default/plan/.reconciler/logs/simulate.a2.%j.out",
        "#SBATCH --error=/w/default/plan/.reconciler/logs/simulate.a2.%j.err",
        "#SBATCH --partition=debug",
        "#SBATCH --nodes=1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --time=00:10:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --account=proj",
        "#SBATCH --qos=normal",
        "#SBATCH --dependency=afterok:7:8_3",
        "#SBATCH --kill-on-invalid-dep=yes",
        "#SBATCH --hold",
        "#SBATCH --exclude=n1,n[2-3]",
    ]
    body = script.splitlines()[len(header(script)):]
    assert body[0] == "export RECONCILER_WORKFLOW=plan"
    assert "export RECONCILER_ATTEMPT=2" in body and body[-1] == "kwave-sim --grid 256"


def test_unset_resources_are_left_to_slurm():
    script = render(Task(name="simulate", script="true"))
    assert [line.split("=")[0] for line in header(script)[1:]] == [
        "#SBATCH --job-name", "#SBATCH --comment", "#SBATCH --chdir", "#SBATCH --output", "#SBATCH --error"]
    assert script.endswith("\ntrue\n")


def test_array_chunk_uses_slurm_indices_offset_by_the_part():
    task = Task(name="tiles", script='echo "$TASK_INDEX"', array=ArraySpec(count=3000, parallelism=25))
    tag = JobTag(uid="u", task="tiles", attempt=1, part=1000, fingerprint="f")
    script = render(task, tag=tag, indices=(1000, 1001, 1002, 1005), parallelism=25)
    lines = header(script)
    assert "#SBATCH --array=0-2,5%25" in lines
    assert "#SBATCH --output=/w/default/plan/.reconciler/logs/tiles.a1.p1000.%A_%a.out" in lines
    assert "#SBATCH --error=/w/default/plan/.reconciler/logs/tiles.a1.p1000.%A_%a.err" in lines
    assert "export TASK_INDEX=$(( SLURM_ARRAY_TASK_ID + 1000 ))" in script
    assert "TASK_ITEM" not in script
    assert "%" not in render(task, tag=tag, indices=(1000,), parallelism=None).split("--array=")[1].split("\n")[0]


def test_header_values_are_escaped_for_sbatch_and_patterns_disarmed():
    script = render(Task(name="simulate", script="true"), run_dir="/data/my runs/#1 'a'",
                    log_dir="/data/100%/logs")
    lines = header(script)
    assert '#SBATCH --chdir="/data/my runs/\\#1 \\\'a\\\'"' in lines
    assert "#SBATCH --output=/data/100%%/logs/simulate.a2.%j.out" in lines
    assert "#SBATCH --error=/data/100%%/logs/simulate.a2.%j.err" in lines


@pytest.mark.parametrize("overrides", [
    {"run_dir": "/w/a\nb"}, {"run_dir": "/w/a\rb"}, {"run_dir": "/w/a\0b"}, {"log_dir": "/w/a\nb"},
    {"run_dir": "/w/PackJob/x"}, {"log_dir": "/w/back\\slash"}, {"workflow": "a\nb"},
    {"dependencies": ["7;rm"]}, {"dependencies": ["afterany:7"]}, {"exclude_nodes": ["n1 n2"]},
    {"indices": ()}, {"indices": (1, 2)},  # below the chunk's part
])
def test_values_no_escaping_makes_safe_are_refused(overrides):
    if overrides.get("indices") == (1, 2):
        overrides["tag"] = JobTag(uid="u", task="simulate", attempt=1, part=5, fingerprint="f")
    with pytest.raises(ValueError):
        render(Task(name="simulate", script="true"), **overrides)


def test_approval_tasks_have_no_script():
    with pytest.raises(ValueError):
        render(Task(name="review", type="approval"))


def test_hostile_values_arrive_byte_for_byte(tmp_path):
    marker = tmp_path / "pwned"
    values = [v.format(marker=marker) for v in HOSTILE]
    env = {f"V{i}": value for i, value in enumerate(values)}
    printer = "printf '%s\\0' " + " ".join(f'"$V{i}"' for i in range(len(values))) + ' "$TASK_ITEM" "$TASK_INDEX"'
    task = Task(name="tiles", script=printer, env=env, array=ArraySpec(items=values))
    tag = JobTag(uid="u", task="tiles", attempt=1, part=3, fingerprint="f")
    script = render(task, tag=tag, indices=tuple(range(3, len(values))), parallelism=2)

    assert header(script)[1:] == [
        "#SBATCH --job-name=plan.tiles",
        "#SBATCH --comment=slurm-reconciler.v1:u:tiles:1:3:f",
        "#SBATCH --chdir=/w/default/plan/simulate",
        "#SBATCH --output=/w/default/plan/.reconciler/logs/tiles.a1.p3.%A_%a.out",
        "#SBATCH --error=/w/default/plan/.reconciler/logs/tiles.a1.p3.%A_%a.err",
        f"#SBATCH --array=0-{len(values) - 4}%2",
    ]
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
    for slurm_index in range(len(values) - 3):
        result = subprocess.run(["bash", "-s"], input=script.encode(), capture_output=True, check=True,
                                env={"SLURM_ARRAY_TASK_ID": str(slurm_index), "PATH": "/usr/bin:/bin"})
        printed = result.stdout.decode().split("\0")[:-1]
        assert printed == [*values, values[slurm_index + 3], str(slurm_index + 3)]
    assert not marker.exists()


def test_hostile_command_arguments_arrive_byte_for_byte(tmp_path):
    marker = tmp_path / "pwned"
    values = [v.format(marker=marker) for v in HOSTILE]
    script = render(Task(name="simulate", command=["printf", "%s\\0", *values]))
    assert len(header(script)) == 6
    result = subprocess.run(["bash", "-s"], input=script.encode(), capture_output=True, check=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.decode().split("\0")[:-1] == values
    assert not marker.exists()


def test_a_script_cannot_add_directives():
    script = render(Task(name="simulate", script="#SBATCH --partition=evil\necho hi"))
    assert not any("evil" in line for line in header(script))


def test_nul_in_a_value_is_refused():
    with pytest.raises(ValueError):
        render(Task(name="simulate", script="true", env={"X": "a\0b"}))


def test_task_paths():
    tag = JobTag(uid="u", task="tiles", attempt=3, part=1000, fingerprint="f")
    paths = task_paths(cluster_workdir="/scratch/rec", namespace="lab", workflow="slide-1",
                       task=Task(name="tiles", script="true"), tag=tag)
    assert paths == TaskPaths(run_dir="/scratch/rec/lab/slide-1/tiles",
                              log_dir="/scratch/rec/lab/slide-1/.reconciler/logs",
                              script="/scratch/rec/lab/slide-1/.reconciler/scripts/tiles.a3.p1000.sh")
    shared = task_paths(cluster_workdir="/scratch/rec", namespace="lab", workflow="slide-1",
                        task=Task(name="tiles", script="true", workdir="../shared"), tag=tag)
    assert shared.run_dir == "/scratch/rec/lab/slide-1/../shared"
    absolute = task_paths(cluster_workdir="/scratch/rec", namespace="lab", workflow="slide-1",
                          task=Task(name="tiles", script="true", workdir="/data/x"), tag=tag)
    assert absolute.run_dir == "/data/x" and absolute.log_dir == paths.log_dir


def test_a_jobs_stream_files_are_where_its_directives_send_them():
    log_dir = "/w/default/plan/.reconciler/logs"
    plain = render(Task(name="simulate", script="true"))
    assert f"#SBATCH --output={log_dir}/simulate.a2.%j.out" in header(plain)
    assert job_log_path(log_dir=log_dir, task="simulate", attempt=2, part=0, job_id="41", index=None,
                        stream=Stream.OUT) == f"{log_dir}/simulate.a2.41.out"
    assert job_log_path(log_dir=log_dir, task="simulate", attempt=2, part=0, job_id="41", index=None,
                        stream=Stream.ERR) == f"{log_dir}/simulate.a2.41.err"
    # An array element's file names the array's id and Slurm's array task id: the index minus the part.
    tag = JobTag(uid="u", task="tiles", attempt=1, part=1000, fingerprint="f")
    chunk = render(Task(name="tiles", script="true", array=ArraySpec(count=3000)), tag=tag, indices=(1000, 1001))
    assert f"#SBATCH --error={log_dir}/tiles.a1.p1000.%A_%a.err" in header(chunk)
    assert job_log_path(log_dir=log_dir, task="tiles", attempt=1, part=1000, job_id="77", index=1001,
                        stream=Stream.ERR) == f"{log_dir}/tiles.a1.p1000.77_1.err"
    assert log_dir_of(cluster_workdir="/w", namespace="default", workflow="plan") == log_dir
