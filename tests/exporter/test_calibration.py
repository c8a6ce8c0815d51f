"""Calibration / verification images: sources, labels, disjoint split, decoding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from visionrt.errors import DataValidationError
from visionrt.exporter import calibration


def test_imagefolder_gives_labelled_images(tiny_imagefolder, tiny_labels):
    images = calibration.images_from_path(tiny_imagefolder, tiny_labels)
    assert len(images.items) == 36 and images.labelled
    assert {i.label for i in images.items} == {0, 1, 2}


def test_folder_with_other_class_names_is_unlabelled(tiny_imagefolder):
    images = calibration.images_from_path(tiny_imagefolder, ("x", "y", "z"))
    assert not images.labelled and len(images.items) == 36


def test_csv_source(tmp_path, tiny_imagefolder, tiny_labels):
    files = sorted(tiny_imagefolder.rglob("*.png"))[:6]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    rows = ["image_name,target"] + [f"{f.stem},{i % 3}" for i, f in enumerate(files)]
    rows.append("../escape,1")  # outside the image root: ignored
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    images = calibration.images_from_csv(tmp_path / "t.csv", tmp_path, tiny_labels,
                                         suffix=".png")
    assert len(images.items) == 6 and images.labelled
    assert [i.label for i in images.items] == [0, 1, 2, 0, 1, 2]


def test_split_is_disjoint_and_seeded(tiny_imagefolder, tiny_labels):
    images = calibration.images_from_path(tiny_imagefolder, tiny_labels)
    verify, calib = calibration.split(images, verify=100, calib=100, need_calib=True, seed=0)
    assert len(verify) == 18 and len(calib) == 18  # half each when there are too few
    assert not {i.path for i in verify} & {i.path for i in calib}
    again, _ = calibration.split(images, verify=100, calib=100, need_calib=True, seed=0)
    assert again == verify
    only_verify, none = calibration.split(images, verify=10, calib=5, need_calib=False, seed=0)
    assert len(only_verify) == 10 and none == []


def test_load_images_skips_broken_files(tmp_path, tiny_imagefolder, tiny_spec):
    good = sorted(tiny_imagefolder.rglob("*.png"))[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    items = [calibration.ImageItem(good, 0), calibration.ImageItem(bad, 1)]
    loaded = calibration.load_images(items, tiny_spec)
    assert loaded.pixels.shape == (1, 32, 32, 3) and loaded.pixels.dtype == np.uint8
    assert loaded.skipped == 1 and loaded.labels.tolist() == [0]
    with pytest.raises(DataValidationError, match="none of the 1 images"):
        calibration.load_images([calibration.ImageItem(bad)], tiny_spec)


def test_missing_calibration_path(tmp_path):
    with pytest.raises(DataValidationError, match="not found"):
        calibration.images_from_path(tmp_path / "nope", ("a",))


def test_calibration_csv_is_read_with_the_trainers_rules(tmp_path):
    """A BOM-prefixed CSV (Excel's UTF-8) with float-formatted labels, as the trainer accepts it."""
    from PIL import Image

    from visionrt.exporter.calibration import images_from_csv

    images = tmp_path / "jpeg"
    images.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (8, 8)).save(images / f"{name}.jpg")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("\ufeffimage_name,target\na,0.0\nb,1\n../escape,1\n", encoding="utf-8")
    found = images_from_csv(csv_path, images, ("0", "1"))
    assert [(i.path.name, i.label) for i in found.items] == [("a.jpg", 0), ("b.jpg", 1)]
