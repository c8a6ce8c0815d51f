"""The eval transform is the runtime's; broken images are skipped, reported and bounded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from visionrt.errors import DataValidationError
from visionrt.images import list_images, normalize, preprocess
from visionrt.trainer.data import BadImageLog, ImageDataset, Normalizer, collate
from visionrt.trainer.models import spec_for
from visionrt.trainer.samples import Sample, scan_imagefolder


def test_eval_transform_is_pixel_identical_to_runtime(tiny_imagefolder: Path) -> None:
    spec = spec_for("tf_efficientnet_lite0", ["a", "b", "c"])
    labels, samples = scan_imagefolder(tiny_imagefolder)
    dataset = ImageDataset(samples[:4], spec)
    batch = collate([dataset[i] for i in range(4)])
    expected = np.stack([preprocess(s.path, spec) for s in samples[:4]])
    assert torch.equal(batch.images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    ours = Normalizer(spec, channels_last=False)(batch.images).numpy()
    np.testing.assert_array_equal(ours, normalize(expected, spec))


def test_broken_images_are_dropped_from_the_batch(tmp_path: Path) -> None:
    spec = spec_for("resnet18", ["a", "b"], img_size=32)
    good = tmp_path / "good.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (10, 20, 30)).save(good)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    samples = [Sample(good, 0), Sample(truncated, 1), Sample(empty, 1), Sample(good, 1)]
    batch = collate([ImageDataset(samples, spec)[i] for i in range(4)])
    assert len(batch) == 2 and batch.indices.tolist() == [0, 3]
    assert [index for index, _ in batch.bad] == [1, 2]
    log = BadImageLog(total=100, max_fraction=0.05)
    log.record(samples, batch.bad)
    assert [Path(p).name for p, _ in log.items()] == ["empty.jpg", "trunc.png"]
    with pytest.raises(DataValidationError, match="2 of 10 images are unreadable"):
        BadImageLog(total=10, max_fraction=0.1).record(samples, batch.bad)
    with pytest.raises(DataValidationError, match="trunc.png"):
        BadImageLog(total=100, max_fraction=1.0, policy="fail").record(samples, batch.bad)


def test_all_bad_batch_is_empty_not_an_error(tmp_path: Path) -> None:
    spec = spec_for("resnet18", ["a", "b"], img_size=32)
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    batch = collate([ImageDataset([Sample(bad, 0)], spec)[0]])
    assert len(batch) == 0 and len(batch.bad) == 1


def test_training_skips_and_reports_bad_images(tiny_imagefolder: Path, tmp_path: Path,
                                               tiny_config) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_imagefolder, data)
    victim = list_images(data)[0]
    victim.write_bytes(victim.read_bytes()[:50])
    from visionrt.trainer.loop import train

    result = train(tiny_config(data=data, epochs=1, max_bad_fraction=0.1))
    assert [Path(p).name for p, _ in result.bad_images] == [victim.name]
    rows = (result.run_dir / "bad_images.csv").read_text().splitlines()
    assert rows[0] == "path,error" and len(rows) == 2
    assert rows[1].startswith(f"{victim},image file is truncated")  # the path once
    assert result.metrics["bad_images"] == 1
    with pytest.raises(DataValidationError, match="max-bad-fraction"):
        train(tiny_config(data=data, epochs=1, max_bad_fraction=0.0, out=tmp_path / "r2"))


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not found"):
        scan_imagefolder(tmp_path / "nope")
    (tmp_path / "only").mkdir()
    with pytest.raises(DataValidationError, match="without images"):
        scan_imagefolder(tmp_path)
