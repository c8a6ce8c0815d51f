"""The layout holds: packages import only downward, no import cycle, small modules and functions.

Read from the source with ``ast`` (tests/package_graph.py), so a new module is covered on arrival.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from package_graph import PACKAGE_DIR, find_cycle, import_graph, modules

ROOT = PACKAGE_DIR.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
FOUNDATION = "foundation"  # spec, bundle, images, errors, gate, synth, _optional, _lazy
# What each layer may import besides itself (README "Layout" says the same in words).
MAY_IMPORT = {
    FOUNDATION: set(),
    "runtime": {FOUNDATION},
    "trainer": {FOUNDATION},
    "exporter": {FOUNDATION, "runtime", "trainer"},
    "serve": {FOUNDATION, "runtime", "exporter"},
    "bench": {FOUNDATION, "runtime", "trainer", "serve"},
    "cli": {FOUNDATION, "runtime", "trainer", "exporter", "serve", "bench"},
    "main": {"cli"},
}


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "visionrt.__main__":
        return "main"
    if len(parts) > 1 and parts[1] in MAY_IMPORT:
        return parts[1]
    return FOUNDATION


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_packages_import_only_downward() -> None:
    wrong = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                   for target in targets
                   if layer(target) != layer(module) and layer(target) not in MAY_IMPORT[
                       layer(module)])
    assert not wrong, wrong


# Files another change is rewriting: strict xfail, so the entry must go once the file complies.
PENDING: dict[str, str] = {}


def _python_files() -> list:
    params = []
    for path in sorted(p for folder in ("visionrt", "benchmarks", "tests")
                       for p in (ROOT / folder).rglob("*.py")):
        name = str(path.relative_to(ROOT))
        marks = [pytest.mark.xfail(strict=True, reason=PENDING[name])] if name in PENDING else []
        params.append(pytest.param(path, id=name, marks=marks))
    return params


@pytest.mark.parametrize("path", _python_files())
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines"


def _function_lengths(path: Path) -> list[tuple[str, int]]:
    # A command of the CLI declares its options in its signature: only its body counts.
    cli = path.is_relative_to(PACKAGE_DIR / "cli")
    return [(node.name, node.end_lineno - (node.body[0].lineno if cli else node.lineno) + 1)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", _python_files())
def test_functions_are_short(path: Path) -> None:
    long = [f"{name} ({length} lines)" for name, length in _function_lengths(path)
            if length > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(ROOT)}: {long}"


def test_every_module_is_read() -> None:
    assert {"visionrt.runtime.classifier", "visionrt.trainer.loop", "visionrt.bench.run",
            "visionrt.cli"} <= set(modules())


def test_only_the_cli_reads_visionrt_environment_variables() -> None:
    # Configuration is a frozen dataclass built at the edge; the library takes values (STYLE 6).
    readers = sorted(name for name, path in modules().items()
                     if layer(name) not in ("cli", "main")
                     and any(isinstance(node, ast.Constant) and isinstance(node.value, str)
                             and node.value.startswith("VISIONRT_")
                             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    assert not readers, readers
