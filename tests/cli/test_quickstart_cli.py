"""`visionrt quickstart`'s own logic (the heavy steps replaced): re-runs in the same folder,
progress lines when not a terminal, and what it refuses to delete. The real pipeline end to end
is the slow test in tests/test_spine.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from visionrt.cli import app, quickstart

runner = CliRunner()


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Steps that write what the real ones write and report one progress message each."""
    calls: list[str] = []

    def synth(out: Path, per_class: int):
        (out / "data" / "train").mkdir(parents=True)
        (out / "data" / "heldout").mkdir(parents=True)
        return out / "data" / "train", out / "data" / "heldout"

    def train(data, run_dir: Path, epochs, say):
        say("epoch 1/1")
        run_dir.mkdir()  # the real trainer refuses an existing run dir
        calls.append("train")
        return {"accuracy": 1.0, "samples": 4}

    def export(run_dir, bundle_dir: Path, val, say):
        say("writing model.fp32.onnx")
        bundle_dir.mkdir()
        return bundle_dir

    def predict(bundle, heldout, out_json: Path):
        out_json.write_text("[]")
        return 1.0

    def bench(bundle, out_json: Path, seconds, say):
        out_json.write_text("{}")

    for name, step in (("_synth", synth), ("_train", train), ("_export", export),
                       ("_predict", predict), ("_bench", bench)):
        monkeypatch.setattr(quickstart, name, step)
    return calls


def test_quickstart_runs_twice_in_the_same_folder(tmp_path: Path, fake_steps) -> None:
    out = tmp_path / "qs"
    first = runner.invoke(app, ["quickstart", "--out", str(out)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["quickstart", "--out", str(out)])
    assert second.exit_code == 0, second.output
    assert f"replacing the previous quickstart in {out}" in second.output
    assert fake_steps == ["train", "train"]
    assert {p.name for p in out.iterdir()} == quickstart.OUTPUTS


def test_quickstart_shows_each_stage_when_not_a_terminal(tmp_path: Path, fake_steps) -> None:
    result = runner.invoke(app, ["quickstart", "--out", str(tmp_path / "qs")])
    lines = result.output.splitlines()
    assert "  epoch 1/1 ..." in lines and "  writing model.fp32.onnx ..." in lines
    export_title = next(x for x in lines if "3/5 export" in x)
    assert "model.int8.onnx" in export_title and "model.int8.trt.onnx" in export_title


def test_quickstart_never_deletes_files_it_did_not_write(tmp_path: Path, fake_steps) -> None:
    out = tmp_path / "qs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["quickstart", "--out", str(out)])
    assert refused.exit_code != 0 and "notes.txt" in str(refused.exception)
    allowed = runner.invoke(app, ["quickstart", "--out", str(out), "--overwrite"])
    assert allowed.exit_code == 0, allowed.output
    assert (out / "notes.txt").read_text() == "mine"
