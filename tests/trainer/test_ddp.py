"""DistributedDataParallel with 2 CPU processes (gloo) through torchrun; only rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def test_torchrun_two_cpu_processes(tiny_imagefolder: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    out = tmp_path / "ddp"
    command = [str(torchrun), "--nproc_per_node", "2", "--standalone", "-m",
               "visionrt", "train", str(tiny_imagefolder), "--out", str(out), "--arch",
               "mobilenetv3_small_050", "--weights", "none", "--img-size", "32", "--epochs",
               "2", "--batch-size", "8", "--freeze", "none"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in 180 s: {stdout[-1000:]} {stderr[-2000:]}")
    assert process.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "2 processes" in stdout
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    # metrics gathered from both ranks cover the whole validation set exactly once
    assert metrics["val"]["samples"] == metrics["val_samples"]
    assert sum(map(sum, metrics["val"]["confusion_matrix"])) == metrics["val_samples"]
    assert not list(out.glob(".*")), "no temporary files left by the two ranks"
    shutil.rmtree(out)
