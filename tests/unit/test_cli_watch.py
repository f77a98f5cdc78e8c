"""``get workflows --watch`` and ``describe workflow --watch``: the progress bar, the decision to
draw again (only on a change of state, never of the clock), and the real command in its own
process against a store the test changes, ended with Ctrl-C. Also ``suspend``, ``resume`` and
``rerun``: which of them act, and the edit the others print."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.api import TaskPhase, WorkflowStatus
from reconciler.api.workflow import ArrayStatus, TaskStatus
from reconciler.cli.main import main
from reconciler.cli.progress import Progress, element_progress, progress_bar
from reconciler.cli.watch import CLEAR, View, description_view, frame, workflows_view
from reconciler.core.selectors import parse_selector
from reconciler.store.database import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _status(*, fan_done: int, prep: TaskPhase = TaskPhase.SUCCEEDED) -> WorkflowStatus:
    return WorkflowStatus(progress="1/3", tasks={
        "prep": TaskStatus(phase=prep),
        "fan": TaskStatus(phase=TaskPhase.RUNNING, array=ArrayStatus(
            total=100, counts={"Succeeded": fan_done, "Running": 100 - fan_done})),
        "report": TaskStatus(phase=TaskPhase.WAITING)})


def test_progress_counts_array_elements_over_all_tasks():
    assert element_progress(_status(fan_done=40)) == Progress(done=41, total=102)
    assert element_progress(None) == Progress(done=0, total=0)


@pytest.mark.parametrize(("done", "total", "bar"), [
    (0, 10, "[--------------------]   0% 0/10"),
    (5, 10, "[##########----------]  50% 5/10"),
    (2999, 3000, "[###################-]  99% 2999/3000"),  # full only when all are done
    (3000, 3000, "[####################] 100% 3000/3000"),
    (0, 0, "[--------------------]   0% 0/0"),
])
def test_progress_bar(done, total, bar):
    assert progress_bar(Progress(done=done, total=total)) == bar


def test_a_view_is_drawn_again_only_when_its_state_changed():
    view = View(state="a", draw=lambda now: f"drawn at {now:%S}\n")
    assert frame(None, view, now=NOW, terminal=True) == CLEAR + "drawn at 00\n"
    assert frame("a", view, now=NOW + timedelta(seconds=5), terminal=True) is None
    assert frame("b", view, now=NOW, terminal=True) == CLEAR + "drawn at 00\n"
    # Into a pipe: drawings follow one another, a blank line apart, with no terminal codes.
    assert frame(None, view, now=NOW, terminal=False) == "drawn at 00\n"
    assert frame("b", view, now=NOW, terminal=False) == "\ndrawn at 00\n"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    with Store(directory / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="scan", revision="abc", source_file="plans/scan.yaml",
                                    now=NOW, resource={"metadata": {"name": "scan"}, "spec": {"tasks": [
                                        {"name": "prep", "command": ["true"]}]}}).uid
        store.save_status(uid, _status(fan_done=40))
    return directory


def test_the_state_of_a_view_changes_with_the_store_not_the_clock(state: Path):
    everything = parse_selector(None)
    assert everything is not None
    with Store(state / "state.db") as store:
        [stored] = store.active_workflows()
        first = workflows_view(store, everything, wide=False)
        described = description_view(store, stored.uid)
        assert workflows_view(store, everything, wide=False).state == first.state
        assert description_view(store, stored.uid).state == described.state
        table = first.draw(NOW)
        assert table.splitlines()[0].split() == ["NAMESPACE", "NAME", "PHASE", "PROGRESS", "ELEMENTS", "CORE-HOURS",
                                                 "AGE"]
        assert "[########------------]  40% 41/102" in table
        assert described.draw(NOW).startswith("default/scan  [########------------]  40% 41/102 elements")
        assert "Tasks:" in described.draw(NOW)
        store.save_status(stored.uid, _status(fan_done=41))
        assert workflows_view(store, everything, wide=False).state != first.state
        assert description_view(store, stored.uid).state != described.state


def test_without_watch_the_table_has_no_bar(state: Path, capsys):
    assert main(["get", "workflows", "--state-dir", str(state)]) == 0
    assert "ELEMENTS" not in capsys.readouterr().out


def test_watch_refuses_what_it_cannot_draw(state: Path, capsys):
    assert main(["get", "workflows", "--watch", "-o", "json", "--state-dir", str(state)]) == 2
    assert "use -o table or -o wide" in capsys.readouterr().err
    assert main(["get", "tasks", "--watch", "--state-dir", str(state)]) == 2
    assert main(["get", "workflow", "scan", "--watch", "--state-dir", str(state)]) == 2
    assert "describe workflow NAME --watch" in capsys.readouterr().err


def _read_drawing(process: subprocess.Popen[str], *, containing: str, timeout: float = 20.0) -> str:
    """Lines from the watch until one contains ``containing``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if containing in line:
            return "".join(seen)
    raise AssertionError(f"no line with {containing!r} in {''.join(seen)!r}")


