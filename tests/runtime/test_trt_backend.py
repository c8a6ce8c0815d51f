"""Native TensorRT backend.

CPU tests cover the checks that must happen before any TensorRT object exists (CUDA probe, engine
compatibility against the manifest). GPU-marked tests build fp32 / fp16 / int8 engines from the
tiny bundle with the TensorRT API and check them against ONNX Runtime, with and without CUDA graphs;
they skip with a reason where there is no GPU or TensorRT (run them with benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import MAX_BATCH, SIZE, quantize

from visionrt import _optional
from visionrt.bundle import Artifact, TensorInfo, describe_artifact, load_bundle, write_manifest
from visionrt.errors import BackendUnavailableError, IncompatibleEngineError, ModelTamperedError
from visionrt.runtime import _cuda
from visionrt.runtime.base import BackendConfig, load_backend
from visionrt.runtime.trt import check_engine_compatible


def _engine_artifact(record: dict | None) -> Artifact:
    tensors = (TensorInfo("image", "uint8", ("batch", SIZE, SIZE, 3)),)
    return Artifact(file="model.fp32.engine", format="tensorrt", precision="fp32", sha256="0" * 64,
                    bytes=4, inputs=tensors, outputs=(TensorInfo("logits", "float32",
                                                                 ("batch", 3)),),
                    target="tensorrt", tensorrt=record)


DEVICE = _cuda.DeviceInfo(0, "NVIDIA L4", (8, 9), 24 << 30)


@pytest.mark.parametrize("record, installed, text", [
    (None, "10.13.0", "no TensorRT record"),
    ({"version": "10.12.0", "compute_capability": "8.9"}, "10.13.0", "TensorRT 10.12.0"),
    ({"version": "10.13.0", "compute_capability": "7.5", "gpu": "Tesla T4"}, "10.13.0",
     "compute capability"),
    ({"version": "10.13.0.35", "compute_capability": "8.6", "hardware_compatible": False},
     "10.13.0.35", "8.6"),
])
def test_engine_mismatches_are_refused_before_deserializing(record, installed, text) -> None:
    with pytest.raises(IncompatibleEngineError, match=text) as info:
        check_engine_compatible(_engine_artifact(record), installed, DEVICE, Path("m.engine"))
    assert "rebuild" in str(info.value)


@pytest.mark.parametrize("record, installed", [
    ({"version": "10.13.0.35", "compute_capability": "8.9"}, "10.13.0.35"),
    ({"version": "10.13.0", "compute_capability": [8, 9]}, "10.13.0.1"),
    ({"version": "10.9.0", "compute_capability": "8.9", "version_compatible": True}, "10.13.0"),
    ({"version": "10.13.0", "compute_capability": "8.0", "hardware_compatible": True}, "10.13.0"),
])
def test_compatible_engines_pass(record, installed) -> None:
    check_engine_compatible(_engine_artifact(record), installed, DEVICE, Path("m.engine"))


def test_cuda_probe_never_raises_without_a_gpu() -> None:
    count = _cuda.device_count()
    assert count >= 0
    if count == 0:
        assert "no CUDA device" in (_cuda.unavailable_reason(0) or "") or \
            "not installed" in (_cuda.unavailable_reason(0) or "")
        with pytest.raises(BackendUnavailableError):
            _cuda.device_info(0)


@pytest.mark.skipif(_cuda.device_count() > 0, reason="checks the no-GPU path")
def test_tensorrt_backend_without_gpu_fails_cleanly(tmp_path: Path) -> None:
    from visionrt.runtime.trt import TensorRTBackend

    engine = tmp_path / "model.fp32.engine"
    engine.write_bytes(b"not a plan")
    config = BackendConfig(device="cuda:0")
    with pytest.raises(BackendUnavailableError):
        load_backend("tensorrt", engine, _engine_artifact({"version": "1"}), config)
    if _optional.available("cuda.bindings"):
        # Even when called directly, the device probe comes before any TensorRT import/object.
        with pytest.raises(BackendUnavailableError, match="CUDA device"):
            TensorRTBackend(engine, _engine_artifact({"version": "1"}), config)


# -- GPU -------------------------------------------------------------------------------------
def _gpu_reason() -> str | None:
    if not _optional.available("tensorrt"):
        return "tensorrt is not installed (pip install 'visionrt[tensorrt]')"
    return _cuda.unavailable_reason(0)


gpu = pytest.mark.skipif(_gpu_reason() is not None, reason=f"needs a GPU: {_gpu_reason()}")


def _build_engine(onnx_path: Path, out: Path) -> dict:
    """Build a strongly typed engine (precision from the graph, profile 1..MAX_BATCH) the way
    TensorRT 10 and 11 both accept; return its manifest record."""
    trt = _optional.require("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i)
                                                  for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    dims = (SIZE, SIZE, 3)
    profile.set_shape("image", (1, *dims), (MAX_BATCH // 2, *dims), (MAX_BATCH, *dims))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, "engine build failed"
    out.write_bytes(bytes(plan))
    info = _cuda.device_info(0)
    return {"version": trt.__version__, "gpu": info.name,
            "compute_capability": ".".join(map(str, info.compute_capability)),
            "profile": {"min": 1, "opt": MAX_BATCH // 2, "max": MAX_BATCH}}


def _fp16_onnx(src: Path, dst: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(src), keep_io_types=True), dst)


@pytest.fixture(scope="module")
def engine_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bundle plus fp32 / fp16 / int8 engines built on this GPU."""
    import shutil

    out = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("trt") / "bundle"))
    _fp16_onnx(out / "model.fp32.onnx", out / "model.fp16.onnx")
    bundle = load_bundle(out)
    artifacts = list(bundle.artifacts)
    fp32 = bundle.find(precision="fp32")[0]
    # TensorRT needs symmetric int8 (zero points 0): its engine comes from an S8S8 QDQ graph.
    quantize(out / "model.fp32.onnx", out / "model.int8.trt.onnx", symmetric=True)
    sources = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.trt.onnx"}
    for precision, source in sources.items():
        engine = out / f"model.{precision}.engine"
        record = _build_engine(out / source, engine)
        artifacts.append(describe_artifact(
            engine, format="tensorrt", precision=precision, inputs=fp32.inputs,
            outputs=fp32.outputs, batch={"min": 1, "max": MAX_BATCH}, target="tensorrt",
            tensorrt=record, parity={"reference": "torch", "top1_agreement": 1.0}))
    write_manifest(out, bundle.spec, artifacts, bundle.calibration, bundle.source)
    return out


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-3), ("fp16", 2e-2), ("int8", 0.1)])
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engine_matches_onnxruntime(engine_bundle: Path, precision, atol, cuda_graphs) -> None:
    from visionrt.runtime.classifier import Classifier

    reference_file = "int8" if precision == "int8" else "fp32"
    with Classifier.load(engine_bundle, backend="onnxruntime", device="cpu",
                         precision=reference_file) as ref, \
            Classifier.load(engine_bundle, backend="tensorrt", precision=precision,
                            cuda_graphs=cuda_graphs) as clf:
        info = clf.info()
        assert info["backend"] == "tensorrt" and info["precision"] == precision
        for n in (1, 3, MAX_BATCH, MAX_BATCH + 5):  # split + bucket padding + graph per size
            batch = _batch(n, seed=n)
            np.testing.assert_allclose(clf(batch), ref(batch), atol=atol)
            np.testing.assert_allclose(clf(batch), clf(batch), atol=0)  # graph replay stable


