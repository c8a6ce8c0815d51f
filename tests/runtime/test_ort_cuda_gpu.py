"""ONNX Runtime's CUDA provider on a GPU (marker gpu): it really loads, matches the CPU, and the
automatic choice gives it the fp16 graph, never an int8 one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import MAX_BATCH, SIZE

from visionrt.runtime.base import backend_unavailable_reason
from visionrt.runtime.classifier import Classifier

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _needs_the_cuda_provider() -> None:
    reason = backend_unavailable_reason("onnxruntime", "cuda:0")
    if reason:
        pytest.skip(f"not on this machine: {reason}")


def test_cuda_provider_really_loads_and_matches_the_cpu(tiny_bundle: Path) -> None:
    batch = np.random.default_rng(0).integers(0, 256, (MAX_BATCH, SIZE, SIZE, 3), np.uint8)
    with Classifier.load(tiny_bundle, backend="onnxruntime", device="cuda",
                         precision="fp32") as clf, \
            Classifier.load(tiny_bundle, backend="onnxruntime", device="cpu",
                            precision="fp32") as ref:
        assert clf.info()["provider"] == "CUDAExecutionProvider"
        for n in (1, 5, MAX_BATCH):
            np.testing.assert_allclose(clf(batch[:n]), ref(batch[:n]), atol=1e-4)


def test_auto_on_the_cuda_provider_never_takes_the_cpu_int8_graph(tiny_bundle: Path) -> None:
    with Classifier.load(tiny_bundle, backend="onnxruntime", device="cuda") as clf:
        assert clf.info()["file"] != "model.int8.onnx"