@pytest.mark.timeout(60)  # a watch that never draws would block the read below
@pytest.mark.parametrize("command", [["get", "workflows", "--watch"], ["describe", "workflow", "scan", "-w"]])
def test_the_watch_draws_each_change_and_ends_cleanly_on_ctrl_c(state: Path, command: list[str]):
    process = subprocess.Popen([sys.executable, "-m", "reconciler", *command, "--state-dir", str(state)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _read_drawing(process, containing="40% 41/102")
        with Store(state / "state.db") as store:
            [stored] = store.active_workflows()
            store.save_status(stored.uid, _status(fan_done=100))
        _read_drawing(process, containing="99% 101/102")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None and "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- suspend, resume, rerun ---------------------------------------------------------------------


def _stored(state: Path, *, revision: str | None, source_file: str, suspend: bool = False) -> None:
    with Store(state / "state.db") as store:
        store.upsert_workflow(namespace="default", name="other", revision=revision, source_file=source_file, now=NOW,
                              resource={"metadata": {"name": "other"}, "spec": {"suspend": suspend, "tasks": []}})


def test_suspend_in_git_prints_the_edit_and_the_git_commands_and_changes_nothing(state: Path, capsys):
    with Store(state / "state.db") as store:
        before = store.workflow("default", "scan")
    assert main(["suspend", "scan", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("workflow.hpc.reconciler.dev/scan is declared in plans/scan.yaml: the source the loop reads "
                          "is the truth for its desired state, so nothing was changed here.")
    assert "\n  spec:\n    suspend: true\n" in out
    assert ("  git add plans/scan.yaml\n  git commit -m 'Suspend workflow scan'\n  git push\n") in out
    assert "holds the pending jobs (scontrol hold)" in out
    with Store(state / "state.db") as store:
        assert store.workflow("default", "scan") == before


def test_resume_of_a_folder_source_and_of_a_kubernetes_workflow(state: Path, capsys):
    _stored(state, revision=None, source_file="plans/other.yaml", suspend=True)
    assert main(["resume", "other", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert "\n  spec:\n    suspend: false\n" in out and "git" not in out
    _stored(state, revision=None, source_file="workflow default/other", suspend=True)
    assert main(["resume", "other", "--state-dir", str(state)]) == 1
    assert ("kubectl patch workflow other -n default --type merge -p '{\"spec\":{\"suspend\":false}}'"
            in capsys.readouterr().out)


def test_suspend_of_a_suspended_workflow_has_nothing_to_do(state: Path, capsys):
    _stored(state, revision="abc", source_file="plans/other.yaml", suspend=True)
    assert main(["suspend", "other", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == "workflow.hpc.reconciler.dev/other is already suspended: nothing to change\n"
    assert main(["suspend", "missing", "--state-dir", str(state)]) == 1
    assert 'workflow "missing" not found' in capsys.readouterr().err


def test_rerun_acts_on_a_failed_task_and_refuses_a_succeeded_one(state: Path, capsys):
    with Store(state / "state.db") as store:
        [stored] = store.active_workflows()
        store.save_status(stored.uid, _status(fan_done=40, prep=TaskPhase.FAILED).model_copy(
            update={"tasks": {**_status(fan_done=40).tasks, "prep": TaskStatus(phase=TaskPhase.FAILED, attempts=2)}}))
    assert main(["rerun", "scan", "prep", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == ("workflow.hpc.reconciler.dev/scan task prep rerun "
                                       "(a new attempt after attempt 0)\n")
    with Store(state / "state.db") as store:
        [retry] = store.requests(stored.uid).retries
    assert retry.task == "prep"
    with Store(state / "state.db") as store:
        store.save_status(stored.uid, _status(fan_done=40))
    assert main(["rerun", "scan", "prep", "--state-dir", str(state)]) == 1
    assert "task prep Succeeded: its result is what its spec and inputs give" in capsys.readouterr().err
