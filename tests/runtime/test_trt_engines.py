"""TensorRT engines end to end through the runtime: parity, CUDA graphs, threads, refusals.

Every test runs twice: against the TensorRT/CUDA double (default set, any CPU) and, marked gpu,
against whatever TensorRT and GPU this process sees (a GPU host, or the double on PYTHONPATH under
``benchmarks/gpu_check.sh --rehearse``); the latter skips "not on this machine" elsewhere. Engines
are built by visionrt's own builder from the tiny bundle's fp32, fp16 and S8S8 int8 graphs and are
compared with ONNX Runtime (CPU) running the very graph each engine was built from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import run_in_threads
from runtime_helpers import MAX_BATCH, SIZE, quantize

from visionrt.errors import IncompatibleEngineError, ModelTamperedError
from visionrt.runtime import _cuda
from visionrt.runtime.base import BackendConfig, load_backend
from visionrt.runtime.classifier import Classifier

SOURCES = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.trt.onnx"}
TOLERANCE = {"double": 1e-5, "machine": {"fp32": 1e-3, "fp16": 2e-2, "int8": 2e-2}}


@pytest.fixture(scope="module", params=["double", pytest.param("machine", marks=pytest.mark.gpu)])
def gpu_env(request):
    """"double": the test double for this module; "machine": this process's TensorRT + GPU."""
    if request.param == "machine":
        reason = _cuda.tensorrt_unavailable_reason(0)
        if reason:
            pytest.skip(f"not on this machine: {reason}")
        yield request.param
        return
    import gpu_double

    with gpu_double.activated() as double:
        yield request.param
        assert not double.state().violations, double.state().violations


@pytest.fixture(scope="module")
def engines(gpu_env, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bundle + fp16 and S8S8 graphs + an engine built from each of the three."""
    from gpu_double.bundles import add_engine

    from visionrt.exporter.precision import convert_fp16

    out = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("trt") / "bundle"))
    convert_fp16(out / "model.fp32.onnx", out / SOURCES["fp16"])
    quantize(out / "model.fp32.onnx", out / SOURCES["int8"], symmetric=True)
    for precision, source in SOURCES.items():
        add_engine(out, precision, source, max_batch=MAX_BATCH)
    return out


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _reference(engines: Path, precision: str):
    backend = load_backend("onnxruntime", engines / SOURCES[precision], None,
                           BackendConfig(device="cpu", precision=precision, max_batch=MAX_BATCH))
    return Classifier(backend, Classifier.load(engines, backend="onnxruntime",
                                               device="cpu").spec)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engine_matches_its_own_graph_on_onnxruntime(gpu_env, engines, precision,
                                                     cuda_graphs) -> None:
    atol = TOLERANCE[gpu_env] if gpu_env == "double" else TOLERANCE[gpu_env][precision]
    with _reference(engines, precision) as ref, \
            Classifier.load(engines, backend="tensorrt", precision=precision,
                            cuda_graphs=cuda_graphs) as clf:
        info = clf.info()
        assert (info["backend"], info["precision"], info["device"]) == ("tensorrt", precision,
                                                                        "cuda:0")
        for n in (1, 3, MAX_BATCH, MAX_BATCH + 5, 3):  # shape changes, padding, split, replay
            batch = _batch(n, seed=n)
            np.testing.assert_allclose(clf(batch), ref(batch), atol=atol)
            np.testing.assert_array_equal(clf(batch), clf(batch))


def test_threads_share_a_bounded_pool_of_contexts(gpu_env, engines) -> None:
    from visionrt.runtime.trt import MAX_CONTEXTS

    with Classifier.load(engines, backend="tensorrt", precision="fp32") as clf:
        expected = {n: clf(_batch(n, n)) for n in range(1, 9)}

        def worker(n: int) -> None:
            for _ in range(10):
                np.testing.assert_allclose(clf(_batch(n, n)), expected[n], atol=1e-5)

        errors = run_in_threads(worker, range(1, 9))
        assert not errors, errors[0]
        assert 1 <= clf.info()["contexts"] <= MAX_CONTEXTS  # 8 threads, never 8 contexts


def test_auto_on_a_gpu_picks_tensorrt_and_skips_unverified_engines(gpu_env, engines) -> None:
    with Classifier.load(engines) as clf:
        info = clf.info()
        assert (info["backend"], info["device"], info["precision"]) == ("tensorrt", "cuda:0",
                                                                        "fp32")
        assert "model.int8.engine: not verified accurate" in info["reason"]


def test_tampered_or_foreign_engines_are_refused(gpu_env, engines, tmp_path) -> None:
    copy = Path(shutil.copytree(engines, tmp_path / "tampered"))
    with open(copy / "model.fp32.engine", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelTamperedError, match="sha256"):
        Classifier.load(copy, backend="tensorrt", precision="fp32")
    copy = Path(shutil.copytree(engines, tmp_path / "foreign"))
    manifest = json.loads((copy / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["format"] == "tensorrt":
            artifact["tensorrt"]["version"] = "9.0.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleEngineError, match="TensorRT 9.0.0 but TensorRT .* is "
                       "installed; rebuild it"):
        Classifier.load(copy, backend="tensorrt", precision="fp32")
