"""The runtime is torch-free and imports nothing above it: every runtime module, read from the
source and imported in a fresh interpreter, and `visionrt predict` where torch cannot be imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from package_graph import import_graph, imported_names, modules, named_modules

RUNTIME_MODULES = sorted(name for name in modules()
                         if name == "visionrt.runtime" or name.startswith("visionrt.runtime."))
# The packages above the runtime, and the heavy ones it must never load.
FORBIDDEN = ("torch", "torchvision", "timm", "visionrt.trainer", "visionrt.exporter",
             "visionrt.bench", "visionrt.serve", "visionrt.cli")

# The foundation every stage shares; the runtime may import these and itself, nothing else.
FOUNDATION = ("visionrt", "visionrt.spec", "visionrt.bundle", "visionrt.images", "visionrt.errors",
              "visionrt._imagefile", "visionrt._optional", "visionrt._lazy", "visionrt.gate")


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_the_module_list_is_read_from_the_package() -> None:
    assert {"visionrt.runtime", "visionrt.runtime.classifier", "visionrt.runtime.batcher",
            "visionrt.runtime.trt", "visionrt.runtime._cuda"} <= set(RUNTIME_MODULES)


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_runtime_source_reaches_nothing_above_it(module: str) -> None:
    # Imports at any depth and module names in strings (importlib, lazy tables) alike.
    reached = imported_names(module) | named_modules(module)
    assert not sorted(filter(_forbidden, reached))


def test_runtime_reaches_only_itself_and_the_foundation() -> None:
    graph, reached, todo = import_graph(), set(), list(RUNTIME_MODULES)
    while todo:  # everything the runtime loads, transitively
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    outside = reached - set(RUNTIME_MODULES) - set(FOUNDATION)
    assert not outside, f"runtime reaches {sorted(outside)}"


@pytest.mark.parametrize("source", [
    "import visionrt.bench.run",
    "def f():\n    from visionrt.trainer import models",
    "import importlib\nimportlib.import_module('visionrt.bench.baseline')",
    "_LAZY = {'x': 'visionrt.cli.bench'}",
])
def test_the_source_check_sees_every_way_up(source: str) -> None:
    parsed = ast.parse(source)
    reached = imported_names("visionrt.runtime.base", parsed) | named_modules("x", parsed)
    assert any(map(_forbidden, reached))


def test_runtime_imports_nothing_heavy_or_upstream() -> None:
    code = (f"import importlib, sys\nfor m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or "
            f"any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
            "assert not bad, bad\n"
            "assert 'onnxruntime' not in sys.modules and 'openvino' not in sys.modules\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_predict_runs_where_torch_cannot_be_imported(tiny_bundle: Path, image_dir: Path) -> None:
    # sys.modules[name] = None makes `import name` raise ImportError: an environment without torch.
    code = ("import sys\n"
            "for name in ('torch', 'torchvision', 'timm'): sys.modules[name] = None\n"
            "from visionrt.runtime.classifier import Classifier\n"
            f"clf = Classifier.load({str(tiny_bundle)!r})\n"
            f"assert all(p.ok for p in clf.predict({str(image_dir)!r}))\n"
            "from visionrt.cli import main\n"
            f"sys.argv = ['visionrt', 'predict', {str(tiny_bundle)!r}, {str(image_dir)!r}]\n"
            "main()\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "6 classified, 0 failed" in result.stdout
    assert "torch" not in result.stderr
