"""Kaggle CSV validation (reported before training) and the grouped stratified split."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from visionrt.errors import DataValidationError
from visionrt.trainer.csvdata import read_csv_samples
from visionrt.trainer.samples import stratified_split


def _rewrite(csv_path: Path, target: Path, edit) -> Path:
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    rows = edit(rows)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_reads_kaggle_layout(kaggle_set) -> None:
    csv_path, images = kaggle_set
    labels, samples = read_csv_samples(csv_path, images)
    assert labels == ("0", "1")
    assert len(samples) == 36 and all(s.path.is_file() for s in samples)
    assert samples[0].group == "IP_0000"  # patient_id picked up automatically


def test_missing_column_is_named(kaggle_set) -> None:
    csv_path, images = kaggle_set
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['label'\]"):
        read_csv_samples(csv_path, images, label_column="label")
    with pytest.raises(DataValidationError, match="hospital"):
        read_csv_samples(csv_path, images, group_column="hospital")


def test_all_problems_listed_with_rows(kaggle_set, tmp_path: Path) -> None:
    csv_path, images = kaggle_set

    def edit(rows):
        rows[0]["target"] = "nan"
        rows[1]["target"] = "0.5"
        rows[2]["image_name"] = "ISIC_missing"
        rows[3]["image_name"] = "../../etc/passwd"
        rows[4]["image_name"] = "/etc/passwd"
        rows[5]["image_name"] = rows[6]["image_name"]
        rows[7]["target"] = ""
        return rows

    bad = _rewrite(csv_path, tmp_path / "bad.csv", edit)
    with pytest.raises(DataValidationError) as info:
        read_csv_samples(bad, images)
    message = str(info.value)
    for expected in ("row 2: 'nan'", "row 3: '0.5'", "row 9: ''", "image file not found",
                     "row 4: ISIC_missing.jpg", "outside the image folder", "row 5",
                     "row 6", "duplicate image name", "row 8"):
        assert expected in message, (expected, message)


def test_symlink_out_of_root_is_refused(kaggle_set, tmp_path: Path) -> None:
    csv_path, images = kaggle_set
    root = tmp_path / "imgs"
    root.mkdir()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((images / "ISIC_00000.jpg").read_bytes())
    (root / "ISIC_00000.jpg").symlink_to(outside)
    with pytest.raises(DataValidationError, match="outside the image folder"):
        read_csv_samples(csv_path, root)


def test_string_labels_and_explicit_extension(kaggle_set, tmp_path: Path) -> None:
    csv_path, images = kaggle_set

    def edit(rows):
        for row in rows:
            row["target"] = "malignant" if row["target"] == "1" else "benign"
            row["image_name"] += ".jpg"
        return rows

    labels, samples = read_csv_samples(_rewrite(csv_path, tmp_path / "s.csv", edit), images)
    assert labels == ("benign", "malignant") and len(samples) == 36


def test_grouped_split_never_leaks_a_patient(tmp_path: Path, make_kaggle_set) -> None:
    csv_path, images = make_kaggle_set(tmp_path, patients=40, per_patient=4, size=24)
    _, samples = read_csv_samples(csv_path, images)
    for seed in range(3):
        train, val = stratified_split(samples, 0.2, seed, grouped=True)
        assert not {s.group for s in train} & {s.group for s in val}
        assert len(train) + len(val) == len(samples)
        assert {s.label for s in val} == {0, 1}  # stratified: both classes in validation


def test_ungrouped_split_is_stratified(tiny_imagefolder: Path) -> None:
    from visionrt.trainer.samples import scan_imagefolder

    labels, samples = scan_imagefolder(tiny_imagefolder)
    train, val = stratified_split(samples, 0.25, 0, grouped=False)
    assert len(val) == 9 and sorted({s.label for s in val}) == [0, 1, 2]
    assert not {s.path for s in train} & {s.path for s in val}