@gpu
@pytest.mark.gpu
def test_engine_per_thread_contexts(engine_bundle: Path) -> None:
    from visionrt.runtime.classifier import Classifier

    with Classifier.load(engine_bundle, backend="tensorrt", precision="fp32") as clf:
        expected = {n: clf(_batch(n, n)) for n in range(1, 9)}
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for _ in range(20):
                    np.testing.assert_allclose(clf(_batch(n, n)), expected[n], atol=1e-5)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 9)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors
        assert clf.info()["contexts"] >= 2


@gpu
@pytest.mark.gpu
def test_auto_on_gpu_picks_tensorrt(engine_bundle: Path) -> None:
    from visionrt.runtime.classifier import Classifier

    with Classifier.load(engine_bundle) as clf:
        assert clf.info()["backend"] == "tensorrt" and clf.info()["device"] == "cuda:0"


@gpu
@pytest.mark.gpu
def test_tampered_or_foreign_engine_is_refused(engine_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from visionrt.runtime.classifier import Classifier

    copy = Path(shutil.copytree(engine_bundle, tmp_path / "b"))
    with open(copy / "model.fp32.engine", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelTamperedError):
        Classifier.load(copy, backend="tensorrt", precision="fp32")
    copy = Path(shutil.copytree(engine_bundle, tmp_path / "c"))
    data = json.loads((copy / "manifest.json").read_text())
    for artifact in data["artifacts"]:
        if artifact["format"] == "tensorrt":
            artifact["tensorrt"]["version"] = "9.0.0"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IncompatibleEngineError, match="9.0.0"):
        Classifier.load(copy, backend="tensorrt", precision="fp32")


