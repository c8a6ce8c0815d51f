"""Record what of the GPU path has run on a GPU, and rewrite the README sentence that says so.

    python benchmarks/gpu_status.py                 rewrite README.md's status from the record
    python benchmarks/_gpu_check.py record MODE OUT (called by gpu_check.sh when a run passed)

The record is visionrt/data/gpu_check.json (``full``: gpu_check.sh on a GPU host with TensorRT;
``no_tensorrt``: its --no-tensorrt mode); ``visionrt doctor`` prints the same sentence. A rehearsal
against the test double is never recorded.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "visionrt" / "data" / "gpu_check.json"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- gpu-status -->)(.*?)(<!-- /gpu-status -->)", re.S)


def rewrite_readme() -> str:
    from visionrt.cli.diagnostics import gpu_path_status

    status = gpu_path_status(json.loads(RECORD.read_text()))
    text = README.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        raise SystemExit(f"{README}: no <!-- gpu-status --> block to rewrite")
    README.write_text(BLOCK.sub(lambda m: f"{m[1]}The TensorRT path is {status}.{m[3]}", text),
                      encoding="utf-8")
    return status


def record(mode: str, out: Path) -> int:
    """Add a passed run of ``mode`` (full | no-tensorrt) to the record; rehearsals are refused."""
    if mode not in ("full", "no-tensorrt"):
        print(f"not recorded: a {mode} run does not run on a GPU")
        return 0
    from visionrt.runtime import _cuda

    device = _cuda.device_info(0)
    entry = {"gpu": device.name, "compute_capability": device.capability,
             "date": datetime.date.today().isoformat()}
    if mode == "full":
        entry["tensorrt"] = _cuda.require_tensorrt(0).__version__
    data = json.loads(RECORD.read_text())
    data["full" if mode == "full" else "no_tensorrt"] = entry
    RECORD.write_text(json.dumps(data, indent=2) + "\n")
    print(f"recorded in {RECORD} and {README}: {rewrite_readme()}")
    return 0


if __name__ == "__main__":
    print(rewrite_readme())
    sys.exit(0)
