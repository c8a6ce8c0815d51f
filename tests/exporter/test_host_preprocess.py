"""``--preprocess host``: a float NCHW bundle that the runtime feeds with its own normalisation.

The graph-preprocessing path is the default and is covered everywhere; this follows the host path
from export through every precision to the runtime classifying image files on each backend.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from visionrt.bundle import load_bundle  # noqa: E402
from visionrt.exporter.calibration import images_from_path  # noqa: E402
from visionrt.exporter.config import ExportConfig  # noqa: E402
from visionrt.exporter.pipeline import export_model  # noqa: E402
from visionrt.images import list_images, normalize, preprocess  # noqa: E402


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory, trained_tiny, tiny_spec, tiny_imagefolder):
    out = tmp_path_factory.mktemp("host") / "bundle"
    config = ExportConfig(out=out, precisions=("fp32", "fp16", "int8"), max_batch=8,
                          calib_samples=18, verify_samples=18, calib_batch=6, preprocess="host")
    export_model(trained_tiny, tiny_spec, config,
                 images=images_from_path(tiny_imagefolder, tiny_spec.labels),
                 source={"kind": "test"})
    return out


def test_host_bundle_takes_normalised_float_nchw(host_bundle, tiny_spec):
    bundle = load_bundle(host_bundle)
    assert (bundle.spec.input_dtype, bundle.spec.input_layout) == ("float32", "NCHW")
    assert bundle.spec.mean == tiny_spec.mean and bundle.spec.std == tiny_spec.std
    for artifact in bundle.artifacts:
        (inp,) = artifact.inputs
        assert inp.dtype == "float32" and list(inp.shape[1:]) == [3, 32, 32], artifact.file
        assert artifact.parity["passed"], artifact.file


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_host_bundle_classifies_files_like_pytorch(host_bundle, trained_tiny, tiny_spec,
                                                   tiny_imagefolder, backend, precision):
    if backend == "openvino":
        pytest.importorskip("openvino")
    from visionrt.errors import BackendUnavailableError
    from visionrt.runtime.capability import precision_unavailable_reason
    from visionrt.runtime.classifier import Classifier

    gap = precision_unavailable_reason(backend, precision, "cpu")
    if gap is not None:  # e.g. OpenVINO fp16 on an AMD EPYC: refused with the flag to use
        with pytest.raises(BackendUnavailableError, match="--precision fp32"):
            Classifier.load(host_bundle, backend=backend, precision=precision)
        return
    files = list_images(tiny_imagefolder)
    pixels = np.stack([preprocess(f, tiny_spec) for f in files])
    with torch.no_grad():
        want = trained_tiny(torch.from_numpy(normalize(pixels, tiny_spec))).softmax(1).numpy()
    with Classifier.load(host_bundle, backend=backend, precision=precision) as clf:
        assert clf.info()["precision"] == precision
        got = clf.predict_proba(files)
    agreement = float(np.mean(got.argmax(1) == want.argmax(1)))
    floor = {"fp32": 1.0, "fp16": 0.99, "int8": 0.97}[precision]
    assert agreement >= floor, (precision, backend, agreement)
    if precision == "fp32":
        np.testing.assert_allclose(got, want, atol=1e-4)
