"""Training images/second: visionrt's training step vs timm's own, same model, same data.

Both sides fine-tune the default backbone (tf_efficientnet_lite0, ImageNet weights not needed for
speed) with a frozen backbone (Keras include_top=False + trainable=False) on the same uint8 batches:

* timm:     ``timm.utils.freeze`` on everything but the classifier (timm's own freezing, BatchNorm
            -> FrozenBatchNorm2d), then the step of timm's ``train.py``: normalise, forward, loss,
            zero_grad, backward, optimizer step (NCHW, as timm trains by default on CPU).
* visionrt: ``build_model`` + ``apply_freeze(1.0)`` + ``set_train_mode`` (frozen BN in eval),
            channels_last, the trainer's ``Normalizer`` and ``optimize_step``.
* visionrt (cached): what ``visionrt train`` actually does when nothing is augmented: backbone
            features once, then head epochs; reported per epoch over the same images.

Usage:  python benchmarks/train_throughput.py [--batch 32] [--steps 5] [--arch ...] [--threads N]
Prints a table and the visionrt/timm ratio (goal >= 1.0x).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def make_batches(steps: int, batch: int, size: int, classes: int) -> list:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8,
                           generator=generator),
             torch.randint(0, classes, (batch,), generator=generator)) for _ in range(steps)]


def timm_step_rate(arch: str, batches: list, classes: int, warmup: int) -> float:
    import timm
    from timm.data import resolve_data_config
    from timm.utils import freeze

    model = timm.create_model(arch, pretrained=False, num_classes=classes)
    head = model.pretrained_cfg["classifier"]
    freeze(model, [name for name, _ in model.named_children() if name != head])
    cfg = resolve_data_config({}, model=model)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1) * 255
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        x = (images.float() - mean) / std
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _rate(step, batches, warmup)


def visionrt_step_rate(arch: str, batches: list, classes: int, warmup: int) -> float:
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.data import Normalizer
    from visionrt.trainer.loop import optimize_step
    from visionrt.trainer.models import apply_freeze, build_model, set_train_mode, spec_for
    from visionrt.trainer.optim import build_optimizer

    model = build_model(arch, classes, weights="none")
    apply_freeze(model, 1.0)
    model.to(memory_format=torch.channels_last)
    spec = spec_for(arch, [str(i) for i in range(classes)])
    normalizer = Normalizer(spec, channels_last=True)
    run = _StepRun(model, build_optimizer(TrainConfig(out=".", data="."), model))
    set_train_mode(model)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        optimize_step(run, model, normalizer(images), labels)

    return _rate(step, batches, warmup)


class _StepRun:
    """The few Run attributes ``optimize_step`` touches."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        from visionrt.trainer.config import TrainConfig
        from visionrt.trainer.distributed import DistInfo

        self.device = torch.device("cpu")
        self.amp_dtype = None
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.optimizer = optimizer
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.dist = DistInfo()
        self.config = TrainConfig(out=".", data=".")
        self.nonfinite = 0
        self.last_finite_loss = None
        self.epoch = 0


def visionrt_cached_rate(arch: str, batches: list, classes: int, epochs: int) -> float:
    """Images/second of ``epochs`` epochs with cached backbone features (extraction included)."""
    from visionrt.trainer.data import Normalizer
    from visionrt.trainer.models import apply_freeze, build_model, spec_for

    model = build_model(arch, classes, weights="none")
    apply_freeze(model, 1.0)
    model.to(memory_format=torch.channels_last).eval()
    normalizer = Normalizer(spec_for(arch, [str(i) for i in range(classes)]))
    head = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(head, lr=1e-3)
    started = time.perf_counter()
    with torch.inference_mode():
        cached = [(model.forward_features(normalizer(x)), y) for x, y in batches]
    for _ in range(epochs):
        for features, labels in cached:
            loss = F.cross_entropy(model.forward_head(features.clone()), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    images = epochs * sum(len(y) for _, y in batches)
    return images / (time.perf_counter() - started)


def _rate(step, batches: list, warmup: int) -> float:
    for images, labels in batches[:warmup]:
        step(images, labels)
    started = time.perf_counter()
    for images, labels in batches[warmup:]:
        step(images, labels)
    return sum(len(y) for _, y in batches[warmup:]) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5, help="epochs for the cached line")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = make_batches(args.warmup + args.steps, args.batch, args.size, args.classes)
    # Interleave the two step measurements so background load hits both alike.
    timm_rate = timm_step_rate(args.arch, batches, args.classes, args.warmup)
    ours = visionrt_step_rate(args.arch, batches, args.classes, args.warmup)
    timm_rate = (timm_rate + timm_step_rate(args.arch, batches, args.classes, args.warmup)) / 2
    ours = (ours + visionrt_step_rate(args.arch, batches, args.classes, args.warmup)) / 2
    cached = visionrt_cached_rate(args.arch, batches[args.warmup:], args.classes, args.epochs)
    print(f"{args.arch}, frozen backbone, batch {args.batch}, {args.size}px, "
          f"{torch.get_num_threads()} threads, {args.steps} timed steps")
    print(f"{'pipeline':<44}{'images/s':>10}{'vs timm':>10}")
    for name, rate in (("timm train step (timm.utils.freeze, NCHW)", timm_rate),
                       ("visionrt train step (BN eval, channels_last)", ours),
                       (f"visionrt cached features, {args.epochs} epochs", cached)):
        print(f"{name:<44}{rate:>10.1f}{rate / timm_rate:>9.2f}x")


if __name__ == "__main__":
    main()
