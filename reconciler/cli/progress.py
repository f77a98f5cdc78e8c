"""How far a workflow has come, counted in elements: a plain task is one element, an array as
many as it has. Pure; ``reconciler get workflows --watch`` draws it as a bar per workflow, and
``describe workflow --watch`` in its title line."""

from __future__ import annotations

from dataclasses import dataclass

from ..api import TaskPhase, WorkflowStatus

BAR_WIDTH = 20


@dataclass(frozen=True)
class Progress:
    done: int  # elements that succeeded
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def element_progress(status: WorkflowStatus | None) -> Progress:
    """Succeeded elements out of all, over every task the status names (an array whose size
    is not known yet counts as one)."""
    done = total = 0
    for task in (status.tasks.values() if status else ()):
        if task.array is not None:
            total += task.array.total
            done += task.array.counts.get(TaskPhase.SUCCEEDED.value, 0)
        else:
            total += 1
            done += task.phase is TaskPhase.SUCCEEDED
    return Progress(done=done, total=total)


def progress_bar(progress: Progress, *, width: int = BAR_WIDTH) -> str:
    """``[########------------]  40% 1200/3000``: full only when every element is done."""
    filled = min(width, int(progress.fraction * width))
    if progress.done < progress.total:
        filled = min(filled, width - 1)
    percent = int(progress.fraction * 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:3d}% {progress.done}/{progress.total}"
