"""OpenVINO on CPUs with and without FP16, BF16 and VNNI: every branch through the capability seam
(``openvino.cpu_capabilities``), and the real path of whatever CPU runs the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionrt.errors import BackendUnavailableError
from visionrt.runtime import openvino
from visionrt.runtime.base import BackendConfig, load_backend
from visionrt.runtime.capability import precision_unavailable_reason
from visionrt.runtime.classifier import Classifier

pytest.importorskip("openvino")

INTEL_AMX = frozenset({"FP32", "BF16", "FP16", "INT8", "VNNI"})
AMD_ZEN4 = frozenset({"FP32", "BF16", "INT8", "VNNI"})  # AVX-512 BF16 + VNNI, no AVX512-FP16
OLD_XEON = frozenset({"FP32", "INT8"})  # AVX-512 without BF16 or VNNI


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend to be a CPU with the given OpenVINO capabilities."""
    def use(capabilities: frozenset[str]) -> None:
        monkeypatch.setattr(openvino, "cpu_capabilities", lambda: capabilities)
    return use


@pytest.mark.parametrize("capabilities, precision, gap", [
    (INTEL_AMX, "fp16", None),
    (INTEL_AMX, "bf16", None),
    (AMD_ZEN4, "fp16", "this CPU executes f16 as bf16"),
    (AMD_ZEN4, "bf16", None),
    (OLD_XEON, "fp16", "this CPU executes f16 as f32"),
    (OLD_XEON, "bf16", "this CPU executes bf16 as f32"),
    (OLD_XEON, "fp32", None),
    (OLD_XEON, "int8", None),  # int8 executes everywhere, VNNI or not
])
def test_precision_gap_follows_the_capabilities(cpu, capabilities, precision, gap) -> None:
    cpu(capabilities)
    assert openvino.precision_gap(precision) == gap
    assert precision_unavailable_reason("openvino", precision, "cpu") == gap
    assert precision_unavailable_reason("onnxruntime", precision, "cpu") is None or \
        precision == "bf16"


def test_int8_note_only_without_vnni(cpu) -> None:
    cpu(AMD_ZEN4)
    assert openvino.int8_note() is None
    cpu(OLD_XEON)
    assert "without VNNI" in openvino.int8_note()


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_load_without_the_capability_fails_naming_the_flag(cpu, tiny_bundle: Path,
                                                           precision: str) -> None:
    cpu(OLD_XEON)
    with pytest.raises(BackendUnavailableError, match="--precision fp32") as caught:
        load_backend("openvino", tiny_bundle / "model.fp32.onnx", None,
                     BackendConfig(precision=precision))
    assert "as f32" in str(caught.value) and "precision='" not in str(caught.value)


def test_int8_without_vnni_runs_and_says_so(cpu, tiny_bundle: Path) -> None:
    cpu(OLD_XEON)
    with Classifier.load(tiny_bundle, backend="openvino", precision="int8") as clf:
        info = clf.info()
    assert info["precision"] == "int8" and "without VNNI" in info["cpu_note"]


@pytest.mark.parametrize("precision, hint", [("fp16", "f16"), ("bf16", "bf16")])
def test_this_cpu_takes_the_path_its_capabilities_name(tiny_bundle: Path, precision: str,
                                                       hint: str) -> None:
    """No seam: on whatever CPU runs this, OpenVINO either executes the precision (and reports it)
    or refuses it with the flag to use, exactly as the capability query predicts."""
    gap = openvino.precision_gap(precision)
    model = tiny_bundle / "model.fp32.onnx"
    if gap is None:
        with load_backend("openvino", model, None, BackendConfig(precision=precision)) as backend:
            info = backend.info()
        assert (info.precision, info.details["inference_precision_hint"]) == (precision, hint)
    else:
        with pytest.raises(BackendUnavailableError, match=f"{gap}.*--precision fp32"):
            load_backend("openvino", model, None, BackendConfig(precision=precision))


def test_capabilities_are_the_plugins_plus_vnni() -> None:
    capabilities = openvino.cpu_capabilities()
    core = openvino._shared_core()
    plugin = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    assert plugin <= capabilities and capabilities - plugin <= {"VNNI"}
    assert ("VNNI" in capabilities) == bool(
        openvino._cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def test_read_back_precision_stays_the_authority(cpu, monkeypatch, tiny_bundle: Path) -> None:
    """A CPU whose plugin claims FP16 yet compiles f16 as bf16 is still refused at load."""
    cpu(INTEL_AMX)
    core = openvino._shared_core()

    class ClaimsBf16:
        def __init__(self, compiled) -> None:
            self.compiled = compiled

        def get_property(self, name):
            if name == "INFERENCE_PRECISION_HINT":
                return type("T", (), {"get_type_name": staticmethod(lambda: "bf16")})()
            return self.compiled.get_property(name)

    class Core:
        def read_model(self, path):
            return core.read_model(path)

        def compile_model(self, model, device, properties):
            return ClaimsBf16(core.compile_model(model, device, properties))

    monkeypatch.setattr(openvino, "_shared_core", lambda: Core())
    with pytest.raises(BackendUnavailableError, match="compiled model.fp32.onnx for bf16.*"
                       "--precision fp32"):
        load_backend("openvino", tiny_bundle / "model.fp32.onnx", None,
                     BackendConfig(precision="fp16"))