@pytest.mark.gpu
@pytest.mark.skipif(_cuda.unavailable_reason(0) is not None
                    or "CUDAExecutionProvider" not in __import__("onnxruntime")
                    .get_available_providers(), reason="needs a GPU and onnxruntime-gpu")
def test_onnxruntime_cuda_provider_really_loads(tiny_bundle: Path) -> None:
    from visionrt.runtime.classifier import Classifier

    with Classifier.load(tiny_bundle, backend="onnxruntime", device="cuda",
                         precision="fp32") as clf, \
            Classifier.load(tiny_bundle, backend="onnxruntime", device="cpu",
                            precision="fp32") as ref:
        assert clf.info()["provider"] == "CUDAExecutionProvider"
        for n in (1, 5, MAX_BATCH):
            np.testing.assert_allclose(clf(_batch(n)), ref(_batch(n)), atol=1e-4)


# -- the backend's control flow on CPU, against a fake TensorRT + fake CUDA ----------------------
class _FakeCuda:
    """Device memory as numpy arrays keyed by fake pointers; graphs replay a recorded enqueue."""

    name = "fake-cuda"

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.next_ptr = 0x1000
        self.graphs_captured = 0
        self.freed = 0

    def activate(self, index: int) -> None:
        pass

    def alloc_device(self, nbytes: int) -> _cuda.DeviceBuffer:
        self.next_ptr += 0x100000
        self.memory[self.next_ptr] = np.zeros(nbytes, np.uint8)
        return _cuda.DeviceBuffer(self.next_ptr, nbytes)

    def alloc_host(self, nbytes: int) -> _cuda.HostBuffer:
        array = np.zeros(nbytes, np.uint8)
        return _cuda.HostBuffer(array.ctypes.data, nbytes, array)

    def free_device(self, buffer) -> None:
        self.freed += 1
        del self.memory[buffer.ptr]

    def free_host(self, buffer) -> None:
        self.freed += 1

    def create_stream(self) -> object:
        return object()

    def stream_handle(self, stream) -> int:
        return id(stream)

    def destroy_stream(self, stream) -> None:
        pass

    def copy_to_device(self, dst, src, nbytes, stream) -> None:
        self.memory[dst.ptr][:nbytes] = src.array[:nbytes]

    def copy_to_host(self, dst, src, nbytes, stream) -> None:
        dst.array[:nbytes] = self.memory[src.ptr][:nbytes]

    def synchronize(self, stream) -> None:
        pass

    def capture_graph(self, stream, enqueue):
        self.graphs_captured += 1
        return enqueue  # "replaying" the graph runs the same enqueue again

    def launch_graph(self, graph, stream) -> None:
        assert graph()

    def destroy_graph(self, graph) -> None:
        pass


