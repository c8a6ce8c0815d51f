"""The whole spine through the CLI, as a user runs it: synth -> train -> export -> predict -> bench.

A tiny random-init network keeps it fast; the pretrained quickstart itself is the slow test below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visionrt.cli import app

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"visionrt {' '.join(map(str, args))}\n{result.output}"
    return result.output


def test_synth_train_export_predict_bench(tmp_path: Path, monkeypatch) -> None:
    data, run, bundle = tmp_path / "data", tmp_path / "run", tmp_path / "bundle"
    monkeypatch.chdir(tmp_path)  # train with relative paths, as a user types them ...
    invoke("synth", "data", "--classes", "3", "--per-class", "16", "--size", "48")
    invoke("train", "data", "--out", "run", "--arch", "resnet18", "--weights", "none",
           "--freeze", "none", "--img-size", "48", "--epochs", "2", "--batch-size", "16")
    for name in ("model.safetensors", "spec.json", "config.json", "history.json", "metrics.json"):
        assert (run / name).is_file(), name
    assert len(json.loads((run / "history.json").read_text())) == 2

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ... and export from another folder: int8 finds its images
    invoke("export", run, "--out", bundle, "--precision", "fp32,int8", "--max-batch", "8",
           "--allow-mismatch")
    manifest = json.loads((bundle / "manifest.json").read_text())
    precisions = {a["precision"] for a in manifest["artifacts"]}
    assert {"fp32", "int8"} <= precisions
    fp32 = next(a for a in manifest["artifacts"] if a["file"] == "model.fp32.onnx")
    assert fp32["parity"]["top1_agreement"] >= 0.99
    assert fp32["inputs"][0]["name"] == "image" and fp32["inputs"][0]["dtype"] == "uint8"

    images = sorted((data / "circle_solid").glob("*.png"))[:3]
    out = invoke("predict", bundle, *images, "--format", "json", "--top-k", "2")
    rows = json.loads(out)
    assert [Path(r["input"]).name for r in rows] == [p.name for p in images]
    assert all(len(r["top_k"]) == 2 for r in rows)

    report = tmp_path / "bench.json"
    invoke("bench", bundle, "--precisions", "fp32,int8", "--batch-sizes", "1,4",
           "--duration", "0.3", "--warmup", "0.1", "--json", report)
    results = json.loads(report.read_text())["results"]
    assert {(r["precision"], r["batch_size"]) for r in results} >= {("fp32", 1), ("fp32", 4)}
    assert all(r["throughput"] > 0 and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"]
               for r in results)


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    """The README's first command, shortened: pretrained Lite0, synthetic data, every step."""
    out = tmp_path / "qs"
    text = invoke("quickstart", "--out", out, "--bench-seconds", "0.5")
    assert "quickstart finished" in text
    assert "model.int8.onnx [onnxruntime]" in text  # each check names its backend
    assert "training's val accuracy is on its" in text and "--precision auto picks" in text
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    parity = {a["file"]: a["parity"]["top1_agreement"] for a in manifest["artifacts"]}
    assert parity["model.fp32.onnx"] >= 0.99 and parity["model.int8.onnx"] >= 0.95
    predictions = json.loads((out / "predictions.json").read_text())
    assert sum(r.get("label") == r.get("truth") for r in predictions) >= 0.8 * len(predictions)


def test_ci_runs_the_readme_tests_and_ruff() -> None:
    """CI (.ci/run) runs exactly the README's test command, then `ruff check`."""
    root = Path(__file__).resolve().parents[1]
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    test_command = next(line for line in ci.splitlines() if "pytest" in line)
    assert test_command in readme
    assert ".venv/bin/ruff check visionrt tests benchmarks" in ci.splitlines()
