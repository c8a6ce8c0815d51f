"""Catalogue C1-C3 and C7-C9 (training and data faults) and S10 (C4-C6 and S3, checkpoints and
the run dir: test_c_checkpoints.py).

Runs use timm's ``test_efficientnet`` (random init) at 32 px on a 36-image synthetic set, so one
in-process run costs a few seconds once torch is imported. The kill -9 test trains in a child
process and kills it with SIGKILL mid-epoch.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from reliability_helpers import (  # noqa: E402
    ARCH,
    Interrupt,
    train_config,
)

from visionrt.errors import (  # noqa: E402
    DataValidationError,
    TrainingDivergedError,
    TrainingInterruptedError,
    VisionRTError,
)
from visionrt.trainer import checkpoint as ckpt  # noqa: E402
from visionrt.trainer.config import TrainConfig  # noqa: E402
from visionrt.trainer.loop import train  # noqa: E402


# --- C1 corrupt images inside a training set --------------------------------------------------
@pytest.fixture
def dirty_folder(tiny_imagefolder: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The synthetic set plus broken files named like images in two classes."""
    root = tmp_path / "dirty"
    shutil.copytree(tiny_imagefolder, root)
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    good = next(classes[0].iterdir()).read_bytes()
    (classes[0] / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (classes[0] / "error_page.jpg").write_bytes(b"<html><body>403 Forbidden</body></html>")
    (classes[1] / "empty.png").write_bytes(b"")
    (classes[1] / "bomb.png").write_bytes(_bomb_png())
    (classes[1] / "folder.jpg").mkdir()  # a directory named like an image is not a sample
    return root, ["bomb.png", "empty.png", "error_page.jpg", "truncated.jpg"]


def _bomb_png() -> bytes:
    from helpers import png_with_size

    return png_with_size(100_000, 100_000)


def test_C1_too_many_bad_images_stop_the_run_with_a_summary(dirty_folder, tmp_path):
    root, bad = dirty_folder
    with pytest.raises(DataValidationError, match="max-bad-fraction") as info:
        train(train_config(root, tmp_path / "run", epochs=1, max_bad_fraction=0.01))
    message = str(info.value)
    assert "unreadable" in message and any(name in message for name in bad)


def test_C1_on_bad_image_fail_names_the_file(dirty_folder, tmp_path):
    root, bad = dirty_folder
    with pytest.raises(DataValidationError) as info:
        train(train_config(root, tmp_path / "run", epochs=1, on_bad_image="fail"))
    assert any(name in str(info.value) for name in bad)


def test_C1_batches_are_rebuilt_without_duplicates():
    from visionrt.trainer.data import collate

    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    items = [(image, 0, 0, None), (None, 1, 1, "bad"), (image, 2, 2, None), (None, 0, 3, "x")]
    batch = collate(items)
    assert batch.indices.tolist() == [0, 2] and [i for i, _ in batch.bad] == [1, 3]
    empty = collate([(None, 0, 0, "bad"), (None, 1, 1, "bad")])
    assert len(empty) == 0 and len(empty.bad) == 2


def test_C1_validate_data_prescan_lists_every_bad_file(dirty_folder, tmp_path):
    from typer.testing import CliRunner

    from visionrt.cli import app

    root, bad = dirty_folder
    report = tmp_path / "bad.csv"
    result = CliRunner().invoke(app, ["validate-data", str(root), "--out", str(report)])
    assert result.exit_code == 1, result.output  # documented: 1 when an image cannot be decoded
    text = " ".join(result.output.split())
    assert all(name in text for name in bad), result.output
    with open(report, newline="") as handle:
        assert sorted(Path(r[0]).name for r in list(csv.reader(handle))[1:]) == bad
    clean = CliRunner().invoke(app, ["validate-data", str(root.parent / "clean")])
    assert clean.exit_code != 0  # a missing folder is an error too, never "all fine"


# --- C2 / S10 Kaggle CSV problems -------------------------------------------------------------
def _kaggle(root: Path, rows: list[dict], make_files: bool = True) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for row in rows:
        name = row.get("image_name", "")
        if make_files and name and "/" not in name and not name.startswith(("missing", "link")):
            Image.new("RGB", (16, 16), (int(hash(name)) % 255, 0, 0)).save(images / f"{name}.jpg")
    path = root / "train.csv"
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path, images


def _good_rows(n: int = 12) -> list[dict]:
    return [{"image_name": f"ISIC_{i:04d}", "patient_id": f"P{i // 3}", "target": (i // 3) % 2}
            for i in range(n)]


def test_C2_csv_problems_are_reported_with_row_numbers_before_training(tmp_path):
    rows = _good_rows()
    rows += [{"image_name": "missing_file", "patient_id": "P9", "target": 0},
             {"image_name": "ISIC_0001", "patient_id": "P0", "target": 0},
             {"image_name": "ISIC_0100", "patient_id": "P9", "target": "nan"},
             {"image_name": "ISIC_0101", "patient_id": "P9", "target": "0.5"},
             {"image_name": "../../etc/passwd", "patient_id": "P9", "target": 1},
             {"image_name": "/etc/passwd", "patient_id": "P9", "target": 1}]
    csv_path, images = _kaggle(tmp_path / "k", rows)
    out = tmp_path / "run"
    with pytest.raises(DataValidationError) as info:
        train(TrainConfig(out=out, csv=csv_path, images=images, arch=ARCH, weights="none",
                          img_size=32, epochs=1))
    message = str(info.value)
    for fragment in ("row 14", "missing_file", "duplicate", "row 15", "row 16", "row 17",
                     "outside the image folder", "row 18", "row 19"):
        assert fragment in message, fragment
    assert not (out / "config.json").exists()  # nothing was written before the check


def test_C2_missing_columns_are_named(tmp_path):
    csv_path, images = _kaggle(tmp_path / "k", [{"image": "a", "label": 1}], make_files=False)
    from visionrt.trainer.csvdata import read_csv_samples

    with pytest.raises(DataValidationError, match="image_name"):
        read_csv_samples(csv_path, images)


def test_S10_csv_paths_cannot_leave_the_image_root(tmp_path):
    from visionrt.trainer.csvdata import read_csv_samples

    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(secret)
    rows = _good_rows(6) + [{"image_name": "linked", "patient_id": "P8", "target": 1},
                            {"image_name": "sub/../../secret", "patient_id": "P8", "target": 1}]
    csv_path, images = _kaggle(tmp_path / "k", rows)
    os.symlink(secret, images / "linked.jpg")
    with pytest.raises(DataValidationError, match="outside the image folder") as info:
        read_csv_samples(csv_path, images)
    assert "row 8" in str(info.value) and "row 9" in str(info.value)  # header is row 1


@pytest.mark.parametrize("payload, fragment", [
    (b"image_name\nISIC_0001\n../secret\n", "row 3"),
    (b"image_name\nISIC_0001\n/etc/passwd\n", "row 3"),
    (b"image_name\nISIC_0001\nlinked\n", "row 3"),
    (b"image_name\nISIC_0001\nISIC_0001\n", "duplicate"),
    (b"name\nISIC_0001\n", "image_name"),
    (b"image_name\nISIC_0001\nbad\x00name\n", "row 3"),
    (b"image_name\n\xff\xfe\xfa\n", "UTF-8"),
])
def test_C2_S10_predict_test_csv_problems_are_typed_errors(tmp_path, payload, fragment):
    from visionrt.runtime.submission import read_test_csv

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "ISIC_0001.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.jpg")
    os.symlink(tmp_path / "secret.jpg", images / "linked.jpg")
    (tmp_path / "test.csv").write_bytes(payload)
    with pytest.raises(DataValidationError, match=fragment):
        read_test_csv(tmp_path / "test.csv", images)


def test_C2_split_is_grouped_by_patient_and_stratified(tmp_path):
    from visionrt.trainer.data import load_split

    rows = [{"image_name": f"I{i:03d}", "patient_id": f"P{i // 4}", "target": int(i % 8 < 4)}
            for i in range(80)]
    csv_path, images = _kaggle(tmp_path / "k", rows)
    split = load_split(TrainConfig(out=tmp_path / "run", csv=csv_path, images=images, arch=ARCH,
                                   weights="none", val_split=0.25))
    train_groups = {s.group for s in split.train}
    val_groups = {s.group for s in split.val}
    assert train_groups and val_groups and not train_groups & val_groups
    val_labels = [s.label for s in split.val]
    assert 0 < sum(val_labels) < len(val_labels)  # both classes in validation
    assert "0" in split.describe() and "1" in split.describe()  # class balance is reported


# --- C3 non-finite loss -----------------------------------------------------------------------
def test_C3_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
        tiny_imagefolder, tmp_path, monkeypatch):
    poisoned = {"on": False}
    real = torch.nn.CrossEntropyLoss.forward

    def loss(self, logits, labels):
        value = real(self, logits, labels)
        return value * float("nan") if poisoned["on"] else value

    def callback(name, info):
        if name == "epoch_start" and info["epoch"] == 2:
            poisoned["on"] = True

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", loss)
    config = train_config(tiny_imagefolder, tmp_path / "run", epochs=3, diverge_steps=2)
    with pytest.raises(TrainingDivergedError) as info:
        train(config, callback)
    message = str(info.value)
    assert "non-finite for 2 consecutive steps" in message and "lr" in message
    assert "last finite loss" in message and "None" not in message.split("last finite loss")[1][:6]
    weights, state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    best, _ = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "best")
    assert all(torch.isfinite(t).all() for t in best.values() if t.is_floating_point())


