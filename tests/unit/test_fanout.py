"""Arrays sized at run time: the model, what a size file may say, the planner before and after the
size is known, the store's readings, the job script, and reading the files at the edge."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.api import (
    ArraySpec,
    Capacity,
    SlurmCluster,
    TaskPhase,
    TaskStatus,
    Workflow,
    WorkflowPhase,
    WorkflowStatus,
)
from reconciler.cli.submit import submit_workflow
from reconciler.core.fanout import (
    MAX_ELEMENTS,
    MAX_FILE_BYTES,
    SIZE_INVALID,
    SIZE_UNKNOWN,
    InvalidSize,
    KnownSize,
    read_size,
)
from reconciler.core.plan import Submit
from reconciler.core.planner import DesiredWorkflow, plan_cluster, task_fingerprints
from reconciler.engine.fanout import array_sizes, items_file, items_path
from reconciler.slurm.client import SlurmClient
from reconciler.slurm.script import render_script
from reconciler.slurm.tags import JobTag
from reconciler.slurm.transport import LocalTransport, TransportError
from reconciler.store.database import Store
from reconciler.store.schema import MIGRATIONS
from tests.fakes import FakeSlurm
from tests.unit.reconcile_world import T0, job, resolved, view

TILES = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: slide}
spec:
  tasks:
    - {name: tile, script: "echo 7 > count.txt"}
    - name: segment
      dependsOn: [tile]
      array: {countFrom: {task: tile, file: count.txt}, parallelism: 2}
      script: echo $TASK_INDEX
    - {name: mosaic, dependsOn: [segment], script: "true"}
"""
ITEMS = TILES.replace("countFrom: {task: tile, file: count.txt}", "itemsFrom: {task: tile, file: lists/tiles.txt}")
SOURCE = ArraySpec.model_validate({"countFrom": {"task": "tile", "file": "count.txt"}}).source
assert SOURCE is not None


def plan_with(wf, *, sizes=None, observed=(), cluster_view=None):
    desired = DesiredWorkflow(uid="uid-1", resolved=wf, generation=1, observed=tuple(observed),
                              array_sizes=sizes or {})
    [result] = plan_cluster([desired], view=cluster_view or view(), capacity=Capacity(), now=T0)
    return result


def submits(result) -> list[Submit]:
    return [a for a in result.actions if isinstance(a, Submit)]


def tile_done(wf):
    return job(wf, "tile", phase=TaskPhase.SUCCEEDED, exit_code=0)


# -- the model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    {"count": 3, "countFrom": {"task": "tile", "file": "n"}},
    {"countFrom": {"task": "tile", "file": "n"}, "itemsFrom": {"task": "tile", "file": "l"}},
    {"items": ["a"], "itemsFrom": {"task": "tile", "file": "l"}},
    {"parallelism": 2},
])
def test_an_array_takes_exactly_one_of_its_four_sizes(array):
    with pytest.raises(ValidationError, match="exactly one of count, items, countFrom or itemsFrom"):
        ArraySpec.model_validate(array)


@pytest.mark.parametrize("file", ["../count.txt", "/abs/count.txt", "a/./b", "", "a b", "$(x)"])
def test_the_size_file_stays_inside_the_writers_run_directory(file):
    with pytest.raises(ValidationError):
        ArraySpec.model_validate({"countFrom": {"task": "tile", "file": file}})


def test_the_writer_of_the_size_file_must_be_a_prerequisite():
    document = {"metadata": {"name": "w"}, "spec": {"tasks": [
        {"name": "tile", "script": "true"},
        {"name": "segment", "script": "true", "array": {"countFrom": {"task": "tile", "file": "count.txt"}}}]}}
    with pytest.raises(ValidationError, match="array size from task 'tile': add 'tile' to dependsOn"):
        Workflow.model_validate(document)
    document["spec"]["tasks"][1]["dependsOn"] = ["tile"]
    task = Workflow.model_validate(document).spec.tasks[1]
    assert task.array is not None and task.array.source == SOURCE
    with pytest.raises(ValueError, match="no size in its manifest"):
        _ = task.array.size


# -- what a size file may say ---------------------------------------------------------------------

