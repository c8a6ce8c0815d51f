"""Feature caching for frozen-backbone training without augmentation.

When the backbone is frozen (Keras trainable=False) and the images are not augmented, the backbone
maps each image to the same features every epoch. They are computed once (eval mode, inference
mode, channels_last) and the head trains on them: the same result as running the frozen backbone
every epoch, at a fraction of the cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from visionrt.errors import ConfigError
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.data import BadImageLog, ImageDataset, Normalizer, guarded, make_loader
from visionrt.trainer.models import backbone_is_frozen

log = logging.getLogger(__name__)

MAX_CACHE_BYTES = 2 * 1024**3


@dataclass
class FeatureSet:
    """Backbone features of the readable samples of a data set."""

    features: torch.Tensor  # (N, ...) float32, the input of model.forward_head
    labels: torch.Tensor  # (N,) int64
    indices: torch.Tensor  # (N,) int64 positions in the data set

    def __len__(self) -> int:
        return int(self.labels.numel())


def should_cache(config: TrainConfig, model: nn.Module, distributed: bool,
                 num_samples: int) -> bool:
    """Whether to train the head on cached features (``--cache-features auto|on|off``)."""
    if config.cache_features == "off":
        return False
    reasons = []
    if not backbone_is_frozen(model):
        reasons.append("the backbone is not frozen")
    if not config.augment.is_identity:
        reasons.append("augmentation is on")
    if config.unfreeze_at is not None:
        reasons.append("--unfreeze-at fine-tunes the backbone")
    if distributed:
        reasons.append("training is distributed")
    if not hasattr(model, "forward_head"):
        reasons.append(f"{type(model).__name__} has no forward_head")
    if not reasons and _feature_bytes(model, config, num_samples) > MAX_CACHE_BYTES:
        reasons.append(f"features of {num_samples} images exceed {MAX_CACHE_BYTES >> 30} GiB")
    if reasons and config.cache_features == "on":
        raise ConfigError("--cache-features on is not possible: " + "; ".join(reasons))
    if reasons:
        log.info("not caching backbone features: %s", "; ".join(reasons))
    return not reasons


def _feature_bytes(model: nn.Module, config: TrainConfig, num_samples: int) -> int:
    feature_numel = getattr(model, "num_features", 2048) * 7 * 7
    size = config.img_size or 224
    feature_numel = int(feature_numel * max(1.0, (size / 224) ** 2))
    return feature_numel * 4 * num_samples


@torch.inference_mode()
def extract_features(model: nn.Module, dataset: ImageDataset, normalizer: Normalizer, *,
                     batch_size: int, num_workers: int, device: torch.device,
                     bad_log: BadImageLog,
                     progress: Callable[[int, int], None] | None = None) -> FeatureSet:
    """Run the frozen backbone once over ``dataset`` (eval mode)."""
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, sampler=None, num_workers=num_workers)
    features, labels, indices = [], [], []
    done = 0
    for batch in guarded(loader):
        bad_log.record(dataset.samples, batch.bad)
        done += len(batch) + len(batch.bad)
        if len(batch):
            features.append(model.forward_features(normalizer(batch.images, device)).float())
            labels.append(batch.labels)
            indices.append(batch.indices)
        if progress is not None:
            progress(done, len(dataset))
    model.train(was_training)
    if not features:
        return FeatureSet(torch.empty(0), torch.empty(0, dtype=torch.long),
                          torch.empty(0, dtype=torch.long))
    return FeatureSet(torch.cat(features).contiguous(), torch.cat(labels).to(device),
                      torch.cat(indices))


def feature_batches(features: FeatureSet, batch_size: int,
                    generator: torch.Generator | None):
    """(features, labels) batches, shuffled when a generator is given."""
    count = len(features)
    order = torch.randperm(count, generator=generator) if generator is not None else \
        torch.arange(count)
    for start in range(0, count, batch_size):
        index = order[start:start + batch_size]
        yield features.features[index], features.labels[index], features.indices[index]