# --- C7 SIGTERM / preemption ------------------------------------------------------------------
def test_C7_sigterm_is_handled_at_a_step_boundary(tiny_imagefolder, tmp_path):
    handlers = []

    def callback(name, info):
        if name == "step" and info["epoch"] == 2 and info["step"] == 1:
            handler = signal.getsignal(signal.SIGTERM)
            handlers.append(handler)
            if handler in (signal.SIG_DFL, signal.SIG_IGN, None):
                raise Interrupt("no SIGTERM handler installed")  # never kill pytest itself
            signal.raise_signal(signal.SIGTERM)

    config = train_config(tiny_imagefolder, tmp_path / "run", epochs=2)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterruptedError, match="SIGTERM") as info:
        train(config, callback)
    assert "--resume" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone again
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "last")[1]
    assert state["epoch"] == 1
    assert [row["epoch"] for row in train(config.with_(resume=True)).history] == [1, 2]


# --- C8 DataLoader workers --------------------------------------------------------------------
def test_C8_loader_has_a_timeout_so_a_hung_worker_becomes_an_error():
    from visionrt.trainer import data

    loader = data.make_loader(data.ImageDataset([], _spec()), batch_size=2, sampler=None,
                              num_workers=1)
    assert 0 < loader.timeout <= 600


