"""Helpers shared by test folders: images, data sets and runs built in code (never committed),
the benchmark scripts imported as modules, one torch thread for tiny models, and threads that
report what they raised."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    """``image`` saved to bytes in ``fmt`` (the fuzz corpus's own encoder)."""
    return load_benchmark("fuzz_images")._encode(image, fmt, **kw)


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    """A uint8 RGB test pattern whose every pixel differs from its neighbours."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return np.stack([x, y, 255 - x], axis=2)


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb header)."""
    return load_benchmark("fuzz_images")._png_with_ihdr(width, height)


def exif_oriented(orientation: int) -> tuple[bytes, np.ndarray]:
    """(PNG bytes stored with EXIF ``orientation``, the upright image a viewer shows)."""
    upright = np.zeros((20, 30, 3), dtype=np.uint8)
    upright[:5, :5] = 255
    upright[-3:, -3:] = (0, 0, 255)
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(upright)
    if inverse is not None:
        stored = stored.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "PNG", exif=exif), upright


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    module_name = f"visionrt_benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:  # the scripts import their helpers (_common, _tiny_bundle)
        sys.path.append(str(folder))
    path = folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def write_kaggle_set(root: Path, patients: int = 12, per_patient: int = 3,
                     size: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A SIIM-ISIC-like set: train.csv (image_name, patient_id, target) + images/<name>.jpg.

    Positives are bright blobs on a dark background, negatives dark blobs; every patient has one
    target value so a leaky split would be visible.
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        target = p % 3 == 0  # a third of the patients are positive (imbalanced)
        for i in range(per_patient):
            name = f"ISIC_{p:03d}{i:02d}"
            pixels = rng.normal(60, 20, (size, size, 3))
            cy, cx = rng.integers(10, size - 10, 2)
            yy, xx = np.mgrid[0:size, 0:size]
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(30, 80)
            pixels[blob] = 220 if target else 110
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(images / f"{name}.jpg")
            rows.append({"image_name": name, "patient_id": f"IP_{p:04d}", "sex": "male",
                         "target": int(target)})
    csv_path = root / "train.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path, images


def write_run_dir(run: Path, data: Path, labels: tuple[str, ...], size: int = 32) -> Path:
    """A minimal trainer run dir: a random resnet10t (``len(labels)`` classes) and its data."""
    import json

    import timm
    import torch
    from safetensors.torch import save_file

    from visionrt.spec import ModelSpec

    run.mkdir(parents=True)
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=len(labels))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(run / "model.safetensors"))
    ModelSpec(arch="resnet10t", labels=labels, input_size=(size, size),
              crop_pct=1.0).save(run / "spec.json")
    (run / "config.json").write_text(json.dumps({"data": str(data)}))
    return run


def single_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP spin contention (10x);
    wrap as an autouse session fixture. Without torch it does nothing."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_in_threads(work: Callable[[int], None], args: Iterable[int]) -> list[BaseException]:
    """Call ``work(arg)`` for every arg, each in its own thread, all at once; return what they
    raised (an exception in a thread is otherwise lost, and the test would pass)."""
    errors: list[BaseException] = []

    def guarded(arg: int) -> None:
        try:
            work(arg)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
