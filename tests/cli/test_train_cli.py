"""`visionrt train / evaluate / augment-preview` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visionrt.cli import app
from visionrt.errors import ConfigError, DataValidationError

TINY = ["--arch", "mobilenetv3_small_050", "--weights", "none", "--img-size", "32",
        "--batch-size", "8"]


def test_train_resume_and_evaluate(tiny_imagefolder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny_imagefolder), "--out", str(out), "--epochs",
                                 "1", "--augment", "keras", "--fill-mode", "wrap", *TINY])
    assert result.exit_code == 0, result.output
    assert "best epoch 1" in result.output and "run written to" in result.output
    assert "━" not in result.output  # not a terminal: no progress bars dumped at the end
    config = json.loads((out / "config.json").read_text())
    assert config["augment"]["fill_mode"] == "wrap" and config["augment"]["zoom_range"] == 0.3
    # continue the same run to 2 epochs in total
    result = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 1" in result.output
    assert len(json.loads((out / "history.json").read_text())) == 2
    result = runner.invoke(app, ["train", "--resume", str(out)])  # done: says so, trains nothing
    assert result.exit_code == 0, result.output
    assert "nothing to train: the run has done 2 epochs (--epochs 1); pass --epochs N (more " \
        "than 2) to train it further" in result.output
    assert len(json.loads((out / "history.json").read_text())) == 2
    result = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "0"])
    assert isinstance(result.exception, ConfigError) and "--epochs 0" in str(result.exception)
    result = runner.invoke(app, ["evaluate", str(out), str(tiny_imagefolder), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["samples"] == 36


def test_augment_preview_writes_png(tiny_imagefolder: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["augment-preview", str(tiny_imagefolder), "--out",
                                      str(out), "--samples", "2", "--variants", "3",
                                      "--img-size", "48"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, error, text", [
    (["--out", "R"], ConfigError, "no training data"),
    (["DATA", "--out", "R", "--freeze", "most"], ConfigError, "freeze"),
    (["DATA", "--out", "R", "--fill-mode", "mirror"], ConfigError, "--fill-mode mirror"),
    (["DATA", "--out", "R", "--epochs", "2", "--unfreeze-at", "2"], ConfigError,
     "--unfreeze-at 2"),
    (["DATA", "--out", "R", "--epochs", "0"], ConfigError, "--epochs 0"),  # never the default 5
    (["DATA", "--out", "R", "--brightness-range", "0.8,,1.2"], ConfigError,
     "--brightness-range 0.8,,1.2 is invalid; expected comma-separated numbers, e.g. "
     "--brightness-range 0.8,1.2"),
])
def test_bad_options_fail_before_training(tiny_imagefolder: Path, tmp_path: Path, args, error,
                                          text) -> None:
    args = [str(tiny_imagefolder) if a == "DATA" else str(tmp_path / a) if a == "R" else a
            for a in args]
    result = CliRunner().invoke(app, ["train", *args])
    assert isinstance(result.exception, error) and text in str(result.exception)
    assert not (tmp_path / "R").exists()


def test_csv_errors_are_reported_before_training(kaggle_set, tmp_path: Path) -> None:
    csv_path, images = kaggle_set
    result = CliRunner().invoke(app, ["train", "--csv", str(csv_path), "--images",
                                      str(images), "--label-column", "melanoma", "--out",
                                      str(tmp_path / "run"), *TINY])
    assert isinstance(result.exception, DataValidationError)
    assert "melanoma" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_missing_folder_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "visionrt", "train", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "data folder not found" in done.stderr and "Traceback" not in done.stderr


def test_validate_data_lists_broken_images(tiny_imagefolder: Path, tmp_path: Path) -> None:
    import shutil

    # A path far longer than 80 columns: output that is not a terminal is never hard-wrapped.
    data = tmp_path / ("a-rather-long-folder-name-" * 4) / "data"
    shutil.copytree(tiny_imagefolder, data)
    first_class = sorted(p for p in data.iterdir())[0]
    broken = first_class / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    runner = CliRunner()
    result = runner.invoke(app, ["validate-data", str(data), "--out", str(tmp_path / "b.csv")])
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if "broken.png" in x)
    assert line == f"unreadable {broken}: not a recognised image (allowed formats: JPEG, PNG, " \
        "WEBP, BMP, TIFF, GIF)"  # the whole path, once
    assert "broken.png" in (tmp_path / "b.csv").read_text()
    result = runner.invoke(app, ["validate-data", str(tiny_imagefolder)])
    assert result.exit_code == 0 and "all 36 images decode" in result.output
    assert "" not in result.output.splitlines()  # no blank line left by a progress bar


def test_train_progress_off_a_terminal_is_one_line_per_stage_in_order() -> None:
    import io

    from visionrt.cli._console import CliConsole
    from visionrt.cli._progress import TrainProgress

    target = CliConsole(file=io.StringIO(), highlight=False)
    with TrainProgress(target) as progress:
        for split, total in (("train", 28), ("val", 8)):
            for done in (4, total):
                progress("cache", {"split": split, "done": done, "total": total})
        progress("epoch_start", {"epoch": 1, "epochs": 1, "steps": 2})
        progress("step", {"epoch": 1, "step": 2, "loss": 0.5, "images_per_second": 10.0})
        progress("epoch_end", {"epoch": 1, "train_loss": 0.5, "seconds": 0.1})
    assert target.file.getvalue().splitlines() == [
        "  computing frozen-backbone features (train, 28 images) ...",
        "  computing frozen-backbone features (val, 8 images) ...",
        "epoch 1: train_loss 0.5000 (0.1 s)"]
