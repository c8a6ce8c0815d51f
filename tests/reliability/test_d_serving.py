"""Catalogue D1-D7: the runtime under load (micro-batcher, concurrent callers, backend faults);
D8-D12 are in test_d_lifecycle.py.

The model is a tiny uint8-NHWC ONNX graph (mean colour -> logits, benchmarks/soak.py) run by
ONNX Runtime on the CPU; each output row depends only on its own image, so cross-talk shows.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import encode
from reliability_helpers import RecordingClassifier, alone, solid

from visionrt.errors import (
    ImageError,
    InferenceError,
    InputValidationError,
    QueueFullError,
    RequestTimeoutError,
    VisionRTError,
)
from visionrt.runtime.batcher import MicroBatcher


# --- D1 bounded queue -------------------------------------------------------------------------
def test_D1_full_queue_rejects_at_once_and_memory_stays_bounded(classifier):
    gated = RecordingClassifier(classifier)
    gated.gate.clear()
    batcher = MicroBatcher(gated, max_batch=1, max_wait_ms=0, max_queue=4)
    try:
        first = batcher.submit(solid(1))
        assert gated.entered.wait(5)  # the worker holds request 1; the queue is empty
        accepted = [batcher.submit(solid(10 + i)) for i in range(4)]
        t0 = time.perf_counter()
        with pytest.raises(QueueFullError, match="full") as info:
            batcher.submit(solid(99))
        assert time.perf_counter() - t0 < 0.5  # fails at once, does not wait for room
        assert info.value.expected == 4
        assert len(batcher._queue) <= 4
        assert batcher.stats.rejected == 1
    finally:
        gated.gate.set()
        batcher.close(timeout=10)
    assert first.result(5).index >= 0 and all(f.result(5) for f in accepted)
    assert 99 not in sum(gated.batches, [])


# --- D2 per-request timeout -------------------------------------------------------------------
def test_D2_expired_request_is_never_run_and_reports_its_wait(classifier):
    gated = RecordingClassifier(classifier)
    gated.gate.clear()
    batcher = MicroBatcher(gated, max_batch=4, max_wait_ms=1, max_queue=16)
    try:
        blocker = batcher.submit(solid(1))
        assert gated.entered.wait(5)
        late = batcher.submit(solid(2), timeout=0.05)
        patient = batcher.submit(solid(3), timeout=30)
        time.sleep(0.2)
        gated.gate.set()
        with pytest.raises(RequestTimeoutError, match="timed out after waiting") as info:
            late.result(5)
        assert info.value.actual >= 50  # waited_ms
        assert patient.result(5).index >= 0 and blocker.result(5).index >= 0
    finally:
        gated.gate.set()
        batcher.close(timeout=10)
    ran = sum(gated.batches, [])
    assert 2 not in ran and 3 in ran
    assert batcher.stats.timed_out == 1


def test_D2_max_wait_is_separate_from_the_request_timeout(classifier):
    # A long batching window must not expire requests whose own timeout is longer.
    with MicroBatcher(classifier, max_batch=16, max_wait_ms=100, max_queue=16) as batcher:
        future = batcher.submit(solid(5), timeout=5)
        assert future.result(5).index >= 0


# --- D3 bad item in a micro-batch / no cross-talk ---------------------------------------------
BAD_ITEMS = [
    (np.zeros((32, 32, 3), np.float64), InputValidationError),
    (np.zeros((3, 32, 32), np.uint8), InputValidationError),
    (np.full((32, 32, 3), np.nan, np.float32), InputValidationError),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, ImageError),
    (b"<html>oops</html>", ImageError),
]


def test_D3_bad_item_fails_only_its_own_future_and_others_matchalone(classifier):
    gated = RecordingClassifier(classifier)
    goods = [solid(k) for k in (20, 60, 120, 180, 240)]
    expected = [alone(classifier, g) for g in goods]
    gated.gate.clear()
    batcher = MicroBatcher(gated, max_batch=16, max_wait_ms=50, max_queue=64)
    try:
        blocker = batcher.submit(solid(1))
        assert gated.entered.wait(5)
        futures = []
        for good, (bad, _) in zip(goods, BAD_ITEMS, strict=True):
            futures.append(("good", batcher.submit(good)))
            futures.append(("bad", batcher.submit(bad)))
        gated.gate.set()
        blocker.result(5)
        goods_out = [f.result(5) for kind, f in futures if kind == "good"]
        for (_, future), (_, error) in zip([f for f in futures if f[0] == "bad"], BAD_ITEMS,
                                           strict=True):
            with pytest.raises(error):
                future.result(5)
    finally:
        gated.gate.set()
        batcher.close(timeout=10)
    assert any(len(b) == 5 for b in gated.batches)  # the five goods shared one batch
    for prediction, probs in zip(goods_out, expected, strict=True):
        assert prediction.index == int(np.argmax(probs))
        assert prediction.score == pytest.approx(float(probs.max()), abs=1e-6)


def test_D3_predict_with_mixed_inputs_reports_each_bad_one_and_answers_the_rest(classifier,
                                                                                tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(solid(200)).save(good)
    truncated = tmp_path / "truncated.jpg"
    data = encode(Image.fromarray(np.random.default_rng(0).integers(
        0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    truncated.write_bytes(data[: len(data) // 2])
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    inputs = [str(good), str(truncated), np.zeros((8, 8, 3), np.float64), str(folder),
              solid(90), str(tmp_path / "missing.png")]
    results = classifier.predict(inputs)
    assert [r.ok for r in results] == [True, False, False, False, True, False]
    assert "truncated.jpg" in results[1].input + results[1].error
    assert results[0].index == int(np.argmax(alone(classifier, solid(200))))


# --- D4 nothing kills the worker --------------------------------------------------------------
def test_D4_backend_exception_goes_to_that_batch_and_the_worker_goes_on(classifier):
    gated = RecordingClassifier(classifier)
    gated.fail = lambda batch: bool((batch[:, 0, 0, 0] == 66).any())
    with MicroBatcher(gated, max_batch=1, max_wait_ms=0, max_queue=16) as batcher:
        poisoned = batcher.submit(solid(66))
        with pytest.raises(InferenceError, match="backend exploded"):
            poisoned.result(5)
        assert batcher.submit(solid(67)).result(5).index >= 0
        assert batcher._worker.is_alive()
        assert batcher.stats.worker_restarts == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # on purpose
def test_D4_dead_worker_is_restarted_and_counted(classifier):
    gated = RecordingClassifier(classifier)
    gated.fail = lambda batch: bool((batch[:, 0, 0, 0] == 66).any())
    gated.error = SystemExit("worker killed")  # not an Exception: the thread really dies
    with MicroBatcher(gated, max_batch=1, max_wait_ms=0, max_queue=16) as batcher:
        with pytest.raises(InferenceError):
            batcher.submit(solid(66)).result(5)
        batcher._worker.join(5)
        assert not batcher._worker.is_alive()
        assert batcher.submit(solid(67)).result(5).index >= 0  # watchdog restarted it
        assert batcher.stats.worker_restarts == 1


def test_D4_malformed_shapes_never_reach_the_backend(classifier):
    gated = RecordingClassifier(classifier)
    with MicroBatcher(gated, max_batch=4, max_wait_ms=0, max_queue=16) as batcher:
        weird = [np.zeros((0, 5, 3), np.uint8), np.zeros((5, 5, 3, 1), np.uint8),
                 np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (4, 4, 3), (0, 0, 1)),
                 np.zeros((32, 32, 3), np.uint8)[:, :, ::-1]]
        futures = [batcher.submit(w) for w in weird]
        with pytest.raises(InputValidationError):
            futures[0].result(5)
        with pytest.raises(InputValidationError):
            futures[1].result(5)
        assert futures[2].result(5).index >= 0 and futures[3].result(5).index >= 0
    assert all(isinstance(k, int) for k in sum(gated.batches, []))


# --- D5 never above the profile maximum -------------------------------------------------------
def test_D5_batches_never_exceed_the_artifact_maximum(classifier):
    gated = RecordingClassifier(classifier)
    gated.gate.clear()
    batcher = MicroBatcher(gated, max_batch=64, max_wait_ms=20, max_queue=256)
    assert batcher.max_batch == classifier.max_batch == 16
    try:
        futures = [batcher.submit(solid(i % 250)) for i in range(60)]
        gated.gate.set()
        assert all(f.result(10).index >= 0 for f in futures)
    finally:
        gated.gate.set()
        batcher.close(timeout=10)
    assert max(len(b) for b in gated.batches) <= 16


def test_D5_oversized_direct_call_is_split_and_bad_spatial_size_is_named(classifier,
                                                                        monkeypatch):
    seen = []
    infer = classifier.backend.infer
    monkeypatch.setattr(classifier.backend, "infer",
                        lambda batch: seen.append(len(batch)) or infer(batch))
    batch = np.stack([solid(i) for i in range(40)])
    probs = classifier(batch)
    assert probs.shape == (40, 4) and max(seen) <= 16
    np.testing.assert_allclose(probs[17], alone(classifier, solid(17)), atol=1e-6)
    with pytest.raises(InputValidationError, match="32x32"):
        classifier(np.zeros((2, 33, 33, 3), np.uint8))


# --- D6 one shared session, parallel callers --------------------------------------------------
def test_D6_parallel_callers_on_one_session_match_the_single_thread_reference(classifier):
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (int(rng.integers(1, 17)), 32, 32, 3), dtype=np.uint8)
               for _ in range(48)]
    reference = [classifier(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(classifier, batches))
    for got, want in zip(outputs, reference, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


# --- D7 TensorRT execution contexts -----------------------------------------------------------
def test_D7_tensorrt_parallel_callers_match_the_single_thread_reference(trt_double, tiny_bundle,
                                                                        tmp_path):
    # The TensorRT/CUDA double refuses a context shared by two threads at once; the backend lends
    # each call one slot of a bounded pool.
    import shutil

    from gpu_double.bundles import add_engine

    from visionrt.runtime.base import BackendConfig, load_backend
    from visionrt.runtime.trt import MAX_CONTEXTS

    out = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    artifact = add_engine(out, "fp32", "model.fp32.onnx", max_batch=16)
    backend = load_backend("tensorrt", out / artifact.file, artifact,
                           BackendConfig(device="cuda:0", precision="fp32", max_batch=16))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (int(rng.integers(1, 17)), 32, 32, 3), dtype=np.uint8)
               for _ in range(48)]
    reference = [backend.infer(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(backend.infer, batches))
    for got, want in zip(outputs, reference, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert 1 <= backend.info().details["contexts"] <= MAX_CONTEXTS
    backend.close()
    assert not trt_double.state().violations


def test_D_all_errors_are_visionrt_errors(classifier):
    with MicroBatcher(classifier, max_batch=4, max_wait_ms=0) as batcher:
        for bad, _ in BAD_ITEMS:
            with pytest.raises(VisionRTError):
                batcher.submit(bad).result(5)
