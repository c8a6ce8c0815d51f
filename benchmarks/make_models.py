"""Build the random-weight Lite0 / ResNet50 bundles and the JPEG set every benchmark uses.

The bundles go through visionrt's own exporter (the artifacts users get): fp32 ONNX with the uint8
NHWC preprocessing in the graph, and the U8S8 per-channel QDQ int8 graph calibrated on the JPEGs.
Parity gates are relaxed (random weights make top-1 agreement meaningless); speed is unaffected.

    python benchmarks/make_models.py [--work /tmp/visionrt-bench] [--models lite0,resnet50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import ARCHS, DEFAULT_WORK, make_jpeg_folder


def export_random(arch: str, out: Path, images: Path, preprocess: str = "graph") -> None:
    import torch

    from visionrt.exporter.calibration import images_from_path
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model
    from visionrt.trainer.models import build_model, imagenet_labels, spec_for

    torch.manual_seed(0)
    labels = tuple(imagenet_labels())
    spec = spec_for(arch, labels)
    model = build_model(arch, len(labels), weights="none").eval()
    config = ExportConfig(out=out, precisions=("fp32", "int8"), calib=images, calib_samples=32,
                          verify_samples=16, max_batch=64, preprocess=preprocess,
                          allow_mismatch=True, overwrite=True)
    started = time.perf_counter()
    export_model(model, spec, config, images=images_from_path(images, labels),
                 source={"kind": "random", "arch": arch, "weights": "random (seed 0)"})
    print(f"{out}: exported in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--models", default="lite0,resnet50,lite0-host")
    parser.add_argument("--force", action="store_true", help="rebuild existing bundles")
    args = parser.parse_args()
    images = make_jpeg_folder(args.work / "images")
    for name in args.models.split(","):
        out = args.work / name
        if (out / "manifest.json").is_file() and not args.force:
            print(f"{out}: exists (use --force to rebuild)")
            continue
        arch = ARCHS[name.removesuffix("-host")]
        export_random(arch, out, images, "host" if name.endswith("-host") else "graph")


if __name__ == "__main__":
    main()
