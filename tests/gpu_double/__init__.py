"""Switch the TensorRT + CUDA test double on for one test, or for a subprocess.

    with activated(trt_version="11.4.0.106") as double:    # in-process: tensorrt + cuda.bindings
        ...                                                 # are the double until the block ends
    subprocess.run(cmd, env=subprocess_env())               # PYTHONPATH with the double first

Nothing leaks: on exit every module of the double leaves ``sys.modules``, the real
``cuda.bindings`` modules (imported by torch) come back, and ``sys.path`` is restored, so a test
that did not ask for the double never sees it. The implementation is ``site/_gpu_double``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SITE = HERE / "site"  # tensorrt + _gpu_double
CUDA_SITE = HERE / "cuda_site"  # cuda.bindings (needs SITE)
ENV = "VISIONRT_GPU_DOUBLE"
_PREFIXES = ("tensorrt", "_gpu_double", "cuda.bindings")


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PREFIXES)


def subprocess_env(*, real_cuda: bool = False, base: dict[str, str] | None = None,
                   **settings: Any) -> dict[str, str]:
    """An environment in which a child Python sees the double (``real_cuda``: TensorRT only)."""
    env = dict(os.environ if base is None else base)
    paths = [str(SITE)] if real_cuda else [str(CUDA_SITE), str(SITE)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env[ENV] = json.dumps(settings)
    return env


def probe() -> Any:
    """The probe network (``site/_gpu_double/probe.py``) without putting the double on the path:
    it is plain ONNX + numpy, used on real TensorRT too."""
    import importlib.util

    module = sys.modules.get("gpu_double_probe")
    if module is None:
        spec = importlib.util.spec_from_file_location("gpu_double_probe",
                                                      SITE / "_gpu_double" / "probe.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["gpu_double_probe"] = module
    return module


@contextmanager
def activated(*, real_cuda: bool = False, **settings: Any) -> Iterator[Any]:
    """Make ``tensorrt`` (and, unless ``real_cuda``, ``cuda.bindings``) the double; yields the
    double's ``_gpu_double`` package (``.state()``, ``.configure()``)."""
    import pytest

    saved = {name: module for name, module in sys.modules.items() if _ours(name)}
    with pytest.MonkeyPatch.context() as patch:
        for name in saved:
            patch.delitem(sys.modules, name)
        package = sys.modules.get("cuda")
        if package is not None and hasattr(package, "bindings"):
            patch.setattr(package, "bindings", package.bindings)  # restored on exit
        patch.setenv(ENV, json.dumps(settings))
        patch.syspath_prepend(str(SITE))
        if not real_cuda:
            patch.syspath_prepend(str(CUDA_SITE))
        try:
            import _gpu_double

            _gpu_double.configure(**settings)
            yield _gpu_double
        finally:
            for name in [n for n in sys.modules if _ours(n)]:
                if sys.modules[name] is not saved.get(name):
                    del sys.modules[name]