def count(text: str):
    return read_size(SOURCE, items=False, text=text, size_bytes=len(text.encode()), path="/w/tile/count.txt")


def items(text: str):
    return read_size(SOURCE, items=True, text=text, size_bytes=len(text.encode()), path="/w/tile/count.txt")


@pytest.mark.parametrize(("text", "size"), [("7\n", 7), (" 30000 \n\n", 30000), ("1", 1),
                                            (str(MAX_ELEMENTS), MAX_ELEMENTS)])
def test_a_count_file_holds_one_positive_integer(text, size):
    assert count(text) == KnownSize(count=size)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "count.txt of task tile (/w/tile/count.txt) is empty: expected a positive integer"),
    ("seven\n", "line 1: 'seven' is not a positive integer"),
    ("-3", "line 1: '-3' is not a positive integer"),
    ("0\n", "line 1: 0 is not between 1 and 1,000,000"),
    (str(MAX_ELEMENTS + 1), "line 1: 1000001 is not between 1 and 1,000,000"),
    ("7\n8\n", "line 2: expected one number, found more lines"),
])
def test_a_malformed_count_names_the_file_the_line_and_the_problem(text, problem):
    found = count(text)
    assert isinstance(found, InvalidSize)
    assert problem in found.message


def test_an_item_list_is_kept_whole_with_its_digest():
    found = items("tile-0.tif\r\ntile 1.tif\n'quoted' $x\n")
    normalised = "tile-0.tif\ntile 1.tif\n'quoted' $x\n"
    assert found == KnownSize(count=3, items=normalised, items_digest=hashlib.sha256(normalised.encode()).hexdigest())
    assert items("a\nb") == items("a\nb\n")


@pytest.mark.parametrize(("text", "problem"), [
    ("", "is empty: expected one item per line"),
    ("a\n\nb\n", "line 2: is empty (one item per line, no blank lines)"),
    ("a\n" + "x" * 4097 + "\n", "line 2: is longer than 4096 characters"),
    ("a\nb\ufffd\n", "line 2: is not UTF-8 text"),
    ("a\n" * (MAX_ELEMENTS + 1), "holds 1,000,001 lines, more than 1,000,000"),
])
def test_a_malformed_item_list_names_the_line_and_the_problem(text, problem):
    found = items(text)
    assert isinstance(found, InvalidSize)
    assert problem in found.message


def test_a_file_larger_than_the_bound_is_refused_by_its_size():
    found = read_size(SOURCE, items=True, text="a\n", size_bytes=MAX_FILE_BYTES + 1, path="/w/t/x")
    assert found == InvalidSize("count.txt of task tile (/w/t/x) is larger than 8 MiB")


# -- the planner ----------------------------------------------------------------------------------

def test_before_its_size_is_known_the_array_and_what_follows_wait_without_going_ahead():
    wf = resolved(TILES)
    # While tile runs, a static array would go out behind it with afterok; this one cannot.
    running = job(wf, "tile", phase=TaskPhase.RUNNING)
    for observed in ([running], [tile_done(wf)]):
        result = plan_with(wf, observed=observed)
        assert submits(result) == []
        segment = result.status.tasks["segment"]
        assert (segment.phase, segment.reason) == (TaskPhase.WAITING, SIZE_UNKNOWN)
        assert "count.txt of task tile" in (segment.message or "")
        assert segment.array is None
        assert result.status.tasks["mosaic"].phase is TaskPhase.WAITING


def test_a_known_size_is_planned_like_a_static_array_of_that_size():
    wf = resolved(TILES)
    result = plan_with(wf, observed=[tile_done(wf)], sizes={"segment": KnownSize(count=7)},
                       cluster_view=view(max_array_size=5))
    [first] = submits(result)  # parallelism: one chunk of the two at a time
    assert first.indices == (0, 1, 2, 3, 4) and first.parallelism == 2
    assert result.status.tasks["segment"].array is not None
    assert result.status.tasks["segment"].array.total == 7

    static = resolved(TILES.replace("countFrom: {task: tile, file: count.txt}", "count: 7"))
    same = plan_with(static, observed=[tile_done(static)], cluster_view=view(max_array_size=5))
    assert [s.indices for s in submits(same)] == [s.indices for s in submits(result)]


