"""close() never frees what another thread is still running (ONNX Runtime; TensorRT is in
test_trt_backend.py): it waits for the calls in flight, later calls fail with RuntimeClosedError."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import SIZE

from visionrt.errors import RuntimeClosedError
from visionrt.runtime.base import BackendConfig, load_backend


class _SlowSession:
    """An InferenceSession whose run() takes a while, as a large model's would."""

    def __init__(self, session, started: threading.Event) -> None:
        self._session, self._started = session, started

    def run(self, *args, **kwargs):
        self._started.set()
        time.sleep(0.3)
        return self._session.run(*args, **kwargs)


def test_onnxruntime_close_waits_for_the_call_in_flight(tiny_bundle: Path) -> None:
    backend = load_backend("onnxruntime", tiny_bundle / "model.fp32.onnx", None,
                           BackendConfig(device="cpu", max_batch=4))
    batch = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    expected = backend.infer(batch)
    started = threading.Event()
    backend.session = _SlowSession(backend.session, started)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(backend.infer(batch)))
    worker.start()
    assert started.wait(5)
    backend.close()
    assert results, "close() returned while a call was still running"
    worker.join()
    np.testing.assert_array_equal(results[0], expected)
    with pytest.raises(RuntimeClosedError):
        backend.infer(batch)
    backend.close()  # idempotent
