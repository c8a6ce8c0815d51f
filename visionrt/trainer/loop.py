"""The training loop, flat: ``train_one_epoch``, ``evaluate``, ``fit``; ``train(config)`` runs it all.

A run writes ``RUN/config.json`` and ``spec.json`` first, an atomic ``checkpoints/last`` after every
epoch (``checkpoints/best`` when the monitored metric improves), the History after every epoch, and
at the end ``model.safetensors`` (best weights), ``metrics.json`` and the plots. Under torchrun
(``torchrun -m visionrt train``) the same code trains with DistributedDataParallel; only rank 0
writes files. The run's state and its files belong to ``visionrt.trainer.run``.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from visionrt.errors import ResourceExhaustedError, TrainingDivergedError, TrainingInterruptedError
from visionrt.trainer import features as feats
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.data import explain_loader_failure, guarded, make_loader
from visionrt.trainer.distributed import all_finite, all_reduce, gather
from visionrt.trainer.losses import predict_probs
from visionrt.trainer.metrics import compute_metrics, improved, monitor_for, scalar_metrics
from visionrt.trainer.models import set_train_mode
from visionrt.trainer.run import (
    ProgressCallback,
    Run,
    TrainResult,
    build_run,
    finish,
    is_unfrozen,
    save_epoch,
    set_phase,
)

log = logging.getLogger(__name__)


def train(config: TrainConfig, callback: ProgressCallback | None = None) -> TrainResult:
    """Train (or resume, with ``config.resume``) and return the result.

    Raises:
        ConfigError, DataValidationError (before training), TrainingDivergedError,
        CheckpointWriteError, WeightsNotFoundError, UnknownArchError.
    """
    run = build_run(config, callback or _no_progress)
    previous = _install_stop_handler(run)
    try:
        stopped_early = fit(run)
    finally:
        _restore_stop_handler(previous)
    return finish(run, stopped_early)


def _install_stop_handler(run: Run) -> object:
    """SIGTERM (preemption) only sets a flag; the loop stops at the next step boundary (C7)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def request_stop(signum: int, frame: object) -> None:
        run.stop_signal = signum

    return signal.signal(signal.SIGTERM, request_stop)


def _restore_stop_handler(previous: object) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def check_stop(run: Run) -> None:
    """Raise TrainingInterruptedError once a stop signal has arrived."""
    if run.stop_signal is None:
        return
    name = signal.Signals(run.stop_signal).name
    raise TrainingInterruptedError(
        f"training interrupted by {name} (preemption?) during epoch {run.epoch + 1}; the "
        f"checkpoint after epoch {run.epoch} is kept in {run.config.out / 'checkpoints'}",
        source=str(run.config.out), actual=name,
        hint=f"continue with: visionrt train --resume {run.config.out}")


def _no_progress(event: str, info: dict) -> None:
    pass


def fit(run: Run) -> bool:
    """Train from ``run.epoch`` to ``config.epochs``; True when early stopping ended it."""
    config = run.config
    monitor, mode = monitor_for(len(run.split.labels), config.monitor)
    if run.use_cache and run.epoch < config.epochs:
        _cached(run, train=True)
        _cached(run, train=False)
    for epoch in range(run.epoch, config.epochs):
        set_phase(run, epoch)
        _seed_epoch(config.seed, epoch, run.dist.rank)
        run.callback("epoch_start", {"epoch": epoch + 1, "epochs": config.epochs,
                                     "steps": run.steps_per_epoch})
        started = time.perf_counter()
        try:
            stats = train_one_epoch(run, epoch)
            val_loss, probs, targets = evaluate(run)
        except torch.OutOfMemoryError as exc:
            raise _out_of_memory(run, exc) from exc
        except RuntimeError as exc:  # torch's SIGCHLD handler may raise between batches
            explained = explain_loader_failure(exc, config.num_workers)
            if explained is exc:
                raise
            raise explained from exc
        metrics = compute_metrics(probs, targets, run.split.labels, val_loss)
        row = {"epoch": epoch + 1, "train_loss": stats["loss"], "val_loss": metrics["loss"]}
        row.update({k: v for k, v in scalar_metrics(metrics).items() if k != "val_loss"})
        row.update({"lr": run.optimizer.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - started, 3),
                    "images_per_second": stats["images_per_second"],
                    "phase": "finetune" if is_unfrozen(config, epoch) else "head"})
        run.history.append(row)
        run.epoch = epoch + 1
        finite = all(v is not None and math.isfinite(v) for v in (row["train_loss"],
                                                                   row["val_loss"]))
        if finite and (run.best is None or improved(row.get(monitor), run.best["value"], mode)):
            run.best = {"epoch": epoch + 1, "value": row.get(monitor), "metrics": metrics,
                        "probs": torch.from_numpy(probs), "targets": torch.from_numpy(targets)}
            save_epoch(run, best=True)
        save_epoch(run, best=False)
        run.callback("epoch_end", dict(row))
        if _should_stop(run):
            return True
    return False


