"""Kaggle-style submissions: ``image_name,target`` rows in the order of a test CSV.

The test CSV (SIIM-ISIC layout) names images without extension; each is ``DIR/<image_name>.jpg``.
Names come from a file the user downloaded, so every resolved path must stay inside DIR (rule
S10: no absolute names, no ``..``, no symlink escapes).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from visionrt.errors import ConfigError, DataValidationError
from visionrt.images import IMAGE_SUFFIXES
from visionrt.spec import ModelSpec


def read_test_csv(csv_path: Path, images: Path, column: str = "image_name"
                  ) -> list[tuple[str, Path]]:
    """(image_name, image path) per row of ``csv_path``, in file order.

    Raises:
        DataValidationError: missing file/column, empty or duplicate names, or a name that
            resolves outside ``images`` (row numbers are 1-based data rows, header = row 1).
    """
    if not csv_path.is_file():
        raise DataValidationError(f"test CSV not found: {csv_path}", source=str(csv_path))
    if not images.is_dir():
        raise DataValidationError(f"image folder not found: {images}", source=str(images))
    root = images.resolve()
    try:
        return _read_rows(csv_path, root, column)
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{csv_path}: not a readable UTF-8 CSV ({exc})",
                                  source=str(csv_path), hint="save the CSV as UTF-8") from exc


def _read_rows(csv_path: Path, root: Path, column: str) -> list[tuple[str, Path]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise DataValidationError(
                f"{csv_path}: no {column!r} column (columns: {reader.fieldnames})",
                source=str(csv_path), expected=column, actual=reader.fieldnames)
        rows, seen = [], set()
        for line, record in enumerate(reader, start=2):
            name = (record.get(column) or "").strip()
            if not name:
                raise DataValidationError(f"{csv_path} row {line}: empty {column}",
                                          source=f"{csv_path}:{line}")
            if name in seen:
                raise DataValidationError(f"{csv_path} row {line}: duplicate {column} {name!r}",
                                          source=f"{csv_path}:{line}")
            seen.add(name)
            rows.append((name, _image_path(root, name, f"{csv_path} row {line}")))
    if not rows:
        raise DataValidationError(f"{csv_path} has no data rows", source=str(csv_path))
    return rows


def _image_path(root: Path, name: str, where: str) -> Path:
    file = name if name.lower().endswith(IMAGE_SUFFIXES) else f"{name}.jpg"
    if "\x00" in file:  # Path.resolve raises a bare ValueError on NUL bytes
        raise DataValidationError(f"{where}: image name {name!r} contains a NUL byte",
                                  source=where, actual=name)
    candidate = (root / file).resolve()
    if Path(file).is_absolute() or root not in candidate.parents:
        raise DataValidationError(f"{where}: image name {name!r} points outside {root}",
                                  source=where, actual=name,
                                  hint="image names must be plain file names inside --images")
    return candidate


def positive_class(spec: ModelSpec) -> int:
    """Index of the positive class of a binary model (labels[1], the sigmoid head's class).

    Raises:
        ConfigError: the model has more than two classes.
    """
    if spec.num_classes != 2:
        raise ConfigError(
            f"a submission needs a binary model; {spec.arch} has {spec.num_classes} classes",
            actual=spec.num_classes, expected=2)
    return 1


def write_submission(path: Path, names: list[str], scores: list[float] | np.ndarray,
                     column: str = "image_name") -> Path:
    """Write ``image_name,target`` rows atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([column, "target"])
            for name, score in zip(names, scores, strict=True):
                writer.writerow([name, f"{float(score):.6f}"])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
