"""Helpers for the serve tests: tiny bundles written by the real exporter, test images, free ports,
and process checks. A uniquely named module (``import serve_helpers``), like runtime_helpers.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionrt.spec import ModelSpec

SIZE = 32
LABELS = ("circle", "square", "triangle")
READY_TIMEOUT_S = 300.0  # generous: a 2-core machine shared with other work


def export_tiny(out: Path, seed: int, *, overwrite: bool = False) -> Path:
    """Export a random-init conv net (``seed`` fixes its weights) as an fp32 bundle through the
    real export pipeline, as `visionrt export` writes it (max batch 16)."""
    torch = pytest.importorskip("torch")
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, len(LABELS)))
    with torch.no_grad():
        model[-1].weight.mul_(8.0)  # clear margins between the classes
    spec = ModelSpec(arch=f"tiny_seed{seed}", labels=LABELS, input_size=(SIZE, SIZE),
                     crop_pct=0.875, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    config = ExportConfig(out=out, precisions=("fp32",), max_batch=16, verify_samples=8,
                          overwrite=overwrite)
    export_model(model, spec, config, source={"kind": "test"})
    return out


def write_images(folder: Path, count: int = 12) -> list[Path]:
    """JPEG and PNG files of assorted sizes, one with an EXIF rotation (sorted paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for index in range(count):
        h, w = 30 + 7 * index, 60 - 2 * index
        yy, xx = np.mgrid[0:h, 0:w]
        array = np.stack([xx * 255 // w, yy * 255 // h, rng.integers(0, 256, (h, w))], -1)
        image = Image.fromarray(array.astype(np.uint8))
        path = folder / f"img{index:02d}{'.png' if index % 3 == 1 else '.jpg'}"
        if index == 2:
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 degrees on display: decoding must honour it
            image.save(path, exif=exif.tobytes())
        else:
            image.save(path)
        paths.append(path)
    return sorted(paths)


def start_service(bundle: Path, workdir: Path, **model: object):
    """A started Service on free ports, listening on 127.0.0.1 (the caller stops it)."""
    from visionrt.exporter.triton_python import PythonModelOptions
    from visionrt.serve.server import ServerPorts
    from visionrt.serve.service import ServeConfig, Service

    config = ServeConfig(bundle, ports=ServerPorts(*free_ports()), host="127.0.0.1",
                         model=PythonModelOptions(**model), workdir=workdir,
                         ready_timeout=READY_TIMEOUT_S)
    service = Service(config)
    service.start()
    return service


def free_ports(count: int = 3) -> list[int]:
    """Ports nobody listens on now (bound to 0 and released)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for probe in sockets:
            probe.close()


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found
