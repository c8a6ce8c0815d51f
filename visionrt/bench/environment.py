"""The machine a benchmark ran on: CPU, cores, GPU, package versions, load. Imports nothing heavy."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

PACKAGES = ("visionrt", "numpy", "Pillow", "onnxruntime", "onnxruntime-gpu", "openvino",
            "tensorrt", "torch", "torchvision", "timm")
# CPU features that decide which fast kernels the engines pick (VNNI/AMX int8, bf16, and f16:
# whether OpenVINO can execute an fp16 graph as f16 at all).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_bf16", "amx_int8")


def environment() -> dict[str, Any]:
    """The ``environment`` object of the bench JSON.

    Package versions come from installed metadata, so nothing (torch included) is imported.
    """
    flags = _cpu_flags()  # one read of /proc/cpuinfo, not one per flag
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags],
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "loadavg_start": loadavg(),
    }


def cpu_name() -> str:
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def gpu_name() -> str | None:
    """Name of CUDA device 0 (the runtime's one CUDA probe), or None when there is none."""
    from visionrt.runtime import _cuda

    devices = _cuda.probe().devices
    return devices[0].name if devices else None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