def test_elements_of_a_known_size_succeed_and_the_fan_in_follows():
    wf = resolved(TILES)
    segment = job(wf, "segment", phase=TaskPhase.SUCCEEDED, exit_code=0, indices=range(7), job_id="300")
    result = plan_with(wf, observed=[tile_done(wf), segment], sizes={"segment": KnownSize(count=7)})
    assert result.status.tasks["segment"].phase is TaskPhase.SUCCEEDED
    assert [s.key.task for s in submits(result)] == ["mosaic"]


def test_an_invalid_size_file_fails_the_task_and_the_workflow_with_its_reason():
    wf = resolved(TILES)
    problem = "count.txt of task tile (/w/default/slide/tile/count.txt), line 1: 'seven' is not a positive integer"
    result = plan_with(wf, observed=[tile_done(wf)], sizes={"segment": InvalidSize(problem)})
    segment = result.status.tasks["segment"]
    assert (segment.phase, segment.reason, segment.message) == (TaskPhase.FAILED, SIZE_INVALID, problem)
    assert result.status.tasks["mosaic"].phase is TaskPhase.SKIPPED
    assert result.status.phase is WorkflowPhase.FAILED
    assert submits(result) == []


def test_a_failed_writer_skips_the_array():
    wf = resolved(TILES)
    failed = job(wf, "tile", phase=TaskPhase.FAILED, exit_code=1)
    segment = plan_with(wf, observed=[failed]).status.tasks["segment"]
    assert segment.phase is TaskPhase.SKIPPED


# -- the store ------------------------------------------------------------------------------------

def test_readings_are_kept_per_writer_fingerprint_and_the_first_one_wins(tmp_path: Path):
    assert 4 in MIGRATIONS
    with Store(tmp_path / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="slide", resource=resolved(ITEMS).workflow.to_wire(),
                                    revision="r1", source_file="plan.yaml", now=T0).uid
        listed = items("a\nb\nc\n")
        assert isinstance(listed, KnownSize) and listed.items_digest is not None
        kept = store.record_array_size(uid, "segment", upstream_fingerprint="fp1", size=listed, now=T0)
        assert kept == KnownSize(count=3, items_digest=listed.items_digest)
        # Read again for the same writer (a second loop, say): the first reading stays.
        again = store.record_array_size(uid, "segment", upstream_fingerprint="fp1", size=KnownSize(count=9), now=T0)
        assert again == kept
        store.record_array_size(uid, "segment", upstream_fingerprint="fp2", size=InvalidSize("bad"), now=T0)
        assert store.array_sizes(uid, {"segment": "fp1"}) == {"segment": kept}
        assert store.array_sizes(uid, {"segment": "fp2"}) == {"segment": InvalidSize("bad")}
        assert store.array_sizes(uid, {"segment": "fp3"}) == {}
        assert store.array_items(uid, "segment", items_digest=listed.items_digest) == "a\nb\nc\n"


# -- the job script -------------------------------------------------------------------------------

def test_an_items_from_array_reads_its_line_from_the_list_on_the_cluster(tmp_path: Path):
    task = resolved(ITEMS).tasks["segment"]
    script = render_script(workflow="slide", namespace="default", task=task,
                           tag=JobTag(uid="u", task="segment", attempt=1, part=2, fingerprint="f"),
                           resources=task.resources, run_dir="/w/segment", log_dir="/w/logs", indices=(2, 3, 4),
                           parallelism=2, items_file="/w/.reconciler/items/abc")
    assert "RECONCILER_ITEMS" not in script
    assert 'export TASK_ITEM="$(sed -n "$(( TASK_INDEX + 1 )){p;q}" /w/.reconciler/items/abc)"' in script
    with pytest.raises(ValueError, match="takes its items from a file"):
        render_script(workflow="slide", namespace="default", task=task,
                      tag=JobTag(uid="u", task="segment", attempt=1, part=0, fingerprint="f"),
                      resources=task.resources, run_dir="/w/segment", log_dir="/w/logs", indices=(0,),
                      parallelism=None)


