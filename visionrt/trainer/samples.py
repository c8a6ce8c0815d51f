"""Labelled sample lists: ImageFolder scanning and stratified (grouped) train/val splits."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionrt.errors import DataValidationError
from visionrt.images import list_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One labelled image: its file, class index and (for CSVs) group such as a patient id."""

    path: Path
    label: int
    group: str | None = None


@dataclass(frozen=True)
class DataSplit:
    """Train and validation samples with the class names (index order)."""

    labels: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]

    def describe(self) -> str:
        def counts(samples: list[Sample]) -> str:
            c = Counter(s.label for s in samples)
            return ", ".join(f"{self.labels[i]}={c.get(i, 0)}" for i in range(len(self.labels)))

        return f"train {len(self.train)} ({counts(self.train)}); val {len(self.val)} " \
               f"({counts(self.val)})"


def scan_imagefolder(
    root: Path, labels: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], list[Sample]]:
    """Samples of ``root/<class>/<images>`` (class = sorted sub-folder names).

    Args:
        labels: map folders onto these class names (validation folder, evaluation); folders not
            in ``labels`` are an error.

    Raises:
        DataValidationError: missing folder, no class folders, empty classes, unknown classes.
    """
    if not root.is_dir():
        raise DataValidationError(f"data folder not found: {root}", source=str(root))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataValidationError(
            f"{root}: no class folders; expected {root}/<class name>/<image files>",
            source=str(root), hint="or use --csv FILE --images DIR")
    found = {p.name: list_images(p) for p in folders}
    empty = [name for name, files in found.items() if not files]
    if empty and labels is None:
        raise DataValidationError(f"{root}: class folder(s) without images: {empty[:5]}",
                                  source=str(root))
    names = labels or tuple(p.name for p in folders)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataValidationError(
            f"{root}: class folder(s) {unknown[:5]} are not among the classes {list(names)}",
            source=str(root))
    if labels is None and len(names) < 2:
        raise DataValidationError(f"{root}: found one class {list(names)}; need at least two",
                                  source=str(root))
    index = {name: i for i, name in enumerate(names)}
    samples = [Sample(path, index[name]) for name, files in found.items() for path in files]
    return tuple(names), samples


def stratified_split(samples: list[Sample], fraction: float, seed: int,
                     grouped: bool = False) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into train/val keeping class proportions.

    With ``grouped``, samples sharing a group (patient) land on the same side
    (sklearn's StratifiedGroupKFold, first fold as validation).
    """
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    labels = np.array([s.label for s in samples])
    indices = np.arange(len(samples))
    if grouped:
        groups = np.array([s.group if s.group is not None else f"#{i}"
                           for i, s in enumerate(samples)])
        n_splits = max(2, round(1 / fraction))
        if len(set(groups)) < n_splits:
            raise DataValidationError(
                f"only {len(set(groups))} groups; a grouped split of {fraction} needs at least "
                f"{n_splits}", hint="lower --val-split or pass --val")
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, val_idx = next(folds.split(indices, labels, groups))
    else:
        counts = Counter(labels.tolist())
        stratify = labels if min(counts.values()) >= 2 else None
        n_val = max(len(counts), round(fraction * len(samples))) if stratify is not None else \
            max(1, round(fraction * len(samples)))
        if n_val >= len(samples):
            raise DataValidationError(f"{len(samples)} images are too few to split off "
                                      f"{fraction:.0%} for validation", hint="pass --val DIR")
        train_idx, val_idx = train_test_split(indices, test_size=n_val, random_state=seed,
                                              stratify=stratify)
    return [samples[i] for i in sorted(train_idx)], [samples[i] for i in sorted(val_idx)]


def class_counts(samples: list[Sample], num_classes: int) -> list[int]:
    counts = Counter(s.label for s in samples)
    return [counts.get(i, 0) for i in range(num_classes)]
