"""Read and validate a Kaggle-style CSV (SIIM-ISIC: ``image_name,patient_id,...,target``).

Every problem is collected first and reported together, with CSV row numbers, before any training
starts: missing columns, empty / non-integer-number labels, duplicate image names, images without a
file, and image names that would leave the image folder (absolute paths, ``..``, symlinks out).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from visionrt.errors import DataValidationError
from visionrt.images import IMAGE_SUFFIXES
from visionrt.trainer.samples import Sample

MAX_LISTED = 5
DEFAULT_GROUP_COLUMN = "patient_id"


def read_csv_samples(
    csv_path: Path,
    images: Path,
    *,
    image_column: str = "image_name",
    label_column: str = "target",
    group_column: str | None = None,
    image_suffix: str = ".jpg",
    labels: tuple[str, ...] | None = None,
) -> tuple[tuple[str, ...], list[Sample]]:
    """Samples of a CSV whose ``image_column`` names files under ``images``.

    Args:
        group_column: column whose equal values must stay on one side of the split; ``None``
            uses ``patient_id`` when the CSV has it.
        image_suffix: appended to image names that have no image extension (Kaggle: ``.jpg``).
        labels: the label names to map onto (evaluation of a trained run); inferred when None.

    Returns:
        (label names in index order, samples).

    Raises:
        DataValidationError: listing the first offenders of every problem found.
    """
    rows, header = read_rows(csv_path)
    group_column = _check_columns(csv_path, header, image_column, label_column, group_column)
    root = images.resolve()
    if not root.is_dir():
        raise DataValidationError(f"--images {images}: folder not found", source=str(images))
    columns = (image_column, label_column, group_column)
    problems, entries = _check_rows(rows, root, columns, image_suffix)
    if not rows:
        problems["no data rows"] = [str(csv_path)]
    _raise_problems(csv_path, problems)
    return _to_samples(csv_path, entries, labels)


Entry = tuple[Path, str, "str | None"]


def _check_rows(rows: list[tuple[int, dict]], root: Path, columns: tuple[str, str, str | None],
                image_suffix: str) -> tuple[dict[str, list[str]], list[Entry]]:
    """Every row's problems (keyed by kind, with row numbers) and the valid (path, label, group)."""
    image_column, label_column, group_column = columns
    problems: dict[str, list[str]] = {}
    entries: list[Entry] = []
    seen: dict[str, int] = {}

    def report(kind: str, where: str) -> None:
        problems.setdefault(kind, []).append(where)

    for number, row in rows:
        name = (row.get(image_column) or "").strip()
        label = parse_label(row.get(label_column))
        path = image_path(root, name, image_suffix)
        if not name:
            report("empty image name", f"row {number}")
        elif path is None:
            report("image path outside the image folder", f"row {number}: {name!r}")
        elif name in seen:
            report("duplicate image name", f"row {number}: {name!r} (first on row {seen[name]})")
        elif not path.is_file():
            report("image file not found", f"row {number}: {path.relative_to(root)}")
        if label is None:
            report(f"label ({label_column}) is empty, NaN or a non-integer number",
                   f"row {number}: {row.get(label_column)!r}")
        seen.setdefault(name, number)
        group = (row.get(group_column) or "").strip() if group_column else None
        if path is not None and label is not None:
            entries.append((path, label, group or None))
    return problems, entries


def read_rows(csv_path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    if not csv_path.is_file():
        raise DataValidationError(f"--csv {csv_path}: file not found", source=str(csv_path))
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [(number, row) for number, row in enumerate(reader, start=2)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataValidationError(f"{csv_path}: not a readable UTF-8 CSV ({exc})",
                                  source=str(csv_path)) from exc
    return rows, header


def _check_columns(csv_path: Path, header: list[str], image_column: str, label_column: str,
                   group_column: str | None) -> str | None:
    wanted = [image_column, label_column] + ([group_column] if group_column else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataValidationError(
            f"{csv_path}: missing column(s) {missing}; the CSV has {header[:12]}",
            source=str(csv_path), expected=wanted, actual=header,
            hint="name the right ones with --image-column / --label-column / --group-column",
        )
    if group_column is None and DEFAULT_GROUP_COLUMN in header:
        return DEFAULT_GROUP_COLUMN
    return group_column


def parse_label(value: str | None) -> str | None:
    """An integer label as its decimal string, or a non-numeric string label; None if invalid."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number) or number != int(number):
        return None
    return str(int(number))


def image_path(root: Path, name: str, suffix: str) -> Path | None:
    """``root/name[suffix]`` resolved; None when it would leave ``root`` (S10)."""
    if not name or Path(name).is_absolute() or "\x00" in name:
        return None
    relative = name if Path(name).suffix.lower() in IMAGE_SUFFIXES else name + suffix
    path = (root / relative).resolve()
    try:
        path.relative_to(root)
    except ValueError:
        return None
    return path


def _raise_problems(csv_path: Path, problems: dict[str, list[str]]) -> None:
    if not problems:
        return
    parts = []
    for what, where in problems.items():
        more = f" and {len(where) - MAX_LISTED} more" if len(where) > MAX_LISTED else ""
        parts.append(f"{what}: {'; '.join(where[:MAX_LISTED])}{more}")
    raise DataValidationError(
        f"{csv_path}: {sum(len(w) for w in problems.values())} problem(s) found before "
        f"training: " + " | ".join(parts),
        source=str(csv_path), actual=problems,
        hint="fix the CSV (or the image folder) and run again",
    )


def _to_samples(csv_path: Path, entries: list[tuple[Path, str, str | None]],
                labels: tuple[str, ...] | None) -> tuple[tuple[str, ...], list[Sample]]:
    names = labels or _sorted_labels({label for _, label, _ in entries})
    if len(names) < 2:
        raise DataValidationError(f"{csv_path}: only one label value {names}; need two or more",
                                  source=str(csv_path))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({label for _, label, _ in entries} - set(index))
    if unknown:
        raise DataValidationError(f"{csv_path}: labels {unknown[:MAX_LISTED]} are not among "
                                  f"the model's {list(names)}", source=str(csv_path))
    return tuple(names), [Sample(path, index[label], group) for path, label, group in entries]


def _sorted_labels(values: set[str]) -> tuple[str, ...]:
    if all(v.lstrip("-").isdigit() for v in values):
        return tuple(sorted(values, key=int))
    return tuple(sorted(values))
