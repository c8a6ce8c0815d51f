"""The visionrt package read from its source with ``ast`` (nothing is imported): its modules and
the imports between them, for the architecture tests (dependency direction, cycles, sizes)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "visionrt"
_MODULE_NAME = re.compile(r"visionrt(\.[A-Za-z_][A-Za-z0-9_]*)*")


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> source file of every module of the package (``__init__`` as the package)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"), filename=str(modules()[name]))


def imported_names(name: str, module: ast.Module | None = None) -> set[str]:
    """Every module ``name`` (source ``module``, default: its file) imports, at any depth
    (function bodies too: a lazy import still depends), ``importlib.import_module("...")`` with a
    literal included; ``if TYPE_CHECKING:`` blocks excluded, since they never run."""
    names: set[str] = set()
    for node in _executed_nodes(module or tree(name)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, node)
            names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base
                         for a in node.names)
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module")
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def named_modules(name: str, module: ast.Module | None = None) -> set[str]:
    """String constants of ``name`` that spell a visionrt module (what it may import by name)."""
    return {node.value for node in ast.walk(module or tree(name))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and _MODULE_NAME.fullmatch(node.value)}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (the nearest enclosing module of each import)."""
    return {name: {target for target in map(_owner, imported_names(name))
                   if target is not None and target != name} for name in modules()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(target) == 1:
                return path[path.index(target):] + [target]
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append(iter(sorted(graph.get(target, ()))))
    return None


def _owner(dotted: str) -> str | None:
    while dotted and dotted not in modules():
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _executed_nodes(module: ast.Module) -> list[ast.AST]:
    skipped = {id(inner) for node in ast.walk(module)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for statement in node.body for inner in ast.walk(statement)}
    return [node for node in ast.walk(module) if id(node) not in skipped]
