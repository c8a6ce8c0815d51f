"""The loss of a run: cross-entropy, or BCE/focal on a single sigmoid logit for binary tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionrt.trainer.config import TrainConfig


def uses_sigmoid_head(config: TrainConfig, num_classes: int) -> bool:
    """Binary tasks train a single-logit sigmoid head with BCE/focal loss unless ``--loss ce``."""
    if config.loss in ("bce", "focal"):
        return True
    return config.loss == "auto" and num_classes == 2


def class_weights(counts: list[int]) -> torch.Tensor:
    """sklearn's "balanced" weights: n / (classes * count)."""
    total, classes = sum(counts), len(counts)
    return torch.tensor([total / (classes * c) if c else 0.0 for c in counts],
                        dtype=torch.float32)


class SigmoidLoss(nn.Module):
    """BCE (or focal) on a single logit; ``pos_weight`` balances classes, targets smoothed."""

    def __init__(self, *, focal_gamma: float | None, pos_weight: float | None,
                 label_smoothing: float) -> None:
        super().__init__()
        self.focal_gamma = focal_gamma
        self.pos_weight = pos_weight
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits[:, 0]
        y = targets.to(logits.dtype)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        pos_weight = None if self.pos_weight is None else torch.tensor(self.pos_weight)
        if self.focal_gamma is None:
            return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * y + (1 - p) * (1 - y)
        loss = bce * (1 - p_t) ** self.focal_gamma
        if pos_weight is not None:
            loss = loss * (1 + (pos_weight - 1) * y)
        return loss.mean()


def build_loss(config: TrainConfig, counts: list[int]) -> nn.Module:
    """Cross-entropy (multi-class) or BCE/focal (sigmoid binary head)."""
    weighted = config.class_weight == "auto"
    if uses_sigmoid_head(config, len(counts)):
        pos_weight = counts[0] / counts[1] if weighted and counts[1] else None
        gamma = config.focal_gamma if config.loss == "focal" else None
        return SigmoidLoss(focal_gamma=gamma, pos_weight=pos_weight,
                           label_smoothing=config.label_smoothing)
    weight = class_weights(counts) if weighted else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def predict_probs(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities: sigmoid for a single logit, else softmax."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
