"""Catalogue D1-D7: the runtime under load (micro-batcher, concurrent callers, backend faults);
D8-D12 are in test_d_lifecycle.py.

The model is a tiny uint8-NHWC ONNX graph (mean colour -> logits, benchmarks/soak.py) run by
ONNX Runtime on the CPU; each output row depends only on its own image, so cross-talk shows.
"""

from __future__ import annotations

import threading
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
@pytest.mark.gpu
def test_D7_tensorrt_parallel_callers_match_the_single_thread_reference(tiny_bundle, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (CPU-only machine)")
    from visionrt.runtime import _cuda

    if not _cuda.device_count():
        pytest.skip("no CUDA device")
    from dataclasses import replace

    from visionrt.bundle import describe_artifact, load_bundle
    from visionrt.exporter.trt import EngineConfig, build_engine
    from visionrt.runtime import trt
    from visionrt.runtime.base import BackendConfig

    bundle = load_bundle(tiny_bundle)
    engine = tmp_path / "model.fp32.engine"
    record = build_engine(tiny_bundle / "model.fp32.onnx", engine, bundle.spec,
                          EngineConfig(max_batch=16, opt_batch=8), precision="fp32")
    onnx_artifact = bundle.artifacts[0]
    artifact = replace(describe_artifact(engine, format="tensorrt", precision="fp32",
                                         inputs=onnx_artifact.inputs,
                                         outputs=onnx_artifact.outputs, batch=onnx_artifact.batch,
                                         target="tensorrt"), tensorrt=record)
    backend = trt.TensorRTBackend(engine, artifact,
                                  BackendConfig(device="cuda:0", precision="fp32", max_batch=16))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (int(rng.integers(1, 17)), 32, 32, 3), dtype=np.uint8)
               for _ in range(64)]
    reference = [backend.infer(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(backend.infer, batches))
    for got, want in zip(outputs, reference, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert 1 < len(backend._slots) <= 9  # one (context, stream) per calling thread
    backend.close()


def test_D7_each_thread_gets_its_own_tensorrt_context_and_stream():
    # The slot bookkeeping is plain Python; fake CUDA/TensorRT objects stand in for the GPU.
    from types import SimpleNamespace

    from visionrt.bundle import TensorInfo
    from visionrt.runtime import trt

    class Buffer:
        ptr = 0

    cuda = SimpleNamespace(activate=lambda index: None, create_stream=object,
                           stream_handle=lambda stream: id(stream),
                           alloc_device=lambda n: Buffer(), alloc_host=lambda n: Buffer())

    class Context:
        def set_tensor_address(self, name, ptr):
            return True

    backend = trt.TensorRTBackend.__new__(trt.TensorRTBackend)
    backend.engine = SimpleNamespace(create_execution_context=Context)
    backend.cuda, backend.device, backend.path = cuda, SimpleNamespace(index=0), "fake.engine"
    backend.inputs = (TensorInfo("image", "uint8", ("batch", 32, 32, 3)),)
    backend.outputs = (TensorInfo("logits", "float32", ("batch", 4)),)
    backend.max_batch = 16
    backend._local, backend._slots, backend._slots_lock = threading.local(), [], threading.Lock()
    barrier = threading.Barrier(6)
    per_thread = {}

    def work(i):
        barrier.wait()
        per_thread[i] = (backend._slot(), backend._slot())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a is b for a, b in per_thread.values())  # a thread keeps its slot
    contexts = {id(a.context) for a, _ in per_thread.values()}
    streams = {id(a.stream) for a, _ in per_thread.values()}
    assert len(contexts) == len(streams) == 6 == len(backend._slots)  # never shared


def test_D_all_errors_are_visionrt_errors(classifier):
    with MicroBatcher(classifier, max_batch=4, max_wait_ms=0) as batcher:
        for bad, _ in BAD_ITEMS:
            with pytest.raises(VisionRTError):
                batcher.submit(bad).result(5)
