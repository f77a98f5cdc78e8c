"""What a value must be like to reach a job: the limits of sbatch's #SBATCH lines, of a bash
script and of the output fetch, stated where a manifest is validated.

Called by the field validators of the resource models (``reconciler.api.workflow``,
``reconciler.api.cluster``), so ``reconciler validate`` and the loop's ``Ready=False`` report
these with file and line instead of the submission or the fetch failing later. Each function
returns the problem as a sentence, or None. ``reconciler.slurm.script`` and the transports
keep their own checks as a safety net for values that are known only at run time.
"""

from __future__ import annotations

# sbatch (22.05) blanks out the first "packjob" anywhere on a directive line, in any case.
SBATCH_ERASED_WORD = "packjob"


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot stand in an #SBATCH line (a job name, a directory, a partition)."""
    if any(c in value for c in "\n\r\0"):
        return "must not contain a line break or NUL: it goes into an #SBATCH line"
    if SBATCH_ERASED_WORD in value.lower():
        return f"must not contain {SBATCH_ERASED_WORD!r}: sbatch erases that word from #SBATCH lines"
    return None


def shell_problem(value: str) -> str | None:
    """Why ``value`` cannot be passed through the job's bash script."""
    if "\0" in value:
        return "must not contain a NUL character: it cannot be passed through a shell script"
    return None


def output_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot name files of a task's run directory to fetch."""
    if "\0" in pattern:
        return f"output pattern {pattern!r} contains a NUL character"
    if pattern.startswith("/"):
        return f"output pattern {pattern!r} is absolute; patterns are relative to the task's run directory"
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if ".." in parts:
        return f"output pattern {pattern!r} leaves the task's run directory ('..')"
    if not parts:
        return f"output pattern {pattern!r} names no file"
    return None


def cluster_workdir_problem(workdir: str) -> str | None:
    """Why ``workdir`` cannot hold a cluster's run directories and job logs."""
    if not workdir.startswith("/"):
        return f"workdir {workdir!r} must be an absolute path on the cluster"
    if "\\" in workdir:
        # The log directory goes into --output, where a backslash switches off %j and %A.
        return f"workdir {workdir!r} must not contain a backslash"
    problem = header_problem(workdir)
    return f"workdir {problem}" if problem else None
