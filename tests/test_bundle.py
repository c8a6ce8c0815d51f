import json

import pytest

from visionrt.bundle import (
    MANIFEST,
    TensorInfo,
    describe_artifact,
    load_bundle,
    staging_dir,
    write_manifest,
)
from visionrt.errors import BundleError, ConfigError, ModelTamperedError
from visionrt.spec import ModelSpec

SPEC = ModelSpec(arch="resnet18", labels=("a", "b", "c"))


def write_bundle(out, payload=b"onnx-bytes"):
    with staging_dir(out) as tmp:
        model = tmp / "model.fp32.onnx"
        model.write_bytes(payload)
        artifact = describe_artifact(
            model, format="onnx", precision="fp32",
            inputs=(TensorInfo("image", "uint8", ("batch", 224, 224, 3)),),
            outputs=(TensorInfo("logits", "float32", ("batch", 3)),),
            batch={"min": 1, "max": 8},
            parity={"reference": "torch", "samples": 4, "max_abs_error": 1e-6,
                    "top1_agreement": 1.0},
        )
        write_manifest(tmp, SPEC, [artifact], calibration=None, source={"run": "r"})
    return out


def test_round_trip_and_digest(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path / "b"))
    assert bundle.spec == SPEC
    (artifact,) = bundle.artifacts
    assert artifact.max_batch == 8
    assert bundle.verified_path(artifact).read_bytes() == b"onnx-bytes"
    data = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert data["schema_version"] == 1
    assert data["artifacts"][0]["inputs"][0] == {"name": "image", "dtype": "uint8",
                                                  "shape": ["batch", 224, 224, 3]}
    assert bundle.find(precision="fp32") == [artifact]
    assert bundle.find(precision="int8") == []


def test_tampered_artifact_is_refused_before_use(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path / "b"))
    (tmp_path / "b" / "model.fp32.onnx").write_bytes(b"evil-bytes")
    with pytest.raises(ModelTamperedError, match="does not match"):
        bundle.verified_path(bundle.artifacts[0])


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "b"
    with pytest.raises(RuntimeError), staging_dir(out) as tmp:
        (tmp / "half.onnx").write_bytes(b"x")
        raise RuntimeError("export failed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    write_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(tmp_path / "b")


@pytest.mark.parametrize(
    "mutate, error, fragment",
    [
        (lambda m: m.update(schema_version=99), BundleError, "schema_version"),
        (lambda m: m.pop("artifacts"), BundleError, "artifacts"),
        (lambda m: m["artifacts"][0].update(file="../../etc/passwd"), BundleError, "outside"),
        (lambda m: m["artifacts"][0].update(file="/etc/passwd"), BundleError, "outside"),
        (lambda m: m["artifacts"][0].pop("sha256"), BundleError, "malformed"),
        (lambda m: m["spec"].update(input_layout="HWC"), ConfigError, "input_layout"),
    ],
)
def test_malformed_manifests_are_refused(tmp_path, mutate, error, fragment):
    out = write_bundle(tmp_path / "b")
    data = json.loads((out / MANIFEST).read_text())
    mutate(data)
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(error, match=fragment):
        load_bundle(out)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing")
    with pytest.raises(BundleError, match="not a visionrt bundle"):
        load_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text("{broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)
