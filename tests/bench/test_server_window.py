"""Triton's statistics over a bench window: deltas of two /v2/models/M/stats answers."""

from __future__ import annotations

import pytest

from visionrt.bench.server import ServerBenchConfig, triton_window
from visionrt.errors import ConfigError


def _stats(success: int, executions: int, queue_ns: int, compute_ns: tuple[int, int, int]):
    names = ("compute_input", "compute_infer", "compute_output")
    inference = {"success": {"count": success, "ns": 0}, "queue": {"count": success,
                                                                   "ns": queue_ns}}
    inference.update({n: {"count": success, "ns": ns} for n, ns in zip(names, compute_ns,
                                                                       strict=True)})
    return {"model_stats": [{"name": "m", "inference_count": success,
                             "execution_count": executions, "inference_stats": inference}]}


def test_window_is_the_difference_of_two_snapshots():
    before = _stats(10, 10, 1_000_000, (0, 5_000_000, 0))
    after = _stats(110, 35, 401_000_000, (100_000_000, 905_000_000, 100_000_000))
    window = triton_window(before, after)
    assert (window.requests, window.batches) == (100, 25)
    assert window.average_batch == 4.0
    assert window.queue_ms == pytest.approx(4.0)  # 400 ms over 100 requests
    assert window.compute_ms == pytest.approx(11.0)  # (100 + 900 + 100) ms / 100


def test_an_idle_window_has_no_batches():
    same = _stats(5, 5, 0, (0, 0, 0))
    window = triton_window(same, same)
    assert (window.requests, window.batches, window.average_batch) == (0, 0, 0.0)


def test_config_names_the_flag():
    with pytest.raises(ConfigError, match="--concurrency"):
        ServerBenchConfig("http://h", concurrency=(0,))
    with pytest.raises(ConfigError, match="--protocol"):
        ServerBenchConfig("http://h", protocol="udp")