def _spec():
    from visionrt.spec import ModelSpec

    return ModelSpec(arch=ARCH, labels=("a", "b"), input_size=(32, 32))


def test_C8_worker_killed_by_sigbus_is_explained(tiny_imagefolder, tmp_path, monkeypatch):
    from visionrt.trainer import data

    real = data.ImageDataset.__getitem__

    def crash_in_worker(self, index):
        if index == 3:
            os.kill(os.getpid(), signal.SIGBUS)
        return real(self, index)

    monkeypatch.setattr(data.ImageDataset, "__getitem__", crash_in_worker)
    with pytest.raises(VisionRTError, match="/dev/shm") as info:
        train(train_config(tiny_imagefolder, tmp_path / "run", epochs=1, num_workers=1))
    assert "--num-workers 0" in str(info.value)


# --- C9 out of memory while training ----------------------------------------------------------
def test_C9_oom_stops_cleanly_with_a_batch_size_hint(tiny_imagefolder, tmp_path, monkeypatch):
    from visionrt.trainer import loop

    real = loop.optimize_step

    def oom(run, *args, **kwargs):
        if run.epoch >= 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(run, *args, **kwargs)

    monkeypatch.setattr(loop, "optimize_step", oom)
    with pytest.raises(VisionRTError, match="(?i)batch.size") as info:
        train(train_config(tiny_imagefolder, tmp_path / "run", epochs=2), None)
    assert "memory" in str(info.value).lower()
    assert ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "last")[1]["epoch"] == 1


# --- C1 + issue 7 "done when": a new user's mixed folder through the CLI ----------------------
def test_C1_bad_images_are_skipped_and_reported_by_name_in_train_and_predict(dirty_folder,
                                                                             tmp_path,
                                                                             tiny_bundle):
    from typer.testing import CliRunner

    from visionrt.cli import app
    from visionrt.images import list_images

    root, bad = dirty_folder
    runner = CliRunner()
    run_dir = tmp_path / "run"
    # batch size 2: bad files leave one-image or empty batches behind (64 px keeps this tiny
    # net's BatchNorm happy with one-image batches)
    result = runner.invoke(app, ["train", str(root), "--out", str(run_dir), "--arch", ARCH,
                                 "--weights", "none", "--img-size", "64", "--epochs", "1",
                                 "--batch-size", "2", "--freeze", "none",
                                 "--max-bad-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"skipped {len(bad)} unreadable image" in text
    assert all(name in text for name in bad)
    assert (run_dir / "model.safetensors").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["bad_images"] == len(bad)
    with open(run_dir / "bad_images.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert sorted(Path(r[0]).name for r in rows[1:]) == bad
    assert all(r[1] for r in rows[1:])  # each with its error

    result = runner.invoke(app, ["predict", str(tiny_bundle), str(root), "--format", "json",
                                 "--device", "cpu"])
    assert result.exit_code == 1  # documented: 1 when any input failed, all others reported
    rows = json.loads(result.stdout[result.stdout.index("["):])
    by_name = {Path(r["input"]).name: r for r in rows}
    assert set(by_name) == {p.name for p in list_images(root)}
    for name, row in by_name.items():
        assert ("error" in row) == (name in bad), row
