"""The batch script of one submission, and where its files live on the cluster.

Called by the client before each sbatch (and by ``reconciler render``). Pure: the result is a
string; the client writes it to ``TaskPaths.script`` and creates the run and log directories.

What it guarantees: the ``#SBATCH`` header holds exactly the directives rendered here, whatever
the names, paths, environment values, array items or command arguments contain. sbatch reads
directives only up to the first line that is not a comment, so the body starts with a command,
and every user-supplied value in the body is shell-quoted, so no value can end a quote, run a
substitution or smuggle in a directive. Header values are escaped for sbatch's own tokenizer
(Slurm 22.05 ``_get_argument``: backslash escapes, quotes group, an unquoted "#" starts a comment)
and values that no escaping makes safe (newlines, NUL) are refused.

Inputs from an earlier task's outputs are copied by the job itself, at its start, from that
task's run directory (``UpstreamFiles``): a task submitted ahead with ``afterok`` goes out
before its prerequisite has run, so nothing could copy them earlier. Each file arrives through
a temporary name and a rename, so the elements of an array copying at once never see half a
file; a pattern that matches nothing ends the job with a message naming it.

A script given ``end_records`` (the cluster's end-record folder, see :mod:`.endrecords`) records
its job's end there from an ``EXIT`` trap set before anything else runs, so the loop learns of
the end at once; its exit code and streams stay the script's own.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ..api import Resources, Task
from ..core.indexranges import compress
from .endrecords import trap_lines
from .tags import JobTag, format_tag

_DEPENDENCY = re.compile(r"[0-9]{1,10}(?:_[0-9]{1,10})?")
_NODE = re.compile(r"[A-Za-z0-9_.\[\],-]+")


@dataclass(frozen=True)
class UpstreamFiles:
    """Files an earlier task left in its run directory, to be copied into this task's."""

    task: str
    run_dir: str
    pattern: str  # relative to run_dir; the model keeps it to characters safe in a shell word


# Defined once in a script that copies upstream outputs: from-dir task pattern to-dir.
_COPY_FUNCTION = r"""reconciler_inputs_from() {
  ( cd -- "$1" || exit 1
    shopt -s nullglob
    files=($3)
    copied=0
    for f in "${files[@]}"; do
      [ -f "$f" ] || continue
      part="$4/$f.part.${SLURM_JOB_ID:-$$}"
      mkdir -p -- "$(dirname -- "$4/$f")" && cp -p -- "$f" "$part" && mv -f -- "$part" "$4/$f" || exit 1
      copied=1
    done
    [ "$copied" = 1 ] || { echo "input $3 of task $2: no such file in $1" >&2; exit 1; }
  )
}"""


def upstream_files(task: Task, tasks: Mapping[str, Task], *, cluster_workdir: str, namespace: str,
                   workflow: str) -> tuple[UpstreamFiles, ...]:
    """The inputs of ``task`` that are outputs of earlier tasks (``tasks``: the workflow's)."""
    return tuple(
        UpstreamFiles(task=item.task, pattern=item.path,
                      run_dir=run_dir_of(cluster_workdir=cluster_workdir, namespace=namespace, workflow=workflow,
                                         task=tasks[item.task]))
        for item in task.inputs if item.task is not None and item.path is not None
    )


def run_dir_of(*, cluster_workdir: str, namespace: str, workflow: str, task: Task) -> str:
    if task.workdir is not None and posixpath.isabs(task.workdir):
        return task.workdir
    return posixpath.join(cluster_workdir, namespace, workflow, task.workdir or task.name)


@dataclass(frozen=True)
class TaskPaths:
    run_dir: str  # the job's working directory (--chdir)
    log_dir: str  # where Slurm writes the job's output
    script: str  # where the client puts the rendered script


def task_paths(*, cluster_workdir: str, namespace: str, workflow: str, task: Task, tag: JobTag) -> TaskPaths:
    """Paths on the cluster (POSIX, whatever this machine is). Tasks of a workflow run in sibling
    directories of one workflow directory, so "../shared" in one task is the same place in all."""
    own = posixpath.join(cluster_workdir, namespace, workflow, ".reconciler")
    run_dir = run_dir_of(cluster_workdir=cluster_workdir, namespace=namespace, workflow=workflow, task=task)
    return TaskPaths(
        run_dir=run_dir,
        log_dir=log_dir_of(cluster_workdir=cluster_workdir, namespace=namespace, workflow=workflow),
        script=posixpath.join(own, "scripts", f"{task.name}.a{tag.attempt}.p{tag.part}.sh"),
    )


def log_dir_of(*, cluster_workdir: str, namespace: str, workflow: str) -> str:
    """Where every job of the workflow writes its output and error streams."""
    return posixpath.join(cluster_workdir, namespace, workflow, ".reconciler", "logs")


