"""`visionrt bench` as a user runs it: table, --json, --plot, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from visionrt.cli import app

onnx = pytest.importorskip("onnx")
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-artifact fp32 bundle: uint8 16x16 image -> channel means -> 3 logits."""
    from onnx import TensorProto, helper, numpy_helper

    from visionrt.bundle import TensorInfo, describe_artifact, write_manifest
    from visionrt.spec import ModelSpec

    labels = ("red", "green", "blue")
    spec = ModelSpec(arch="tiny", labels=labels, input_size=(16, 16), crop_pct=1.0)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["x", "axes"], ["logits"], keepdims=0)],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 16, 16, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {"visionrt.spec": spec.to_json(indent=None)})
    out = tmp_path_factory.mktemp("cli-bench") / "tiny"
    out.mkdir()
    onnx.save(model, str(out / "model.fp32.onnx"))
    artifact = describe_artifact(
        out / "model.fp32.onnx", format="onnx", precision="fp32", target="any",
        batch={"min": 1, "max": 4}, inputs=(TensorInfo("image", "uint8", ("batch", 16, 16, 3)),),
        outputs=(TensorInfo("logits", "float32", ("batch", 3)),))
    write_manifest(out, spec, [artifact])
    return out


def test_bench_prints_a_table_and_writes_json_and_plot(tiny_bundle, tmp_path):
    result = runner.invoke(app, [
        "bench", str(tiny_bundle), "--backends", "onnxruntime", "--batch-sizes", "1,2",
        "--duration", "0.1", "--warmup", "0", "--json", str(tmp_path / "b.json"),
        "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and "img/s" in result.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert [(r["batch_size"], r["mode"], r["precision"]) for r in data["results"]] == [
        (1, "engine", "fp32"), (2, "engine", "fp32")]
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_help_names_the_options():
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for option in ("--batch-sizes", "--concurrency", "--images", "--baseline", "--json",
                   "--plot", "--duration", "--warmup", "--precisions", "--backends"):
        assert option in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["bench", "/no/such/bundle"], "model not found"),
    (["bench", "{bundle}", "--batch-sizes", "1,x"], "error: --batch-sizes 1,x is invalid; "
     "expected comma-separated whole numbers, e.g. --batch-sizes 1,8,32"),
    (["bench", "{bundle}", "--backends", "onnxruntime,"], "error: --backends onnxruntime, is "
     "invalid; expected comma-separated names, e.g. --backends onnxruntime,openvino"),
    (["bench", "{bundle}", "--baseline", "keras"], "baseline"),
])
def test_user_errors_are_one_line_and_exit_1(tiny_bundle, args, message):
    args = [a.replace("{bundle}", str(tiny_bundle)) for a in args]
    result = subprocess.run([sys.executable, "-m", "visionrt", *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
