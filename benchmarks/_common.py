"""Shared helpers of the benchmark scripts: the model bundles and the JPEG image set they use.

Everything is generated deterministically under one work directory (default
``/tmp/visionrt-bench``), never inside the repository:

    WORK/images/          64 ImageNet-sized JPEGs (crops of scikit-image's sample photos)
    WORK/lite0/           bundle: tf_efficientnet_lite0, random weights, fp32 + int8 (U8S8)
    WORK/resnet50/        bundle: resnet50, random weights, fp32 + int8 (U8S8)
    WORK/lite0-host/      bundle with --preprocess host (float NCHW input) for the plain loop

Random weights are what the issue's reference figures use: speed does not depend on the values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_WORK = Path(os.environ.get("VISIONRT_BENCH_WORK", "/tmp/visionrt-bench"))
ARCHS = {"lite0": "tf_efficientnet_lite0", "resnet50": "resnet50"}
# ImageNet-like photo sizes (width, height): the validation set's median is about 500x375.
SIZES = ((500, 375), (375, 500), (500, 333), (640, 480), (500, 500), (800, 600))


def make_jpeg_folder(out: Path, count: int = 64, seed: int = 0) -> Path:
    """Write ``count`` JPEG photos (quality 90) cropped from scikit-image samples; idempotent."""
    from PIL import Image
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    if len(list(out.glob("*.jpg"))) >= count:
        return out
    photos = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket(),
              data.immunohistochemistry(), np.asarray(Image.fromarray(data.camera()).convert("RGB"))]
    rng = np.random.default_rng(seed)
    for index in range(count):
        photo = Image.fromarray(photos[index % len(photos)])
        width, height = SIZES[index % len(SIZES)]
        scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.6)
        resized = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1),
                               Image.Resampling.BICUBIC)
        left = int(rng.integers(0, resized.width - width + 1))
        top = int(rng.integers(0, resized.height - height + 1))
        crop = resized.crop((left, top, left + width, top + height))
        crop.save(out / f"photo_{index:03d}.jpg", quality=90)
    return out


def bundle_path(work: Path, name: str) -> Path:
    path = work / name
    if not (path / "manifest.json").is_file():
        raise SystemExit(f"{path} is missing: run `python benchmarks/make_models.py --work {work}`")
    return path


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_report(report: dict, path: Path | None) -> None:
    """Stamp the end-of-run load average and write the report as JSON (when a path is given)."""
    import json

    from visionrt.bench.environment import loadavg as bench_loadavg

    report["environment"]["loadavg_end"] = bench_loadavg()
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {path}")


def replace_section(path: Path, start: str, end: str, text: str) -> None:
    """Rewrite the text between the ``start`` and ``end`` markers of ``path``."""
    readme = path.read_text()
    if start not in readme or end not in readme:
        raise SystemExit(f"{path} has no {start} ... {end} section")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    print(f"updated {path}")
