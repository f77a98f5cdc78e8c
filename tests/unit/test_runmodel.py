"""The models fitted on run history, on synthetic histories whose answers are known."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.history import RunSample
from reconciler.core.runmodel import (
    MIN_SAMPLES,
    RECENT_RUNS,
    MemoryModel,
    QueueModel,
    RuntimeFloor,
    RuntimeModel,
    fit_memory,
    fit_queue,
    fit_runtime,
    time_request,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Small deterministic noise, mean one: what runs of one configuration scatter by.
NOISE = (1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97)


def run(*, cpus: int = 1, nodes: int = 1, size: float | None = None, seconds: float = 600.0,
        state: str = "COMPLETED", limit: int | None = 3600, memory: float | None = 1024.0,
        rss: float | None = 500.0, wait: float | None = 30.0, cluster: str = "a",
        partition: str | None = "debug", n: int = 0) -> RunSample:
    return RunSample(
        kind="sim/solve", workflow="default/sim", task="solve", attempt=1, job_id=str(1000 + n),
        cluster=cluster, partition=partition, nodes=nodes, cpus=cpus, memory_mib=memory,
        time_limit_seconds=limit, size_hint=size, state=state, elements=1, elapsed_seconds=seconds,
        queue_wait_seconds=wait, max_rss_mib=rss, total_cpu_seconds=None,
        billed_core_seconds=int(seconds * cpus * nodes), finished_at=T0 + timedelta(minutes=n),
    )


def amdahl(a: float, b: float, c: float, cpus_list, sizes) -> list[RunSample]:
    noise = itertools.cycle(NOISE)
    return [run(cpus=cpus, size=size, seconds=(a + b / cpus) * (1.0 if size is None else size) ** c * next(noise),
                n=n)
            for n, (cpus, size) in enumerate(itertools.product(cpus_list, sizes))]


def test_the_fit_recovers_a_known_amdahl_law_with_sizes():
    model = fit_runtime(amdahl(120.0, 3600.0, 1.5, [1, 2, 4, 8, 16], [10.0, 20.0, 40.0, 80.0]))
    assert model is not None
    assert model.samples == 20
    assert model.a == pytest.approx(120.0, rel=0.05)
    assert model.b == pytest.approx(3600.0, rel=0.05)
    assert model.c == pytest.approx(1.5, abs=0.02)
    assert model.predict(32, 160.0) == pytest.approx((120.0 + 3600.0 / 32) * 160.0**1.5, rel=0.05)


def test_without_sizes_the_size_does_not_matter():
    model = fit_runtime(amdahl(30.0, 1200.0, 0.0, [1, 2, 4, 8], [None]))
    assert model is not None
    assert model.c == 0.0
    assert model.a == pytest.approx(30.0, rel=0.05)
    assert model.b == pytest.approx(1200.0, rel=0.05)
    assert model.predict(4) == model.predict(4, 1000.0) == pytest.approx(330.0, rel=0.03)


def test_one_size_gives_no_exponent():
    model = fit_runtime(amdahl(30.0, 1200.0, 2.0, [1, 2, 4], [50.0]))
    assert model is not None
    assert model.c == 0.0
    assert model.predict(2, 50.0) == model.predict(2, 5000.0)


def test_one_cpu_count_puts_the_whole_time_in_the_serial_part():
    model = fit_runtime([run(cpus=4, seconds=seconds, n=n) for n, seconds in enumerate([300.0, 310.0, 290.0])])
    assert model is not None
    assert model.b == 0.0
    assert model.a == pytest.approx(300.0, rel=0.01)
    assert model.predict(1) == model.predict(64)


def test_cores_are_cpus_times_nodes():
    model = fit_runtime([run(cpus=4, nodes=nodes, seconds=100.0 + 3200.0 / (4 * nodes), n=nodes)
                         for nodes in (1, 2, 4)])
    assert model is not None
    assert model.a == pytest.approx(100.0, rel=1e-6)
    assert model.b == pytest.approx(3200.0, rel=1e-6)


def test_a_speedup_better_than_linear_keeps_the_serial_part_at_zero():
    # t = 1000 / p^1.5: the free least-squares line through (1/p, t) would cross below zero.
    model = fit_runtime([run(cpus=cpus, seconds=1000.0 / cpus**1.5, n=cpus) for cpus in (1, 2, 4, 8)])
    assert model is not None
    assert model.a == 0.0
    assert model.b > 0


def test_a_slowdown_with_more_cpus_keeps_the_parallel_part_at_zero():
    model = fit_runtime([run(cpus=cpus, seconds=100.0 + 10 * cpus, n=cpus) for cpus in (1, 2, 4, 8)])
    assert model is not None
    assert model.b == 0.0
    assert model.a > 100


def test_exact_runs_need_no_safety_and_scattered_runs_some():
    exact = fit_runtime([run(cpus=cpus, seconds=60.0 + 600.0 / cpus, n=cpus) for cpus in (1, 2, 4, 8)])
    assert exact is not None
    assert exact.safety == pytest.approx(1.0)
    assert exact.safe(2) == pytest.approx(exact.predict(2)) == pytest.approx(360.0)
    scattered = fit_runtime(amdahl(60.0, 600.0, 0.0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [None]))
    assert scattered is not None
    assert 1.0 < scattered.safety < 1.05
    assert scattered.safe(4) == pytest.approx(scattered.predict(4) * scattered.safety)
    covered = [sample.elapsed_seconds <= scattered.safe(sample.cpus) for sample in
               amdahl(60.0, 600.0, 0.0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [None])]
    assert sum(covered) >= 9


def test_only_the_newest_runs_count():
    old = [run(cpus=cpus, seconds=5000.0, n=n) for n, cpus in enumerate([1, 2, 4, 8] * 10)]
    new = [run(cpus=cpus, seconds=60.0 + 600.0 / cpus, n=100 + n) for n, cpus in enumerate([1, 2, 4, 8] * 50)]
    assert len(new) == RECENT_RUNS
    model = fit_runtime([*new, *old])  # in any order: the finish times tell which are newest
    assert model is not None
    assert model.samples == RECENT_RUNS
    assert model.predict(2) == pytest.approx(360.0)


def test_the_safety_quantile_is_a_parameter():
    samples = amdahl(60.0, 600.0, 0.0, [1, 2, 3, 4, 5, 6, 7, 8], [None])
    low, high = fit_runtime(samples, quantile=0.5), fit_runtime(samples, quantile=1.0)
    assert low is not None and high is not None
    assert low.safety < high.safety
    assert high.safety == pytest.approx(max(s.elapsed_seconds / high.predict(s.cpus) for s in samples))


def test_too_few_usable_runs_give_no_model():
    assert fit_runtime([]) is None
    good = [run(cpus=cpus, n=cpus) for cpus in (1, 2)]
    assert MIN_SAMPLES == 3
    assert fit_runtime(good) is None
    assert fit_runtime([*good, run(cpus=4, state="FAILED", n=3)]) is None
    assert fit_runtime([*good, run(cpus=4, seconds=0.0, n=3)]) is None
    assert fit_runtime([*good, run(cpus=4, size=0.0, n=3)]) is None
    assert fit_runtime([*good, run(cpus=4, n=3)]) is not None


def test_the_fit_is_deterministic():
    samples = amdahl(120.0, 3600.0, 1.2, [1, 2, 4, 8], [10.0, 30.0])
    assert fit_runtime(samples) == fit_runtime(samples)
    reordered = fit_runtime(list(reversed(samples)))
    fitted = fit_runtime(samples)
    assert reordered is not None and fitted is not None
    assert reordered.c == fitted.c
    assert reordered.a == pytest.approx(fitted.a)


def test_a_timeout_raises_the_prediction_where_it_applies():
    history = [run(cpus=cpus, seconds=60.0 + 600.0 / cpus, n=cpus) for cpus in (1, 2, 4, 8)]
    without = fit_runtime(history)
    model = fit_runtime([*history, run(cpus=4, size=None, seconds=3600.0, state="TIMEOUT", limit=3600, n=9)])
    assert without is not None and model is not None
    assert model.floors == (RuntimeFloor(cores=4, size=1.0, seconds=3600.0),)
    assert without.safe(4) < 3600
    assert model.safe(4) >= 3600 * 1.5
    assert model.safe(2) >= 3600 * 1.5  # fewer cores: at least as slow
    assert model.predict(4) >= 3600
    assert model.safe(8) == pytest.approx(without.safe(8))  # more cores: the timeout says nothing


def test_a_timeout_at_one_size_binds_larger_sizes_only():
    history = amdahl(60.0, 600.0, 1.0, [1, 2, 4], [1.0, 2.0])
    model = fit_runtime([*history, run(cpus=2, size=2.0, seconds=7200.0, state="TIMEOUT", limit=7200, n=99)])
    assert model is not None
    assert model.safe(2, 2.0) >= 10800
    assert model.safe(2, 4.0) >= 10800
    assert model.safe(2, 1.0) < 7200


def test_the_memory_model_takes_a_high_quantile_of_the_peaks_with_a_margin():
    peaks = [100.0 * k for k in range(1, 21)]
    model = fit_memory([run(rss=peak, n=n) for n, peak in enumerate(peaks)])
    assert model is not None
    # The 0.95 quantile of 100..2000 interpolates between 1900 and 2000.
    assert model.mib == pytest.approx(1905.0 * 1.2)
    assert model.samples == 20
    assert model.floor_mib is None


def test_an_out_of_memory_raises_the_memory():
    history = [run(rss=500.0, n=n) for n in range(5)]
    model = fit_memory([*history, run(state="OUT_OF_MEMORY", memory=2048.0, rss=2048.0, n=9)])
    assert model is not None
    assert model.mib == pytest.approx(2048 * 1.5)
    assert model.floor_mib == pytest.approx(3072.0)
    # Without a request, the peak it was killed at tells the limit it hit.
    unrequested = fit_memory([*history, run(state="OUT_OF_MEMORY", memory=None, rss=4000.0, n=9)])
    assert unrequested is not None
    assert unrequested.mib == pytest.approx(6000.0)


def test_too_few_peaks_give_no_memory_model():
    assert fit_memory([run(rss=500.0, n=1), run(rss=600.0, n=2), run(rss=None, n=3)]) is None
    assert fit_memory([run(rss=500.0, n=1), run(rss=600.0, n=2), run(rss=700.0, state="FAILED", n=3)]) is None
    assert fit_memory([run(rss=500.0, n=1), run(rss=600.0, n=2), run(rss=700.0, n=3)]) is not None


def test_queue_waits_are_the_median_of_the_newest_runs_per_queue():
    samples = [
        *[run(wait=float(w), n=n) for n, w in enumerate([10, 20, 30, 1000])],
        run(wait=600.0, partition="batch", n=10),
        run(wait=5.0, cluster="b", partition=None, n=11),
        run(wait=None, cluster="c", n=12),
    ]
    model = fit_queue(samples)
    assert model.wait("a", "debug") == 25.0
    assert model.wait("a", "batch") == 600.0
    assert model.wait("b", None) == 5.0
    assert model.wait("c", "debug") is None
    assert model.wait("a", "gpu") is None
    # Only the newest runs count: the load changes.
    assert fit_queue(samples, recent=2).wait("a", "debug") == 515.0


def test_the_time_request_has_a_margin_whole_minutes_and_a_cap():
    assert time_request(600.0, max_time_seconds=None) == 780  # 750 s rounded up to 13 min
    assert time_request(480.0, max_time_seconds=None) == 600  # exactly 10 min
    assert time_request(1.0, max_time_seconds=None) == 60
    assert time_request(600.0, max_time_seconds=600) == 600
    assert time_request(600.0, max_time_seconds=None, margin=1.0) == 600


def test_each_model_describes_itself_in_one_line():
    runtime = RuntimeModel(a=12.0, b=340.0, c=0.5, safety=1.18, samples=7,
                           floors=(RuntimeFloor(cores=2, size=1.0, seconds=60.0),))
    assert runtime.describe() == ("run time (12 + 340 / cores) s x size^0.50 from 7 runs, safety x1.18, "
                                  "raised by 1 timeout")
    assert RuntimeModel(a=12.0, b=0.0, c=0.0, safety=1.0, samples=3).describe() == (
        "run time (12 + 0 / cores) s from 3 runs, safety x1.00")
    assert MemoryModel(mib=2048.0 * 1.2, samples=5).describe() == "memory 2.4 GiB from the MaxRSS of 5 runs"
    assert MemoryModel(mib=900.0, samples=5, floor_mib=900.0).describe() == (
        "memory 900 MiB from the MaxRSS of 5 runs, at least 900 MiB after an out-of-memory")
    queues = QueueModel(waits={("a", "debug"): 30.0, ("b", None): 5400.0}, samples={("a", "debug"): 1, ("b", None): 4})
    assert queues.describe() == "queue waits: a/debug 30 s (1 run), b/(default) 90 min (4 runs)"
    assert QueueModel(waits={}, samples={}).describe() == "queue waits: no runs yet"
