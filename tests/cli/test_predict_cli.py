"""`visionrt predict`: formats, exit codes, output files and Kaggle submissions."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visionrt.cli import app
from visionrt.errors import ConfigError, DataValidationError

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_json_lists_every_input_and_exit_1_on_any_failure(tiny_bundle: Path, image_dir: Path,
                                                          tmp_path: Path) -> None:
    files = sorted(image_dir.iterdir())
    result = _run("predict", tiny_bundle, files[0], tmp_path / "missing.jpg", files[1],
                  "--format", "json", "--top-k", "2", "--backend", "onnxruntime")
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    assert [r["input"] for r in rows] == [str(files[0]), str(tmp_path / "missing.jpg"),
                                         str(files[1])]
    assert set(rows[0]) == {"input", "top_k"} and len(rows[0]["top_k"]) == 2
    assert set(rows[0]["top_k"][0]) == {"index", "label", "score"}
    assert "not found" in rows[1]["error"]


def test_table_is_not_wrapped_when_not_a_terminal(tiny_bundle: Path, image_dir: Path,
                                                  tmp_path: Path) -> None:
    folder = tmp_path / ("a-rather-long-folder-name-" * 5)
    folder.mkdir()
    image = Path(shutil.copy(next(iter(sorted(image_dir.iterdir()))), folder / "photo.png"))
    result = _run("predict", tiny_bundle, image, "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert str(image) in result.stdout  # one line holds the whole path


def test_table_and_csv_output_exit_0(tiny_bundle: Path, image_dir: Path, tmp_path: Path) -> None:
    result = _run("predict", tiny_bundle, image_dir, "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert "6 classified, 0 failed" in result.stdout and "fp32" in result.stdout
    out = tmp_path / "preds.csv"
    result = _run("predict", tiny_bundle, image_dir, "--format", "csv", "--top-k", "1",
                  "--output", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and rows[0]["rank"] == "1" and not rows[0]["error"]


@pytest.mark.parametrize("args, text", [
    ((), "INPUTS"),
    (("--csv", "t.csv"), "go together"),
])
def test_usage_errors_exit_2(tiny_bundle: Path, args, text) -> None:
    result = _run("predict", tiny_bundle, *args)
    assert result.exit_code == 2 and text in result.output


@pytest.mark.parametrize("args, text", [
    (("--format", "xml"), "--format xml is invalid; expected one of table, json, csv"),
    (("--backend", "gpu"), "--backend gpu is invalid; expected one of auto, onnxruntime,"),
    (("--precision", "fp64"), "--precision fp64 is invalid; expected one of auto, fp32,"),
])
def test_bad_backend_or_precision_names_the_flag(tiny_bundle: Path, image_dir: Path, args,
                                                 text) -> None:
    result = _run("predict", tiny_bundle, image_dir, *args)
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith(text)


def test_kaggle_submission_in_csv_order(binary_bundle: Path, image_dir: Path,
                                        tmp_path: Path) -> None:
    images = tmp_path / "jpeg"
    images.mkdir()
    names = ["ISIC_3", "ISIC_1", "ISIC_2"]
    for name, source in zip(names, sorted(image_dir.glob("*.jpg")), strict=True):
        shutil.copy(source, images / f"{name}.jpg")
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("image_name,patient_id\n" + "".join(f"{n},P{i}\n"
                                                            for i, n in enumerate(names)))
    out = tmp_path / "sub" / "submission.csv"
    result = _run("predict", binary_bundle, "--csv", test_csv, "--images", images,
                  "--submission", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image_name", "target"]
    assert [r[0] for r in rows[1:]] == names
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows[1:])


def test_kaggle_submission_refuses_escapes_and_holes(binary_bundle: Path, tmp_path: Path) -> None:
    images = tmp_path / "jpeg"
    images.mkdir()
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("image_name\n../../etc/passwd\n")
    out = tmp_path / "submission.csv"
    result = _run("predict", binary_bundle, "--csv", test_csv, "--images", images,
                  "--submission", out)
    assert result.exit_code == 1 and not out.exists()
    assert isinstance(result.exception, DataValidationError)
    test_csv.write_text("image_name\nISIC_missing\n")
    result = _run("predict", binary_bundle, "--csv", test_csv, "--images", images,
                  "--submission", out)
    assert result.exit_code == 1 and not out.exists()
    assert "ISIC_missing" in result.output


def test_submission_needs_a_binary_model(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "test.csv").write_text("image_name\na\n")
    result = _run("predict", tiny_bundle, "--csv", tmp_path / "test.csv", "--images", tmp_path,
                  "--submission", tmp_path / "s.csv")
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)


def test_cache_variables_reach_the_compile_cache(tiny_bundle: Path, image_dir: Path,
                                                 tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("VISIONRT_CACHE_DIR", str(tmp_path / "cache"))
    result = _run("predict", tiny_bundle, image_dir, "--backend", "openvino", "--precision",
                  "fp32")
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "cache" / "openvino").glob("*.blob"))


def test_a_bad_cache_limit_is_one_line_naming_the_variable(tiny_bundle: Path, image_dir: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setenv("VISIONRT_CACHE_MAX_MB", "2GB")
    result = _run("predict", tiny_bundle, image_dir)
    assert isinstance(result.exception, ConfigError)
    assert "VISIONRT_CACHE_MAX_MB='2GB'" in str(result.exception)
