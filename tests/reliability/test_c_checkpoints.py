"""Catalogue C4-C6 and S3: checkpoints are atomic, survive a full disk and resume exactly, and the
run dir holds only safetensors, JSON and a weights-only training state. C1-C3 and C7-C9 are in
test_c_training.py.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from reliability_helpers import (  # noqa: E402
    ARCH,
    ROOT,
    history_epochs,
    interrupted_copy,
    no_tmp_left,
    train_config,
)

from visionrt.errors import (  # noqa: E402
    CheckpointWriteError,
    ConfigError,
    CorruptCheckpointError,
    VisionRTError,
)
from visionrt.trainer import checkpoint as ckpt  # noqa: E402
from visionrt.trainer.loop import train  # noqa: E402


@pytest.fixture(scope="module")
def runs(tiny_imagefolder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Module-wide runs: ``whole`` (2 epochs) and ``interrupted`` (stopped before epoch 2)."""
    root = tmp_path_factory.mktemp("c_runs")

    def snapshot(name, info):  # the run as an interruption before epoch 2 would leave it
        if name == "epoch_start" and info["epoch"] == 2:
            shutil.copytree(root / "whole", root / "interrupted")

    whole = train(train_config(tiny_imagefolder, root / "whole", epochs=2), snapshot)
    return {"whole": whole, "interrupted": root / "interrupted"}


# --- C4 atomic checkpoints --------------------------------------------------------------------
def _weights(value: float = 1.0) -> dict:
    return {"w": torch.full((64, 64), value), "b": torch.zeros(64)}


def test_C4_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, "last", _weights(1.0), {"epoch": 1})
    real_save = torch.save

    def half_then_crash(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is going down mid-write

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(folder, "last", _weights(2.0), {"epoch": 2})
    monkeypatch.setattr(torch, "save", real_save)
    weights, state = ckpt.load_checkpoint(folder / "last")
    assert state["epoch"] == 1 and float(weights["w"][0, 0]) == 1.0
    assert sorted(p.name for p in folder.iterdir()) == ["last"]


def test_C4_kill_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, "last", _weights(1.0), {"epoch": 1})
    real_rename = os.rename
    calls = []

    def die_on_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise SystemExit("killed")  # old moved aside, new not yet in place
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", die_on_second_rename)
    with pytest.raises(SystemExit):
        ckpt.save_checkpoint(folder, "last", _weights(2.0), {"epoch": 2})
    monkeypatch.setattr(os, "rename", real_rename)
    assert not (folder / "last").exists()
    path = ckpt.checkpoint_dir(folder, "last")
    assert path is not None
    assert ckpt.load_checkpoint(path)[1]["epoch"] == 1


def test_C4_concurrent_writers_leave_one_valid_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    errors = []

    def write(i):
        try:
            ckpt.save_checkpoint(folder, "last", _weights(float(i)), {"epoch": i})
        except VisionRTError as exc:  # a typed refusal is acceptable, a bare OSError is not
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            raise

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(e, VisionRTError) for e in errors), errors
    weights, state = ckpt.load_checkpoint(ckpt.checkpoint_dir(folder, "last"))
    assert float(weights["w"][0, 0]) == state["epoch"]  # weights and state from the same write
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_C4_truncated_checkpoint_falls_back_and_says_so(runs, tiny_imagefolder, tmp_path,
                                                        caplog):
    # A3 at resume time: a corrupt `last` falls back to `best` with a warning, never to scratch.
    config = interrupted_copy(runs, tiny_imagefolder, tmp_path)
    folder = config.out / "checkpoints"
    state_file = folder / "last" / "train_state.pt"
    state_file.write_bytes(state_file.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        result = train(config.with_(resume=True))
    assert "best" in caplog.text and "unusable" in caplog.text
    assert [row["epoch"] for row in result.history] == [1, 2]
    for name in ("last", "best"):
        shutil.rmtree(folder / name)
    with pytest.raises(CorruptCheckpointError, match="no usable checkpoint"):
        train(config.with_(resume=True))


# --- C5 disk full -----------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["torch.save", "fsync", "safetensors"])
def test_C5_enospc_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    import safetensors.torch

    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, "last", _weights(1.0), {"epoch": 1})
    if where == "torch.save":
        def half(obj, handle, *a, **k):
            handle.write(b"x" * 1000)
            _enospc()
        monkeypatch.setattr(torch, "save", half)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", _enospc)
    else:
        monkeypatch.setattr(safetensors.torch, "save", _enospc)
    with pytest.raises(CheckpointWriteError, match="no space left") as info:
        ckpt.save_checkpoint(folder, "last", _weights(2.0), {"epoch": 2})
    assert "previous checkpoint was kept" in str(info.value)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(folder / "last")[1]["epoch"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["last"]


def test_C5_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    usage = shutil.disk_usage(folder)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: usage._replace(free=10_000))
    with pytest.raises(CheckpointWriteError, match=r"need ~\d+ MB"):
        ckpt.save_checkpoint(folder, "last", _weights(), {"epoch": 1})
    assert list(folder.iterdir()) == []


