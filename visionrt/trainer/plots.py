"""PNG plots of a run (matplotlib, Agg backend): curves, confusion matrix, ROC, augmentation grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    from visionrt.trainer.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_curves(history: list[dict], path: Path) -> Path:
    """Loss (train/val) and the scalar validation metrics per epoch, side by side."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("train_loss", "val_loss"):
        values = [row.get(key) for row in history]
        left.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
    left.set(title="loss", xlabel="epoch")
    _legend_below(left)
    keys = [k for k in ("val_accuracy", "val_top5_accuracy", "val_roc_auc", "val_pr_auc",
                        "val_sensitivity_at_90_specificity") if any(k in r for r in history)]
    for key in keys:
        values = [row.get(key) for row in history]
        right.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
    right.set(title="validation metrics", xlabel="epoch", ylim=(0, 1.05))
    if keys:
        _legend_below(right)
    from matplotlib.ticker import MaxNLocator

    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def _legend_below(axis) -> None:
    # Inside the panel a legend sits on the curves: metrics crowd at 1.0, losses anywhere.
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8,
                frameon=False)


def plot_confusion(matrix: list[list[int]], labels: tuple[str, ...], path: Path) -> Path:
    plt = _pyplot()
    data = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, axis = plt.subplots(figsize=(size, size))
    axis.imshow(data, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="predicted", ylabel="true", title="confusion matrix (validation)")
    threshold = data.max() / 2 if data.size else 0
    for (i, j), value in np.ndenumerate(data):
        axis.text(j, i, str(value), ha="center", va="center",
                  color="white" if value > threshold else "black")
    return _save(fig, path)


def plot_roc(scores: np.ndarray, targets: np.ndarray, path: Path) -> Path | None:
    """ROC curve of a binary task (None when validation has one class only)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(np.unique(targets)) < 2:
        return None
    plt = _pyplot()
    fpr, tpr, _ = roc_curve(targets, scores)
    fig, axis = plt.subplots(figsize=(5, 5))
    axis.plot(fpr, tpr, label=f"AUC = {roc_auc_score(targets, scores):.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.axvline(0.1, color="red", alpha=0.3, label="specificity 0.9")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation)")
    axis.legend(loc="lower right")
    return _save(fig, path)


def plot_grid(images: list[np.ndarray], titles: list[str], path: Path, columns: int = 6) -> Path:
    """A grid of uint8 HxWx3 images with titles (augmentation preview)."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles, strict=False):
        axis.imshow(image)
        axis.set_title(title, fontsize=8)
    return _save(fig, path)
