"""Evaluate a trained run on a labelled data set (folder or CSV) with the run's eval transform."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visionrt.errors import DataValidationError
from visionrt.trainer.checkpoint import atomic_write_json
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.data import (
    BadImageLog,
    ImageDataset,
    Normalizer,
    guarded,
    load_eval_samples,
    make_loader,
)
from visionrt.trainer.losses import predict_probs
from visionrt.trainer.metrics import compute_metrics
from visionrt.trainer.models import load_run_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    metrics: dict
    metrics_path: Path | None
    bad_images: list[tuple[str, str]]


def evaluate_run(run_dir: str | Path, data: TrainConfig, *, out: Path | None = None,
                 batch_size: int = 32, max_bad_fraction: float = 0.01) -> EvalResult:
    """Metrics of the run's model on every image of ``data`` (its folder or CSV options).

    Args:
        run_dir: a finished training run.
        data: a TrainConfig whose data fields (data / csv / images / columns) name the set.
        out: where to write the metrics JSON (default ``RUN/evaluation/metrics.json``).

    Raises:
        ConfigError (not a run), DataValidationError (bad data set or labels).
    """
    run_dir = Path(run_dir)
    model, spec = load_run_model(run_dir)
    samples = load_eval_samples(data, spec.labels)
    if not samples:
        raise DataValidationError("the evaluation data set has no images")
    bad_log = BadImageLog(len(samples), max_bad_fraction)
    probs, targets = _predict(model, ImageDataset(samples, spec), Normalizer(spec), batch_size,
                              bad_log)
    metrics = compute_metrics(probs, targets, spec.labels, None)
    metrics["loss"] = _loss(probs, targets)
    metrics["bad_images"] = len(bad_log.failures)
    metrics["source"] = str(data.csv or data.data)
    path = out or run_dir / "evaluation" / "metrics.json"
    atomic_write_json(path, metrics)
    return EvalResult(metrics, path, bad_log.items())


@torch.inference_mode()
def _predict(model: torch.nn.Module, dataset: ImageDataset, normalizer: Normalizer,
             batch_size: int, bad_log: BadImageLog) -> tuple[np.ndarray, np.ndarray]:
    model.to(memory_format=torch.channels_last)
    probs, targets = [], []
    loader = make_loader(dataset, batch_size=batch_size, sampler=None, num_workers=0)
    for batch in guarded(loader):
        bad_log.record(dataset.samples, batch.bad)
        if len(batch):
            probs.append(predict_probs(model(normalizer(batch.images))))
            targets.append(batch.labels)
    return torch.cat(probs).numpy(), torch.cat(targets).numpy()


def _loss(probs: np.ndarray, targets: np.ndarray) -> float:
    """Negative log-likelihood of the true class (binary sigmoid heads included)."""
    if probs.shape[1] == 1:
        p = np.where(targets == 1, probs[:, 0], 1 - probs[:, 0])
    else:
        p = probs[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())
