"""A task's parallelism caps the whole task, however many MaxArraySize chunks it is cut into."""

from dataclasses import dataclass, field

from reconciler.api import TaskPhase
from reconciler.core.plan import Submit
from tests.unit.reconcile_world import job, later, plan, resolved, view

TILES = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: tiles}
spec:
  tasks:
    - {name: t, script: "true", array: {count: 30, parallelism: 3}}
"""


def submits(result) -> list[Submit]:
    return [a for a in result.actions if isinstance(a, Submit)]


@dataclass
class ArrayJob:
    """One submitted chunk as Slurm runs it: at most ``cap`` of its elements at once."""

    job_id: str
    submit: Submit
    pending: list[int]
    running: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)

    @property
    def cap(self) -> int:
        assert self.submit.parallelism is not None
        return self.submit.parallelism

    @property
    def live(self) -> bool:
        return bool(self.pending or self.running)

    def schedule(self) -> None:
        while self.pending and len(self.running) < self.cap:
            self.running.append(self.pending.pop(0))

    def finish(self) -> None:
        self.done += self.running
        self.running = []

    def observed(self, wf):
        states = [(i, TaskPhase.SUBMITTED, None) for i in self.pending]
        states += [(i, TaskPhase.RUNNING, None) for i in self.running]
        states += [(i, TaskPhase.SUCCEEDED, 0) for i in self.done]
        return [job(wf, "t", attempt=self.submit.key.attempt, part=self.submit.key.part, job_id=self.job_id,
                    indices=[i], phase=phase, exit_code=code) for i, phase, code in states]


def test_one_chunk_of_a_throttled_array_is_live_at_a_time():
    wf = resolved(TILES)
    first = submits(plan(wf, cluster_view=view(max_array_size=7)))
    assert [(s.indices, s.parallelism) for s in first] == [((0, 1, 2, 3, 4, 5, 6), 3)]
    chunk = ArrayJob("500", first[0], pending=list(first[0].indices or ()))
    chunk.schedule()
    while chunk.live:  # as long as one of its elements is pending or running, the next chunk waits
        assert submits(plan(wf, observed=chunk.observed(wf), cluster_view=view(max_array_size=7))) == []
        chunk.finish()
        chunk.schedule()
    nxt = submits(plan(wf, observed=chunk.observed(wf), cluster_view=view(max_array_size=7)))
    assert [(s.indices, s.parallelism) for s in nxt] == [((7, 8, 9, 10, 11, 12, 13), 3)]


def test_the_caps_of_live_and_planned_chunks_never_exceed_the_parallelism():
    wf = resolved(TILES)
    jobs: list[ArrayJob] = []
    most_running = 0
    for tick in range(60):
        observed = [o for j in jobs for o in j.observed(wf)]
        result = plan(wf, observed=observed, now=later(tick), cluster_view=view(max_array_size=7))
        if result.status.tasks["t"].phase is TaskPhase.SUCCEEDED:
            break
        new = submits(result)
        caps = [j.cap for j in jobs if j.live] + [s.parallelism or 0 for s in new]
        assert sum(caps) <= 3, (tick, caps)
        jobs += [ArrayJob(str(600 + len(jobs) + n), s, pending=list(s.indices or ())) for n, s in enumerate(new)]
        for j in jobs:
            j.schedule()
        running = sum(len(j.running) for j in jobs)
        assert running <= 3
        most_running = max(most_running, running)
        for j in jobs:
            j.finish()
    else:
        raise AssertionError("the task never finished")
    assert sorted(i for j in jobs for i in j.done) == list(range(30))
    assert most_running == 3
    # Throughput: ten rounds of three, and one more for each of the five chunks' short last round.
    assert tick <= 30 // 3 + 5 + 1
