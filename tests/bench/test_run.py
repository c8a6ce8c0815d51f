"""`run_bench` on a tiny model: every mode, the JSON schema, the torch-baseline plumbing, the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from visionrt.bench import run as bench
from visionrt.bench.run import BenchConfig, BenchReport, BenchResult, run_bench
from visionrt.errors import ConfigError

onnx = pytest.importorskip("onnx")

SIZE = 16
LABELS = ("a", "b", "c", "d")
ROW_KEYS = {"backend", "precision", "batch_size", "concurrency", "mode", "throughput",
            "latency_ms", "cold_start_ms", "samples"}
EXECUTED = {"fp32", "fp16", "bf16", "int8"}


def write_tiny_bundle(out: Path, host: bool = False) -> Path:
    """image -> Cast -> mean over H, W -> MatMul -> 4 logits, as a one-artifact bundle.

    ``host=False``: uint8 NHWC input (preprocessing in the graph); ``host=True``: float32 NCHW
    input normalised by the runtime on the host (``--preprocess host``).
    """
    from onnx import TensorProto, helper, numpy_helper

    from visionrt.bundle import TensorInfo, describe_artifact, write_manifest
    from visionrt.spec import ModelSpec

    spec = ModelSpec(arch="tiny", labels=LABELS, input_size=(SIZE, SIZE), crop_pct=1.0,
                     input_dtype="float32" if host else "uint8",
                     input_layout="NCHW" if host else "NHWC")
    shape = ["batch", 3, SIZE, SIZE] if host else ["batch", SIZE, SIZE, 3]
    dtype, name = (TensorProto.FLOAT, "float32") if host else (TensorProto.UINT8, "uint8")
    weight = np.random.default_rng(0).normal(size=(3, len(LABELS))).astype(np.float32) / 255
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["x", "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("image", dtype, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[numpy_helper.from_array(np.array([2, 3] if host else [1, 2], np.int64),
                                             "axes"),
                     numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {"visionrt.spec": spec.to_json(indent=None),
                                   "labels": json.dumps(list(LABELS))})
    out.mkdir(parents=True)
    path = out / "model.fp32.onnx"
    onnx.save(model, str(path))
    artifact = describe_artifact(
        path, format="onnx", precision="fp32", target="any", batch={"min": 1, "max": 8},
        inputs=(TensorInfo("image", name, tuple(shape)),),
        outputs=(TensorInfo("logits", "float32", ("batch", len(LABELS))),))
    write_manifest(out, spec, [artifact], source={"kind": "test", "arch": "tiny"})
    return out


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("bench") / "tiny")


def quick(model: Path, **changes) -> BenchConfig:
    options = {"model": model, "backends": ("onnxruntime",), "batch_sizes": (1, 4),
               "duration": 0.15, "warmup": 0.02} | changes
    return BenchConfig(**options)


def check_row_schema(row: dict) -> None:
    assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
    assert set(row["latency_ms"]) == {"p50", "p90", "p99", "max"}
    latency = row["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert row["throughput"] > 0 and row["samples"] >= 1
    assert row["cold_start_ms"] >= row["load_ms"] > 0
    assert row["mode"] in bench.MODES


def test_engine_end_to_end_and_server_rows(tiny_bundle, tiny_imagefolder):
    report = run_bench(quick(tiny_bundle, images=tiny_imagefolder, concurrency=(1, 3)))
    modes = [(r.mode, r.batch_size, r.concurrency) for r in report.results]
    assert modes == [("engine", 1, 1), ("end_to_end", 1, 1), ("engine", 4, 1),
                     ("end_to_end", 4, 1), ("server", 8, 1), ("server", 8, 3)]  # batcher capped at max 8
    for row in report.results:
        assert row.backend == "onnxruntime"
        assert row.precision == "fp32"  # what executed, read from Classifier.info()
        assert row.errors == 0
        check_row_schema(row.to_dict())
    # one classifier load: every row shares its cold start
    assert len({r.cold_start_ms for r in report.results}) == 1


def test_a_broken_file_in_images_is_left_out_with_a_note(tiny_bundle, image_dir, tmp_path):
    """It ended the run after its engine rows were measured, and lost them."""
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_dir, folder)
    (folder / "broken.png").write_bytes(b"not an image")
    report = run_bench(quick(tiny_bundle, images=folder, batch_sizes=(2,)))
    assert [(r.mode, r.errors) for r in report.results] == [("engine", 0), ("end_to_end", 0)]
    assert f"end-to-end rows leave out {folder / 'broken.png'}: not a recognised image" in " ".join(
        report.notes)
    for path in folder.iterdir():
        path.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^--images .* holds no image that decodes \(.*empty"):
        run_bench(quick(tiny_bundle, images=folder))


def test_host_preprocessed_bundle_benches_from_uint8_images(tmp_path, tiny_imagefolder):
    bundle = write_tiny_bundle(tmp_path / "tiny-host", host=True)
    report = run_bench(quick(bundle, batch_sizes=(3,), images=tiny_imagefolder))
    assert [(r.mode, r.precision) for r in report.results] == [("engine", "fp32"),
                                                              ("end_to_end", "fp32")]


def test_json_schema_round_trip(tiny_bundle, tmp_path):
    report = run_bench(quick(tiny_bundle, batch_sizes=(2,)))
    path = report.write_json(tmp_path / "out" / "bench.json")
    data = json.loads(path.read_text())
    assert {"environment", "results"} <= set(data)
    environment = data["environment"]
    assert {"cpu", "cores", "gpu", "versions"} <= set(environment)
    assert environment["cores"] >= 1 and environment["versions"]["onnxruntime"]
    assert len(data["results"]) == 1
    check_row_schema(data["results"][0])
    assert data["results"][0]["precision"] in EXECUTED


def test_auto_precision_benches_each_bundle_precision(tiny_bundle):
    assert bench._bundle_precisions(tiny_bundle, "auto") == ["fp32"]
    assert list(bench._load_plan(quick(tiny_bundle, precisions=("auto",)))) == [
        ("onnxruntime", "fp32")]


@pytest.fixture
def short_rows_count(monkeypatch):
    """These tests check the speed-up plumbing on 0.15 s windows: accept them as comparable."""
    import visionrt.bench.timing as timing

    monkeypatch.setattr(timing, "MIN_SECONDS", 0.1)


def test_speedup_is_relative_to_torch_rows_of_the_same_batch(tiny_bundle, monkeypatch,
                                                             short_rows_count):
    def fake_torch_rows(config, device, say):
        row = BenchResult(backend="torch", precision="fp32", batch_size=1, concurrency=1,
                          mode="engine", throughput=1.0, latency_ms={}, cold_start_ms=1.0,
                          samples=1)
        return [row], "torch baseline: fake"

    import visionrt.bench.baseline as baseline

    monkeypatch.setattr(baseline, "torch_rows", fake_torch_rows)
    report = run_bench(quick(tiny_bundle, baseline="torch"))
    by_batch = {(r.backend, r.batch_size): r for r in report.results}
    ours = by_batch[("onnxruntime", 1)]
    assert ours.speedup_vs_torch == pytest.approx(ours.throughput)
    assert by_batch[("onnxruntime", 4)].speedup_vs_torch is None  # no torch row at batch 4
    assert "torch baseline: fake" in report.notes


def test_no_speedup_from_a_starved_row(tiny_bundle, monkeypatch, short_rows_count):
    """A torch row of 3 slow calls (0.7 img/s) must not yield a "336x" speed-up."""
    def fake_torch_rows(config, device, say):
        starved = BenchResult(backend="torch", precision="fp32", batch_size=1, concurrency=1,
                              mode="engine", throughput=0.7, latency_ms={}, cold_start_ms=1.0,
                              samples=3, below_minimum="3 samples in 4.3 s")
        fine = replace(starved, batch_size=4, throughput=2.0, samples=40, below_minimum=None)
        return [starved, fine], None

    import visionrt.bench.baseline as baseline

    monkeypatch.setattr(baseline, "torch_rows", fake_torch_rows)
    report = run_bench(quick(tiny_bundle, baseline="torch"))
    by_batch = {(r.backend, r.batch_size): r for r in report.results}
    assert by_batch[("onnxruntime", 1)].speedup_vs_torch is None
    assert by_batch[("onnxruntime", 4)].speedup_vs_torch == pytest.approx(
        by_batch[("onnxruntime", 4)].throughput / 2.0)
    assert any("no speed-up over torch at batch 1" in note for note in report.notes)
    assert any(note.startswith("* too few samples") and "torch fp32 engine batch 1: 3 samples"
               in note for note in report.notes)
    # ... and a starved row of ours gets none either, and is marked in the table
    ours = replace(by_batch[("onnxruntime", 4)], below_minimum="2 samples in 9.0 s",
                   speedup_vs_torch=None)
    assert bench._with_speedup(ours, {4: 2.0}).speedup_vs_torch is None
    from rich.console import Console

    data = report.to_dict()
    data["results"] = [row for row in data["results"] if row["backend"] != "torch"]  # fakes
    data["results"][0]["below_minimum"] = "2 samples"
    console = Console(width=200, record=True)
    console.print(bench.render_table(data))
    assert f"{data['results'][0]['throughput']:.1f}*" in console.export_text()


def test_rows_shorter_than_the_minimum_seconds_give_no_speedup(tiny_bundle, monkeypatch):
    def fake_torch_rows(config, device, say):
        return [BenchResult(backend="torch", precision="fp32", batch_size=1, concurrency=1,
                            mode="engine", throughput=1.0, latency_ms={}, cold_start_ms=1.0,
                            samples=50)], None

    import visionrt.bench.baseline as baseline

    monkeypatch.setattr(baseline, "torch_rows", fake_torch_rows)
    report = run_bench(quick(tiny_bundle, baseline="torch", batch_sizes=(1,)))
    ours = report.results[0]  # 0.15 s window: short of MIN_SECONDS
    assert ours.backend == "onnxruntime" and ours.samples >= 10  # enough samples, too short
    assert ours.below_minimum.endswith("(a row needs 10 and 2 s)")
    assert ours.speedup_vs_torch is None


def test_torch_baseline_unavailable_is_a_note_not_a_crash(tiny_bundle):
    pytest.importorskip("torch")
    from visionrt.bench.baseline import torch_rows

    rows, note = torch_rows(quick(tiny_bundle), "cpu", lambda message: None)
    assert rows == []
    assert note.startswith("torch baseline unavailable") and "tiny" in note


@pytest.mark.parametrize(("source", "why"), [
    ({"kind": "run", "path": "/gone/run"}, "its training run /gone/run is not found"),
    ({"kind": "imagenet", "arch": "resnet10t"},
     "exported from imagenet:resnet10t, not from a training run"),
    ({}, "a bare model file names no weights"),
])
def test_random_baseline_weights_say_why(tiny_bundle, monkeypatch, source, why):
    """An imagenet:ARCH bundle has no run to miss: the note must not claim one was lost."""
    from types import SimpleNamespace

    import visionrt.bench.baseline as baseline

    spec, module = SimpleNamespace(arch="resnet10t"), SimpleNamespace(eval=lambda: "eval-mode")
    monkeypatch.setattr(baseline, "_spec_and_source", lambda path: (spec, source))
    monkeypatch.setattr(baseline, "_build_random", lambda spec: module)
    assert baseline.load_torch_model(tiny_bundle) == (
        "eval-mode", spec, f"resnet10t rebuilt with random weights (same architecture and cost; "
        f"{why})")


@pytest.mark.parametrize(("changes", "match"), [
    ({"batch_sizes": ()}, "^--batch-sizes '' is invalid"),
    ({"batch_sizes": (0, 8)}, "^--batch-sizes 0,8 is invalid"),
    ({"duration": 0}, "^--duration 0 is invalid"),
    ({"concurrency": (0,)}, "^--concurrency 0 is invalid"),
    ({"precisions": ("fp8",)}, "^--precisions fp8 is invalid; expected names from auto, fp32"),
    ({"baseline": "tensorflow"}, "^--baseline tensorflow is invalid; expected one of torch"),
    ({"backends": ("auto", "tflite")}, "^--backends auto,tflite is invalid; expected names from "
     "auto, onnxruntime,"),  # before the first row is measured
    ({"top_k": 0}, r"^BenchConfig\.top_k = 0 is invalid"),  # no such flag: the field's name
])
def test_config_errors_name_the_flag_as_typed(tiny_bundle, changes, match):
    with pytest.raises(ConfigError, match=match):
        quick(tiny_bundle, **changes)


def test_missing_model_and_images_folder(tmp_path, tiny_bundle):
    with pytest.raises(ConfigError, match="model not found"):
        BenchConfig(model=tmp_path / "nope")
    with pytest.raises(ConfigError, match="not a directory"):
        BenchConfig(model=tiny_bundle, images=tmp_path / "nope")


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from visionrt.bench.plot import plot_report

    rows = [BenchResult(backend=b, precision=p, batch_size=n, concurrency=c, mode=m,
                        throughput=t, latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
                        cold_start_ms=5.0, samples=10)
            for b, p, n, c, m, t in [("openvino", "int8", 1, 1, "engine", 100.0),
                                     ("openvino", "int8", 16, 1, "engine", 300.0),
                                     ("torch", "fp32", 1, 1, "engine", 10.0),
                                     ("openvino", "int8", 32, 4, "server", 200.0)]]
    report = BenchReport(environment={"cpu": "test cpu", "cores": 2}, config={}, results=rows)
    path = plot_report(report, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_marks_thin_rows_and_keeps_points_and_numbers_readable():
    """Values a reader can see: a * on a row too thin to compare (as in the table), the legend
    outside the points, and log-axis labels as plain numbers (not 6x10^2)."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionrt.bench.plot import _throughput_panel

    rows = [{"backend": b, "precision": "fp32", "batch_size": n, "mode": "engine",
             "throughput": t, "below_minimum": thin}
            for b, n, t, thin in [("openvino", 1, 420.0, False), ("openvino", 16, 770.0, False),
                                  ("torch", 1, 63.0, False), ("torch", 16, 4.2, True)]]
    figure, axis = plt.subplots()
    _throughput_panel(axis, rows)
    figure.canvas.draw()
    assert sorted(t.get_text() for t in axis.texts) == ["4.2*", "420", "63", "770"]
    assert axis.get_legend().get_bbox_to_anchor().y1 < axis.get_window_extent().y0
    labels = [t.get_text() for t in axis.get_yticklabels() + axis.get_yticklabels(minor=True)]
    assert "100" in labels and not any("times" in text or "^" in text for text in labels)
    plt.close(figure)


def test_bench_modules_do_not_import_torch():
    code = ("import sys, visionrt.bench.run, visionrt.bench.plot, visionrt.bench.baseline; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