class Stream(StrEnum):
    """A job's two streams, each in a file of its own (the file name's suffix). Jobs submitted
    before the error stream had its own file wrote both into the ``out`` one."""

    OUT = "out"
    ERR = "err"


def log_name(*, task: str, attempt: int, part: int, array: bool, stream: Stream) -> str:
    """The name Slurm is given for a stream's file (its ``%j``, ``%A`` and ``%a`` patterns in)."""
    return f"{task}.a{attempt}" + (f".p{part}.%A_%a" if array else ".%j") + f".{stream.value}"


def job_log_path(*, log_dir: str, task: str, attempt: int, part: int, job_id: str, index: int | None,
                 stream: Stream) -> str:
    """The file a submitted job's stream is in: ``job_id`` as sbatch printed it (an array's own
    id); ``index``: the array element, a task index (Slurm's array task id plus ``part``)."""
    name = log_name(task=task, attempt=attempt, part=part, array=index is not None, stream=stream)
    if index is None:
        return posixpath.join(log_dir, name.replace("%j", job_id))
    return posixpath.join(log_dir, name.replace("%A", job_id).replace("%a", str(index - part)))


def job_name(workflow: str, task: str) -> str:
    """The Slurm job name of a task's jobs: what accounting can be asked for, by name, to find the
    jobs of a workflow the store holds no submission of."""
    return f"{workflow}.{task}"


def render_script(
    *,
    workflow: str,
    namespace: str,
    task: Task,
    tag: JobTag,
    resources: Resources,
    run_dir: str,
    log_dir: str,
    indices: tuple[int, ...] | None,
    parallelism: int | None,
    dependencies: Sequence[str] = (),
    hold: bool = False,
    exclude_nodes: Sequence[str] = (),
    inputs_from: Sequence[UpstreamFiles] = (),
    items_file: str | None = None,
    end_records: str | None = None,
) -> str:
    """The script for one job, or one array chunk when ``indices`` (task indices, all at or
    above ``tag.part``) are given: Slurm's array task id is the task index minus ``tag.part``.
    ``items_file``: where an ``itemsFrom`` array's list lies on the cluster; ``end_records``:
    the folder the job writes its end record to (None: it writes none)."""
    if task.script is None and task.command is None:
        raise ValueError(f"task {task.name} runs nothing (an approval task is never submitted)")
    if resources.auto:
        raise ValueError(f"task {task.name}: {', '.join(resources.auto)} still auto (chosen before submitting)")
    slurm_indices = _slurm_indices(indices, tag.part)
    names = {stream: log_name(task=task.name, attempt=tag.attempt, part=tag.part, array=slurm_indices is not None,
                              stream=stream) for stream in Stream}

    directives: list[tuple[str, str | None]] = [
        ("job-name", job_name(workflow, task.name)),
        ("comment", format_tag(tag)),
        ("chdir", run_dir),
        ("output", posixpath.join(_literal_filename(log_dir), names[Stream.OUT])),
        ("error", posixpath.join(_literal_filename(log_dir), names[Stream.ERR])),
        ("partition", resources.partition),
        ("nodes", _text(resources.nodes)),
        ("cpus-per-task", _text(resources.cpus)),
        ("mem", resources.memory),
        ("time", resources.time),
        ("gres", resources.gres),
        ("account", resources.account),
        ("qos", resources.qos),
    ]
    if slurm_indices is not None:
        limit = f"%{parallelism}" if parallelism else ""
        directives.append(("array", compress(slurm_indices) + limit))
    if dependencies:
        directives.append(("dependency", "afterok:" + ":".join(_checked(dependencies, _DEPENDENCY, "job id"))))
        # A prerequisite that failed can never be satisfied: end this job instead of leaving it
        # pending forever (it then shows CANCELLED with reason DependencyNeverSatisfied).
        directives.append(("kill-on-invalid-dep", "yes"))
    if hold:
        directives.append(("hold", None))
    if exclude_nodes:
        directives.append(("exclude", ",".join(_checked(exclude_nodes, _NODE, "node name"))))

    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH --{name}" + ("" if value is None else f"={_header_value(value)}")
              for name, value in directives if name == "hold" or value is not None]
    lines += _body(workflow=workflow, namespace=namespace, task=task, tag=tag, indices=indices,
                   slurm_indices=slurm_indices, copies=_upstream_copies(inputs_from, run_dir=run_dir),
                   items_file=items_file, end_records=end_records)
    return "\n".join(lines) + "\n"


