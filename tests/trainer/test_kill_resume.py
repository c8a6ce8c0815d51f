"""kill -9 during training, then --resume: the run completes with the full History (C4, C6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tiny_imagefolder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "visionrt", "train", str(tiny_imagefolder), "--out",
               str(out), "--arch", "mobilenetv3_small_050", "--weights", "none", "--img-size",
               "48", "--epochs", "5", "--batch-size", "4", "--freeze", "none",
               "--augment", "light"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last").exists():
            assert process.poll() is None, "training ended before the first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere in epoch 2: mid-step, mid-eval or mid-save
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "metrics.json").exists()
    done = subprocess.run([sys.executable, "-m", "visionrt", "train", "--resume", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 5
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
