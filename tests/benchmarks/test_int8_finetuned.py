"""benchmarks/int8_finetuned.py: its table and README section come from the measured results (the
exports and the speed rounds themselves are library code tested elsewhere)."""

from __future__ import annotations

from helpers import load_benchmark

int8_finetuned = load_benchmark("int8_finetuned")


def _row(value, top1, passed):
    return {"samples": 100, "top1": top1, "passed": passed, "metric": "accuracy",
            "reference": 0.93, "value": value}


def _results():
    fp32 = _row(0.93, 1.0, True)
    before = {"model.fp32.onnx:onnxruntime": fp32,
              "model.int8.onnx:onnxruntime": _row(0.91, 0.96, False),
              "model.int8.onnx:openvino": _row(0.92, 0.96, True)}
    after = {"model.fp32.onnx:onnxruntime": fp32,
             "model.int8.onnx:onnxruntime": _row(0.925, 0.98, True),
             "model.int8.onnx:openvino": _row(0.93, 0.99, True)}
    return {"arch": "mobilenetv3_large_100", "epochs": 30, "per_class": 60, "img_size": 128,
            "results": [{"recipe": "before", "label": "old", "verify": before},
                        {"recipe": "after", "label": "new", "verify": after}],
            "speed": {"before": {"vs_fp32": 0.87}, "after": {"vs_fp32": 0.8}},
            "loadavg": [1.0, 1.5, 2.0]}


def test_table_shows_each_recipes_accuracy_agreement_gate_and_speed():
    lines = int8_finetuned.table(_results()).splitlines()
    old = next(line for line in lines if line.startswith("| round to nearest, minmax"))
    new = next(line for line in lines if line.startswith("| bias correction + percentile"))
    assert "acc 0.910 / top-1 0.960 (fail)" in old and "| fail | 0.87x |" in old
    assert "acc 0.925 / top-1 0.980 |" in new and "| pass | 0.8x |" in new
    assert "| - |" in new  # no S8S8 row measured: a dash, not a made-up cell
    assert "fp32 accuracy 0.930 on the export's 100 held-out images" in lines[-1]


def test_render_rewrites_only_its_readme_section(tmp_path, monkeypatch):
    import json

    work = tmp_path / "work"
    work.mkdir()
    (work / "results.json").write_text(json.dumps(_results()))
    readme = tmp_path / "README.md"
    start, end = int8_finetuned.MARKERS
    readme.write_text(f"before\n{start}\nold table\n{end}\nafter\n")
    monkeypatch.setattr(int8_finetuned, "__file__", str(tmp_path / "int8_finetuned.py"))
    assert int8_finetuned.main(["--work", str(work), "--render", "--readme"]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "| bias correction + percentile + mixed-precision search (the default" in text
