"""What can run here: library versions, ONNX Runtime providers that really load, GPUs, backends.

Used by ``visionrt doctor``. Never creates a TensorRT Runtime/Builder: GPUs come from the
runtime's one CUDA probe (``visionrt.runtime._cuda``), which returns a reason, not a crash, when
there is no driver. What of the GPU path has really run on a GPU is read from
``visionrt/data/gpu_check.json``, which ``benchmarks/gpu_check.sh`` rewrites when it passes.
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import importlib.resources
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGES = ("numpy", "Pillow", "onnxruntime", "onnxruntime-gpu", "openvino", "torch",
            "torchvision", "timm", "onnx", "onnxscript", "safetensors", "tensorrt",
            "cuda-python", "cuda-bindings")
MIN_TORCH = (2, 6)  # CVE-2025-32434: weights_only=True bypass before 2.6
RECOMMENDED_TORCH = (2, 10)  # CVE-2026-24747: weights_only unpickler memory corruption


@dataclass
class BackendStatus:
    name: str
    usable: bool
    detail: str


@dataclass
class Diagnostics:
    python: str
    platform: str
    cpu: str
    cores: int
    versions: dict[str, str | None]
    ort_providers: dict[str, str]
    gpus: list[str]
    backends: list[BackendStatus]
    warnings: list[str] = field(default_factory=list)
    trt_libraries: list[str] = field(default_factory=list)
    gpu_path: str = ""
    shm_mb: int | None = None
    free_disk_gb: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cuda_devices() -> tuple[list[str], str]:
    """Visible CUDA devices (``"0: NVIDIA L4 (compute 8.9)"``) and why there are none."""
    from visionrt.runtime import _cuda

    status = _cuda.probe()
    names = [f"{d.index}: {d.name} (compute {d.capability})" for d in status.devices]
    return names, status.reason or ""


def gpu_checks() -> dict:
    """What ``benchmarks/gpu_check.sh`` recorded: ``full`` / ``no_tensorrt`` runs, or None."""
    text = importlib.resources.files("visionrt").joinpath("data/gpu_check.json").read_text()
    return json.loads(text)


def gpu_path_status(record: dict | None = None) -> str:
    """One sentence: what of the TensorRT/GPU path has run on a real GPU (README, doctor)."""
    record = gpu_checks() if record is None else record
    full, cuda_only = record.get("full"), record.get("no_tensorrt")
    if full:
        return (f"run end to end on a GPU ({full['gpu']}, TensorRT {full['tensorrt']}) on "
                f"{full['date']} by benchmarks/gpu_check.sh")
    text = ("built against the TensorRT 10/11 API and exercised in CI with a test double; not "
            "yet run on a GPU")
    if cuda_only:
        text += (f" with TensorRT (its CUDA layer, without TensorRT, ran on {cuda_only['gpu']} on "
                 f"{cuda_only['date']})")
    return text


def ort_provider_check() -> dict[str, str]:
    """For each provider ORT lists, whether a session really runs on it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"onnxruntime": f"not importable: {exc}"}
    result = {}
    model = identity_model_bytes()
    for provider in ort.get_available_providers():
        if provider == "AzureExecutionProvider":
            result[provider] = "skipped (remote provider)"
            continue
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(model, options, providers=[provider])
            loaded = session.get_providers()
            result[provider] = "loads" if provider in loaded else f"falls back to {loaded}"
        except Exception as exc:  # noqa: BLE001 - report any provider failure as text
            result[provider] = f"fails: {str(exc).splitlines()[0][:160]}"
    return result


