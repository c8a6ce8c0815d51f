"""Security rules S1-S12 that are properties of the whole code base (source scans, versions, pins).

Behavioural checks live with their cases: S1 with A1/A2, S4 with A4, S5 with A5, S6 with A9,
S7 with B1/B2/B11, S10 with C2.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from PIL import Image, ImageFile

import visionrt
from visionrt import images

PACKAGE = Path(visionrt.__file__).resolve().parent
ROOT = PACKAGE.parent


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))]


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


# --- S1 ---------------------------------------------------------------------------------------
def test_S1_every_torch_load_passes_weights_only_true_explicitly():
    found = 0
    for path, tree in _sources():
        for call in _calls(tree):
            if _dotted(call.func).endswith("torch.load"):
                found += 1
                kw = {k.arg: k.value for k in call.keywords}
                value = kw.get("weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, \
                    f"{path}:{call.lineno}: torch.load without weights_only=True"
    assert found >= 1  # the scan looks at the real call sites


def test_S1_no_unsafe_torch_load_switches_in_the_code():
    for path, _ in _sources():
        text = path.read_text(encoding="utf-8")
        assert "weights_only=False" not in text, path
        assert "add_safe_globals" not in text, path
        assert not re.search(r"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD\s*[\]=]", text), path


# --- S2 ---------------------------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:2])


def test_S2_minimum_torch_is_pinned_and_doctor_warns_on_old_torch():
    from visionrt.cli import diagnostics

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    torch_req = next(r for r in extras["train"] if r.startswith("torch") and
                     not r.startswith("torchvision"))
    floor = re.search(r">=\s*([\d.]+)", torch_req).group(1)
    assert _version_tuple(floor) >= (2, 6), torch_req
    torch = pytest.importorskip("torch")
    assert _version_tuple(torch.__version__) >= (2, 6)

    def notes_for(version: str) -> list[str]:
        diag = diagnostics.Diagnostics(python="3", platform="p", cpu="c", cores=1,
                                       versions={"torch": version}, ort_providers={},
                                       gpus=["gpu"], backends=[])
        return diagnostics._warnings(diag, "")

    assert any("CVE-2025-32434" in n for n in notes_for("2.5.1+cu121"))
    assert any("CVE-2026-24747" in n for n in notes_for("2.8.0"))
    assert not any("CVE" in n for n in notes_for("2.14.1"))


# --- S3 (run-dir layout is checked on a real run in test_c_training.py) -----------------------
def test_S3_trainer_never_pickles_config_objects():
    for path, tree in _sources():
        if "trainer" not in path.parts:
            continue
        for call in _calls(tree):
            if _dotted(call.func).endswith("torch.save"):
                text = ast.unparse(call)
                assert "config" not in text.lower() and "args" not in text, \
                    f"{path}:{call.lineno}: {text}"


# --- S5 ---------------------------------------------------------------------------------------
def test_S5_onnx_hub_is_never_used():
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                assert "onnx.hub" not in names and module != "onnx.hub" and \
                    not (module == "onnx" and "hub" in names), path
        assert "onnx.hub" not in path.read_text(encoding="utf-8"), path


def test_S5_onnx_safety_check_needs_neither_onnx_nor_torch():
    code = ("import sys; import visionrt.runtime._onnx_safety; "
            "bad = [m for m in ('torch', 'onnx') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- S7 ---------------------------------------------------------------------------------------
def _import_everything() -> None:
    for module in pkgutil.walk_packages([str(PACKAGE)], prefix="visionrt."):
        if module.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:
            pass  # optional backends (tensorrt, openvino) that are not installed here


def test_S7_decoder_guards_stay_on_after_importing_every_module():
    pixels = Image.MAX_IMAGE_PIXELS
    _import_everything()
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS == pixels
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for path, _ in _sources():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"MAX_IMAGE_PIXELS\s*=", text), path
        assert not re.search(r"LOAD_TRUNCATED_IMAGES\s*=\s*True", text), path


def test_S7_format_allowlist_excludes_risky_decoders():
    for fmt in ("EPS", "FITS", "PSD", "ICNS", "BLP", "ICO", "PDF", "WMF", "MPEG", "GRIB"):
        assert fmt not in images.ALLOWED_FORMATS
    assert set(images.ALLOWED_FORMATS) <= {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"}


def test_S7_every_pil_open_in_the_package_passes_formats():
    for path, tree in _sources():
        for call in _calls(tree):
            if _dotted(call.func) in ("Image.open", "PIL.Image.open"):
                assert any(k.arg == "formats" for k in call.keywords), \
                    f"{path}:{call.lineno}: Image.open without formats= (use images.load_image)"


# --- S8 ---------------------------------------------------------------------------------------
def test_S8_pillow_is_patched_for_the_formats_we_decode():
    import PIL

    assert _version_tuple(PIL.__version__) >= (10, 3)  # TIFF (9.3), BLP/ICNS/ICO (8.1.1) fixes
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pillow = next(r for r in project["dependencies"] if r.lower().startswith("pillow"))
    assert _version_tuple(re.search(r">=\s*([\d.]+)", pillow).group(1)) >= (10, 3)


# --- S9 ---------------------------------------------------------------------------------------
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "os.system", "os.popen",
                   "pickle.load", "pickle.loads", "marshal.loads", "yaml.load",
                   "ImageMath.eval", "ImageMath.unsafe_eval", "ImageMath.lambda_eval"}


def test_S9_no_eval_like_apis_on_user_input():
    for path, tree in _sources():
        for call in _calls(tree):
            name = _dotted(call.func)
            assert name not in FORBIDDEN_CALLS, f"{path}:{call.lineno}: {name}()"
            if name.startswith("subprocess."):
                shell = [k for k in call.keywords if k.arg == "shell"]
                assert not shell or not (isinstance(shell[0].value, ast.Constant)
                                         and shell[0].value.value), f"{path}:{call.lineno}"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "PIL":
                assert "ImageMath" not in [a.name for a in node.names], path


# --- S11 --------------------------------------------------------------------------------------
def test_S11_image_metadata_never_leaves_the_decoder():
    import io

    buf = io.BytesIO()
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("Comment", "__import__('os').system('touch /tmp/x') <script>alert(1)</script>")
    Image.new("RGB", (4, 4)).save(buf, format="PNG", pnginfo=info)
    out = images.load_image(buf.getvalue())
    assert type(out).__module__ == "numpy" and out.shape == (4, 4, 3)


def test_S11_images_visionrt_writes_carry_no_metadata(tmp_path):
    from visionrt.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "d", classes=2, per_class=2, size=16, seed=0)
    for path in images.list_images(root):
        with Image.open(path, formats=list(images.ALLOWED_FORMATS)) as image:
            assert not image.getexif(), path
            meta = {k for k in image.info if k not in ("dpi", "jfif", "jfif_version",
                                                       "jfif_unit", "jfif_density")}
            assert not meta - {"progressive", "progression", "adobe", "adobe_transform"}, \
                (path, image.info)


def test_S11_manifest_is_data_not_code(tmp_path):
    import json

    from visionrt.bundle import MANIFEST, load_bundle
    from visionrt.errors import VisionRTError

    (tmp_path / MANIFEST).write_text(json.dumps({
        "schema_version": 1, "spec": "__import__('os').system('touch PWNED')",
        "artifacts": []}))
    with pytest.raises(VisionRTError):
        load_bundle(tmp_path)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


# --- S12 --------------------------------------------------------------------------------------
def test_S12_doctor_reports_the_security_relevant_versions():
    from visionrt.cli import diagnostics

    for name in ("torch", "torchvision", "Pillow", "onnx", "onnxruntime", "tensorrt",
                 "safetensors"):
        assert name in diagnostics.PACKAGES
    versions = diagnostics.collect(check_providers=False).versions
    assert versions["Pillow"] and versions["onnxruntime"]


def test_S5_exporter_writes_single_file_onnx():
    # torch.onnx.export(..., external_data=False) and onnx.save_model(..., save_as_external_data=
    # False): an exported artifact never references data outside itself.
    checked = 0
    for path, tree in _sources():
        if "exporter" not in path.parts:
            continue
        for call in _calls(tree):
            name = _dotted(call.func)
            keywords = {k.arg: k.value for k in call.keywords}
            if name.endswith("onnx.export"):
                checked += 1
                value = keywords.get("external_data")
                assert isinstance(value, ast.Constant) and value.value is False, \
                    f"{path}:{call.lineno}"
            if name in ("onnx.save", "onnx.save_model"):
                checked += 1
                value = keywords.get("save_as_external_data")
                assert isinstance(value, ast.Constant) and value.value is False, \
                    f"{path}:{call.lineno}"
    assert checked >= 2


def test_S12_every_manifest_records_the_resolved_versions():
    pytest.importorskip("torch")
    from visionrt.exporter import pipeline

    versions = pipeline._source_record({"kind": "run"})["versions"]
    for name in ("torch", "onnx", "onnxruntime"):
        assert versions.get(name), name
