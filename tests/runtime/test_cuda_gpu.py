"""The CUDA layer and the TensorRT backend on whatever CUDA this process sees (marker gpu).

On a GPU machine without TensorRT, ``benchmarks/gpu_check.sh --no-tensorrt`` runs these with the
TensorRT double on the real CUDA stack: engines are the probe network (per-image channel means)
enqueued as a real kernel on visionrt's stream, so allocation, pinned memory, streams, async copies
and CUDA-graph capture/replay are the real thing and the numbers are checked against numpy. The
rehearsal runs them on the CUDA double; a GPU host with TensorRT runs them on TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import run_in_threads

from visionrt.runtime import _cuda
from visionrt.runtime.base import BackendConfig, load_backend

pytestmark = pytest.mark.gpu
SIZE, CLASSES, MAX_BATCH = 16, 5, 8


@pytest.fixture(scope="module", autouse=True)
def _needs_a_gpu() -> None:
    reason = _cuda.tensorrt_unavailable_reason(0)
    if reason:
        pytest.skip(f"not on this machine: {reason}")


@pytest.fixture(scope="module")
def probe_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpu_double.bundles import probe_bundle

    return probe_bundle(tmp_path_factory.mktemp("probe") / "bundle", size=SIZE, classes=CLASSES,
                        max_batch=MAX_BATCH)


def _batch(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _expected(batch: np.ndarray) -> np.ndarray:
    import gpu_double

    return gpu_double.probe().reference(batch, CLASSES)


def test_cuda_api_end_to_end() -> None:
    """Device and pinned memory, a non-blocking stream, async copies, a captured graph, events."""
    api = _cuda.get_api()
    api.activate(0)
    stream = api.create_stream()
    assert api.stream_handle(stream) != 0
    nbytes = 1 << 20
    host, device, back = api.alloc_host(nbytes), api.alloc_device(nbytes), api.alloc_host(nbytes)
    data = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    host.array[:] = data
    start, end = api.create_event(), api.create_event()
    api.record_event(start, stream)
    api.copy_to_device(device, host, nbytes, stream)
    api.copy_to_host(back, device, nbytes, stream)
    api.record_event(end, stream)
    api.synchronize(stream)
    np.testing.assert_array_equal(back.array, data)
    assert api.elapsed_ms(start, end) >= 0.0
    graph = api.capture_graph(stream, lambda: api.copy_to_device(device, host, nbytes, stream)
                              or True)
    assert graph is not None
    host.array[:] = data[::-1]  # a replay copies what the buffer holds at replay time
    api.launch_graph(graph, stream)
    api.copy_to_host(back, device, nbytes, stream)
    api.synchronize(stream)
    np.testing.assert_array_equal(back.array, data[::-1])
    api.destroy_graph(graph)
    for event in (start, end):
        api.destroy_event(event)
    api.destroy_stream(stream)
    api.free_host(host)
    api.free_host(back)
    api.free_device(device)


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engine_runs_on_the_callers_stream(probe_bundle: Path, cuda_graphs: bool) -> None:
    from visionrt.bundle import load_bundle

    artifact = load_bundle(probe_bundle).find(format="tensorrt")[0]
    config = BackendConfig(device="cuda:0", max_batch=MAX_BATCH, cuda_graphs=cuda_graphs)
    with load_backend("tensorrt", probe_bundle / artifact.file, artifact, config) as backend:
        for n, seed in ((1, 0), (3, 1), (MAX_BATCH, 2), (3, 3), (3, 4)):  # replays with new data
            batch = _batch(n, seed)
            np.testing.assert_allclose(backend.infer(batch), _expected(batch), rtol=1e-5,
                                       atol=1e-5)


def test_threads_share_the_bounded_pool(probe_bundle: Path) -> None:
    from visionrt.bundle import load_bundle
    from visionrt.runtime.trt import MAX_CONTEXTS

    artifact = load_bundle(probe_bundle).find(format="tensorrt")[0]
    config = BackendConfig(device="cuda:0", max_batch=MAX_BATCH)
    with load_backend("tensorrt", probe_bundle / artifact.file, artifact, config) as backend:
        def work(seed: int) -> None:
            for step in range(20):
                batch = _batch(1 + (seed + step) % MAX_BATCH, seed * 100 + step)
                np.testing.assert_allclose(backend.infer(batch), _expected(batch),
                                           rtol=1e-5, atol=1e-5)

        errors = run_in_threads(work, range(8))
        assert not errors, errors[0]
        assert backend.info().details["contexts"] <= MAX_CONTEXTS
