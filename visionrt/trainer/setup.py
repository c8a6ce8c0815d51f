"""Pieces a run is assembled from: device, distributed info, loss, optimizer, LR schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from visionrt.trainer.config import TrainConfig


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def dist_info() -> DistInfo:
    """Rank and world size of an initialised torch.distributed group (see ``__main__``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def pick_device(dist: DistInfo) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", dist.rank % torch.cuda.device_count())
    return torch.device("cpu")


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


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """All parameters in one group; frozen ones have no gradient and are skipped until unfrozen."""
    params = list(model.parameters())
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


class LRFactor:
    """Per-step LR multiplier: linear warmup, cosine or constant, x factor after unfreezing."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.total = max(1, config.epochs * steps_per_epoch)
        self.warmup = int(config.warmup_epochs * steps_per_epoch)
        self.cosine = config.schedule == "cosine"
        self.unfreeze_step = None if config.unfreeze_at is None else \
            config.unfreeze_at * steps_per_epoch
        self.unfreeze_factor = config.unfreeze_lr_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            factor = (step + 1) / self.warmup
        elif self.cosine:
            progress = (step - self.warmup) / max(1, self.total - self.warmup)
            factor = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        else:
            factor = 1.0
        if self.unfreeze_step is not None and step >= self.unfreeze_step:
            factor *= self.unfreeze_factor
        return factor


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per optimizer step."""
    if config.schedule == "onecycle":
        pct = config.warmup_epochs / config.epochs if config.warmup_epochs else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(2, config.epochs * steps_per_epoch),
            pct_start=min(max(pct, 0.01), 0.99))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor(config, steps_per_epoch))


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CPU, fp16 on CUDA, or None without --amp."""
    if not config.amp:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16
