"""The ``visionrt`` Triton model kind: visionrt's runtime inside Triton's python backend.

A repository entry written by :mod:`visionrt.exporter.triton_python` holds a two-line
``1/model.py`` that imports :class:`TritonPythonModel` from here, and the bundle in
``1/bundle/``. Triton's dynamic batcher hands ``execute`` several requests; their images are
decoded together on a thread pool by ``visionrt.images`` (the same limits and EXIF handling as
``Classifier.predict``) and run as one batch.

Inputs, one of them per request (a request may carry several images along its batch axis):

    image_file  TYPE_STRING [1]          encoded image files (JPEG, PNG, ...)
    pixels      TYPE_UINT8  [-1, -1, 3]  RGB pixels of any size, resized and cropped here

Output: ``probabilities`` TYPE_FP32 [classes], with the label file, so Triton's classification
extension also answers top-k labels. A request whose image cannot be decoded gets an error
response naming why; every other request of the batch is answered.

Imports numpy, Triton's ``triton_python_backend_utils`` and visionrt's torch-free runtime only.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from visionrt.images import preprocess
from visionrt.runtime.base import physical_cores
from visionrt.runtime.classifier import Classifier, as_visionrt_error
from visionrt.serve.protocol import INPUT_FILE, INPUT_PIXELS, OUTPUT

try:  # provided by Triton's python backend; absent elsewhere, where the names below still serve
    import triton_python_backend_utils as pb_utils
except ImportError:
    pb_utils = None

INFO_MARKER = "visionrt-model-info"


def model_parameters(config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a Triton model config as plain strings."""
    return {key: value.get("string_value", "")
            for key, value in config.get("parameters", {}).items()}


def instance_threads(parameters: dict[str, str], config: dict[str, Any]) -> int | None:
    """CPU threads of one instance's backend: the parameter, else the cores shared out between
    the instances (None: the runtime's default, the physical cores, for a single instance)."""
    explicit = int(parameters.get("visionrt_threads") or 0)
    if explicit > 0:
        return explicit
    instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
    if instances == 1:
        return None
    return max(1, physical_cores() // instances)


def cache_options(parameters: dict[str, str]) -> dict[str, Any]:
    """``cache_dir`` / ``cache_max_mb`` for ``Classifier.load`` when the config sets them."""
    options: dict[str, Any] = {}
    if parameters.get("visionrt_cache_dir"):
        options["cache_dir"] = parameters["visionrt_cache_dir"]
    if parameters.get("visionrt_cache_max_mb"):
        options["cache_max_mb"] = int(parameters["visionrt_cache_max_mb"])
    return options


class TritonPythonModel:
    """Triton's python-backend entry points: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = model_parameters(config)
        bundle = Path(args["model_repository"]) / args["model_version"] / "bundle"
        self.classifier = Classifier.load(
            bundle, backend=parameters.get("visionrt_backend", "auto"),
            precision=parameters.get("visionrt_precision", "auto"),
            device=parameters.get("visionrt_device", "cpu"),
            threads=instance_threads(parameters, config), **cache_options(parameters))
        self.pool = ThreadPoolExecutor(self.classifier.workers,
                                       thread_name_prefix="visionrt-decode")
        # One line the serve command reads back from Triton's log: what really runs.
        print(INFO_MARKER, json.dumps({"model": args["model_name"],
                                       "instance": args["model_instance_name"],
                                       **self.classifier.info()}), flush=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        images = [self._request_images(request) for request in requests]
        flat = [(index, source) for index, sources in enumerate(images)
                if not isinstance(sources, Exception) for source in sources]
        decoded = list(self.pool.map(self._decode, [source for _, source in flat]))
        errors: dict[int, Exception] = {i: e for i, e in enumerate(images)
                                        if isinstance(e, Exception)}
        for (index, _), value in zip(flat, decoded, strict=True):
            if isinstance(value, Exception) and index not in errors:
                errors[index] = value
        good = [(index, array) for (index, _), array in zip(flat, decoded, strict=True)
                if index not in errors]
        probabilities = self._run([array for _, array in good])
        if isinstance(probabilities, Exception):
            errors.update({index: probabilities for index, _ in good})
            probabilities = np.zeros((0, self.classifier.spec.num_classes), np.float32)
        rows: dict[int, list[np.ndarray]] = {}
        for (index, _), row in zip(good, probabilities, strict=True):
            rows.setdefault(index, []).append(row)
        return [self._response(rows.get(index), errors.get(index))
                for index in range(len(requests))]

    def finalize(self) -> None:
        self.pool.shutdown(wait=True)
        self.classifier.close()

    # -- steps -------------------------------------------------------------------------------
    def _request_images(self, request: Any) -> list[Any] | Exception:
        files = pb_utils.get_input_tensor_by_name(request, INPUT_FILE)
        pixels = pb_utils.get_input_tensor_by_name(request, INPUT_PIXELS)
        if (files is None) == (pixels is None):
            return ValueError(f"send exactly one of the inputs {INPUT_FILE} (encoded image "
                              f"files) or {INPUT_PIXELS} (uint8 HxWx3 RGB)")
        if pixels is not None:
            return list(pixels.as_numpy())
        return [bytes(value) for value in files.as_numpy().reshape(-1)]

    def _decode(self, source: Any) -> np.ndarray | Exception:
        try:
            return preprocess(source, self.classifier.spec)
        except Exception as exc:  # noqa: BLE001 - one bad image fails its own request only
            return as_visionrt_error(exc, "image")

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray | Exception:
        if not arrays:
            return np.zeros((0, self.classifier.spec.num_classes), np.float32)
        try:
            return self.classifier(np.stack(arrays))
        except Exception as exc:  # noqa: BLE001 - reported on each request of the batch
            return as_visionrt_error(exc)

    @staticmethod
    def _response(rows: list[np.ndarray] | None, error: Exception | None) -> Any:
        if error is not None:
            return pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(f"{type(error).__name__}: {error}"))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(OUTPUT, np.stack(rows).astype(np.float32))])

