"""The Orchestrator and the Optimizer: which configurations are candidates, what each is predicted
to cost, and which one is chosen and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from reconciler.api.orchestration import AUTO
from reconciler.api.postfix import parse_expression
from reconciler.core.optimizer import (
    STRATEGIES,
    CheapestFirst,
    Optimizer,
    ScoringOptimizer,
    optimizer_for,
)
from reconciler.core.orchestrator import (
    Candidate,
    Choice,
    Declared,
    Offer,
    Reason,
    Request,
    Scored,
    StartQuery,
    billing_per_hour,
    candidates,
    orchestrate,
    start_queries,
)
from reconciler.core.runmodel import MemoryModel, QueueModel, RuntimeModel

DEBUG = Offer(cluster="a", partition="debug", default=True, max_time_seconds=3600, max_nodes=2,
              max_cpus_per_node=8, total_cpus=8, cost_per_core_hour=1.0)
BATCH = Offer(cluster="a", partition="batch", max_time_seconds=86400, max_nodes=8, max_cpus_per_node=32,
              total_cpus=256, cost_per_core_hour=0.5)
OTHER = Offer(cluster="b", partition="batch", max_time_seconds=86400, max_nodes=8, max_cpus_per_node=32,
              total_cpus=256, cost_per_core_hour=0.5)
# 60 s that no core count shortens and an hour that divides among the cores.
RUNTIME = RuntimeModel(a=60.0, b=3600.0, c=0.0, safety=1.1, samples=5)
MEMORY = MemoryModel(mib=1500.4, samples=5)
TIME = ScoringOptimizer(parse_expression("time"))


def choose(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None = RUNTIME,
           memory: MemoryModel | None = MEMORY, waits: QueueModel | None = None,
           starts: Mapping[StartQuery, float] | None = None, optimizer: Optimizer = TIME, runs: int = 5) -> Choice:
    return orchestrate(request, offers, runtime=runtime, memory=memory, waits=waits, starts=starts or {},
                       optimizer=optimizer, runs=runs)


def all_of(request: Request, offers: Sequence[Offer], *, runtime: RuntimeModel | None = RUNTIME,
           memory: MemoryModel | None = MEMORY) -> list[Candidate]:
    return candidates(request, offers, runtime=runtime, memory=memory)


def test_explicit_values_are_never_overridden():
    request = Request(kind="sim/solve", cpus=4, nodes=2, time_seconds=AUTO, memory_mib=2048.0, partition=AUTO)
    found = all_of(request, [DEBUG, BATCH])
    assert {(c.cpus, c.nodes, c.memory_mib) for c in found} == {(4, 2, 2048.0)}
    assert {c.partition for c in found} == {"debug", "batch"}
    choice = choose(request, [DEBUG, BATCH], optimizer=ScoringOptimizer(parse_expression("cpus nodes +")))
    assert (choice.cpus, choice.nodes, choice.memory) == (4, 2, "2G")


def test_auto_counts_come_from_the_partitions_limits():
    request = Request(kind="k", cpus=AUTO, nodes=AUTO)
    on_debug = all_of(request, [DEBUG])
    # 8 CPUs per node and 8 in all: 8 x 1, but not 8 x 2 or 4 x 4.
    assert sorted((c.cpus, c.nodes) for c in on_debug) == [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1)]
    on_batch = all_of(Request(kind="k", cpus=AUTO, nodes=AUTO, partition="batch"), [BATCH])
    assert {c.cpus for c in on_batch} == {1, 2, 4, 8, 16, 32}
    assert {c.nodes for c in on_batch} == {1, 2, 3, 4}  # no more than 4 unless the task lists more
    unlimited = all_of(request, [Offer(cluster="c", partition="p")])
    assert {c.cpus for c in unlimited} == {1, 2, 4, 8, 16, 32, 64}


def test_the_tasks_candidates_narrow_the_choice_and_still_respect_the_limits():
    request = Request(kind="k", cpus=AUTO, nodes=AUTO, partition=AUTO, cpus_candidates=(3, 6, 12),
                      nodes_candidates=(1, 6), partition_candidates=("debug",))
    found = all_of(request, [DEBUG, BATCH])
    assert sorted((c.partition, c.cpus, c.nodes) for c in found) == [("debug", 3, 1), ("debug", 6, 1)]


def test_auto_time_is_the_safe_prediction_with_a_margin_and_a_run_that_cannot_fit_is_left_out():
    request = Request(kind="k", cpus=AUTO, time_seconds=AUTO)
    found = {c.cpus: c.time_seconds for c in all_of(request, [DEBUG])}
    # 1 CPU: (60 + 3600) x 1.1 = 4026 s safe, over debug's hour.
    assert sorted(found) == [2, 4, 8]
    # 8 CPUs: (60 + 450) x 1.1 = 561 s, x 1.25 = 701.25 s, up to 12 minutes.
    assert found[8] == 720
    choice = choose(request, [DEBUG])
    assert choice.cpus == 8
    assert choice.time == "00:12:00"


def test_a_declared_time_rules_out_core_counts_too_slow_for_it():
    request = Request(kind="k", cpus=AUTO, time_seconds=1200, partition="batch")
    assert {c.cpus for c in all_of(request, [BATCH])} == {4, 8, 16, 32}
    # With the core count declared too, nothing the Orchestrator picks could help: it stays.
    assert [c.cpus for c in all_of(Request(kind="k", cpus=1, time_seconds=1200, partition="batch"), [BATCH])] == [1]


def test_a_declared_value_beyond_a_partitions_limits_excludes_that_partition():
    request = Request(kind="k", cpus=16, time_seconds=7200, partition=AUTO)
    assert [c.partition for c in all_of(request, [DEBUG, BATCH])] == ["batch"]


def test_without_a_partition_the_job_goes_to_the_default_one_within_its_limits():
    request = Request(kind="k", cpus=AUTO)
    found = all_of(request, [BATCH, DEBUG, OTHER])
    assert {(c.cluster, c.partition) for c in found} == {("a", None), ("b", None)}
    assert max(c.cpus or 0 for c in found if c.cluster == "a") == 8  # debug's limit
    # Cluster b names no default: no limits are known there.
    assert max(c.cpus or 0 for c in found if c.cluster == "b") == 64


def test_an_auto_partition_on_a_cluster_of_unknown_partitions_is_its_default_one():
    unknown = Offer(cluster="c", partition=None, default=True)
    found = all_of(Request(kind="k", cpus=8, partition=AUTO), [BATCH, unknown])
    assert [(c.cluster, c.partition) for c in found] == [("a", "batch"), ("c", None)]
    assert all_of(Request(kind="k", cpus=8, partition=AUTO, partition_candidates=("batch",)), [unknown]) == []


def test_auto_memory_comes_from_the_memory_model():
    choice = choose(Request(kind="k", memory_mib=AUTO), [DEBUG])
    assert choice.reason is Reason.CHOSEN
    assert choice.memory == "1501M"


def test_a_start_weighted_score_prefers_the_idle_cluster():
    request = Request(kind="k", cpus=8, time_seconds=AUTO, partition="batch")
    optimizer = ScoringOptimizer(parse_expression("start time +"))
    queries = start_queries(request, [BATCH, OTHER], runtime=RUNTIME, memory=MEMORY, optimizer=optimizer)
    assert queries == {StartQuery(cluster="a", partition="batch", nodes=None, cpus=8, time_seconds=720),
                       StartQuery(cluster="b", partition="batch", nodes=None, cpus=8, time_seconds=720)}
    starts = {query: (7200.0 if query.cluster == "a" else 0.0) for query in queries}
    choice = choose(request, [BATCH, OTHER], starts=starts, optimizer=optimizer)
    assert choice.cluster == "b"
    assert choice.chosen is not None
    assert choice.chosen.prediction.start_seconds == 0.0
    assert [scored.criteria["start"] for scored in choice.ranked] == [0.0, 2.0]
    busy_b = {query: (7200.0 if query.cluster == "b" else 60.0) for query in queries}
    assert choose(request, [BATCH, OTHER], starts=busy_b, optimizer=optimizer).cluster == "a"


def test_slurm_is_asked_only_when_the_score_reads_start():
    request = Request(kind="k", cpus=AUTO, partition="batch")
    for optimizer in (TIME, CheapestFirst()):
        assert not start_queries(request, [BATCH, OTHER], runtime=RUNTIME, memory=MEMORY, optimizer=optimizer)


def test_without_an_estimate_from_slurm_the_expected_wait_stands_in_for_start():
    waits = QueueModel(waits={("a", "batch"): 1800.0, ("b", "batch"): 60.0}, samples={})
    choice = choose(Request(kind="k", cpus=8, partition="batch"), [BATCH, OTHER], waits=waits,
                    optimizer=ScoringOptimizer(parse_expression("start")))
    assert choice.cluster == "b"
    assert choice.chosen is not None and choice.chosen.prediction.start_seconds is None


def test_a_long_queue_wait_makes_a_partition_lose_on_time():
    waits = QueueModel(waits={("a", "debug"): 7200.0, ("a", "batch"): 30.0}, samples={})
    choice = choose(Request(kind="k", cpus=8, partition=AUTO), [DEBUG, BATCH], waits=waits)
    assert choice.partition == "batch"
    assert choice.chosen is not None
    assert choice.chosen.criteria["time"] == pytest.approx((30.0 + 60.0 + 3600.0 / 8) / 3600)


def test_cost_prefers_the_cheaper_partition():
    request = Request(kind="k", cpus=8, partition=AUTO)
    choice = choose(request, [DEBUG, BATCH], optimizer=ScoringOptimizer(parse_expression("cost")))
    assert choice.partition == "batch"
    by_partition = {scored.candidate.partition: scored.prediction for scored in choice.ranked}
    run_hours = (60.0 + 3600.0 / 8) / 3600
    assert by_partition["batch"].core_hours == pytest.approx(8 * run_hours)
    assert by_partition["batch"].cost == pytest.approx(8 * run_hours * 0.5)
    assert by_partition["debug"].cost == pytest.approx(8 * run_hours * 1.0)
    assert choice.core_hours == pytest.approx(8 * run_hours)


def test_billed_core_hours_follow_the_billing_weights():
    offer = Offer(cluster="a", partition="fat", billing_weights={"CPU": 0.5, "Mem": 0.25, "Node": 2.0})
    candidate = Candidate(cluster="a", partition="fat", nodes=2, cpus=4, time_seconds=None, memory_mib=8192.0)
    # 0.5 x 8 cores + 0.25 x 8 GB x 2 nodes + 2 x 2 nodes
    assert billing_per_hour(offer, candidate) == pytest.approx(4.0 + 4.0 + 4.0)
    assert billing_per_hour(DEBUG, candidate) == 8.0
    choice = choose(Request(kind="k", cpus=4, nodes=2, memory_mib=8192.0, partition="fat"), [offer],
                    runtime=RuntimeModel(a=3600.0, b=0.0, c=0.0, safety=1.0, samples=3))
    assert choice.core_hours == pytest.approx(12.0)


def test_with_no_history_the_declared_values_are_used_and_said():
    request = Request(kind="sim/solve", cpus=AUTO, time_seconds=AUTO, fallback=Declared(cpus=2, time_seconds=1800))
    choice = choose(request, [DEBUG], runtime=None, runs=0)
    assert choice.reason is Reason.NO_HISTORY
    assert (choice.cpus, choice.time) == (2, "00:30:00")
    assert choice.message == ("no runs of kind sim/solve yet: cpus and time as declared; "
                              "2 CPUs, 00:30:00 on cluster a (default partition) scores 0.5, the best of 1")
    assert choice.chosen is not None and not choice.chosen.prediction.modelled


def test_with_too_little_history_the_declared_values_are_used_and_said():
    request = Request(kind="sim/solve", cpus=AUTO, memory_mib=AUTO, fallback=Declared(memory_mib=4096.0))
    choice = choose(request, [DEBUG], runtime=None, memory=None, runs=2)
    assert choice.reason is Reason.TOO_LITTLE_HISTORY
    assert (choice.cpus, choice.memory) == (None, "4G")
    assert choice.message.startswith("2 runs of kind sim/solve, too few to predict from (at least 3 successful "
                                     "ones needed): cpus and memory as declared; ")
    # Memory alone can lack its model when runs report no peak memory.
    only_memory = choose(Request(kind="k", cpus=AUTO, memory_mib=AUTO), [DEBUG], memory=None, runs=5)
    assert only_memory.reason is Reason.TOO_LITTLE_HISTORY
    assert only_memory.cpus == 8
    assert only_memory.memory is None


def test_with_no_history_the_partition_is_still_chosen_by_cost_and_start():
    request = Request(kind="k", cpus=4, time_seconds=1800, partition=AUTO)
    cost = choose(request, [DEBUG, BATCH], runtime=None, runs=0, optimizer=ScoringOptimizer(parse_expression("cost")))
    assert cost.reason is Reason.CHOSEN
    assert cost.partition == "batch"
    assert cost.chosen is not None
    # The run time is the limit: an upper bound.
    assert cost.chosen.prediction.run_seconds == 1800.0
    assert cost.chosen.prediction.core_hours == pytest.approx(2.0)


def test_nothing_auto_is_explicit():
    choice = choose(Request(kind="k", cpus=4, time_seconds=1800, partition="debug"), [DEBUG, BATCH])
    assert choice.reason is Reason.EXPLICIT
    assert choice.message == "nothing is auto: 4 CPUs, 00:30:00 on cluster a partition debug as declared"
    assert len(choice.ranked) == 1
    # The prediction is there for budgets all the same.
    assert choice.core_hours == pytest.approx(4 * (60.0 + 900.0) / 3600)
    # Slurm ends a run at its limit: it bills no more than that.
    short = choose(Request(kind="k", cpus=4, time_seconds=600, partition="debug"), [DEBUG])
    assert short.core_hours == pytest.approx(4 * 600 / 3600)
    # Two candidate clusters are a choice even when the task fixes everything.
    assert choose(Request(kind="k", cpus=4, partition="batch"), [BATCH, OTHER]).reason is Reason.CHOSEN


def test_when_nothing_fits_the_task_goes_as_declared():
    request = Request(kind="k", cpus=64, time_seconds=AUTO, partition=AUTO,
                      fallback=Declared(time_seconds=3600, partition="debug"))
    choice = choose(request, [DEBUG, BATCH])
    assert choice.reason is Reason.NO_CANDIDATE
    assert choice.chosen is None and choice.ranked == ()
    assert (choice.cluster, choice.partition, choice.cpus, choice.time) == (None, "debug", 64, "01:00:00")
    assert choice.message == ("5 runs of kind k: no configuration fits the limits of the 2 partitions offered "
                              "(clusters: a), so the task goes as declared")
    assert choice.core_hours is None


def test_the_chosen_message_says_what_and_why():
    choice = choose(Request(kind="sim/solve", cpus=AUTO, time_seconds=AUTO), [DEBUG])
    assert choice.message == ("5 runs of kind sim/solve: 8 CPUs, 00:12:00 on cluster a (default partition) "
                              "scores 0.142, the best of 3")
    assert [scored.candidate.cpus for scored in choice.ranked] == [8, 4, 2]
    assert choice.strategy == "score"


def test_cheapest_first_takes_the_lowest_cost_then_the_earliest_end():
    request = Request(kind="k", cpus=AUTO, partition=AUTO)
    # Perfect scaling: every CPU count costs the same, so the earliest end (most CPUs) wins.
    linear = RuntimeModel(a=0.0, b=3600.0, c=0.0, safety=1.0, samples=3)
    cheapest = optimizer_for("cheapest", parse_expression("time"))
    choice = choose(request, [DEBUG, BATCH], runtime=linear, optimizer=cheapest)
    assert (choice.partition, choice.cpus) == ("batch", 32)
    assert choice.strategy == "cheapest"
    assert choice.chosen is not None and choice.chosen.score == pytest.approx(0.5)
    # With a serial part, fewer CPUs bill less.
    assert choose(request, [DEBUG, BATCH], optimizer=CheapestFirst()).cpus == 1


def test_ties_fall_to_fewer_core_hours_then_fewer_cpus_then_names():
    request = Request(kind="k", cpus=AUTO, partition=AUTO)
    flat = ScoringOptimizer(parse_expression("1"))
    assert choose(request, [BATCH, OTHER], optimizer=flat).cpus == 1
    perfect = RuntimeModel(a=0.0, b=3600.0, c=0.0, safety=1.0, samples=3)
    choice = choose(Request(kind="k", cpus=AUTO, partition="batch"), [OTHER, BATCH], runtime=perfect, optimizer=flat)
    assert (choice.cluster, choice.cpus) == ("a", 1)


def test_a_new_strategy_plugs_in_without_touching_the_loop():
    @dataclass(frozen=True)
    class MostCpus:
        name: str = "most-cpus"
        criteria: frozenset[str] = frozenset({"cpus"})

        def score(self, values: Mapping[str, float]) -> float:
            return -values["cpus"]

        def rank(self, scored: Sequence[Scored]) -> list[Scored]:
            return sorted(scored, key=lambda item: item.score)

    choice = choose(Request(kind="k", cpus=AUTO), [DEBUG], optimizer=MostCpus())
    assert (choice.strategy, choice.cpus) == ("most-cpus", 8)


def test_the_strategies_are_named_for_validation():
    assert STRATEGIES == ("score", "cheapest")
    expression = parse_expression("cost")
    assert optimizer_for("score", expression) == ScoringOptimizer(expression)
    assert optimizer_for("score", expression).criteria == {"cost"}
    with pytest.raises(ValueError, match="unknown strategy 'fastest'; the strategies are score, cheapest"):
        optimizer_for("fastest", expression)
