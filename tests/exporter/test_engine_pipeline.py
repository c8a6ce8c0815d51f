"""The GPU path end to end against the TensorRT/CUDA double, as a user runs it:

    visionrt export RUN --engine --precision fp32,fp16,int8 --calib DIR --triton REPO
    Classifier.load(bundle, backend="tensorrt").predict(...)
    visionrt bench bundle --backends tensorrt
    MicroBatcher with 8 client threads on that backend

The double executes every engine's own ONNX graph through ONNX Runtime, so the parity records,
predictions and agreement checked here are computed, not assumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_in_threads
from typer.testing import CliRunner

from visionrt.bundle import load_bundle
from visionrt.cli import app
from visionrt.images import list_images
from visionrt.runtime.batcher import MicroBatcher
from visionrt.runtime.classifier import Classifier


@pytest.fixture(scope="module")
def exported(run_dir: Path, tiny_imagefolder: Path, tmp_path_factory) -> tuple[Path, Path, str]:
    """The CLI export of the tiny run with engines and a Triton repository (under the double)."""
    import gpu_double

    out = tmp_path_factory.mktemp("gpu-path")
    bundle, repo = out / "bundle", out / "triton"
    with gpu_double.activated() as double:
        result = CliRunner().invoke(app, [
            "export", str(run_dir), "--out", str(bundle), "--engine",
            "--precision", "fp32,fp16,int8", "--calib", str(tiny_imagefolder),
            "--triton", str(repo), "--max-batch", "8", "--calib-samples", "18",
            "--verify-samples", "18", "--allow-mismatch"])  # random weights: near-ties may flip
        assert not double.state().violations, double.state().violations
    assert result.exit_code == 0, result.output
    return bundle, repo, result.output


def test_export_writes_verified_engines_and_a_triton_plan(exported) -> None:
    bundle, repo, output = exported
    engines = {a.precision: a for a in load_bundle(bundle).artifacts if a.format == "tensorrt"}
    assert set(engines) == {"fp32", "fp16", "int8"}
    for precision, engine in engines.items():
        assert engine.parity["backend"] == "tensorrt" and engine.parity["samples"] == 18
        assert f"model.{precision}.engine" in output
    assert engines["fp32"].parity["passed"] and engines["fp32"].parity["max_abs_error"] < 1e-3
    model = repo / "bundle"
    assert (model / "1" / "model.plan").read_bytes() == (bundle / "model.fp32.engine").read_bytes()
    assert 'platform: "tensorrt_plan"' in (model / "config.pbtxt").read_text()


def test_tensorrt_predictions_match_onnxruntime(exported, trt_double, tiny_imagefolder) -> None:
    from visionrt.runtime.base import BackendConfig, load_backend

    bundle, _, _ = exported
    files = list_images(tiny_imagefolder)[:12]
    with Classifier.load(bundle, backend="tensorrt") as clf:
        info = clf.info()
        assert info["device"] == "cuda:0"  # precision auto: the fastest verified engine
        engine = next(a for a in load_bundle(bundle).artifacts if a.file == info["file"])
        graph = bundle / engine.tensorrt["built_from"]  # ONNX Runtime on the same graph
        ort = load_backend("onnxruntime", graph, None, BackendConfig(
            device="cpu", precision=engine.precision, max_batch=8))
        with Classifier(ort, clf.spec) as ref:
            got, want = clf.predict(files, top_k=2), ref.predict(files, top_k=2)
    assert all(p.ok for p in got)
    assert [p.label for p in got] == [p.label for p in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a.score - b.score) < 1e-4


def test_bench_measures_every_engine(exported, trt_double, tmp_path) -> None:
    bundle, _, _ = exported
    report = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(bundle), "--backends", "tensorrt",
                                      "--batch-sizes", "1,4", "--duration", "0.2", "--warmup",
                                      "0.05", "--concurrency", "8", "--json", str(report)])
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["results"]
    assert {(r["backend"], r["device"]) for r in rows} == {("tensorrt", "cuda")}
    assert {r["precision"] for r in rows} == {"fp32", "fp16", "int8"}
    assert {r["mode"] for r in rows} == {"engine", "server"}
    assert all(r["throughput"] > 0 and not r["errors"] for r in rows)


def test_micro_batcher_with_eight_threads(exported, trt_double, tiny_imagefolder) -> None:
    from visionrt.runtime.trt import MAX_CONTEXTS

    bundle, _, _ = exported
    files = list_images(tiny_imagefolder)[:16]
    with Classifier.load(bundle, backend="tensorrt", precision="fp32") as clf:
        alone = {str(f): p.label for f, p in zip(files, clf.predict(files), strict=True)}
        answers: dict[str, str] = {}
        with MicroBatcher(clf, max_batch=8, max_wait_ms=2.0) as batcher:
            def client(start: int) -> None:
                for path in files[start::8]:
                    answers[str(path)] = batcher.submit(path, timeout=30).result(30).label

            errors = run_in_threads(client, range(8))
        assert not errors, errors[0]
        assert answers == alone
        assert clf.info()["contexts"] <= MAX_CONTEXTS