def _fake_tensorrt(cuda: _FakeCuda):
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0.35"
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: dtype
    trt.runtimes = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Context:
        def __init__(self):
            self.shape, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return 1 <= shape[0] <= MAX_BATCH

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, handle):
            n = self.shape[0]
            pixels = cuda.memory[self.addresses["image"]][: n * SIZE * SIZE * 3]
            means = pixels.reshape(n, -1, 3).mean(axis=1).astype(np.float32) / 32.0
            out = cuda.memory[self.addresses["logits"]]
            out[: means.nbytes] = means.reshape(-1).view(np.uint8)
            return True

    class Engine:
        num_io_tensors = 2
        contexts = 0

        def get_tensor_name(self, i):
            return ("image", "logits")[i]

        def get_tensor_mode(self, name):
            return "in" if name == "image" else "out"

        def get_tensor_dtype(self, name):
            return np.uint8 if name == "image" else np.float32

        def get_tensor_shape(self, name):
            return (-1, SIZE, SIZE, 3) if name == "image" else (-1, 3)

        def get_tensor_profile_shape(self, name, profile):
            return [(b, SIZE, SIZE, 3) for b in (1, MAX_BATCH // 2, MAX_BATCH)]

        def create_execution_context(self):
            Engine.contexts += 1
            return Context()

    class Runtime:
        def __init__(self, logger):
            trt.runtimes.append(self)

        def deserialize_cuda_engine(self, plan):
            return Engine() if plan == b"good plan" else None

    trt.Logger, trt.Runtime, trt.Engine = Logger, Runtime, Engine
    return trt


@pytest.fixture
def fake_gpu(monkeypatch):
    cuda = _FakeCuda()
    trt = _fake_tensorrt(cuda)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    monkeypatch.setattr(_cuda, "get_api", lambda: cuda)
    monkeypatch.setattr(_cuda, "device_info", lambda index=0: DEVICE)
    return cuda, trt


def _plan(tmp_path: Path, data: bytes, *, recorded: bytes | None = None) -> tuple[Path, Artifact]:
    import hashlib
    from dataclasses import replace

    path = tmp_path / "model.fp32.engine"
    path.write_bytes(data)
    artifact = replace(_engine_artifact({"version": "10.13.0.35", "compute_capability": "8.9"}),
                       sha256=hashlib.sha256(recorded or data).hexdigest())
    return path, artifact


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_trt_backend_flow_matches_reference(fake_gpu, tmp_path: Path, cuda_graphs) -> None:
    from runtime_helpers import FakeBackend, tiny_spec

    from visionrt.runtime.classifier import Classifier
    from visionrt.runtime.trt import TensorRTBackend

    cuda, _ = fake_gpu
    path, artifact = _plan(tmp_path, b"good plan")
    backend = TensorRTBackend(path, artifact, BackendConfig(device="cuda:0",
                                                            cuda_graphs=cuda_graphs))
    assert backend.max_batch == MAX_BATCH and backend.batch_buckets[-1] == MAX_BATCH
    reference = Classifier(FakeBackend(max_batch=MAX_BATCH), tiny_spec())
    with Classifier(backend, tiny_spec()) as clf:
        for n in (1, 3, 3, 16, 21, 1):  # shape changes, bucket padding, split above the max
            batch = np.random.default_rng(n).integers(0, 256, (n, SIZE, SIZE, 3), np.uint8)
            np.testing.assert_allclose(clf(batch), reference(batch), rtol=1e-6)
        results = []
        threads = [threading.Thread(target=lambda: results.append(clf.info()["contexts"]))
                   for _ in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        worker = threading.Thread(target=lambda: clf(batch))
        worker.start()
        worker.join()
        assert clf.info()["contexts"] == 2  # one execution context per calling thread
    assert cuda.freed == 8 and not cuda.memory  # 2 slots x (2 device + 2 pinned) buffers
    assert cuda.graphs_captured == (len({1, 4, 16, 8}) + 1 if cuda_graphs else 0)


def test_trt_backend_checks_bytes_and_deserialization(fake_gpu, tmp_path: Path) -> None:
    from visionrt.runtime.trt import TensorRTBackend

    _, trt = fake_gpu
    config = BackendConfig(device="cuda:0")
    path, artifact = _plan(tmp_path, b"swapped plan", recorded=b"good plan")
    with pytest.raises(ModelTamperedError):
        TensorRTBackend(path, artifact, config)
    assert not trt.runtimes  # refused before any TensorRT runtime existed
    path, artifact = _plan(tmp_path, b"plan from another version")
    with pytest.raises(IncompatibleEngineError, match="could not deserialize"):
        TensorRTBackend(path, artifact, config)
