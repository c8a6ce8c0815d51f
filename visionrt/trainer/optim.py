"""The optimizer, its per-step learning-rate schedule and the autocast dtype of a run."""

from __future__ import annotations

import math

import torch
from torch import nn

from visionrt.trainer.config import TrainConfig


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
