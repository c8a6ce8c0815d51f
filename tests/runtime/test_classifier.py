"""Classifier: loading rules, predict over mixed inputs, validation, batching equivalence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from runtime_helpers import SIZE, FakeBackend, random_images, tiny_spec

from visionrt.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    InputValidationError,
    ModelFileError,
    ModelTamperedError,
    ProviderUnavailableError,
    ResourceExhaustedError,
    UnsafeModelError,
)
from visionrt.images import preprocess
from visionrt.runtime.classifier import Classifier, Prediction, PredictionError


@pytest.fixture(scope="module")
def ort_fp32(tiny_bundle: Path):
    with Classifier.load(tiny_bundle, backend="onnxruntime", precision="fp32") as clf:
        yield clf


# -- loading rules ---------------------------------------------------------------------------
def test_auto_picks_verified_int8_and_says_why(tiny_bundle: Path) -> None:
    with Classifier.load(tiny_bundle) as clf:
        info = clf.info()
    assert info["device"] == "cpu"
    assert info["precision"] == "int8" and info["file"] == "model.int8.onnx"
    assert info["backend"] == "openvino"  # measured faster than ONNX Runtime here
    assert "precision int8" in info["reason"] and "backend openvino" in info["reason"]


def test_auto_precision_skips_int8_below_parity_threshold(bundle_copy: Path) -> None:
    manifest = bundle_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    for artifact in data["artifacts"]:
        if artifact["precision"] == "int8":
            artifact["parity"]["top1_agreement"] = 0.95
    manifest.write_text(json.dumps(data))
    with Classifier.load(bundle_copy, backend="onnxruntime") as clf:
        assert clf.info()["precision"] == "fp32"
        assert "not verified accurate" in clf.info()["reason"]
    with Classifier.load(bundle_copy, backend="onnxruntime", precision="int8") as clf:
        assert clf.info()["precision"] == "int8"  # explicit requests are honoured


def test_auto_applies_the_export_rule(bundle_copy: Path) -> None:
    """int8 at top-1 0.98 passes export (>= 0.97), so auto loads it too (visionrt.gate)."""
    manifest = bundle_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    int8 = next(a for a in data["artifacts"] if a["precision"] == "int8")
    int8["parity"]["top1_agreement"] = 0.98
    manifest.write_text(json.dumps(data))
    with Classifier.load(bundle_copy, backend="onnxruntime") as clf:
        assert clf.info()["precision"] == "int8"
        assert "0.980" in clf.info()["reason"]


def test_auto_never_picks_a_backend_skipped_at_export(bundle_copy: Path) -> None:
    manifest = bundle_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    int8 = next(a for a in data["artifacts"] if a["precision"] == "int8")
    int8["parity"]["skipped_backends"] = [{"backend": "openvino", "skipped": "test gap"}]
    manifest.write_text(json.dumps(data))
    with Classifier.load(bundle_copy) as clf:
        info = clf.info()
    assert (info["backend"], info["precision"]) != ("openvino", "int8")
    assert "model.int8.onnx: not verified accurate (openvino check skipped at export: " \
           "test gap)" in info["reason"]


def test_openvino_fp32_really_runs_fp32(tiny_bundle: Path) -> None:
    # bf16 and fp16 (which depend on the CPU): tests/runtime/test_openvino_capabilities.py
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32") as clf:
        info = clf.info()
        assert (info["precision"], info["inference_precision_hint"]) == ("fp32", "f32")


def test_onnxruntime_refuses_bf16_instead_of_running_fp32(tiny_bundle: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="bf16"):
        Classifier.load(tiny_bundle, backend="onnxruntime", precision="bf16")


@pytest.mark.parametrize("kwargs, error, text", [
    ({"precision": "fp16"}, ConfigError, "no artifact fits"),
    ({"backend": "tensorrt"}, BackendUnavailableError, "tensorrt"),
    ({"device": "cuda"}, BackendUnavailableError, "cuda"),
    ({"backend": "nope"}, ConfigError, "unknown; expected auto or one of onnxruntime, "),
    ({"precision": "fp64"}, ConfigError, "unknown; expected auto or one of fp32, fp16, "),
    ({"max_batch": 64}, ConfigError, "exceeds"),
])
def test_explicit_requests_fail_loudly(tiny_bundle: Path, kwargs, error, text) -> None:
    with pytest.raises(error, match=text):
        Classifier.load(tiny_bundle, **kwargs)


def test_tampered_artifact_is_refused(bundle_copy: Path) -> None:
    with open(bundle_copy / "model.fp32.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelTamperedError, match="sha256"):
        Classifier.load(bundle_copy, backend="onnxruntime", precision="fp32")


def test_manifest_io_mismatch_names_the_tensor(bundle_copy: Path) -> None:
    manifest = bundle_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    for artifact in data["artifacts"]:
        artifact["inputs"][0]["name"] = "input"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="'input'"):
        Classifier.load(bundle_copy, backend="onnxruntime", precision="fp32")


def test_bare_onnx_uses_its_metadata(tiny_bundle: Path, tmp_path: Path, ort_fp32) -> None:
    bare = Path(shutil.copy(tiny_bundle / "model.fp32.onnx", tmp_path / "m.onnx"))
    arrays = random_images(3)
    with Classifier.load(bare, backend="onnxruntime") as clf:
        assert clf.labels == tiny_spec().labels
        np.testing.assert_allclose(clf(np.stack(arrays)), ort_fp32(np.stack(arrays)), atol=1e-6)


def test_bundle_file_path_loads_that_artifact(bundle_copy: Path) -> None:
    with Classifier.load(bundle_copy / "model.fp32.onnx", backend="onnxruntime") as clf:
        assert clf.info()["file"] == "model.fp32.onnx"
    manifest = bundle_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["artifacts"][1]["parity"]["passed"] = False
    manifest.write_text(json.dumps(data))
    with Classifier.load(bundle_copy / "model.int8.onnx", backend="onnxruntime") as clf:
        assert clf.info()["file"] == "model.int8.onnx"  # named explicitly: used as it is
    with Classifier.load(bundle_copy, backend="onnxruntime") as clf:
        assert clf.info()["file"] == "model.fp32.onnx"  # auto skips a failed parity gate


def test_files_without_spec_or_bundle_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model.engine").write_bytes(b"plan")
    with pytest.raises(BundleError, match="engine"):
        Classifier.load(tmp_path / "model.engine")
    with pytest.raises(BundleError, match="not found"):
        Classifier.load(tmp_path / "missing")


def test_bare_onnx_without_spec_metadata(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(BundleError, match="visionrt.spec"):
        Classifier.load(tmp_path / "plain.onnx")


def test_external_data_outside_the_model_dir_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    weight = onnx.helper.make_tensor("w", 1, [1], [1.0])
    weight.ClearField("float_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../etc/passwd")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])], [weight])
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, {"visionrt.spec": tiny_spec().to_json()})
    (tmp_path / "evil.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="outside"):
        Classifier.load(tmp_path / "evil.onnx", backend="onnxruntime")


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_onnxruntime_silent_cpu_fallback_is_an_error(tiny_bundle: Path) -> None:
    from visionrt.runtime.base import BackendConfig
    from visionrt.runtime.ort import OrtBackend

    # Asking this CPU-only build for CUDA makes ORT fall back to CPU with only a warning.
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        OrtBackend(tiny_bundle / "model.fp32.onnx", None, BackendConfig(device="cuda:0"),
                   provider="cuda")


# -- predict ---------------------------------------------------------------------------------
def test_predict_mixed_inputs_reports_each_bad_item(ort_fp32, image_dir: Path,
                                                    tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((image_dir / "img0.jpg").read_bytes()[:200])
    empty = tmp_path / "empty"
    empty.mkdir()
    pil = Image.open(image_dir / "img1.png")
    inputs = [str(image_dir / "img0.jpg"), tmp_path / "missing.jpg", pil, tmp_path / "notes.txt",
              broken, empty, str(tmp_path / "*.webp"), np.zeros((3, 20, 20), np.uint8),
              np.zeros((20, 20, 3), np.float64), 42, random_images(1)[0]]
    results = ort_fp32.predict(inputs, top_k=2, batch_size=3)
    assert len(results) == len(inputs)
    ok = [isinstance(r, Prediction) for r in results]
    assert ok == [True, False, True, False, False, False, False, False, False, False, True]
    assert "not found" in results[1].error and "truncated" in results[4].error.lower()
    assert "CHW" in results[7].error and "float64" in results[8].error
    assert isinstance(results[9], PredictionError) and "int" in results[9].error
    with pytest.raises(InputValidationError):
        ort_fp32.predict(inputs[7], errors="raise")


def test_predict_expands_folders_and_globs_in_order(ort_fp32, image_dir: Path) -> None:
    results = ort_fp32.predict([image_dir, str(image_dir / "*.png")], top_k=3)
    names = [r.input for r in results]
    files = sorted(str(p) for p in image_dir.iterdir())
    assert names == files + sorted(str(p) for p in image_dir.glob("*.png"))
    for r in results:
        scores = [t.score for t in r.top_k]
        assert r.label == r.top_k[0].label and scores == sorted(scores, reverse=True)
        assert len(r.top_k) == 3 and abs(sum(scores) - 1) < 1e-4  # 3 classes: all of them


def test_predict_proba_matches_call_on_preprocessed(ort_fp32, image_dir: Path) -> None:
    files = sorted(image_dir.iterdir())
    probs = ort_fp32.predict_proba(files)
    batch = np.stack([preprocess(f, ort_fp32.spec) for f in files])
    np.testing.assert_allclose(probs, ort_fp32(batch), atol=1e-6)
    report = ort_fp32.predict_proba([files[0], "missing.png"], errors="report")
    assert np.isnan(report[1]).all() and not np.isnan(report[0]).any()


@pytest.mark.parametrize("batch, text", [
    (np.zeros((2, SIZE, SIZE, 3), np.float64), "float64"),
    (np.zeros((2, 3, SIZE, SIZE), np.uint8), "2x3x32x32"),
    (np.zeros((0, SIZE, SIZE, 3), np.uint8), "N >= 1"),
    ([np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((SIZE, SIZE, 4), np.uint8)], "item 1"),
    ([np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], "item 1"),
])
def test_call_validates_the_batch(ort_fp32, batch, text) -> None:
    with pytest.raises(InputValidationError, match=text):
        ort_fp32(batch)


def test_sigmoid_head_gives_two_probabilities(binary_bundle: Path) -> None:
    with Classifier.load(binary_bundle, backend="onnxruntime") as clf:
        probs = clf(np.stack(random_images(4)))
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_closed_classifier_refuses_work(tiny_bundle: Path) -> None:
    from visionrt.errors import RuntimeClosedError

    clf = Classifier.load(tiny_bundle, backend="onnxruntime", precision="fp32")
    clf.close()
    clf.close()  # idempotent
    with pytest.raises(RuntimeClosedError):
        clf(np.stack(random_images(1)))


# -- batching: split above max, pad to buckets, identical to one-at-a-time --------------------
def test_split_and_bucket_padding() -> None:
    backend = FakeBackend(max_batch=8, buckets=(1, 2, 4, 8))
    clf = Classifier(backend, tiny_spec())
    arrays = random_images(11)
    together = clf(np.stack(arrays))
    assert backend.calls == [8, 4]  # 11 = 8 + 3, the 3 padded to the 4-bucket
    single = np.concatenate([clf(a[None]) for a in arrays])
    np.testing.assert_array_equal(together, single)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), batch_size=st.integers(1, 24), height=st.integers(8, 80),
       width=st.integers(8, 80), seed=st.integers(0, 1000))
def test_batched_equals_one_at_a_time(ort_fp32, n, batch_size, height, width, seed) -> None:
    arrays = random_images(n, seed, (height, width))
    batched = ort_fp32.predict_proba(arrays, batch_size=batch_size)
    single = np.concatenate([ort_fp32.predict_proba([a]) for a in arrays])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    assert (batched.argmax(1) == single.argmax(1)).all()


class _TightMemory(FakeBackend):
    """Runs out of device memory above ``limit`` rows."""

    def __init__(self, limit: int) -> None:
        super().__init__(max_batch=8)
        self.limit = limit

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] > self.limit:
            raise ResourceExhaustedError(f"out of memory at {batch.shape[0]}")
        return super().infer(batch)


def test_out_of_memory_batch_is_halved_once() -> None:
    arrays = np.stack(random_images(8))
    backend = _TightMemory(limit=4)
    clf = Classifier(backend, tiny_spec())
    np.testing.assert_array_equal(clf(arrays), np.concatenate([clf(a[None]) for a in arrays]))
    assert backend.calls[:2] == [4, 4]
    with pytest.raises(ResourceExhaustedError):
        Classifier(_TightMemory(limit=2), tiny_spec())(arrays)  # halves still fail: no loop


def test_decoding_of_the_next_batch_overlaps_inference(monkeypatch, tmp_path: Path) -> None:
    import time

    import visionrt.runtime.classifier as classifier_module

    events: list[str] = []
    real = classifier_module.preprocess

    def recording_preprocess(source, spec):
        events.append(f"decode {source.name}")
        return real(source, spec)

    class Slow(FakeBackend):
        def infer(self, batch: np.ndarray) -> np.ndarray:
            events.append("infer start")
            time.sleep(0.2)
            events.append("infer end")
            return super().infer(batch)

    files = []
    for i, array in enumerate(random_images(4)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(array).save(files[-1])
    monkeypatch.setattr(classifier_module, "preprocess", recording_preprocess)
    with Classifier(Slow(max_batch=2), tiny_spec()) as clf:
        assert len(clf.predict(files, batch_size=2)) == 4
    first_end = events.index("infer end")
    assert events.index("decode 2.png") < first_end and events.index("decode 3.png") < first_end


def test_openvino_throughput_mode_splits_across_async_requests(tiny_bundle: Path,
                                                               ort_fp32) -> None:
    batch = np.stack(random_images(13, seed=5))
    with Classifier.load(tiny_bundle, backend="openvino", precision="fp32",
                         performance="throughput") as clf:
        assert clf.info()["performance_hint"] == "throughput"
        np.testing.assert_allclose(clf(batch), ort_fp32(batch), atol=1e-5)


def test_auto_device_falls_back_to_cpu_when_nothing_runs_on_the_gpu(tiny_bundle: Path,
                                                                     monkeypatch) -> None:
    from visionrt.runtime import _select

    monkeypatch.setattr(_select, "resolve_device", lambda device, backend: ("cuda:0", None))
    with Classifier.load(tiny_bundle, backend="onnxruntime", precision="fp32") as clf:
        assert clf.info()["device"] == "cpu"
        assert "device auto: cuda:0 skipped (backend 'onnxruntime' cannot run on cuda:0" in \
            clf.info()["reason"]  # the GPU's error is kept, not dropped
    with pytest.raises(BackendUnavailableError):  # an explicit device is never changed
        Classifier.load(tiny_bundle, backend="onnxruntime", device="cuda")
