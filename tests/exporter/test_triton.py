"""Triton model repository: config.pbtxt parses against Triton's ModelConfig protobuf schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from visionrt.bundle import load_bundle
from visionrt.exporter.triton import preferred_batch_sizes, write_triton_repo
from visionrt.exporter.triton_python import PythonModelOptions, write_python_model


def _model_config_pb2():
    """tritonclient's generated model_config_pb2, without needing grpcio installed."""
    tritonclient = pytest.importorskip("tritonclient")
    pytest.importorskip("google.protobuf")
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        pytest.skip("this tritonclient has no grpc/model_config_pb2.py")
    spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_pbtxt_is_a_valid_model_config(tmp_path, tiny_bundle):
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    bundle = load_bundle(tiny_bundle.bundle_dir)
    fp32 = bundle.find(precision="fp32", format="onnx")[0]
    model = write_triton_repo(tmp_path / "repo", "tiny", bundle.path, bundle.spec, fp32)
    config = text_format.Parse((model.directory / "config.pbtxt").read_text(), pb2.ModelConfig())
    assert config.name == "tiny" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("image", pb2.DataType.TYPE_UINT8, [32, 32, 3])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("logits", pb2.DataType.TYPE_FP32, [3])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.Kind.KIND_AUTO
    assert (model.directory / "1" / "model.onnx").read_bytes() == (
        bundle.path / fp32.file).read_bytes()
    labels = (model.directory / config.output[0].label_filename).read_text().split()
    assert labels == list(bundle.spec.labels)


def test_cpu_int8_artifact_runs_on_cpu_instances(tmp_path, tiny_bundle):
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    bundle = load_bundle(tiny_bundle.bundle_dir)
    int8 = bundle.find(precision="int8", target="cpu")[0]
    model = write_triton_repo(tmp_path / "repo", "tiny_int8", bundle.path, bundle.spec, int8)
    config = text_format.Parse((model.directory / "config.pbtxt").read_text(), pb2.ModelConfig())
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.Kind.KIND_CPU


def test_preferred_batch_sizes():
    assert preferred_batch_sizes(32) == [4, 8, 16, 32]
    assert preferred_batch_sizes(2) == [2]


def test_visionrt_kind_is_a_valid_python_backend_config(tmp_path, tiny_bundle):
    from google.protobuf import text_format

    from visionrt.serve import protocol

    pb2 = _model_config_pb2()
    bundle = load_bundle(tiny_bundle.bundle_dir)
    spec = bundle.spec.with_(labels=('ćat \\ "q"', *bundle.spec.labels[1:]))  # escaping
    options = PythonModelOptions(backend="onnxruntime", precision="int8", instances=3,
                                 max_queue_delay_us=250, env_path=tmp_path / "env",
                                 cache_dir=tmp_path / "cache", cache_max_mb=64)
    model = write_python_model(tmp_path / "repo", "tiny", bundle.path, spec, 8, options)
    config = text_format.Parse((model.directory / "config.pbtxt").read_text(), pb2.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == ("tiny", "python", 8)
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in config.input] == [
        (protocol.INPUT_FILE, pb2.DataType.TYPE_STRING, [1], True),
        (protocol.INPUT_PIXELS, pb2.DataType.TYPE_UINT8, [-1, -1, 3], True)]
    (output,) = config.output
    assert (output.name, list(output.dims)) == (protocol.OUTPUT, [len(spec.labels)])
    assert (model.directory / output.label_filename).read_text().splitlines() == list(
        spec.labels)
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert (config.instance_group[0].count, config.instance_group[0].kind) == (
        3, pb2.ModelInstanceGroup.Kind.KIND_CPU)
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert parameters["EXECUTION_ENV_PATH"] == str(tmp_path / "env")
    assert (parameters["visionrt_backend"], parameters["visionrt_precision"]) == (
        "onnxruntime", "int8")
    assert spec.from_json(parameters["visionrt_spec"]) == spec
    assert (parameters["visionrt_cache_dir"], parameters["visionrt_cache_max_mb"]) == (
        str(tmp_path / "cache"), "64")
    assert load_bundle(model.directory / "1" / "bundle").artifacts == bundle.artifacts


def test_visionrt_kind_options_name_the_flag():
    from visionrt.errors import ConfigError

    with pytest.raises(ConfigError, match="--instances"):
        PythonModelOptions(instances=0)
    with pytest.raises(ConfigError, match="--precision"):
        PythonModelOptions(precision="fp8")
