"""Finding the tritonserver of the nvidia-pytriton wheel: every refusal names its reason (a fake
wheel tree stands in for the real one, so these run everywhere)."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

import pytest

from visionrt.errors import BackendUnavailableError, MissingDependencyError
from visionrt.serve import install


def _fake_wheel(root: Path, stub_versions: tuple[str, ...]) -> Path:
    site = root / "site-packages"
    server = site / "pytriton" / "tritonserver"
    for path in (server / "bin" / "tritonserver",
                 server / "backends" / "python" / "libtriton_python.so",
                 server / "backends" / "python" / "triton_python_backend_utils.py",
                 *[server / "python_backend_stubs" / v / "triton_python_backend_stub"
                   for v in stub_versions]):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (site / "nvidia_pytriton.libs").mkdir()
    return site / "pytriton"


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    def use(*stub_versions: str) -> Path:
        package = _fake_wheel(tmp_path, stub_versions)
        spec = importlib.machinery.ModuleSpec("pytriton", None, is_package=True)
        spec.submodule_search_locations = [str(package)]
        monkeypatch.setattr(install.importlib.util, "find_spec",
                            lambda name: spec if name == "pytriton" else None)
        monkeypatch.setattr(install, "check_numpy", lambda: None)
        monkeypatch.setattr(install.sys, "platform", "linux")
        monkeypatch.setattr(install.platform, "machine", lambda: "x86_64")
        return package
    return use


def test_finds_binary_libraries_backend_and_this_pythons_stub(fake_wheel):
    this = f"{sys.version_info.major}.{sys.version_info.minor}"
    package = fake_wheel("3.8", this)
    found = install.find_triton()
    assert found.binary == package / "tritonserver" / "bin" / "tritonserver"
    assert found.stub.parent.name == this
    assert found.libraries == package.parent / "nvidia_pytriton.libs"
    assert str(found.libraries) in found.library_path()


def test_no_stub_for_this_python_names_the_shipped_ones(fake_wheel):
    fake_wheel("3.8", "3.9")
    with pytest.raises(BackendUnavailableError, match=r"no python backend stub for Python .* "
                                                      r"\(it ships 3\.8, 3\.9\)"):
        install.find_triton()


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(install.sys, "platform", "linux")
    monkeypatch.setattr(install.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'visionrt\[serve\]'"):
        install.find_triton()


def test_other_platforms_are_refused_with_the_alternative(monkeypatch):
    monkeypatch.setattr(install.sys, "platform", "darwin")
    with pytest.raises(BackendUnavailableError, match="Linux x86_64 only.*NGC Triton container"):
        install.find_triton()


def test_numpy_2_is_refused(monkeypatch):
    import numpy

    monkeypatch.setattr(numpy, "__version__", "2.1.3")
    with pytest.raises(BackendUnavailableError, match=r"numpy 2\.1\.3.*numpy < 2"):
        install.check_numpy()
    monkeypatch.setattr(numpy, "__version__", "1.26.4")
    install.check_numpy()
