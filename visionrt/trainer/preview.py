"""``augment-preview``: a PNG grid of training images next to augmented versions of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from visionrt.images import preprocess
from visionrt.trainer.augment import build_augment
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.data import load_split
from visionrt.trainer.models import spec_for


def preview_augmentations(config: TrainConfig, out: Path, *, images: int = 6,
                          variants: int = 5) -> Path:
    """Write a grid: one row per image, the original then ``variants`` augmented draws.

    Uses the config's data, architecture input size and augmentation; seeded by ``config.seed``.
    """
    from visionrt.trainer.plots import plot_grid

    split = load_split(config)
    spec = spec_for(config.arch, split.labels, img_size=config.img_size)
    augment = build_augment(config.augment)
    generator = np.random.default_rng(config.seed)
    chosen = generator.choice(len(split.train), size=min(images, len(split.train)),
                              replace=False)
    torch.manual_seed(config.seed)
    tiles, titles = [], []
    for index in chosen:
        sample = split.train[int(index)]
        pixels = preprocess(sample.path, spec)
        tiles.append(pixels)
        titles.append(f"{split.labels[sample.label]} (original)")
        tensor = torch.from_numpy(np.require(pixels, requirements="W")).permute(2, 0, 1)
        for draw in range(variants):
            image = augment(tensor) if augment is not None else tensor
            tiles.append(image.permute(1, 2, 0).numpy())
            titles.append(f"augmented {draw + 1}")
    return plot_grid(tiles, titles, out, columns=variants + 1)
