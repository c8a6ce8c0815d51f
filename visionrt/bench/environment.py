"""The machine a benchmark ran on: CPU, cores, GPU, package versions, load. Imports nothing heavy."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

PACKAGES = ("visionrt", "numpy", "Pillow", "onnxruntime", "onnxruntime-gpu", "openvino",
            "tensorrt", "torch", "torchvision", "timm")
# CPU features that decide which fast kernels the engines pick (VNNI/AMX int8, bf16).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


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
    """Name of CUDA device 0 through cuda-python, or None (no package, driver or device)."""
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or not count:
            return None
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return None
        name = props.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - no cuda-python / driver means no GPU to report
        return None


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
