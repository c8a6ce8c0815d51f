"""Benchmark statistics and timing loops: percentiles on known samples, fixed-duration loops."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from visionrt.bench.stats import peak_rss_mb, percentile, reset_peak_rss, summarize
from visionrt.bench.timing import MIN_SAMPLES, measure_clients, measure_steps
from visionrt.errors import ConfigError, InferenceError


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 50.5), (90, 90.1), (99, 99.01),
                                             (100, 100.0)])
def test_percentile_of_1_to_100(q, expected):
    samples = list(range(100, 0, -1))  # unsorted on purpose
    assert percentile(samples, q) == pytest.approx(expected)


def test_percentile_matches_numpy_linear_rule():
    samples = np.random.default_rng(0).exponential(3.0, size=257).tolist()
    for q in (0, 1, 25, 50, 90, 99, 99.9, 100):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q), rel=1e-12)


def test_percentile_interpolates_between_two_values():
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([10.0, 20.0], 90) == pytest.approx(19.0)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ConfigError, match="empty"):
        percentile([], 50)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_out_of_range(q):
    with pytest.raises(ConfigError, match="0..100"):
        percentile([1.0], q)


def test_summarize_reports_milliseconds():
    summary = summarize([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert summary.samples == 100
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p90 == pytest.approx(90.1)
    assert summary.p99 == pytest.approx(99.01)
    assert summary.max == pytest.approx(100.0)
    assert summary.mean == pytest.approx(50.5)
    assert summary.to_dict() == {"p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0}


def test_summarize_nothing_is_an_error():
    with pytest.raises(ConfigError):
        summarize([])


def test_peak_rss_sees_a_large_allocation():
    reset_peak_rss()
    before = peak_rss_mb()
    block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # 64 MiB, touched
    after = peak_rss_mb()
    del block
    assert after - before > 40


def test_measure_steps_excludes_warmup_and_runs_the_duration():
    calls = []

    def step():
        calls.append(time.perf_counter())
        time.sleep(0.002)

    result = measure_steps(step, images_per_step=4, duration_s=0.2, warmup_s=0.1)
    assert result.latency.samples < len(calls)  # warm-up calls were made but not counted
    assert result.images == 4 * result.latency.samples
    assert 0.2 <= result.wall_s < 0.5
    assert result.throughput == pytest.approx(result.images / result.wall_s)
    assert 2.0 <= result.latency.p50 < 50.0


def test_measure_steps_grows_the_window_to_the_minimum_samples():
    result = measure_steps(lambda: time.sleep(0.01), images_per_step=1, duration_s=0.001,
                           warmup_s=0.0, min_seconds=0.0)
    assert result.latency.samples == MIN_SAMPLES and result.below_minimum is None
    assert result.wall_s >= MIN_SAMPLES * 0.01


def test_a_window_shorter_than_the_minimum_seconds_is_flagged_not_lengthened():
    result = measure_steps(lambda: time.sleep(0.002), images_per_step=1, duration_s=0.1,
                           warmup_s=0.0, min_seconds=0.5)
    assert result.latency.samples >= MIN_SAMPLES and result.wall_s < 0.5
    assert result.below_minimum.endswith(f"(a row needs {MIN_SAMPLES} and 0.5 s)")


def test_measure_steps_flags_a_window_that_stays_short():
    result = measure_steps(lambda: time.sleep(0.03), images_per_step=1, duration_s=0.001,
                           warmup_s=0.0, max_window_s=0.1)
    assert 1 <= result.latency.samples < MIN_SAMPLES
    assert result.below_minimum.startswith(f"{result.latency.samples} samples in ")


def test_server_window_with_few_requests_is_flagged():
    def submit(item):
        future: Future = Future()
        threading.Timer(0.1, future.set_result, args=(item,)).start()
        return future

    result = measure_clients(submit, items=[0], clients=1, duration_s=0.5, warmup_s=0.0)
    assert result.images < MIN_SAMPLES  # at most 5 requests of 0.1 s fit
    assert result.below_minimum.startswith(f"{result.images} samples in ")


def test_measure_clients_counts_each_request_once():
    served = []
    lock = threading.Lock()

    def submit(item):
        future: Future = Future()
        with lock:
            served.append(item)
        threading.Timer(0.005, future.set_result, args=(item,)).start()
        return future

    result = measure_clients(submit, items=list(range(10)), clients=4, duration_s=0.3,
                             warmup_s=0.05)
    assert result.errors == 0
    assert 0 < result.images <= len(served)
    # 4 clients, ~5 ms per request: about 800 requests/s, never more than 4 / 5 ms
    assert 100 < result.throughput < 4 / 0.005 * 1.2
    assert result.latency.p50 >= 5.0


def test_measure_clients_counts_failures_and_raises_when_nothing_completes():
    def submit(item):
        future: Future = Future()
        future.set_exception(RuntimeError("boom"))
        return future

    with pytest.raises(InferenceError, match="no request completed"):
        measure_clients(submit, items=[0], clients=2, duration_s=0.05, warmup_s=0.0)