def _out_of_memory(run: Run, exc: Exception) -> ResourceExhaustedError:
    """C9: stop cleanly (previous checkpoint intact) with peak memory and a smaller batch."""
    peak = "unknown"
    if run.device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(run.device) / 2**30:.2f} GiB"
    smaller = max(1, run.config.batch_size // 2)
    return ResourceExhaustedError(
        f"out of memory in epoch {run.epoch + 1} with batch size {run.config.batch_size} "
        f"(peak memory allocated {peak}; {str(exc).splitlines()[0]}); the checkpoint after "
        f"epoch {run.epoch} is kept",
        source=str(run.config.out), actual=run.config.batch_size,
        hint=f"train again with a smaller batch size, e.g. --batch-size {smaller}")


def _should_stop(run: Run) -> bool:
    patience = run.config.early_stopping
    if patience is None or run.best is None:
        return False
    return run.epoch - run.best["epoch"] >= patience


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    # Each epoch's randomness (shuffling, augmentation) depends only on (seed, epoch, rank), so an
    # interrupted and resumed run draws the same numbers as an uninterrupted one.
    value = (seed * 1_000_003 + epoch * 7919 + rank) % (2**31)
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_one_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training data; returns mean loss and images/second (all ranks)."""
    set_train_mode(run.model, freeze_bn=is_unfrozen(run.config, epoch))
    loss_sum = seen = counted = 0.0
    started = time.perf_counter()
    for step, (inputs, labels, forward) in enumerate(_train_batches(run, epoch)):
        labels = labels.to(run.device)
        loss = optimize_step(run, forward, inputs, labels)
        seen += len(labels)
        if loss is not None:
            loss_sum, counted = loss_sum + loss * len(labels), counted + len(labels)
        elapsed = time.perf_counter() - started
        run.callback("step", {"epoch": epoch + 1, "step": step + 1,
                              "steps": run.steps_per_epoch, "loss": loss,
                              "images_per_second": seen / elapsed if elapsed else 0.0})
        check_stop(run)
    totals = all_reduce([loss_sum, counted, seen], run.dist)
    elapsed = time.perf_counter() - started
    return {"loss": totals[0] / totals[1] if totals[1] else None,
            "images": int(totals[2]),
            "images_per_second": round(totals[2] / elapsed, 2) if elapsed else None}


def _train_batches(run: Run, epoch: int):
    """(inputs, labels, forward) per batch from cached features or decoded images."""
    if run.use_cache:
        features = _cached(run, train=True)
        for x, y, _ in feats.feature_batches(features, run.config.batch_size,
                                             _epoch_generator(run.config.seed, epoch)):
            yield x, y, run.model.forward_head
        return
    loader = make_loader(run.train_set, batch_size=run.config.batch_size,
                         sampler=_train_sampler(run, epoch), num_workers=run.config.num_workers,
                         generator=_epoch_generator(run.config.seed, epoch))
    for batch in guarded(loader):
        run.bad_log.record(run.train_set.samples, batch.bad)
        if len(batch):
            yield run.normalizer(batch.images, run.device), batch.labels, run.forward_model


def _train_sampler(run: Run, epoch: int):
    from torch.utils.data import DistributedSampler, RandomSampler, WeightedRandomSampler

    generator = _epoch_generator(run.config.seed, epoch)
    if run.dist.distributed:
        sampler = DistributedSampler(run.train_set, num_replicas=run.dist.world,
                                     rank=run.dist.rank, shuffle=True, seed=run.config.seed)
        sampler.set_epoch(epoch)
        return sampler
    if run.config.sampler == "balanced":
        labels = [s.label for s in run.train_set.samples]
        counts = np.bincount(labels, minlength=len(run.split.labels))
        weights = [1.0 / counts[label] for label in labels]
        return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True,
                                     generator=generator)
    return RandomSampler(run.train_set, generator=generator)


def _cached(run: Run, *, train: bool) -> feats.FeatureSet:
    attr = "train_features" if train else "val_features"
    if getattr(run, attr) is None:
        dataset = run.train_set if train else run.val_set
        name = "train" if train else "val"
        setattr(run, attr, feats.extract_features(
            run.model, dataset, run.normalizer, batch_size=run.config.batch_size,
            num_workers=run.config.num_workers, device=run.device, bad_log=run.bad_log,
            progress=lambda done, total: run.callback("cache", {"split": name, "done": done,
                                                                "total": total})))
    return getattr(run, attr)


def optimize_step(run: Run, forward: Callable, inputs: torch.Tensor,
                  labels: torch.Tensor) -> float | None:
    """Forward + loss under autocast, backward, step; a non-finite loss skips the step (C3).

    Raises:
        TrainingDivergedError: after ``config.diverge_steps`` consecutive non-finite steps.
    """
    try:
        with torch.autocast(device_type=run.device.type, dtype=run.amp_dtype or torch.bfloat16,
                            enabled=run.amp_dtype is not None):
            logits = forward(inputs)
    except ValueError as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
        # A one-image batch (the last one, or one left after skipping broken images) cannot
        # pass a training-mode BatchNorm over 1x1 maps; skip it rather than crash the run.
        log.info("skipped a %d-image batch that BatchNorm cannot train on", len(labels))
        return None
    loss = run.loss_fn(logits.float(), labels)
    run.optimizer.zero_grad(set_to_none=True)
    if not all_finite(loss, run.dist):
        _count_nonfinite(run)
        return None
    run.scaler.scale(loss).backward()
    scale = run.scaler.get_scale() if run.scaler.is_enabled() else None
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if scale is not None and run.scaler.get_scale() < scale:  # overflow: the step was skipped
        _count_nonfinite(run)
    else:
        run.nonfinite = 0
        run.last_finite_loss = float(loss.item())
    run.scheduler.step()
    return float(loss.item())


def _count_nonfinite(run: Run) -> None:
    run.nonfinite += 1
    if run.nonfinite >= run.config.diverge_steps:
        raise TrainingDivergedError(
            f"the loss was non-finite for {run.nonfinite} consecutive steps in epoch "
            f"{run.epoch + 1} (lr {run.optimizer.param_groups[0]['lr']:.3g}, last finite loss "
            f"{run.last_finite_loss}); training stopped, the last good checkpoint is kept in "
            f"{run.config.out / 'checkpoints'}",
            source=str(run.config.out), actual=run.last_finite_loss,
            hint="lower --lr (or disable --amp) and train again, or check the data for "
                 "NaN-producing images")


@torch.inference_mode()
def evaluate(run: Run) -> tuple[float | None, np.ndarray, np.ndarray]:
    """Validation loss, probabilities (N, C) and targets (N,), gathered from all ranks."""
    model = run.model
    was_training = model.training
    model.eval()
    loss_sum, parts = 0.0, []
    for x, y, index, forward in _val_batches(run):
        with torch.autocast(device_type=run.device.type, dtype=run.amp_dtype or torch.bfloat16,
                            enabled=run.amp_dtype is not None):
            logits = forward(x).float()
        y = y.to(run.device)
        loss_sum += float(run.loss_fn(logits, y)) * len(y)
        parts.append((index.cpu(), predict_probs(logits).cpu(), y.cpu()))
        check_stop(run)
    model.train(was_training)
    index, probs, targets = gather(parts, run.dist, run.spec.num_outputs)
    total_loss = all_reduce([loss_sum], run.dist)[0]
    loss = total_loss / len(targets) if len(targets) else None
    order = np.argsort(index, kind="stable")
    return loss, probs[order], targets[order]


def _val_batches(run: Run):
    if run.use_cache:
        for x, y, index in feats.feature_batches(_cached(run, train=False),
                                                 run.config.batch_size, None):
            yield x, y, index, run.model.forward_head
        return
    indices = list(range(run.dist.rank, len(run.val_set), run.dist.world))
    loader = make_loader(run.val_set, batch_size=run.config.batch_size, sampler=indices,
                         num_workers=run.config.num_workers)
    for batch in guarded(loader):
        run.bad_log.record(run.val_set.samples, batch.bad)
        if len(batch):
            yield run.normalizer(batch.images, run.device), batch.labels, batch.indices, run.model
