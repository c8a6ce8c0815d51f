"""Catalogue A6-A11: I/O vs manifest, TensorRT engines (version, GPU, hash), providers, doctor.

The TensorRT checks run against the TensorRT/CUDA double (tests/gpu_double), whose counters show
whether ``deserialize_cuda_engine`` was reached (it must not be, for a refused engine). The same
round trip on a real GPU is tests/runtime/test_trt_engines.py under ``-m gpu``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from visionrt.bundle import MANIFEST, Artifact
from visionrt.errors import (
    BackendUnavailableError,
    IncompatibleEngineError,
    ModelFileError,
    ModelTamperedError,
    ProviderUnavailableError,
    UnsafeModelError,
    VisionRTError,
)
from visionrt.runtime import trt as trt_backend
from visionrt.runtime.base import BackendConfig
from visionrt.runtime.classifier import Classifier


# --- A6 I/O does not match the manifest -------------------------------------------------------
def _edited_bundle(tiny_bundle: Path, tmp_path: Path, edit) -> Path:
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / MANIFEST).read_text())
    edit(manifest["artifacts"][0])
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda a: a["inputs"][0].update(name="input_1"), "input_1"),
        (lambda a: a["inputs"][0].update(dtype="float32"), "float32"),
        (lambda a: a["inputs"][0].update(shape=["batch", 3, 32]), "input"),  # NCHW vs NHWC rank
        (lambda a: a["outputs"][0].update(name="probs"), "probs"),
    ],
)
def test_A6_io_that_differs_from_the_manifest_is_named_at_load(tiny_bundle, tmp_path, edit,
                                                               fragment):
    bundle = _edited_bundle(tiny_bundle, tmp_path, edit)
    with pytest.raises(ModelFileError, match=fragment) as info:
        Classifier.load(bundle, backend="onnxruntime", device="cpu")
    message = str(info.value)
    assert "manifest" in message and ("image" in message or "logits" in message)


def test_A6_layout_mismatch_between_manifest_and_graph_is_refused(tiny_bundle, tmp_path):
    # Same rank, other layout: the manifest claims NCHW 3x32x32, the graph takes NHWC 32x32x3.
    bundle = _edited_bundle(tiny_bundle, tmp_path,
                            lambda a: a["inputs"][0].update(shape=["batch", 3, 32, 32]))
    with pytest.raises(ModelFileError, match="3, 32, 32|3x32x32|shape"):
        Classifier.load(bundle, backend="onnxruntime", device="cpu")


def test_A6_batch_above_a_fixed_batch_graph_is_never_sent(tiny_bundle, tmp_path):
    bundle = _edited_bundle(tiny_bundle, tmp_path, lambda a: a.update(batch={"min": 1, "max": 2}))
    with Classifier.load(bundle, backend="onnxruntime", device="cpu") as clf:
        assert clf.max_batch == 2
        out = clf(np.zeros((5, 32, 32, 3), np.uint8))
        assert out.shape == (5, 4)


# --- TensorRT, against the TensorRT/CUDA double (tests/gpu_double) -----------------------------
@pytest.fixture
def engine(trt_double, tiny_bundle, tmp_path) -> tuple[Path, Artifact]:
    """An fp32 engine of the tiny bundle, built by visionrt's builder on the double's L4 (8.9)."""
    import shutil

    from gpu_double.bundles import add_engine

    out = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    artifact = add_engine(out, "fp32", "model.fp32.onnx", max_batch=16)
    trt_double.state().counters.clear()
    return out / artifact.file, artifact


def _load_engine(path: Path, artifact: Artifact | None):
    config = BackendConfig(device="cuda:0", precision="fp32", max_batch=16)
    return trt_backend.TensorRTBackend(path, artifact, config)


def _record(artifact: Artifact, **changes) -> Artifact:
    return replace(artifact, tensorrt={**artifact.tensorrt, **changes})


# --- A7 other TensorRT version ----------------------------------------------------------------
def test_A7_engine_from_another_tensorrt_version_is_refused_before_deserializing(
        engine, trt_double):
    path, artifact = engine
    with pytest.raises(IncompatibleEngineError) as info:
        _load_engine(path, _record(artifact, version="10.9.0.34"))
    message = str(info.value)
    assert "10.9.0.34" in message and "10.13.0.35" in message and "rebuild" in message
    assert "engines_deserialized" not in trt_double.state().counters


def test_A7_deserialize_returning_none_is_a_typed_error_not_attribute_error(engine, trt_double):
    path, artifact = engine
    trt_double.configure(trt_version="10.13.3.9")  # TensorRT itself refuses the plan
    with pytest.raises(IncompatibleEngineError, match="could not deserialize") as info:
        _load_engine(path, _record(artifact, version="10.13.3.9"))
    assert "10.13.3.9" in str(info.value) and "rebuild" in str(info.value)
    assert any("not compatible with this version" in line
               for _, line in trt_double.state().trt_log)


def test_A7_engine_without_a_manifest_record_is_not_deserialized(engine, trt_double):
    path, artifact = engine
    with pytest.raises(IncompatibleEngineError, match="no TensorRT record"):
        _load_engine(path, replace(artifact, tensorrt=None))
    with pytest.raises(IncompatibleEngineError):
        _load_engine(path, None)  # a bare engine file: nothing to check it against
    assert "engines_deserialized" not in trt_double.state().counters


# --- A8 other GPU -----------------------------------------------------------------------------
def test_A8_engine_for_another_compute_capability_is_refused_before_deserializing(
        engine, trt_double):
    path, artifact = engine
    trt_double.configure(devices=[{"name": "NVIDIA H200", "cc": [9, 0]}])
    with pytest.raises(IncompatibleEngineError) as info:
        _load_engine(path, artifact)
    message = str(info.value)
    assert "8.9" in message and "NVIDIA Double L4" in message and "9.0" in message
    assert "NVIDIA H200" in message
    assert "engines_deserialized" not in trt_double.state().counters


def test_A8_a_legacy_hardware_compatible_flag_lets_nothing_through(engine, trt_double):
    # The exporter never builds hardware-compatible engines; a manifest claiming so is ignored.
    path, artifact = engine
    trt_double.configure(devices=[{"name": "NVIDIA H200", "cc": [9, 0]}])
    with pytest.raises(IncompatibleEngineError, match="compute capability 8.9"):
        _load_engine(path, _record(artifact, hardware_compatible=True))


# --- A9 tampered engine -----------------------------------------------------------------------
def test_A9_engine_whose_bytes_do_not_match_the_manifest_is_never_deserialized(
        engine, trt_double):
    path, artifact = engine
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")  # swapped after export
    with pytest.raises(ModelTamperedError, match="sha256"):
        _load_engine(path, artifact)
    assert "engines_deserialized" not in trt_double.state().counters


def test_A9_bundle_digest_is_checked_before_any_backend_sees_the_file(tiny_bundle, tmp_path,
                                                                       monkeypatch):
    import shutil

    from visionrt.runtime import ort

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    model = out / "model.fp32.onnx"
    model.write_bytes(model.read_bytes() + b"\x00")
    opened = []
    monkeypatch.setattr(ort, "OrtBackend", lambda *a, **k: opened.append(a) or None)
    with pytest.raises(ModelTamperedError):
        Classifier.load(out, backend="onnxruntime", device="cpu")
    assert opened == []


def test_A9_no_cuda_device_means_no_tensorrt_runtime_is_created(engine, trt_double):
    # Without a GPU the backend must fail typed, before any TensorRT object exists.
    path, artifact = engine
    trt_double.configure(driver="no-device")
    with pytest.raises(BackendUnavailableError, match="no CUDA device found"):
        _load_engine(path, artifact)
    assert "runtimes" not in trt_double.state().counters


# --- A10 provider silently missing ------------------------------------------------------------
def test_A10_cuda_provider_that_quietly_falls_back_to_cpu_raises(tiny_bundle, monkeypatch):
    import onnxruntime as ort

    from visionrt.runtime import ort as ort_backend

    real = ort.InferenceSession

    def quiet_fallback(path, options=None, providers=None, **kw):  # what ORT really does
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", quiet_fallback)
    config = BackendConfig(device="cuda:0", precision="fp32", max_batch=16)
    with pytest.raises(ProviderUnavailableError) as info:
        ort_backend.OrtBackend(tiny_bundle / "model.fp32.onnx", None, config, provider="cuda")
    message = str(info.value)
    assert "CUDAExecutionProvider" in message and "CPUExecutionProvider" in message
    assert "doctor" in message


def test_A10_explicit_gpu_request_is_never_downgraded(tiny_bundle):
    # No GPU here: asking for cuda must fail loudly, not run on the CPU.
    with pytest.raises((BackendUnavailableError, ProviderUnavailableError, VisionRTError)):
        Classifier.load(tiny_bundle, backend="onnxruntime", device="cuda")


# --- A11 duplicate installations --------------------------------------------------------------
def test_A11_doctor_flags_duplicate_tensorrt_and_onnxruntime_installs(monkeypatch):
    from visionrt.cli import diagnostics

    monkeypatch.setattr(diagnostics, "trt_library_paths",
                        lambda: ["/usr/lib/x86_64-linux-gnu/libnvinfer.so.10",
                                 "/opt/venv/lib/python3.11/site-packages/tensorrt_libs/"
                                 "libnvinfer.so.10"])
    real_version = diagnostics.package_version
    monkeypatch.setattr(diagnostics, "package_version",
                        lambda name: "1.20.0" if name == "onnxruntime-gpu" else real_version(name))
    diag = diagnostics.collect(check_providers=False)
    assert len(diag.trt_libraries) == 2
    notes = " | ".join(diag.warnings)
    assert "2 TensorRT libraries" in notes
    assert "onnxruntime and onnxruntime-gpu" in notes
    assert diag.versions["onnxruntime"]


def test_A11_doctor_cli_prints_library_paths_and_versions(monkeypatch):
    from typer.testing import CliRunner

    from visionrt.cli import app, diagnostics

    monkeypatch.setattr(diagnostics, "trt_library_paths",
                        lambda: ["/a/libnvinfer.so.10", "/b/libnvinfer.so.10"])
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "/a/libnvinfer.so.10" in result.output and "/b/libnvinfer.so.10" in result.output
    assert "onnxruntime" in result.output


# --- A5 at load time --------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["initializer", "subgraph"])
def test_A5_runtime_refuses_escaping_external_data_at_load(tiny_bundle, tmp_path, where):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from visionrt.spec import ModelSpec

    spec = ModelSpec(arch="x", labels=("a", "b"), input_size=(8, 8))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(8, np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "weight")
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 8, 8, 3])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0)]
    initializers = [axes]
    if where == "subgraph":
        branch = helper.make_graph([helper.make_node("MatMul", ["m", "weight"], ["o"])], "then",
                                   [], [helper.make_tensor_value_info("o", TensorProto.FLOAT,
                                                                      ["batch", 2])], [weight])
        cond = numpy_helper.from_array(np.array(True), "cond")
        nodes.append(helper.make_node("If", ["cond"], ["logits"], then_branch=branch,
                                      else_branch=branch))
        initializers.append(cond)
    else:
        nodes.append(helper.make_node("MatMul", ["m", "weight"], ["logits"]))
        initializers.append(weight)
    model = helper.make_model(helper.make_graph(nodes, "g", [image], [logits], initializers),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {"visionrt.spec": spec.to_json(indent=None)})
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.name == "weight":
            onnx.external_data_helper.set_external_data(tensor, location="../secret.bin",
                                                        offset=0, length=24)
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match=r"\.\./secret\.bin|outside"):
        Classifier.load(path, backend="onnxruntime", device="cpu")