@pytest.mark.slow  # the save_checkpoint ENOSPC tests above cover the mechanism in milliseconds
def test_C5_disk_full_during_training_then_resume_completes(tiny_imagefolder, tmp_path,
                                                            monkeypatch):
    config = train_config(tiny_imagefolder, tmp_path / "run", epochs=2)
    state = {"full": False}
    real = ckpt.save_weights

    def maybe_full(*args, **kwargs):
        if state["full"]:
            _enospc()
        return real(*args, **kwargs)

    def callback(name, info):
        if name == "epoch_start" and info["epoch"] == 2:
            state["full"] = True

    monkeypatch.setattr(ckpt, "save_weights", maybe_full)
    with pytest.raises(CheckpointWriteError):
        train(config, callback)
    state["full"] = False
    assert ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "last")[1]["epoch"] == 1
    result = train(config.with_(resume=True))
    assert [row["epoch"] for row in result.history] == [1, 2]


# --- C6 resume restores everything ------------------------------------------------------------
def test_C6_resumed_run_matches_an_uninterrupted_one(runs, tiny_imagefolder, tmp_path):
    from visionrt.trainer.weights import load_state_dict_file

    whole = runs["whole"]
    resumed = train(interrupted_copy(runs, tiny_imagefolder, tmp_path).with_(resume=True))
    a = load_state_dict_file(whole.run_dir / "model.safetensors")
    b = load_state_dict_file(resumed.run_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in whole.history], rel=1e-4)


def test_C6_resume_of_a_missing_run_is_an_error_not_a_fresh_start(tiny_imagefolder, tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        train(train_config(tiny_imagefolder, tmp_path / "nowhere", resume=True))
    assert not (tmp_path / "nowhere" / "checkpoints").exists()


def test_C6_resume_with_changed_settings_is_refused(runs, tiny_imagefolder, tmp_path):
    config = interrupted_copy(runs, tiny_imagefolder, tmp_path)
    with pytest.raises(ConfigError, match="different settings"):
        train(config.with_(resume=True, lr=0.5))


_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.loop import train

    def progress(name, info):
        if name in ("step", "epoch_end"):
            print(name, info.get("epoch"), info.get("step"), flush=True)

    config = TrainConfig(out=Path(sys.argv[2]), data=Path(sys.argv[1]), arch="{arch}",
                         weights="none", img_size=64, epochs=3, batch_size=8, lr=0.01,
                         freeze="none", cache_features="off", seed=0)
    train(config, progress)
    print("done", flush=True)
""")


def test_C6_kill_9_mid_epoch_then_resume_completes_with_a_consistent_history(
        tiny_imagefolder, tmp_path):
    from typer.testing import CliRunner

    from visionrt.cli import app

    run_dir = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(arch=ARCH), str(tiny_imagefolder), str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    killed_at = None
    try:
        deadline = time.monotonic() + 240
        for line in child.stdout:
            parts = line.split()
            if parts[:2] == ["step", "2"] and int(parts[2]) >= 2:  # mid-way through epoch 2
                child.send_signal(signal.SIGKILL)
                killed_at = line.strip()
                break
            assert time.monotonic() < deadline, "child made no progress"
    finally:
        child.kill()
        child.wait(30)
    assert killed_at is not None, child.stderr.read()[-2000:]
    assert child.returncode == -signal.SIGKILL
    assert history_epochs(run_dir) == [1]
    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(math.isfinite(row["train_loss"]) for row in history)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
    assert ckpt.load_checkpoint(run_dir / "checkpoints" / "last")[1]["epoch"] == 3
    with open(run_dir / "history.csv") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2, 3]
    no_tmp_left(run_dir)


# --- S3 run-dir layout ------------------------------------------------------------------------
def test_S3_run_dir_holds_safetensors_json_and_a_weights_only_train_state(runs):
    from safetensors import safe_open

    run_dir = runs["whole"].run_dir
    with safe_open(str(run_dir / "model.safetensors"), "pt") as handle:
        assert handle.keys()
    for name in ("spec.json", "config.json", "history.json", "metrics.json"):
        json.loads((run_dir / name).read_text())
    state = torch.load(run_dir / "checkpoints" / "last" / "train_state.pt", weights_only=True)
    assert isinstance(state, dict) and state["epoch"] == 2

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))

    assert plain(state), "train_state.pt holds a non-allowlisted type"
