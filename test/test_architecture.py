"""The package's import structure follows the layer table in docs/architecture.md.

Parses every module of ``ivif_fusion/`` (all imports, including those inside functions) and
fails on an import cycle, on a private name imported from another module, on an import from a
higher layer (or from another unit of the same layer), and on a module over 500 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ivif_fusion"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(target module, imported name or None) for every package-internal import of ``name``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("ivif_fusion")]
        elif isinstance(node, ast.ImportFrom):
            target = resolve_from(name, path.name == "__init__.py", node)
            if not target.startswith("ivif_fusion"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, None) if sub in modules else (target, alias.name))
    return found


def unit_of(module: str, units: dict[str, int]) -> str:
    """The layer-table entry (``ivif_fusion`` itself, a top-level module or a subpackage) of ``module``."""
    parts = module.split(".")
    unit = parts[1] if len(parts) > 1 else "ivif_fusion"
    if unit not in units:
        raise AssertionError(f"{module}: '{unit}' is not in the layer table of docs/architecture.md")
    return unit


def layer_table() -> dict[str, int]:
    """unit -> layer rank, read from the '| layer | units |' table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    units: dict[str, int] = {}
    for rank, names in re.findall(r"^\|\s*(\d+)\s*\|([^|]+)\|", text, flags=re.M):
        for unit in re.findall(r"`([\w.]+)/?`", names):
            units[unit] = int(rank)
    assert units, "docs/architecture.md has no layer table"
    return units


MODULES = all_modules()
UNITS = layer_table()
EDGES = {m: imports_of(m, p, MODULES) for m, p in MODULES.items()}


def test_every_unit_is_in_the_layer_table():
    for m in MODULES:
        unit_of(m, UNITS)


def test_imports_only_go_down_the_layers():
    bad = []
    for m, targets in EDGES.items():
        src = unit_of(m, UNITS)
        for target, _ in targets:
            dst = unit_of(target, UNITS)
            if dst != src and dst != "ivif_fusion" and UNITS[dst] >= UNITS[src]:
                bad.append(f"{m} (layer {UNITS[src]}) imports {target} (layer {UNITS[dst]})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(sorted(set(bad)))


def test_no_private_name_is_imported_across_modules():
    bad = [f"{m} imports {name} from {target}" for m, targets in EDGES.items()
           for target, name in targets
           if name and name.startswith("_") and not name.startswith("__") and target != m]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _ in targets if t in MODULES and t != m} for m, targets in EDGES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name]} has {n} lines (max {MAX_LINES}): split it on its seams"


def test_checker_sees_a_violation():
    """The checker itself: an upward import written as code is reported."""
    tree = ast.parse("from ..ros import fusion_node\n")
    node = tree.body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve_from("ivif_fusion.metrics.fusion", False, node) == "ivif_fusion.ros"
    assert UNITS["ros"] > UNITS["metrics"]