def test_one_shot_submit_stops_before_an_array_sized_at_run_time():
    wf = resolved(TILES)
    fake = FakeSlurm()
    client = SlurmClient(wf.cluster, fake)
    submission = submit_workflow(wf, client)
    assert list(submission.jobs) == ["tile"]
    assert "sized at run time by count.txt of task tile" in submission.blocked["segment"]
    assert submission.blocked["mosaic"] == "waits for segment"


# -- reading the files at the edge ----------------------------------------------------------------

def cluster(workdir: Path) -> SlurmCluster:
    return SlurmCluster.model_validate({"metadata": {"name": "dev"}, "spec": {"workdir": str(workdir)}})


def stored_after_tile(store: Store, wf, *, phase: TaskPhase = TaskPhase.SUCCEEDED, fingerprint: str | None = None):
    stored = store.upsert_workflow(namespace="default", name="slide", resource=wf.workflow.to_wire(), revision="r1",
                                   source_file="plan.yaml", now=T0)
    fps = task_fingerprints(DesiredWorkflow(uid=stored.uid, resolved=wf, generation=1))
    store.save_status(stored.uid, WorkflowStatus(tasks={"tile": TaskStatus(phase=phase,
                                                                           fingerprint=fingerprint or fps["tile"])}))
    refreshed = store.workflow_by_uid(stored.uid)
    assert refreshed is not None
    return refreshed, fps


def test_the_size_file_is_read_once_its_writer_succeeded_and_recorded(tmp_path: Path):
    wf = resolved(ITEMS)
    run_dir = tmp_path / "cluster" / "default" / "slide" / "tile"
    (run_dir / "lists").mkdir(parents=True)
    (run_dir / "lists" / "tiles.txt").write_text("t0.tif\nt1.tif\n")
    client = SlurmClient(cluster(tmp_path / "cluster"), LocalTransport())
    with Store(tmp_path / "state.db") as store:
        stored, fps = stored_after_tile(store, wf, phase=TaskPhase.RUNNING)
        assert array_sizes(client, store, stored=stored, resolved=wf, fingerprints=fps, now=T0) == {}
        stored, fps = stored_after_tile(store, wf)
        sizes = array_sizes(client, store, stored=stored, resolved=wf, fingerprints=fps, now=T0)
        size = sizes["segment"]
        assert isinstance(size, KnownSize) and size.count == 2 and size.items_digest is not None
        # Recorded: a changed file is not read again for the same run of its writer.
        (run_dir / "lists" / "tiles.txt").write_text("changed\n")
        assert array_sizes(client, store, stored=stored, resolved=wf, fingerprints=fps, now=T0) == sizes
        assert array_sizes(None, store, stored=stored, resolved=wf, fingerprints=fps, now=T0) == sizes

        path = items_file(client, store, uid=stored.uid, task=wf.tasks["segment"], size=size)
        assert path == items_path(str(tmp_path / "cluster"), size.items_digest)
        assert Path(path).read_text() == "t0.tif\nt1.tif\n"
        assert items_file(client, store, uid=stored.uid, task=wf.tasks["tile"], size=None) is None


def test_a_missing_size_file_is_an_invalid_size(tmp_path: Path):
    wf = resolved(TILES)
    client = SlurmClient(cluster(tmp_path / "cluster"), LocalTransport())
    with Store(tmp_path / "state.db") as store:
        stored, fps = stored_after_tile(store, wf)
        size = array_sizes(client, store, stored=stored, resolved=wf, fingerprints=fps, now=T0)["segment"]
    assert isinstance(size, InvalidSize)
    assert size.message.startswith("count.txt of task tile cannot be read: head: cannot open")


def test_an_unreachable_cluster_leaves_the_size_unknown_until_a_later_tick(tmp_path: Path):
    wf = resolved(TILES)
    fake = FakeSlurm()
    fake.fail("head", TransportError("connection reset"))
    with Store(tmp_path / "state.db") as store:
        stored, fps = stored_after_tile(store, wf)
        client = SlurmClient(wf.cluster, fake)
        assert array_sizes(client, store, stored=stored, resolved=wf, fingerprints=fps, now=T0) == {}
        assert store.array_sizes(stored.uid, {"segment": fps["tile"]}) == {}
