"""The layers of the package hold (read from the import statements, in functions too): nothing in the
bottom floors imports the floors above, the top-level subpackages import each other without a loop,
and no source file grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "src" / "locdistill"
MAX_LINES = 400

# Allowed loops between top-level parts, each with its reason. None today.
DOCUMENTED_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(p) for p in SOURCES}


def imported_modules(path: Path) -> set[str]:
    """Every ``locdistill`` module ``path`` imports (relative imports resolved), at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            # ``from package import submodule`` imports the submodule too
            out.update(f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES)
    return {m for m in out if m == "locdistill" or m.startswith("locdistill.")}


def part_of(module: str) -> str:
    """The top-level part a module belongs to: ``locdistill.models.detectors.gfl`` -> ``models``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


IMPORTS = {module_name(p): imported_modules(p) for p in SOURCES}


def test_the_source_tree_is_found() -> None:
    assert {"models", "losses", "ops", "engine", "distill", "cli", "data", "weights"} <= {
        part_of(m) for m in IMPORTS
    }


@pytest.mark.parametrize(
    "floor, forbidden",
    [
        ("ops", {"models", "losses", "data", "evaluation", "distill", "engine", "cli"}),
        ("weights", {"models", "losses", "data", "evaluation", "distill", "engine", "cli", "detector"}),
        ("losses", {"models", "data", "evaluation", "distill", "engine", "cli"}),
        ("models", {"distill", "engine", "cli"}),
        ("data", {"models", "distill", "engine", "cli"}),
        ("evaluation", {"models", "distill", "engine", "cli"}),
        ("distill", {"engine", "cli"}),
        ("engine", {"cli"}),
    ],
)
def test_lower_floors_do_not_import_higher_ones(floor: str, forbidden: set[str]) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if part_of(module) == floor
        for target in targets
        if part_of(target) in forbidden
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_loop_between_top_level_parts() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in IMPORTS.items():
        src = part_of(module)
        if not src:  # the root __init__: lazy re-exports only
            continue
        graph.setdefault(src, set()).update(part_of(t) for t in targets if part_of(t) not in ("", src))
    # strongly connected components (Tarjan); a component of two or more parts is a loop
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    undocumented = [sorted(c) for c in loops if c not in DOCUMENTED_CYCLES]
    assert not undocumented, f"import loops between top-level parts: {undocumented}"


def test_the_import_reader_resolves_every_form() -> None:
    """The import reader resolves absolute, relative and ``from package import module`` forms."""
    backbones = PACKAGE / "models" / "backbones" / "resnet.py"
    assert "locdistill.models.backbones.staged" in imported_modules(backbones)  # ``from .staged import``
    assert "locdistill.ops.box_ops" in imported_modules(PACKAGE / "losses" / "giou.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_source_file_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"


def test_distill_reads_no_config_or_weight_files() -> None:
    """The engine builds and loads the teacher; ``distill/`` receives it and reads nothing itself."""
    readers = {
        "locdistill.config.load_config",
        "locdistill.config.load",
        "locdistill.weights",
        "locdistill.models.from_checkpoint",
    }
    wrong = []
    for path in sorted((PACKAGE / "distill").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            wrong += [
                f"{path.name} imports {n}"
                for n in names
                if n.startswith(tuple(readers)) or n in ("yaml", "safetensors", "locdistill.engine")
            ]
    assert not wrong, wrong


# What ``distill/`` may import from ``models/``: the dense-detector contract and the plain structures it
# hands over, never a head, a detector, an assigner or a family's loss (adding a family must not touch
# ``distill/``).
DISTILL_MAY_IMPORT_FROM_MODELS = {
    "locdistill.models.detectors.base",
    "locdistill.models.assigners.assignment",
    "locdistill.models.integral",
}


def contract_violations(imports: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in imports.items()
        if part_of(module) == "distill"
        for target in targets
        if part_of(target) == "models" and target not in DISTILL_MAY_IMPORT_FROM_MODELS
    )


def test_distill_reads_detectors_only_through_the_contract() -> None:
    wrong = contract_violations(IMPORTS)
    assert not wrong, "distill/ must use models/detectors/base.py, not the families:\n" + "\n".join(wrong)


def test_the_contract_check_sees_a_head_import() -> None:
    """A ``distill/`` module importing a head or a detector class is caught (the check can fail)."""
    planted = {
        **IMPORTS,
        "locdistill.distill.distiller": IMPORTS["locdistill.distill.distiller"]
        | {"locdistill.models.heads.gfl", "locdistill.models.detectors.gfl"},
    }
    assert contract_violations(planted) == [
        "locdistill.distill.distiller imports locdistill.models.detectors.gfl",
        "locdistill.distill.distiller imports locdistill.models.heads.gfl",
    ]
