"""The ``visionrt`` Triton model kind: a python-backend model that runs visionrt's runtime.

    REPO/<name>/config.pbtxt      backend "python"; inputs image_file (encoded files) and pixels
                                  (uint8 RGB); output probabilities with the label file; dynamic
                                  batching; CPU instances; the runtime's backend/precision
    REPO/<name>/labels.txt        Triton's label file (classification extension: top-k labels)
    REPO/<name>/1/model.py        imports visionrt.serve.triton_model.TritonPythonModel
    REPO/<name>/1/bundle/         the bundle (manifest.json + artifacts), hard-linked when possible

Triton decodes nothing: images are decoded inside the model by ``visionrt.images``, so clients
send files as they are. The ``onnxruntime_onnx`` / ``tensorrt_plan`` kinds
(:mod:`visionrt.exporter.triton`) remain for the NGC Triton container.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from visionrt.bundle import staging_dir
from visionrt.errors import check_value
from visionrt.exporter.triton import TritonModel
from visionrt.runtime.base import BACKENDS, PRECISIONS
from visionrt.spec import ModelSpec

BACKEND_CHOICES = ("auto", *BACKENDS)
PRECISION_CHOICES = ("auto", *PRECISIONS)

MODEL_PY = '''"""Triton python model: visionrt's runtime (visionrt.serve.triton_model)."""

from visionrt.serve.triton_model import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True)
class PythonModelOptions:
    """What the python-backend model runs, and how Triton schedules it.

    Attributes:
        backend: the runtime backend (``Classifier.load(backend=...)``).
        precision: the runtime precision; explicit values are honoured exactly or the load fails.
        instances: model instances (separate processes; the CPU threads are shared out).
        max_queue_delay_us: how long Triton's dynamic batcher may hold a request to form a larger
            batch (0: batch whatever queued while the instance was busy).
        env_path: ``EXECUTION_ENV_PATH``, a directory with ``bin/activate`` for the python
            environment visionrt is installed in (``None``: the stub's default interpreter).
        threads: CPU threads per instance (0: the cores shared out between instances).
        cache_dir, cache_max_mb: the runtime's compiled-model cache (None: its defaults).
    """

    backend: str = "auto"
    precision: str = "auto"
    instances: int = 1
    max_queue_delay_us: int = 0  # the CPU is busy while a batch runs: requests queue meanwhile
    env_path: Path | None = None
    threads: int = 0
    cache_dir: Path | None = None
    cache_max_mb: int | None = None

    @property
    def device(self) -> str:
        """The runtime's device: CUDA for the GPU backends, else the CPU."""
        return "cuda" if self.backend in ("tensorrt", "onnxruntime-trt") else "cpu"

    def __post_init__(self) -> None:
        check_value(self.backend in BACKEND_CHOICES, "--backend", self.backend,
                    ", ".join(BACKEND_CHOICES))
        check_value(self.precision in PRECISION_CHOICES, "--precision", self.precision,
                    ", ".join(PRECISION_CHOICES))
        check_value(1 <= self.instances <= 64, "--instances", self.instances, "1..64")
        check_value(0 <= self.max_queue_delay_us <= 10_000_000, "--max-queue-delay-us",
                    self.max_queue_delay_us, "0..10000000 microseconds")
        check_value(0 <= self.threads <= 1024, "threads", self.threads, "0..1024")


def current_env_path() -> Path | None:
    """The running interpreter's environment when it can be activated (a venv or conda env)."""
    prefix = Path(sys.prefix)
    return prefix if (prefix / "bin" / "activate").is_file() else None


def pbtxt_string(text: str) -> str:
    """``text`` as a protobuf text-format string literal (non-ASCII as octal UTF-8 bytes)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def python_config_pbtxt(name: str, spec: ModelSpec, max_batch: int,
                        options: PythonModelOptions) -> str:
    """The text of ``config.pbtxt`` for the visionrt kind."""
    parameters = {"visionrt_backend": options.backend, "visionrt_precision": options.precision,
                  "visionrt_device": options.device, "visionrt_threads": str(options.threads),
                  "visionrt_spec": spec.to_json(indent=None)}
    if options.env_path is not None:
        parameters["EXECUTION_ENV_PATH"] = str(options.env_path)
    if options.cache_dir is not None:
        parameters["visionrt_cache_dir"] = str(options.cache_dir)
    if options.cache_max_mb is not None:
        parameters["visionrt_cache_max_mb"] = str(options.cache_max_mb)
    params = "\n".join(f"parameters {{\n  key: \"{key}\"\n  value: {{ string_value: "
                       f"{pbtxt_string(value)} }}\n}}" for key, value in parameters.items())
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{
    name: "image_file"
    data_type: TYPE_STRING
    dims: [ 1 ]
    optional: true
  }},
  {{
    name: "pixels"
    data_type: TYPE_UINT8
    dims: [ -1, -1, 3 ]
    optional: true
  }}
]
output [
  {{
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ {spec.num_classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [
  {{
    count: {options.instances}
    kind: KIND_CPU
  }}
]
{params}
"""


def write_python_model(repo: Path, name: str, bundle_dir: Path, spec: ModelSpec, max_batch: int,
                       options: PythonModelOptions, *, overwrite: bool = False) -> TritonModel:
    """Write the visionrt-kind entry ``repo/name`` for the bundle at ``bundle_dir`` (atomically).

    Raises:
        BundleError: ``repo/name`` exists (without ``overwrite``) or is not writable.
    """
    target = Path(repo) / name
    with staging_dir(target, overwrite=overwrite) as tmp:
        version = tmp / "1"
        version.mkdir()
        shutil.copytree(bundle_dir, version / "bundle", copy_function=_link_or_copy)
        (version / "model.py").write_text(MODEL_PY, encoding="utf-8")
        (tmp / "labels.txt").write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
        (tmp / "config.pbtxt").write_text(python_config_pbtxt(name, spec, max_batch, options),
                                          encoding="utf-8")
    return TritonModel(target, "python", target / "1" / "model.py")


def _link_or_copy(source: str, destination: str) -> str:
    # Bundles are written as new files (never modified in place), so a hard link is a snapshot;
    # the runtime checks each artifact's sha256 when the model loads.
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination
