"""Atomic checkpoints: a failed or interrupted save never destroys the previous checkpoint."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from visionrt.errors import CheckpointWriteError, CorruptCheckpointError
from visionrt.trainer import checkpoint as ckpt


def _save(folder: Path, name: str, value: float, epoch: int) -> Path:
    return ckpt.save_checkpoint(folder, name, {"w": torch.full((4,), value)},
                                {"epoch": epoch, "history": [{"epoch": epoch}]})


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_roundtrip_and_replace(tmp_path: Path) -> None:
    _save(tmp_path, "last", 1.0, 1)
    _save(tmp_path, "last", 2.0, 2)
    weights, state = ckpt.load_checkpoint(tmp_path / "last")
    assert torch.equal(weights["w"], torch.full((4,), 2.0)) and state["epoch"] == 2
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    _save(tmp_path, "last", 1.0, 1)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match="no space left on device"):
        _save(tmp_path, "last", 2.0, 2)
    weights, state = ckpt.load_checkpoint(tmp_path / "last")
    assert state["epoch"] == 1 and torch.equal(weights["w"], torch.full((4,), 1.0))
    assert _leftovers(tmp_path) == []


def test_low_disk_space_is_refused_before_writing(tmp_path: Path, monkeypatch) -> None:
    _save(tmp_path, "last", 1.0, 1)
    monkeypatch.setattr(ckpt.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(100, 100, 10))
    with pytest.raises(CheckpointWriteError, match="MB free"):
        _save(tmp_path, "last", 2.0, 2)
    assert ckpt.load_checkpoint(tmp_path / "last")[1]["epoch"] == 1


def test_interrupted_file_replace_leaves_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "history.json"
    ckpt.atomic_write_text(target, "old")
    monkeypatch.setattr(ckpt.os, "replace", lambda a, b: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_text(target, "new")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_half_finished_swap_is_recovered(tmp_path: Path) -> None:
    _save(tmp_path, "last", 1.0, 1)
    os.rename(tmp_path / "last", tmp_path / ".last.old")  # killed between the two renames
    assert ckpt.checkpoint_dir(tmp_path, "last") == tmp_path / ".last.old"
    _save(tmp_path, "last", 2.0, 2)
    assert ckpt.load_checkpoint(tmp_path / "last")[1]["epoch"] == 2
    assert _leftovers(tmp_path) == []


def test_resume_falls_back_from_corrupt_last_to_best(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    _save(folder, "best", 1.0, 1)
    _save(folder, "last", 2.0, 2)
    state_file = folder / "last" / ckpt.STATE_FILE
    state_file.write_bytes(state_file.read_bytes()[:40])  # truncated (killed / disk full)
    path, _, state = ckpt.find_resume_checkpoint(tmp_path)
    assert path == folder / "best" and state["epoch"] == 1
    shutil.rmtree(folder / "best")
    with pytest.raises(CorruptCheckpointError, match="no usable checkpoint"):
        ckpt.find_resume_checkpoint(tmp_path)


def test_state_with_code_is_not_unpickled(tmp_path: Path) -> None:
    _save(tmp_path, "last", 1.0, 1)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"epoch": 1, "x": Evil()}, tmp_path / "last" / ckpt.STATE_FILE)
    with pytest.raises(CorruptCheckpointError):
        ckpt.load_checkpoint(tmp_path / "last")
    assert not marker.exists()