def _upstream_copies(inputs_from: Sequence[UpstreamFiles], *, run_dir: str) -> list[str]:
    if not inputs_from:
        return []
    return [_COPY_FUNCTION, *(
        f"reconciler_inputs_from {shlex.join([item.run_dir, item.task, item.pattern, run_dir])} || exit 1"
        for item in inputs_from
    )]


def _body(*, workflow: str, namespace: str, task: Task, tag: JobTag, indices: tuple[int, ...] | None,
          slurm_indices: list[int] | None, copies: list[str], items_file: str | None = None,
          end_records: str | None = None) -> list[str]:
    # The first line is a command, not a comment: sbatch stops reading directives there, so
    # nothing below it (a quoted value spanning lines included) can ever act as one.
    lines = [
        f"export RECONCILER_WORKFLOW={shlex.quote(workflow)}",
        f"export RECONCILER_NAMESPACE={shlex.quote(namespace)}",
        f"export RECONCILER_TASK={shlex.quote(task.name)}",
        f"export RECONCILER_ATTEMPT={tag.attempt}",
    ]
    if end_records is not None:
        lines += trap_lines(end_records)
    if indices is not None and slurm_indices is not None:
        lines.append(f"export TASK_INDEX=$(( SLURM_ARRAY_TASK_ID + {tag.part} ))")
        if task.array is not None and task.array.items is not None:
            items = task.array.items
            if max(indices) >= len(items):
                raise ValueError(f"task {task.name} has {len(items)} items, no index {max(indices)}")
            # Only this chunk's items, keyed by Slurm's array task id.
            entries = " ".join(f"[{slurm}]={shlex.quote(items[index])}"
                               for slurm, index in zip(slurm_indices, indices, strict=True))
            lines.append(f"RECONCILER_ITEMS=({entries})")
            lines.append('export TASK_ITEM="${RECONCILER_ITEMS[$SLURM_ARRAY_TASK_ID]}"')
            lines.append("unset RECONCILER_ITEMS")
        elif task.array is not None and task.array.items_from is not None:
            lines += _item_from_file(task, items_file)
    lines += [f"export {name}={shlex.quote(value)}" for name, value in task.env.items()]
    lines += copies
    lines.append("")
    if task.command is not None:
        lines.append(shlex.join(task.command))
    else:
        lines.append((task.script or "").rstrip("\n"))
    if any("\0" in line for line in lines):
        raise ValueError(f"task {task.name}: a NUL character cannot be passed through a shell script")
    return lines


def _item_from_file(task: Task, items_file: str | None) -> list[str]:
    """``TASK_ITEM`` from line ``TASK_INDEX + 1`` of the list the reconciler put on the cluster:
    a list of 30,000 items is read by each element, never written into every script."""
    if items_file is None:
        raise ValueError(f"task {task.name} takes its items from a file, and none was given")
    quoted = shlex.quote(items_file)
    return [
        f"[ -r {quoted} ] || {{ echo {shlex.quote(f'the item list of task {task.name} is missing: {items_file}')} >&2;"
        " exit 1; }",
        f'export TASK_ITEM="$(sed -n "$(( TASK_INDEX + 1 )){{p;q}}" {quoted})"',
    ]


def _slurm_indices(indices: tuple[int, ...] | None, part: int) -> list[int] | None:
    if indices is None:
        return None
    if not indices:
        raise ValueError("an array submission needs at least one index")
    if min(indices) < part:
        raise ValueError(f"task index {min(indices)} lies below the chunk's first index {part}")
    return [index - part for index in indices]


def _header_value(value: str) -> str:
    """``value`` as one sbatch directive argument: backslash before the characters sbatch's
    tokenizer treats specially, and double quotes around a value with whitespace."""
    if any(c in value for c in "\n\r\0"):
        raise ValueError(f"{value!r} cannot appear in an #SBATCH line")
    if "packjob" in value.lower():
        # sbatch (22.05) blanks out the first "packjob" anywhere on a directive line.
        raise ValueError(f"{value!r} contains 'packjob', which sbatch erases from #SBATCH lines")
    escaped = re.sub(r"""([\\"'#])""", r"\\\1", value)
    return f'"{escaped}"' if any(c.isspace() for c in value) else escaped


def _literal_filename(path: str) -> str:
    """A directory for --output with Slurm's filename patterns disarmed: "%" becomes "%%"; a
    backslash would switch off the %A/%a/%j patterns of the file name itself."""
    if "\\" in path:
        raise ValueError(f"log directory {path!r} contains a backslash")
    return path.replace("%", "%%")


def _checked(values: Sequence[str], pattern: re.Pattern[str], what: str) -> list[str]:
    for value in values:
        if not pattern.fullmatch(value):
            raise ValueError(f"invalid {what} {value!r}")
    return list(values)


def _text(value: int | str | None) -> str | None:
    return None if value is None else str(value)