def identity_model_bytes() -> bytes:
    """A minimal ONNX model (float Identity, opset 13), encoded without the onnx package."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def field_bytes(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def field_int(number: int, value: int) -> bytes:
        return varint(number << 3) + varint(value)

    dim = field_bytes(1, field_int(1, 1))
    tensor_type = field_int(1, 1) + field_bytes(2, dim)
    value_type = field_bytes(1, tensor_type)

    def value_info(name: str) -> bytes:
        return field_bytes(1, name.encode()) + field_bytes(2, value_type)

    node = field_bytes(1, b"x") + field_bytes(2, b"y") + field_bytes(4, b"Identity")
    graph = (field_bytes(1, node) + field_bytes(2, b"doctor") + field_bytes(11, value_info("x"))
             + field_bytes(12, value_info("y")))
    opset = field_bytes(1, b"") + field_int(2, 13)
    return field_int(1, 8) + field_bytes(7, graph) + field_bytes(8, opset)


def trt_library_paths() -> list[str]:
    """Every libnvinfer found on sys.path and LD_LIBRARY_PATH (duplicates cause version errors)."""
    roots = [p for p in sys.path if p and os.path.isdir(p)]
    roots += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if os.path.isdir(p)]
    found: set[str] = set()
    for root in roots:
        found.update(glob.glob(os.path.join(root, "libnvinfer.so*")))
        found.update(glob.glob(os.path.join(root, "tensorrt*", "libnvinfer.so*")))
    return sorted(found)


def backend_status(gpus: list[str], versions: dict[str, str | None]) -> list[BackendStatus]:
    statuses = [BackendStatus("onnxruntime", versions.get("onnxruntime") is not None
                              or versions.get("onnxruntime-gpu") is not None,
                              "CPU always; CUDA/TensorRT EP with onnxruntime-gpu and a GPU")]
    ov = versions.get("openvino")
    statuses.append(BackendStatus("openvino", ov is not None,
                                  "CPU" if ov else "pip install 'visionrt[openvino]'"))
    from visionrt.runtime import _cuda

    reason = _cuda.tensorrt_unavailable_reason(0)
    if reason is None:
        version = _cuda.require_tensorrt(0).__version__  # importing creates no TensorRT object
        statuses.append(BackendStatus("tensorrt", True, f"TensorRT {version} on {gpus[0]}"))
    else:  # the one rule the runtime applies, so doctor and Classifier.load agree
        statuses.append(BackendStatus("tensorrt", False, reason))
    return statuses


def collect(check_providers: bool = True) -> Diagnostics:
    versions = {name: package_version(name) for name in PACKAGES}
    gpus, gpu_note = cuda_devices()
    diag = Diagnostics(
        python=sys.version.split()[0],
        platform=platform.platform(),
        cpu=cpu_name(),
        cores=os.cpu_count() or 1,
        versions=versions,
        ort_providers=ort_provider_check() if check_providers else {},
        gpus=gpus,
        backends=backend_status(gpus, versions),
        trt_libraries=trt_library_paths(),
        gpu_path=gpu_path_status(),
    )
    diag.warnings = _warnings(diag, gpu_note)
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    diag.shm_mb = shm.total // 2**20 if shm else None
    diag.free_disk_gb = round(shutil.disk_usage(os.getcwd()).free / 2**30, 1)
    return diag


def _warnings(diag: Diagnostics, gpu_note: str) -> list[str]:
    notes = []
    torch_version = diag.versions.get("torch")
    if torch_version:
        parts = tuple(int(p) for p in torch_version.split("+")[0].split(".")[:2])
        if parts < MIN_TORCH:
            notes.append(f"torch {torch_version} < 2.6 is unsafe for loading checkpoints "
                         "(CVE-2025-32434); upgrade torch")
        elif parts < RECOMMENDED_TORCH:
            notes.append(f"torch {torch_version}: upgrade to >= 2.10 (CVE-2026-24747)")
    if diag.versions.get("onnxruntime") and diag.versions.get("onnxruntime-gpu"):
        notes.append("both onnxruntime and onnxruntime-gpu are installed; they overwrite each "
                     "other: pip uninstall onnxruntime")
    if len(diag.trt_libraries) > 1:
        notes.append(f"{len(diag.trt_libraries)} TensorRT libraries found; builder and runtime "
                     "may load different versions")
    if not diag.gpus:
        notes.append(f"no GPU: {gpu_note}")
    return notes
