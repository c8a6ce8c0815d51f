"""The seed's backbones each export fp32/fp16/int8 and pass the parity gate (slow: minutes).

Backbones without offline ImageNet weights get random weights. So that they behave like trained
networks, their BatchNorm statistics are re-estimated on the images (random init with BN at
mean 0 / var 1 lets activations grow past fp16's range: inception_v3 then fails the fp16 gate, as it
should) and the new 3-class head is fitted (ridge regression on pooled features) so that the logits
have the clear margins of a trained model. Inputs are small (64-96 px).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from visionrt.bundle import load_bundle  # noqa: E402
from visionrt.errors import ParityError, WeightsNotFoundError  # noqa: E402
from visionrt.exporter.calibration import images_from_path  # noqa: E402
from visionrt.exporter.config import ExportConfig  # noqa: E402
from visionrt.exporter.pipeline import export_model  # noqa: E402
from visionrt.images import list_images, normalize, preprocess  # noqa: E402

# Random-weight int8 graphs the gate rightly refuses (no offline ImageNet weights here), by artifact:
# - MobileNetV3-Large: both int8 graphs disagree with fp32 on 2-6 of 18 images (ORT 0.83-0.89,
#   OpenVINO 0.72-0.83 top-1 agreement; minmax/entropy/percentile alike; a copy trained from
#   scratch on synthetic shapes also fails, 0.90-0.95).
# - Inception-v3: the symmetric S8S8 graph for TensorRT (7 bits left for post-ReLU activations)
#   reaches 0.83-0.94 in ONNX Runtime; its CPU U8S8 graph passes.
# Expected to pass with trained weights; until then an xfail naming exactly these artifacts.
RANDOM_WEIGHTS_INT8_XFAIL = {
    "mobilenetv3_large_100": {"model.int8.onnx", "model.int8.trt.onnx"},
    "inception_v3": {"model.int8.trt.onnx"},
}


BACKBONES = [("vgg16", 64), ("resnet50", 64), ("inception_v3", 96), ("legacy_xception", 96),
             ("tf_efficientnet_lite0", 64), ("mobilenetv3_large_100", 64)]


def _model(arch: str, classes: int):
    from visionrt.trainer.models import build_model

    try:
        return build_model(arch, classes, weights="imagenet"), "imagenet"
    except WeightsNotFoundError:
        return build_model(arch, classes, weights="none"), "none"


def _recalibrate_batchnorm(model, x: torch.Tensor) -> None:
    """Running BN statistics from ``x`` (cumulative average), as training would have left them."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in x.split(12):
            model(chunk)
    model.eval()


def _fit_head(model, x: torch.Tensor, labels: np.ndarray) -> None:
    """Least-squares fit (small ridge) of the classifier on pooled features (targets: +-4).

    A heavier ridge (10 % of the mean feature energy) was tried for MobileNetV3: it did not make its
    int8 graph pass and cost inception_v3 one flip in 18, so the fit stays close to exact.
    """
    model.eval()
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        features = torch.cat([features, torch.ones(len(features), 1)], dim=1).double()
        targets = torch.full((len(labels), int(labels.max()) + 1), -4.0, dtype=torch.float64)
        targets[torch.arange(len(labels)), torch.from_numpy(labels)] = 4.0
        gram = features.T @ features
        ridge = 1e-3 * torch.eye(len(gram), dtype=torch.float64)
        solution = torch.linalg.solve(gram + ridge, features.T @ targets)
        head = model.get_classifier()
        head.weight.copy_(solution[:-1].T.float())
        head.bias.copy_(solution[-1].float())


@pytest.mark.slow
@pytest.mark.parametrize("arch,size", BACKBONES, ids=[a for a, _ in BACKBONES])
def test_backbone_exports_all_precisions_and_passes_gate(tmp_path, tiny_imagefolder, arch, size):
    from visionrt.trainer.models import spec_for

    labels = tuple(sorted(p.name for p in tiny_imagefolder.iterdir() if p.is_dir()))
    spec = spec_for(arch, labels, img_size=size)
    torch.manual_seed(0)  # random-init backbones: the same weights on every run
    model, weights = _model(arch, len(labels))
    files = list_images(tiny_imagefolder)
    pixels = np.stack([preprocess(f, spec) for f in files])
    truth = np.array([labels.index(f.parent.name) for f in files])
    x = torch.from_numpy(normalize(pixels, spec))
    if weights == "none":
        _recalibrate_batchnorm(model, x)
    _fit_head(model, x, truth)
    config = ExportConfig(out=tmp_path / arch, precisions="fp32,fp16,int8", max_batch=8,
                          calib_samples=18, verify_samples=18, calib_batch=6)
    try:
        result = export_model(model, spec, config,
                              images=images_from_path(tiny_imagefolder, labels),
                              source={"kind": "test", "arch": arch, "weights": weights})
    except ParityError as exc:
        failed = set(re.findall(r"(model\.[\w.]+\.onnx) on \w+:", str(exc)))
        if weights == "none" and failed and failed <= RANDOM_WEIGHTS_INT8_XFAIL.get(arch, set()):
            pytest.xfail(f"random-weight {arch}: {exc}")
        raise
    bundle = load_bundle(tmp_path / arch)
    assert [a.file for a in bundle.artifacts] == ["model.fp32.onnx", "model.fp16.onnx",
                                                  "model.int8.onnx", "model.int8.trt.onnx"]
    assert all(r.passed for r in result.reports)
    for report in result.reports:
        print(f"{arch} ({weights}) {report.summary()}")
