"""Images for int8 calibration and the held-out parity check.

Sources: an ImageFolder (class folders named like the spec's labels give labelled images), a flat
folder, a CSV (Kaggle layout: ``image_name`` and optional ``target`` columns), or a run's training
data (``config.json``: ``data`` or ``csv`` + ``images``). Images are decoded and resized with
``visionrt.images.preprocess``, the exact transform the trainer's eval path and the runtime use.
The shuffled list is split into disjoint verification and calibration sets.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionrt.errors import DataValidationError, ImageError
from visionrt.images import list_images, preprocess
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageItem:
    path: Path
    label: int | None = None


@dataclass(frozen=True)
class ImageSet:
    """Image files, with label indices into ``spec.labels`` when the source names classes."""

    items: tuple[ImageItem, ...]
    origin: str

    @property
    def labelled(self) -> bool:
        return bool(self.items) and all(item.label is not None for item in self.items)


@dataclass(frozen=True)
class LoadedImages:
    pixels: np.ndarray  # uint8 NHWC at spec.input_size
    labels: np.ndarray | None  # int64 label indices, or None
    paths: tuple[str, ...]
    skipped: int = 0


def images_from_path(path: Path, labels: tuple[str, ...], *, image_column: str = "image_name",
                     label_column: str = "target") -> ImageSet:
    """An ImageSet from a folder or a CSV file.

    Raises:
        DataValidationError: missing path, a folder without images, or an unusable CSV.
    """
    if path.is_file() and path.suffix.lower() == ".csv":
        return images_from_csv(path, path.parent, labels, image_column=image_column,
                               label_column=label_column)
    if not path.is_dir():
        raise DataValidationError(f"calibration images not found: {path}", source=str(path),
                                  hint="pass --calib with an image folder or a CSV file")
    files = list_images(path)
    if not files:
        raise DataValidationError(
            f"calibration folder {path} contains no images (.jpg, .png, .webp, .bmp, .tif)",
            source=str(path), hint="pass --calib with a folder of real images of the task")
    index = {name: i for i, name in enumerate(labels)}
    items = tuple(ImageItem(f, index.get(f.parent.name) if f.parent != path else None)
                  for f in files)
    if any(i.label is None for i in items) and any(i.label is not None for i in items):
        items = tuple(ImageItem(i.path) for i in items)  # mixed: do not score a partial set
    return ImageSet(items, str(path))


def images_from_csv(csv_path: Path, images_dir: Path, labels: tuple[str, ...], *,
                    image_column: str = "image_name", label_column: str = "target",
                    suffix: str = ".jpg") -> ImageSet:
    """An ImageSet from a Kaggle-style CSV (images ``images_dir/<name>[suffix]``), read with the
    trainer's own CSV rules (BOM, label forms, paths kept inside ``images_dir``)."""
    from visionrt.trainer import csvdata

    if not csv_path.is_file():
        raise DataValidationError(f"calibration CSV {csv_path} not found", source=str(csv_path))
    rows, header = csvdata.read_rows(csv_path)
    if not rows or image_column not in header:
        raise DataValidationError(f"{csv_path}: no rows or no {image_column!r} column",
                                  source=str(csv_path), hint="the CSV needs an image_name column")
    root = images_dir.resolve()
    items = []
    for _, row in rows:
        path = csvdata.image_path(root, row.get(image_column) or "", suffix)
        if path is None or not path.is_file():
            continue  # outside the image root, or missing: not used for calibration
        items.append(ImageItem(path, _label_index(csvdata.parse_label(row.get(label_column)),
                                                  labels)))
    if not items:
        raise DataValidationError(f"{csv_path}: none of its {len(rows)} images exist under "
                                  f"{images_dir}", source=str(csv_path))
    if any(i.label is None for i in items):
        items = [ImageItem(i.path) for i in items]
    return ImageSet(tuple(items), str(csv_path))


def _label_index(label: str | None, labels: tuple[str, ...]) -> int | None:
    """The class index of a parsed CSV label: by name, else an integer class index."""
    if label is None:
        return None
    if label in labels:
        return labels.index(label)
    return int(label) if label.isdigit() and int(label) < len(labels) else None


def images_for_run(run_dir: Path, labels: tuple[str, ...]) -> ImageSet | None:
    """The training images recorded in a run's ``config.json``; None when it names none."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if config.get("csv") and config.get("images"):
        return images_from_csv(Path(config["csv"]), Path(config["images"]), labels,
                               image_column=config.get("image_column", "image_name"),
                               label_column=config.get("label_column", "target"),
                               suffix=config.get("image_suffix", ".jpg"))
    for key in ("val", "data"):  # held-out images first, when the run had a val folder
        if config.get(key) and Path(config[key]).is_dir():
            return images_from_path(Path(config[key]), labels)
    return None


def split(images: ImageSet, *, verify: int, calib: int, need_calib: bool,
          seed: int) -> tuple[list[ImageItem], list[ImageItem]]:
    """Disjoint (verification, calibration) lists from a seeded shuffle.

    When there are fewer images than asked for, verification gets at most half of them so that
    calibration keeps the rest.
    """
    items = list(images.items)
    random.Random(seed).shuffle(items)
    n_verify = min(verify, len(items) // 2 if need_calib else len(items))
    n_verify = max(n_verify, 1) if len(items) > 1 or not need_calib else 0
    verify_items = items[:n_verify]
    calib_items = items[n_verify:n_verify + calib] if need_calib else []
    return verify_items, calib_items


def load_images(items: list[ImageItem], spec: ModelSpec) -> LoadedImages:
    """Decode and resize items with the shared eval transform; undecodable files are skipped.

    Raises:
        DataValidationError: none of the images could be decoded.
    """
    pixels, labels, paths, skipped = [], [], [], 0
    for item in items:
        try:
            pixels.append(preprocess(item.path, spec))
        except ImageError as exc:
            log.warning("skipping %s", exc)
            skipped += 1
            continue
        labels.append(item.label)
        paths.append(str(item.path))
    if items and not pixels:
        raise DataValidationError(f"none of the {len(items)} images could be decoded "
                                  f"(first: {items[0].path})", source=str(items[0].path))
    h, w = spec.input_size
    batch = np.stack(pixels) if pixels else np.zeros((0, h, w, 3), np.uint8)
    known = labels and all(label is not None for label in labels)
    return LoadedImages(batch, np.asarray(labels, np.int64) if known else None, tuple(paths),
                        skipped)


def synthetic_images(spec: ModelSpec, count: int, seed: int) -> np.ndarray:
    """Deterministic structured images (shapes, textures) when no real images were given: the
    first ``count`` images of ``visionrt synth`` (8 classes), drawn in memory in file order."""
    from itertools import islice

    from visionrt.synth import class_names, draw_sample

    classes, per_class = 8, -(-count // 8)
    size = max(64, min(max(spec.input_size), 256))
    names = class_names(classes)
    drawn = (draw_sample(index, classes, size, np.random.default_rng([seed, index, i]))
             for index in sorted(range(classes), key=names.__getitem__)
             for i in range(per_class))
    return np.stack([preprocess(image, spec) for image in islice(drawn, count)])
