"""MicroBatcher: coalescing, per-caller results, back-pressure, timeouts, faults, shutdown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import SIZE, FakeBackend, tiny_spec

from visionrt.errors import (
    ConfigError,
    ImageDecodeError,
    InferenceError,
    InputValidationError,
    QueueFullError,
    RequestTimeoutError,
    RuntimeClosedError,
)
from visionrt.runtime.batcher import MicroBatcher
from visionrt.runtime.classifier import Classifier


def _image(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_eight_threads_each_get_their_own_result(tiny_bundle: Path) -> None:
    with Classifier.load(tiny_bundle, backend="onnxruntime", precision="fp32") as clf:
        images = [_image(i, size=SIZE + i % 7) for i in range(96)]
        expected = clf.predict(images, top_k=3)
        with MicroBatcher(clf, max_batch=16, max_wait_ms=20, top_k=3) as batcher:
            def caller(worker: int) -> list[tuple[int, object]]:
                mine = range(worker, len(images), 8)
                futures = [(i, batcher.submit(images[i])) for i in mine]
                return [(i, f.result(timeout=30)) for i, f in futures]

            with ThreadPoolExecutor(8) as pool:
                results = [r for rs in pool.map(caller, range(8)) for r in rs]
            stats = batcher.stats
    assert len(results) == len(images)
    for i, prediction in results:
        assert prediction.index == expected[i].index
        assert [t.index for t in prediction.top_k] == [t.index for t in expected[i].top_k]
        assert abs(prediction.score - expected[i].score) < 1e-5
    assert stats.completed == len(images) and max(stats.batch_sizes) > 1  # really coalesced


def test_full_queue_rejects_immediately(fake_classifier) -> None:
    backend = fake_classifier.backend
    backend.gate.clear()  # the worker blocks inside the first batch
    batcher = MicroBatcher(fake_classifier, max_batch=1, max_wait_ms=0, max_queue=2)
    first = batcher.submit(_image(0))
    deadline = time.monotonic() + 5
    while not backend.rows_seen and batcher._queue and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until the worker took the first request
    time.sleep(0.05)
    queued = [batcher.submit(_image(i)) for i in (1, 2)]
    start = time.monotonic()
    with pytest.raises(QueueFullError, match="full"):
        batcher.submit(_image(3))
    assert time.monotonic() - start < 0.5
    backend.gate.set()
    assert all(f.result(timeout=10).label for f in [first, *queued])
    assert batcher.stats.rejected == 1
    batcher.close()


def test_expired_requests_fail_and_never_run(fake_classifier) -> None:
    backend = fake_classifier.backend
    backend.gate.clear()
    batcher = MicroBatcher(fake_classifier, max_batch=1, max_wait_ms=0)
    blocker = batcher.submit(_image(0))
    time.sleep(0.05)
    late = batcher.submit(_image(1), timeout=0.05)
    patient = batcher.submit(_image(2), timeout=30)
    time.sleep(0.2)
    backend.gate.set()
    with pytest.raises(RequestTimeoutError, match="timed out"):
        late.result(timeout=10)
    assert blocker.result(timeout=10) and patient.result(timeout=10)
    batcher.close()
    assert backend.rows_seen == 2  # the expired request was never run
    assert batcher.stats.timed_out == 1


def test_bad_item_fails_only_its_own_future(fake_classifier, tmp_path: Path) -> None:
    with MicroBatcher(fake_classifier, max_batch=8, max_wait_ms=50) as batcher:
        good = [batcher.submit(_image(i)) for i in range(3)]
        bad_array = batcher.submit(np.zeros((SIZE, SIZE, 3), np.float32))
        bad_file = batcher.submit(tmp_path / "missing.jpg")
        more = [batcher.submit(_image(i)) for i in range(3, 5)]
        with pytest.raises(InputValidationError, match="float32"):
            bad_array.result(timeout=10)
        with pytest.raises(ImageDecodeError, match="not found"):
            bad_file.result(timeout=10)
        assert all(f.result(timeout=10).label for f in good + more)


def test_worker_survives_a_failing_batch(fake_classifier) -> None:
    backend = fake_classifier.backend
    backend.fail_next = True
    with MicroBatcher(fake_classifier, max_batch=4, max_wait_ms=0) as batcher:
        doomed = batcher.submit(_image(0))
        with pytest.raises(InferenceError, match="simulated"):
            doomed.result(timeout=10)
        after = [batcher.submit(_image(i)) for i in range(1, 6)]
        assert [f.result(timeout=10).label is not None for f in after] == [True] * 5


def test_close_drains_then_refuses(fake_classifier) -> None:
    batcher = MicroBatcher(fake_classifier, max_batch=2, max_wait_ms=1)
    futures = [batcher.submit(_image(i)) for i in range(10)]
    batcher.close(timeout=10)
    assert all(f.result(timeout=0).label for f in futures)
    with pytest.raises(RuntimeClosedError):
        batcher.submit(_image(0))


def test_close_with_cancel_fails_pending_with_closed_error(fake_classifier) -> None:
    backend = fake_classifier.backend
    backend.gate.clear()
    batcher = MicroBatcher(fake_classifier, max_batch=1, max_wait_ms=0)
    futures = [batcher.submit(_image(i)) for i in range(4)]
    time.sleep(0.05)
    closer = threading.Thread(target=batcher.close, kwargs={"timeout": 5, "cancel_pending": True})
    closer.start()
    time.sleep(0.05)
    backend.gate.set()
    closer.join(10)
    outcomes = [f.exception(timeout=10) for f in futures]
    assert outcomes[0] is None  # already running: finished
    assert all(isinstance(e, RuntimeClosedError) for e in outcomes[1:])


def test_batches_never_exceed_the_backend_maximum() -> None:
    backend = FakeBackend(max_batch=4)
    clf = Classifier(backend, tiny_spec())
    with MicroBatcher(clf, max_batch=64, max_wait_ms=30) as batcher:
        assert batcher.max_batch == 4
        futures = [batcher.submit(_image(i)) for i in range(12)]
        [f.result(timeout=10) for f in futures]
    assert max(backend.calls) <= 4


def test_invalid_settings() -> None:
    clf = Classifier(FakeBackend(), tiny_spec())
    with pytest.raises(ConfigError):
        MicroBatcher(clf, max_queue=0)
    with MicroBatcher(clf) as batcher, pytest.raises(ConfigError, match="timeout"):
        batcher.submit(_image(0), timeout=0)
