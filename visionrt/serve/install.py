"""Find the Triton Inference Server shipped in the PyPI wheel ``nvidia-pytriton``.

The wheel holds the ``tritonserver`` binary, its shared libraries (``nvidia_pytriton.libs``), the
python backend and one backend stub per Python version. Nothing of PyTriton's own Python API is
used: visionrt runs the plain binary on a model repository.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from visionrt.errors import BackendUnavailableError, MissingDependencyError

SERVE_HINT = "install it with: pip install 'visionrt[serve]'"


@dataclass(frozen=True)
class TritonInstall:
    """Paths of one tritonserver installation."""

    binary: Path
    libraries: Path
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for the running Python
    version: str

    def library_path(self) -> str:
        """``LD_LIBRARY_PATH`` for the server and its stubs: the running Python's libpython
        first (the stub embeds it: a libpython of another patch release than the environment's
        standard library breaks at import), then the wheel's libraries."""
        paths = [sysconfig.get_config_var("LIBDIR") or "", str(self.libraries),
                 os.environ.get("LD_LIBRARY_PATH", "")]
        return os.pathsep.join(p for p in paths if p)


def find_triton() -> TritonInstall:
    """The tritonserver of the installed ``nvidia-pytriton`` wheel.

    Raises:
        MissingDependencyError: the ``serve`` extra is not installed.
        BackendUnavailableError: this platform or Python version has no server or stub, or the
            environment's numpy is one the python backend cannot exchange tensors with.
    """
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise BackendUnavailableError(
            f"Triton Inference Server from PyPI runs on Linux x86_64 only, not {sys.platform} "
            f"{platform.machine()}", hint="use the NGC Triton container with the exported "
            "onnxruntime or tensorrt repository")
    try:
        spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("visionrt serve needs the tritonserver binary of the "
                                     "nvidia-pytriton package, which is not installed",
                                     source="nvidia-pytriton", hint=SERVE_HINT)
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        libraries=root.parent.parent / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / python_version / "triton_python_backend_stub",
        version=_version())
    for path in (install.binary, install.python_backend / "libtriton_python.so"):
        if not path.is_file():
            raise MissingDependencyError(f"{path} is missing: the nvidia-pytriton install is "
                                         "incomplete", source=str(path),
                                         hint="reinstall it: pip install --force-reinstall "
                                              "'visionrt[serve]'")
    if not install.stub.is_file():
        shipped = sorted(p.name for p in install.stub.parent.parent.iterdir())
        raise BackendUnavailableError(
            f"nvidia-pytriton {install.version} has no python backend stub for Python "
            f"{python_version} (it ships {', '.join(shipped)})",
            hint="run visionrt serve with one of those Python versions")
    check_numpy()
    return install


def check_numpy() -> None:
    """Refuse numpy 2: the stub shipped with this server exchanges tensors through numpy 1's C
    API, and under numpy 2 it misreads string inputs and rejects numeric outputs."""
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise BackendUnavailableError(
            f"this environment has numpy {numpy.__version__}; the python backend of Triton in "
            "nvidia-pytriton needs numpy < 2 (nvidia-pytriton itself requires it)",
            hint="install it with: pip install 'visionrt[serve]' (or pip install 'numpy<2')")


def _version() -> str:
    try:
        return metadata.version("nvidia-pytriton")
    except metadata.PackageNotFoundError:
        return "unknown"
