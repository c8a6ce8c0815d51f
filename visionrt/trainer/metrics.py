"""Classification metrics (scikit-learn): multi-class and binary (ROC AUC, PR AUC, sensitivity)."""

from __future__ import annotations

import math

import numpy as np


def binary_positive_scores(probs: np.ndarray) -> np.ndarray:
    """P(labels[1]) from (N, 1) sigmoid or (N, 2) softmax probabilities."""
    return probs[:, -1] if probs.ndim == 2 else probs


def compute_metrics(probs: np.ndarray, targets: np.ndarray, labels: tuple[str, ...],
                    loss: float | None = None) -> dict:
    """Metrics of predictions ``probs`` (N, C) or (N, 1) against integer ``targets`` (N,).

    Multi-class: accuracy, top5_accuracy (>= 5 classes), per-class precision/recall,
    confusion_matrix. Binary adds roc_auc, pr_auc and sensitivity_at_90_specificity.
    Returns JSON-ready values (a metric that cannot be computed is None).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    num_classes = len(labels)
    if probs.shape[1] == 1:
        positive = probs[:, 0]
        preds = (positive >= 0.5).astype(np.int64)
    else:
        preds = probs.argmax(axis=1)
    result: dict = {"loss": _finite(loss), "samples": int(len(targets)),
                    "accuracy": float((preds == targets).mean()) if len(targets) else None}
    if num_classes >= 5 and probs.shape[1] >= 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        result["top5_accuracy"] = float((top5 == targets[:, None]).any(axis=1).mean())
    precision, recall, _, support = precision_recall_fscore_support(
        targets, preds, labels=list(range(num_classes)), zero_division=0)
    result["per_class"] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "support": int(support[i])} for i, name in enumerate(labels)}
    result["confusion_matrix"] = confusion_matrix(
        targets, preds, labels=list(range(num_classes))).tolist()
    if num_classes == 2:
        result.update(binary_metrics(binary_positive_scores(probs), targets))
    return result


def binary_metrics(scores: np.ndarray, targets: np.ndarray) -> dict:
    """ROC AUC, PR AUC (average precision) and sensitivity at 0.9 specificity."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    if len(np.unique(targets)) < 2:
        return {"roc_auc": None, "pr_auc": None, "sensitivity_at_90_specificity": None}
    fpr, tpr, _ = roc_curve(targets, scores)
    allowed = fpr <= 0.1 + 1e-12
    return {
        "roc_auc": float(roc_auc_score(targets, scores)),
        "pr_auc": float(average_precision_score(targets, scores)),
        "sensitivity_at_90_specificity": float(tpr[allowed].max()) if allowed.any() else 0.0,
    }


def scalar_metrics(metrics: dict, prefix: str = "val_") -> dict:
    """The scalar entries of ``metrics`` (for History rows), prefixed."""
    return {f"{prefix}{k}": v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "samples"}


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def monitor_for(num_classes: int, monitor: str) -> tuple[str, str]:
    """(history key, "max"|"min") of the metric that picks the best epoch."""
    if monitor == "auto":
        monitor = "val_roc_auc" if num_classes == 2 else "val_accuracy"
    if not monitor.startswith(("val_", "train_")):
        monitor = f"val_{monitor}"
    return monitor, ("min" if monitor.endswith("loss") else "max")


def improved(value: float | None, best: float | None, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best
