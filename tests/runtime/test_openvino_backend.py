"""The OpenVINO backend through Classifier: static-shape models per batch size, throughput mode's
chunks, and the compiled-model cache (written, reused, unwritable, pruned to its limit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from runtime_helpers import random_images

from visionrt.runtime.classifier import Classifier


def test_openvino_batch_sizes_get_static_models_with_identical_results(tiny_bundle: Path) -> None:
    from visionrt.runtime import openvino as ov_backend

    images = np.stack(random_images(8, seed=11))
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32") as clf:
        assert clf.info().get("static_batches", []) == []
        batched = clf(images[:3])  # compiles the static batch-3 model on first use
        assert clf.info()["static_batches"] == [3]
        single = clf(images[:1])
        assert clf.info()["static_batches"] == [1, 3]
        again = clf(images[:1])
        for n in (2, 4, 5, 6):
            clf(images[:n])
        assert len(clf.info()["static_batches"]) == ov_backend._MAX_STATIC
        assert 6 not in clf.info()["static_batches"]  # over the limit: the dynamic model
        dynamic = clf(images[:6])
    np.testing.assert_allclose(single[0], batched[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dynamic[:3], batched, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(single, again)


def test_openvino_throughput_mode_runs_chunks_on_static_models(tiny_bundle: Path) -> None:
    images = np.stack(random_images(7, seed=13))
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32") as clf:
        want = clf(images)
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32",
                         performance="throughput") as clf:
        runs = [clf(images) for _ in range(3)]  # chunks of unequal sizes when 7 is split
        static = clf.info()["static_batches"]
        requests = clf.info()["infer_requests"]
    for got in runs:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if requests > 1:
        assert static and all(n < 7 for n in static)


def test_openvino_compile_cache_is_written_then_reused(tiny_bundle: Path, tmp_path: Path) -> None:
    images = np.stack(random_images(2, seed=14))
    states, outputs = [], []
    for _ in range(2):
        with Classifier.load(tiny_bundle, backend="openvino", precision="fp32",
                             cache_dir=tmp_path) as clf:
            states.append(clf.info()["compile_cache"])
            outputs.append(clf(images))
    assert states == ["miss", "hit"]
    blobs = list((tmp_path / "openvino").glob("*.blob"))
    assert blobs
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
    for blob in blobs:  # a corrupt cache entry is recompiled, never fatal
        blob.chmod(0o644)
        blob.write_bytes(b"not a compiled model")
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32",
                         cache_dir=tmp_path) as clf:
        assert clf.info()["compile_cache"] == "miss"
        np.testing.assert_allclose(clf(images), outputs[0], rtol=1e-6, atol=1e-6)
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32", cache_dir=tmp_path,
                         compile_cache=False) as clf:
        assert clf.info()["compile_cache"] == "off"


def test_unwritable_compile_cache_is_skipped_not_fatal(tiny_bundle: Path, tmp_path: Path,
                                                       caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32",
                         cache_dir=blocker) as clf:
        assert clf.info()["compile_cache"] == "off"
        assert clf(np.stack(random_images(1, seed=15))).shape[0] == 1
    assert "compile cache off" in caplog.text


def test_compile_cache_is_pruned_oldest_first_to_its_limit(tiny_bundle: Path,
                                                          tmp_path: Path) -> None:
    import os

    cache = tmp_path / "openvino"
    cache.mkdir()
    for age, name in enumerate(("old", "mid", "new")):
        blob = cache / f"{name}.blob"
        blob.write_bytes(b"x" * 600_000)
        os.utime(blob, (1_000_000 + age, 1_000_000 + age))
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32", cache_dir=tmp_path,
                         cache_max_mb=1):  # room for one of the three
        pass
    left = {p.name for p in cache.glob("*.blob")}
    assert "old.blob" not in left and "mid.blob" not in left
    assert "new.blob" in left  # pruned before the load's own compile, newest kept
