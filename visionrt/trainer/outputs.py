"""Write the files of a run dir: history (JSON + CSV), metrics, plots, bad-image report."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from visionrt.trainer.checkpoint import atomic_write_json, atomic_write_text
from visionrt.trainer.metrics import binary_positive_scores

log = logging.getLogger(__name__)


def write_history(run_dir: Path, history: list[dict]) -> None:
    """``history.json`` (list of per-epoch dicts) and ``history.csv`` (same columns)."""
    atomic_write_json(run_dir / "history.json", history)
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(run_dir / "history.csv", buffer.getvalue())


def write_bad_images(run_dir: Path, bad: list[tuple[str, str]]) -> Path | None:
    """``RUN/bad_images.csv`` when images were skipped."""
    return write_bad_images_csv(run_dir / "bad_images.csv", bad) if bad else None


def write_bad_images_csv(path: Path, bad: list[tuple[str, str]]) -> Path:
    """``path,error`` rows; image errors name their file first, so the error drops that prefix
    (the path is in its own column once)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "error"])
    writer.writerows((image, error.removeprefix(f"{image}: ")) for image, error in bad)
    return atomic_write_text(path, buffer.getvalue())


def write_plots(run_dir: Path, history: list[dict], metrics: dict, labels: tuple[str, ...],
                probs: np.ndarray | None, targets: np.ndarray | None) -> list[Path]:
    """``curves.png``, ``confusion_matrix.png`` and, for binary tasks, ``roc_curve.png``."""
    from visionrt.trainer import plots

    written = [plots.plot_curves(history, run_dir / "curves.png")]
    if metrics.get("confusion_matrix") is not None:
        written.append(plots.plot_confusion(metrics["confusion_matrix"], labels,
                                            run_dir / "confusion_matrix.png"))
    if len(labels) == 2 and probs is not None and targets is not None:
        roc = plots.plot_roc(binary_positive_scores(probs), targets, run_dir / "roc_curve.png")
        if roc is not None:
            written.append(roc)
    return written
