"""Catalogue D8-D12: the runtime over time (memory growth, out of memory, shutdown, the provider
that really ran, decoding off the batch loop); D1-D7 are in test_d_serving.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers import load_benchmark
from reliability_helpers import RecordingClassifier, alone, solid

from visionrt.errors import (
    ResourceExhaustedError,
    RuntimeClosedError,
)
from visionrt.runtime.batcher import MicroBatcher


# --- D8 memory growth -------------------------------------------------------------------------
def test_D8_padding_uses_a_fixed_set_of_batch_buckets(classifier, monkeypatch):
    seen = []
    monkeypatch.setattr(classifier.backend, "batch_buckets", (1, 2, 4, 8, 16))
    infer = classifier.backend.infer
    monkeypatch.setattr(classifier.backend, "infer",
                        lambda batch: seen.append(len(batch)) or infer(batch))
    for n in (16, 7, 7, 7, 3, 1, 13):  # the ORT #24376 pattern and friends
        out = classifier(np.stack([solid(i) for i in range(n)]))
        assert out.shape == (n, 4)
    assert set(seen) <= {1, 2, 4, 8, 16}


def test_D8_soak_detector_measures_growth_after_warmup():
    soak = load_benchmark("soak")
    flat = [(t * 0.5, 100 * 2**20 + (2**20 if t % 2 else 0)) for t in range(100)]
    assert abs(soak.growth_mb(flat, warmup_end=10)[2]) <= 1
    leak = [(t * 0.5, 100 * 2**20 + t * 2**20) for t in range(100)]
    assert soak.growth_mb(leak, warmup_end=10)[2] > 50


def test_D8_short_soak_serves_everything_correctly(tiny_bundle):
    soak = load_benchmark("soak")
    report = soak.run_soak(tiny_bundle, seconds=3, threads=8, warmup=1, max_growth_mb=200)
    assert report.ok, soak.format_report(report)
    assert report.served > 100 and report.unresolved == 0 and report.wrong_answers == 0
    assert {"InputValidationError", "ImageDecodeError"} & set(report.errors)


@pytest.mark.slow
def test_D8_soak_bounded_growth_and_leak_control_is_detected(tiny_bundle):
    soak = load_benchmark("soak")
    clean = soak.run_soak(tiny_bundle, seconds=40, threads=8, warmup=10)
    assert clean.ok, soak.format_report(clean)
    leaky = soak.run_soak(tiny_bundle, seconds=20, threads=8, warmup=4, leak_control=True,
                          leak_mb=150)
    assert not leaky.ok and leaky.growth_mb > 50, soak.format_report(leaky)


# --- D9 out of memory in a batch --------------------------------------------------------------
def test_D9_oom_splits_the_batch_and_retries_once(classifier, monkeypatch):
    calls = []
    infer = classifier.backend.infer

    def small_memory(batch):
        calls.append(len(batch))
        if len(batch) > 4:
            raise ResourceExhaustedError("CUDA out of memory (simulated)")
        return infer(batch)

    monkeypatch.setattr(classifier.backend, "infer", small_memory)
    out = classifier(np.stack([solid(i) for i in range(8)]))
    assert out.shape == (8, 4) and calls == [8, 4, 4]
    np.testing.assert_allclose(out[6], alone(classifier, solid(6)), atol=1e-6)


def test_D9_persistent_oom_fails_those_requests_and_later_batches_succeed(classifier,
                                                                         monkeypatch):
    infer = classifier.backend.infer
    state = {"oom": True}

    def flaky(batch):
        if state["oom"]:
            raise ResourceExhaustedError("CUDA out of memory (simulated)")
        return infer(batch)

    monkeypatch.setattr(classifier.backend, "infer", flaky)
    with MicroBatcher(classifier, max_batch=8, max_wait_ms=0, max_queue=16) as batcher:
        with pytest.raises(ResourceExhaustedError):
            batcher.submit(solid(3)).result(5)
        state["oom"] = False
        assert batcher.submit(solid(4)).result(5).index >= 0
        assert batcher._worker.is_alive()


# --- D10 shutdown -----------------------------------------------------------------------------
def test_D10_close_cancels_queued_requests_and_no_caller_hangs(classifier):
    gated = RecordingClassifier(classifier)
    gated.gate.clear()
    batcher = MicroBatcher(gated, max_batch=1, max_wait_ms=0, max_queue=16)
    running = batcher.submit(solid(1))
    assert gated.entered.wait(5)
    queued = [batcher.submit(solid(10 + i)) for i in range(5)]
    threading.Timer(0.3, gated.gate.set).start()
    t0 = time.perf_counter()
    batcher.close(timeout=5, cancel_pending=True)
    assert time.perf_counter() - t0 < 5
    assert running.result(5).index >= 0
    for future in queued:
        with pytest.raises(RuntimeClosedError):
            future.result(1)
    with pytest.raises(RuntimeClosedError):  # unavailable, not back-pressure
        batcher.submit(solid(2))


def test_D10_close_drains_by_default_and_times_out_instead_of_hanging(classifier):
    gated = RecordingClassifier(classifier)
    batcher = MicroBatcher(gated, max_batch=2, max_wait_ms=0, max_queue=16)
    futures = [batcher.submit(solid(i)) for i in range(6)]
    batcher.close(timeout=10)
    assert all(f.result(0).index >= 0 for f in futures)
    stuck = RecordingClassifier(classifier)
    stuck.gate.clear()
    batcher = MicroBatcher(stuck, max_batch=1, max_wait_ms=0, max_queue=16)
    first = batcher.submit(solid(1))
    assert stuck.entered.wait(5)
    waiting = batcher.submit(solid(2))
    t0 = time.perf_counter()
    batcher.close(timeout=0.3)  # the backend is stuck: close returns anyway
    assert time.perf_counter() - t0 < 3
    with pytest.raises(RuntimeClosedError):
        waiting.result(1)
    stuck.gate.set()
    assert first.result(5).index >= 0


def test_D10_closed_classifier_raises_runtime_closed(classifier):
    classifier.close()
    with pytest.raises(RuntimeClosedError):
        classifier(np.stack([solid(1)]))
    with pytest.raises(RuntimeClosedError):
        classifier.predict([solid(1)], errors="raise")


# --- D11 the provider that really ran ---------------------------------------------------------
def test_D11_info_reports_the_active_provider(classifier):
    info = classifier.info()
    assert info["provider"] == "CPUExecutionProvider"
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["device"] == "cpu"


def test_D11_requested_gpu_provider_that_falls_back_to_cpu_is_an_error(tiny_bundle, monkeypatch):
    import onnxruntime as ort

    from visionrt.errors import ProviderUnavailableError
    from visionrt.runtime import ort as ort_backend
    from visionrt.runtime.base import BackendConfig

    real = ort.InferenceSession

    def quiet_fallback(path, options=None, providers=None, **kw):  # what ORT does (A10)
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", quiet_fallback)
    config = BackendConfig(device="cuda:0", precision="fp32", max_batch=16)
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        ort_backend.OrtBackend(tiny_bundle / "model.fp32.onnx", None, config, provider="cuda")


# --- D12 decoding off the batch loop ----------------------------------------------------------
def test_D12_decoding_runs_in_a_bounded_pool_and_a_slow_decode_fails_only_its_item(
        classifier, monkeypatch):
    from visionrt.runtime import classifier as classifier_module

    real = classifier_module.preprocess
    threads = set()

    def slow_for_one(source, spec):
        threads.add(threading.current_thread().name)
        if isinstance(source, np.ndarray) and source[0, 0, 0] == 13:
            time.sleep(3)
        return real(source, spec)

    monkeypatch.setattr(classifier_module, "preprocess", slow_for_one)
    classifier.decode_timeout = 0.5
    t0 = time.perf_counter()
    results = classifier.predict([solid(1), solid(13), solid(2)])
    assert time.perf_counter() - t0 < 2.5
    assert [r.ok for r in results] == [True, False, True]
    assert all(name.startswith("visionrt-decode") for name in threads)
    assert len(threads) <= classifier.workers


def test_D12_decode_errors_of_any_kind_stay_per_item(classifier, monkeypatch):
    from visionrt.runtime import classifier as classifier_module

    real = classifier_module.preprocess

    def crashing_decoder(source, spec):
        if isinstance(source, np.ndarray) and source[0, 0, 0] == 13:
            raise MemoryError("decoder blew up")
        return real(source, spec)

    monkeypatch.setattr(classifier_module, "preprocess", crashing_decoder)
    results = classifier.predict([solid(1), solid(13), solid(2)])
    assert [r.ok for r in results] == [True, False, True]
    assert "decoder blew up" in results[1].error
