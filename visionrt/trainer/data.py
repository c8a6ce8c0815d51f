"""Datasets and loaders for training and evaluation.

The eval transform is exactly ``visionrt.images.preprocess`` (decode, orient, resize, centre crop
as uint8) followed by normalisation with the spec's mean/std, the same arithmetic as
``visionrt.images.normalize``, so the runtime sees the same pixels. Training applies the Keras
augmentation to the same uint8 image.

Broken images never crash a run: a sample that fails to decode is dropped from its batch, reported
(path + reason) and counted; past ``max_bad_fraction`` of the data the run stops with a
DataValidationError. No sample is duplicated to fill a batch, and an all-bad batch is skipped.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from visionrt.errors import DataValidationError, ImageError, ResourceExhaustedError
from visionrt.images import load_image, preprocess
from visionrt.spec import ModelSpec
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.csvdata import read_csv_samples
from visionrt.trainer.samples import DataSplit, Sample, scan_imagefolder, stratified_split

log = logging.getLogger(__name__)

LOADER_TIMEOUT_S = 600


def load_split(config: TrainConfig) -> DataSplit:
    """Read and validate the data set of ``config`` and split it (before any training)."""
    if config.csv is not None:
        labels, samples = read_csv_samples(
            config.csv, config.images, image_column=config.image_column,
            label_column=config.label_column, group_column=config.group_column,
            image_suffix=config.image_suffix)
    else:
        labels, samples = scan_imagefolder(config.data)
    if config.val is not None:
        _, val = scan_imagefolder(config.val, labels)
        return DataSplit(labels, samples, val)
    grouped = any(s.group is not None for s in samples)
    train, val = stratified_split(samples, config.val_split, config.seed, grouped=grouped)
    return DataSplit(labels, train, val)


def load_eval_samples(config: TrainConfig, labels: tuple[str, ...]) -> list[Sample]:
    """All samples of ``config``'s data mapped onto a trained model's ``labels``."""
    if config.csv is not None:
        _, samples = read_csv_samples(
            config.csv, config.images, image_column=config.image_column,
            label_column=config.label_column, group_column=config.group_column,
            image_suffix=config.image_suffix, labels=labels)
        return samples
    return scan_imagefolder(config.data, labels)[1]


class ImageDataset(Dataset):
    """Samples -> (uint8 (3, H, W) tensor or None, label, index, error or None)."""

    def __init__(self, samples: list[Sample], spec: ModelSpec,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.samples = samples
        self.spec = spec
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple:
        sample = self.samples[index]
        try:
            pixels = preprocess(sample.path, self.spec)
        except ImageError as exc:
            return None, sample.label, index, str(exc)
        image = torch.from_numpy(np.require(pixels, requirements="W")).permute(2, 0, 1)
        if self.augment is not None:
            image = self.augment(image)
        return image.contiguous(), sample.label, index, None


@dataclass
class Batch:
    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,)
    indices: torch.Tensor  # int64 (N,) positions in the dataset
    bad: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.numel())


def collate(items: list[tuple]) -> Batch:
    good = [item for item in items if item[0] is not None]
    bad = [(item[2], item[3]) for item in items if item[0] is None]
    if not good:
        return Batch(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long),
                     torch.empty(0, dtype=torch.long), bad)
    return Batch(torch.stack([item[0] for item in good]),
                 torch.tensor([item[1] for item in good], dtype=torch.long),
                 torch.tensor([item[2] for item in good], dtype=torch.long), bad)


def make_loader(dataset: ImageDataset, *, batch_size: int, sampler: Sampler | None,
                num_workers: int, generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader that never crashes on a bad image and times out instead of hanging (C8)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, collate_fn=collate, generator=generator,
                      timeout=LOADER_TIMEOUT_S if num_workers else 0,
                      persistent_workers=False)


class Normalizer:
    """uint8 NCHW -> float32 NCHW normalised with the spec (same arithmetic as images.normalize)."""

    def __init__(self, spec: ModelSpec, channels_last: bool = True) -> None:
        mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
        self.mean = torch.from_numpy(mean).view(1, 3, 1, 1)
        self.inv_std = torch.from_numpy(inv_std.astype(np.float32)).view(1, 3, 1, 1)
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        out = (images.to(torch.float32) - self.mean.to(device)) * self.inv_std.to(device)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


class BadImageLog:
    """Decode failures seen during a run; stops the run past ``max_fraction`` of the data."""

    def __init__(self, total: int, max_fraction: float, policy: str = "skip") -> None:
        self.total = total
        self.max_fraction = max_fraction
        self.policy = policy
        self.failures: dict[str, str] = {}

    def record(self, samples: list[Sample], bad: list[tuple[int, str]]) -> None:
        for index, error in bad:
            path = str(samples[index].path)
            if self.policy == "fail":
                raise DataValidationError(f"cannot read training image {path}: {error}",
                                          source=path, hint="fix or remove it, or pass "
                                          "--on-bad-image skip")
            if path not in self.failures:
                log.warning("skipping unreadable image %s", error)
            self.failures.setdefault(path, error)
        if self.total and len(self.failures) / self.total > self.max_fraction:
            first = ", ".join(Path(p).name for p in list(self.failures)[:5])
            raise DataValidationError(
                f"{len(self.failures)} of {self.total} images are unreadable "
                f"({len(self.failures) / self.total:.1%} > --max-bad-fraction "
                f"{self.max_fraction:.1%}); first: {first}",
                source=first, actual=len(self.failures),
                hint="fix or remove the files, or raise --max-bad-fraction")

    def items(self) -> list[tuple[str, str]]:
        return sorted(self.failures.items())


def guarded(loader: DataLoader) -> Iterator[Batch]:
    """Iterate ``loader``, turning a dead or hung worker into an explained error (C8)."""
    iterator = iter(loader)
    try:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except (RuntimeError, ConnectionError, EOFError) as exc:
                explained = explain_loader_failure(exc, loader.num_workers)
                if explained is exc:
                    raise
                raise explained from exc
            yield batch
    finally:
        # Stop the workers now: a dead worker left registered would make torch's SIGCHLD
        # handler raise again later, anywhere in the program.
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def explain_loader_failure(exc: Exception, workers: int) -> Exception:
    """A ResourceExhaustedError for worker deaths / timeouts; other errors unchanged.

    A worker that dies shows up as torch's RuntimeError ("DataLoader worker ... killed by
    signal"), or, when it dies while handing over a batch, as a reset connection / EOF.
    """
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lost_worker = workers > 0 and isinstance(exc, (ConnectionError, EOFError))
    if not lost_worker and "DataLoader" not in text and "worker" not in text:
        return exc
    try:
        shm = f"{shutil.disk_usage('/dev/shm').total / 1e6:.0f} MB"
    except OSError:
        shm = "not available"
    what = "hung" if "timed out" in text else "died"
    return ResourceExhaustedError(
        f"a DataLoader worker {what} ({text}); /dev/shm is {shm}, workers {workers}",
        source="DataLoader", actual=text,
        hint="use --num-workers 0, or give the container more shared memory (docker run "
             "--shm-size 2g); the last checkpoint is kept, continue with --resume")


def scan_samples(samples: list[Sample],
                 progress: Callable[[int, int], None] | None = None) -> list[tuple[str, str]]:
    """Decode every sample once (the ``validate-data`` pre-scan); (path, error) of failures."""
    failures = []
    for done, sample in enumerate(samples, start=1):
        try:
            load_image(sample.path)
        except ImageError as exc:
            failures.append((str(sample.path), str(exc)))
        if progress is not None:
            progress(done, len(samples))
    return failures
