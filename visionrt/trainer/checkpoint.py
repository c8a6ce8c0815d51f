"""Atomic checkpoints: weights as safetensors, training state as a weights-only torch file.

A checkpoint is a directory ``checkpoints/<name>/`` holding ``model.safetensors`` and
``train_state.pt`` (optimizer, scheduler, scaler, RNG, epoch, history: tensors and plain Python
types only, loadable with ``weights_only=True``). It is written into a temporary sibling directory,
every file fsynced, then swapped in by rename; a crash at any moment leaves either the old or the new
checkpoint (``load_checkpoint`` also recovers the old one from a half-finished swap). Disk space is
checked before writing; a failed write removes its temporary files and keeps the previous checkpoint.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from visionrt.errors import CheckpointWriteError, CorruptCheckpointError
from visionrt.trainer.weights import load_state_dict_file

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder + fsync + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """Write a state dict as safetensors, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    return atomic_write_bytes(path, save(tensors, metadata=meta))


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointWriteError(
            f"no space left on the file system of {folder}: {free / 1e6:.0f} MB free, need "
            f"~{needed / 1e6:.0f} MB; the previous checkpoint was kept",
            source=str(folder), expected=needed, actual=free,
            hint="free disk space and resume with --resume")


def save_checkpoint(folder: Path, name: str, weights: dict[str, torch.Tensor],
                    state: dict[str, Any], metadata: dict | None = None) -> Path:
    """Write ``folder/name/{model.safetensors,train_state.pt}`` atomically (C4, C5).

    Raises:
        CheckpointWriteError: out of space or an OS error; the previous checkpoint is intact.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    estimate = sum(t.numel() * t.element_size() for t in weights.values())
    _check_space(folder, 3 * estimate + 1_000_000)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder))
    try:
        save_weights(tmp / WEIGHTS_FILE, weights, metadata)
        with open(tmp / STATE_FILE, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(tmp)
        _swap_in(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "no space left on device" if exc.errno == errno.ENOSPC else str(exc)
        raise CheckpointWriteError(f"could not write checkpoint {target}: {why}; the previous "
                                   "checkpoint was kept", source=str(target)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(folder: Path, name: str) -> Path | None:
    """The usable checkpoint directory ``name`` (or the old copy of an interrupted swap)."""
    for candidate in (folder / name, folder / f".{name}.old"):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / STATE_FILE).is_file():
            return candidate
    return None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and training state of a checkpoint directory (weights only, never unpickled code).

    Raises:
        CorruptCheckpointError: truncated or unreadable files.
    """
    weights = load_state_dict_file(path / WEIGHTS_FILE)
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise CorruptCheckpointError(
            f"{path / STATE_FILE}: cannot read training state ({str(exc).splitlines()[0]})",
            source=str(path / STATE_FILE)) from exc
    if not isinstance(state, dict) or "epoch" not in state:
        raise CorruptCheckpointError(f"{path / STATE_FILE}: not a visionrt training state",
                                     source=str(path / STATE_FILE))
    return weights, state


def find_resume_checkpoint(run_dir: Path) -> tuple[Path, dict, dict]:
    """The newest readable checkpoint of a run (last, else best), with its weights and state.

    Raises:
        CorruptCheckpointError: no usable checkpoint (never silently starts from scratch).
    """
    folder = run_dir / "checkpoints"
    errors = []
    for name in ("last", "best"):
        path = checkpoint_dir(folder, name)
        if path is None:
            continue
        try:
            weights, state = load_checkpoint(path)
        except CorruptCheckpointError as exc:
            errors.append(str(exc))
            log.warning("checkpoint %s is unusable (%s); trying the previous one", path, exc)
            continue
        if name != "last":
            log.warning("resuming from %s: the last checkpoint was missing or corrupt", path)
        return path, weights, state
    detail = f" ({'; '.join(errors)})" if errors else ""
    raise CorruptCheckpointError(
        f"{run_dir}: no usable checkpoint to resume from{detail}", source=str(folder),
        hint="start a new run without --resume")
