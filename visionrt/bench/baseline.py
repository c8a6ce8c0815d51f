"""PyTorch eager baseline rows for ``visionrt bench --baseline torch``.

torch, timm and the trainer are imported only inside these functions, when a user asks for the
baseline: ``visionrt bench`` without ``--baseline torch`` runs where torch is not installed.

The torch model is rebuilt, in order of preference, from:

1. the bundle's ``source`` run directory (``model.safetensors`` + ``spec.json``): the exact model;
2. the spec's ``arch`` with the spec's number of outputs and random weights: the same architecture
   and therefore the same speed (weights do not change eager-mode cost), labelled as such.

The baseline runs the same input the engine rows run: a uint8 NHWC batch that is cast, normalised
with the spec's mean/std and transposed inside the timed call, as the runtime does (in the exported
graph, or on the host for ``--preprocess host`` bundles).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visionrt.bench.inputs import random_batch
from visionrt.bench.results import ColdStart, result_row
from visionrt.bench.stats import reset_peak_rss
from visionrt.bench.timing import measure_steps
from visionrt.errors import VisionRTError

log = logging.getLogger(__name__)


def torch_rows(config: Any, device: str,
               say: Callable[[str], None]) -> tuple[list[Any], str | None]:
    """Engine-mode rows of PyTorch eager for every batch size of ``config`` (a BenchConfig).

    Args:
        config: the BenchConfig of the run.
        device: ``"cpu"`` or ``"cuda"``: where the engine rows ran, so the comparison is fair.
        say: progress callback.

    Returns:
        (rows, note): rows with ``backend == "torch"``; a note saying how the model was rebuilt,
        or why the baseline is unavailable (then rows is empty).
    """
    reset_peak_rss()
    started = time.perf_counter()
    try:
        model, spec, how = load_torch_model(config.model)
    except (VisionRTError, ImportError, OSError, RuntimeError, ValueError) as exc:
        return [], f"torch baseline unavailable: {exc}"
    load_ms = (time.perf_counter() - started) * 1000.0
    torch = _torch()
    if device == "cuda" and not torch.cuda.is_available():
        return [], "torch baseline unavailable: the rows ran on CUDA but this torch has no GPU"
    device = torch.device("cuda" if device == "cuda" else "cpu")
    model = model.to(device)
    step_for, timer = step_factory(model, spec, device, torch)
    first_ms = _first_inference_ms(step_for, config, spec)
    info = {"backend": "torch", "precision": "fp32", "requested_precision": "fp32",
            "device": device.type, "details": {"torch": torch.__version__, "model": how,
                                               "threads": torch.get_num_threads()}}
    cold = ColdStart(load_ms, first_ms)
    rows = []
    for batch_size in config.batch_sizes:
        say(f"torch eager fp32 batch {batch_size}: engine")
        step = step_for(random_batch(spec, batch_size, config.seed))
        # eager calls can take seconds on a busy CPU: the window grows to MIN_SAMPLES calls
        measurement = measure_steps(step, images_per_step=batch_size, duration_s=config.duration,
                                    warmup_s=config.warmup, timer=timer)
        rows.append(result_row(info, cold, "engine", batch_size, 1, measurement))
    return rows, f"torch baseline: PyTorch {torch.__version__} eager, {how}"


def load_torch_model(model_path: Path) -> tuple[Any, Any, str]:
    """Rebuild the eval-mode torch classifier behind a bundle or ONNX file.

    Returns:
        (module, spec, how) where ``how`` says whether the weights are the run's own or random.

    Raises:
        VisionRTError: the model cannot be rebuilt (no spec / unknown arch); the message says why.
    """
    spec, source = _spec_and_source(Path(model_path))
    run_dir = _run_dir(source, Path(model_path))
    if run_dir is not None:
        from visionrt.trainer.models import load_run_model

        module, run_spec = load_run_model(run_dir)
        return module.eval(), run_spec, f"weights of run {run_dir}"
    module = _build_random(spec)
    return module.eval(), spec, (f"{spec.arch} rebuilt with random weights (same architecture "
                                 f"and cost; {_why_random(source)})")


def _why_random(source: dict[str, Any]) -> str:
    if source.get("kind") == "run":
        return f"its training run {source.get('path', '')} is not found"
    if source.get("kind"):
        return f"exported from {source['kind']}:{source.get('arch', '')}, not from a training run"
    return "a bare model file names no weights"


def _spec_and_source(path: Path) -> tuple[Any, dict[str, Any]]:
    if path.is_dir():
        from visionrt.bundle import load_bundle

        bundle = load_bundle(path)
        return bundle.spec, dict(bundle.source or {})
    if path.suffix.lower() == ".onnx":
        return _spec_from_onnx(path), {}
    raise VisionRTError(f"{path}: cannot rebuild a torch model from a {path.suffix} file",
                        source=str(path), hint="bench the bundle directory instead")


def _spec_from_onnx(path: Path) -> Any:
    from visionrt.runtime._onnx_meta import read_metadata
    from visionrt.spec import ModelSpec

    text = read_metadata(path).get("visionrt.spec")  # reads the file; never builds a session
    if not text:
        raise VisionRTError(f"{path} has no visionrt.spec metadata, so its architecture is unknown",
                            source=str(path), hint="bench the bundle exported by visionrt")
    return ModelSpec.from_json(text)


def _run_dir(source: dict[str, Any], model_path: Path) -> Path | None:
    """The training run a bundle came from (the manifest's ``source.path``), if it still exists."""
    value = source.get("path")
    if not isinstance(value, str) or not value:
        return None
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = (model_path / candidate).resolve() if model_path.is_dir() else candidate
    if (candidate / "model.safetensors").is_file() and (candidate / "spec.json").is_file():
        return candidate
    return None


def _build_random(spec: Any) -> Any:
    # trainer.models imports torch and timm: without them the baseline cannot run at all.
    from visionrt.trainer.models import build_model

    return build_model(spec.arch, spec.num_outputs, weights="none")


def step_factory(model: Any, spec: Any, device: Any, torch: Any) -> tuple[Callable, Any]:
    """``(step_for, timer)``: ``step_for(uint8 NHWC batch)`` is a timed eager call on ``device``;
    ``timer`` times it with CUDA events on a GPU (None: wall clock)."""
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255.0)

    def step_for(batch: Any) -> Callable[[], Any]:
        tensor = torch.from_numpy(batch)

        def step() -> Any:
            with torch.inference_mode():
                x = tensor.to(device, non_blocking=True)
                # what the runtime does (in the graph or on the host): uint8 NHWC -> normalised NCHW
                x = (x.permute(0, 3, 1, 2).float() - mean) * inv_std
                out = model(x)
                return out.cpu() if device.type != "cuda" else out

        return step

    return step_for, _TorchCudaTimer(torch) if device.type == "cuda" else None


class _TorchCudaTimer:
    """CUDA-event timing for the torch baseline (torch's own events)."""

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def time(self, step: Callable[[], Any]) -> float:
        start = self._torch.cuda.Event(enable_timing=True)
        stop = self._torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1000.0


def _first_inference_ms(step_for: Callable, config: Any, spec: Any) -> float:
    step = step_for(random_batch(spec, config.batch_sizes[0], config.seed))
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000.0


def _torch() -> Any:
    return _require("torch")


def _require(name: str) -> Any:
    from visionrt._optional import require

    return require(name)
