"""A training run's state, in one place: ``Run`` is built from a TrainConfig (``build_run``),
switched between the head and fine-tune phases (``set_phase``), checkpointed after every epoch
(``save_epoch``), restored on resume (``restore``) and written out at the end (``finish``).

The loop (``visionrt.trainer.loop``) advances a Run one epoch at a time; nothing else changes it.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visionrt.errors import ConfigError
from visionrt.spec import ModelSpec
from visionrt.trainer import features as feats
from visionrt.trainer.augment import build_augment
from visionrt.trainer.checkpoint import (
    atomic_write_json,
    atomic_write_text,
    find_resume_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.data import BadImageLog, ImageDataset, Normalizer, load_split
from visionrt.trainer.distributed import DistInfo, dist_info, pick_device
from visionrt.trainer.losses import build_loss, uses_sigmoid_head
from visionrt.trainer.metrics import monitor_for
from visionrt.trainer.models import apply_freeze, build_model, spec_for
from visionrt.trainer.optim import autocast_dtype, build_optimizer, build_scheduler
from visionrt.trainer.outputs import write_bad_images, write_history, write_plots
from visionrt.trainer.samples import DataSplit, class_counts
from visionrt.trainer.weights import check_state_dict

log = logging.getLogger(__name__)

RUN_MARKERS = ("config.json", "checkpoints", "model.safetensors")

ProgressCallback = Callable[[str, dict], None]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced (all of it is also in ``run_dir``)."""

    run_dir: Path
    metrics: dict
    history: list[dict]
    bad_images: list[tuple[str, str]]
    spec: ModelSpec | None = None
    best_epoch: int = 0
    stopped_early: bool = False


@dataclass
class Run:
    """Everything one training run holds: what it was built from, the pieces that train, and the
    progress a checkpoint must restore (epoch, History, best epoch, divergence guard)."""

    config: TrainConfig
    spec: ModelSpec
    split: DataSplit
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    normalizer: Normalizer
    device: torch.device
    dist: DistInfo
    amp_dtype: torch.dtype | None
    train_set: ImageDataset
    val_set: ImageDataset
    bad_log: BadImageLog
    callback: ProgressCallback
    steps_per_epoch: int
    use_cache: bool = False
    wrapped: nn.Module | None = None
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    epoch: int = 0
    nonfinite: int = 0
    last_finite_loss: float | None = None
    train_features: feats.FeatureSet | None = None
    val_features: feats.FeatureSet | None = None
    stop_signal: int | None = None

    @property
    def forward_model(self) -> nn.Module:
        return self.wrapped if self.wrapped is not None else self.model


def build_run(config: TrainConfig, callback: ProgressCallback) -> Run:
    """Validate data, build model/optimizer/schedule, write config+spec, restore on resume."""
    dist = dist_info()
    device = pick_device(dist)
    split = load_split(config)  # every data problem is reported before anything is written
    _prepare_out(config, dist.is_main)
    torch.manual_seed(config.seed)
    log.info("data: %s", split.describe())
    sigmoid = uses_sigmoid_head(config, len(split.labels))
    spec = spec_for(config.arch, split.labels, img_size=config.img_size,
                    output_activation="sigmoid" if sigmoid else "softmax")
    model = build_model(config.arch, spec.num_outputs, weights=config.weights,
                        pooling=config.pooling, dropout=config.dropout)
    apply_freeze(model, config.freeze_fraction)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if dist.distributed and config.sampler == "balanced":
        raise ConfigError("--sampler balanced is not supported with torchrun; use "
                          "--class-weight auto instead")
    train_set = ImageDataset(split.train, spec, build_augment(config.augment))
    val_set = ImageDataset(split.val, spec)
    use_cache = feats.should_cache(config, model, dist.distributed, len(split.train))
    steps = math.ceil(math.ceil(len(split.train) / dist.world) / config.batch_size)
    optimizer = build_optimizer(config, model)
    amp_dtype = autocast_dtype(config, device)
    run = Run(
        config=config, spec=spec, split=split, model=model, optimizer=optimizer,
        scheduler=build_scheduler(config, optimizer, steps),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        loss_fn=build_loss(config, class_counts(split.train, len(split.labels))).to(device),
        normalizer=Normalizer(spec, config.channels_last), device=device, dist=dist,
        amp_dtype=amp_dtype, train_set=train_set, val_set=val_set,
        bad_log=BadImageLog(len(split.train) + len(split.val), config.max_bad_fraction,
                            config.on_bad_image),
        callback=callback if dist.is_main else (lambda event, info: None),
        steps_per_epoch=steps, use_cache=use_cache)
    if config.resume:
        restore(run)
    elif dist.is_main:
        config.save(config.out / "config.json")
        atomic_write_text(config.out / "spec.json", spec.to_json() + "\n")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    callback("setup", {"labels": split.labels, "split": split.describe(), "arch": spec.arch,
                       "input_size": spec.input_size, "trainable_params": trainable,
                       "total_params": sum(p.numel() for p in model.parameters()),
                       "cache_features": use_cache, "start_epoch": run.epoch,
                       "epochs": config.epochs, "steps": steps, "world": dist.world})
    return run


def _prepare_out(config: TrainConfig, is_main: bool) -> None:
    out = config.out
    if config.resume:
        if not (out / "config.json").is_file():
            raise ConfigError(f"--resume {out}: not a run directory (no config.json)",
                              source=str(out), hint="pass the --out folder of a training run")
        return
    if not is_main:  # rank 0 checks and creates the folder; the others never write
        return
    if out.exists() and any((out / m).exists() for m in RUN_MARKERS):
        if not config.overwrite:
            raise ConfigError(f"{out} already holds a training run", source=str(out),
                              hint=f"resume it with --resume {out}, pick another --out, or "
                                   "pass --overwrite")
        for name in RUN_MARKERS:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def is_unfrozen(config: TrainConfig, epoch: int) -> bool:
    """Whether ``epoch`` (0-based) belongs to the fine-tune phase of ``--unfreeze-at``."""
    return config.unfreeze_at is not None and epoch >= config.unfreeze_at


def set_phase(run: Run, epoch: int) -> None:
    """Freeze for the head phase, unfreeze from ``unfreeze_at`` on; (re)wrap for DDP."""
    fraction = 0.0 if is_unfrozen(run.config, epoch) else run.config.freeze_fraction
    before = [p.requires_grad for p in run.model.parameters()]
    apply_freeze(run.model, fraction)
    changed = before != [p.requires_grad for p in run.model.parameters()]
    if run.dist.distributed and (run.wrapped is None or changed):
        from torch.nn.parallel import DistributedDataParallel

        run.wrapped = DistributedDataParallel(run.model)


def _train_state(run: Run) -> dict:
    return {
        "epoch": run.epoch,
        "fingerprint": run.config.fingerprint(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_state(),
                "python": random.getstate()},
        "history": run.history,
        "best": run.best,
        "bad_images": run.bad_log.items(),
        "nonfinite": run.nonfinite,
    }


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def save_epoch(run: Run, *, best: bool) -> None:
    """Checkpoint ``last`` (or ``best``) and the History; rank 0 only."""
    if not run.dist.is_main:
        return
    folder = run.config.out / "checkpoints"
    save_checkpoint(folder, "best" if best else "last", run.model.state_dict(), _train_state(run),
                    metadata={"arch": run.spec.arch, "epoch": run.epoch})
    if not best:
        write_history(run.config.out, run.history)


def restore(run: Run) -> None:
    """Load model, optimizer, scheduler, scaler, RNG, epoch and History from the last checkpoint.

    Raises:
        CorruptCheckpointError: no usable checkpoint; ConfigError: the config changed.
    """
    path, weights, state = find_resume_checkpoint(run.config.out)
    if not run.config.fingerprint_matches(state.get("fingerprint")):
        raise ConfigError(f"{path} was written with different settings than "
                          f"{run.config.out / 'config.json'}",
                          hint="resume without changing options other than --epochs")
    check_state_dict(weights, run.model, source=str(path))
    run.epoch = int(state["epoch"])
    set_phase(run, min(run.epoch, run.config.epochs - 1))
    run.model.load_state_dict(weights)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    numpy = state["rng"]["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    random.setstate(_as_tuple(state["rng"]["python"]))
    run.history = list(state["history"])
    run.best = state["best"]
    run.nonfinite = int(state.get("nonfinite", 0))
    for name, error in state.get("bad_images", []):
        run.bad_log.failures[name] = error
    log.info("resumed %s from %s after epoch %d", run.config.out, path, run.epoch)


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def finish(run: Run, stopped_early: bool) -> TrainResult:
    """Write model.safetensors (best epoch), spec, metrics.json, plots, bad-image report."""
    out = run.config.out
    best = run.best or _last_as_best(run)
    monitor, mode = monitor_for(len(run.split.labels), run.config.monitor)
    metrics = {"best_epoch": best["epoch"], "monitor": monitor, "mode": mode,
               "epochs_run": run.epoch, "stopped_early": stopped_early,
               "labels": list(run.split.labels), "train_samples": len(run.split.train),
               "val_samples": len(run.split.val), "bad_images": len(run.bad_log.failures),
               "val": best["metrics"]}
    if run.dist.is_main:
        best_dir = out / "checkpoints" / "best"
        weights = load_checkpoint(best_dir)[0] if run.best else run.model.state_dict()
        save_weights(out / "model.safetensors", weights,
                     {"arch": run.spec.arch, "epoch": best["epoch"]})
        atomic_write_text(out / "spec.json", run.spec.to_json() + "\n")
        atomic_write_json(out / "metrics.json", metrics)
        write_history(out, run.history)
        probs, targets = best.get("probs"), best.get("targets")
        write_plots(out, run.history, best["metrics"], run.split.labels,
                    None if probs is None else probs.numpy(),
                    None if targets is None else targets.numpy())
        write_bad_images(out, run.bad_log.items())
    if run.dist.distributed:
        import torch.distributed as tdist

        tdist.barrier()
    return TrainResult(run_dir=out, metrics=metrics, history=list(run.history),
                       bad_images=run.bad_log.items(), spec=run.spec,
                       best_epoch=best["epoch"], stopped_early=stopped_early)


def _last_as_best(run: Run) -> dict:
    last = run.history[-1] if run.history else {"epoch": run.epoch}
    metrics = {k.removeprefix("val_"): v for k, v in last.items() if k.startswith("val_")}
    return {"epoch": last["epoch"], "value": None, "metrics": metrics}
