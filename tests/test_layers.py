"""The package's layers: each module imports only from its own layer and the layers below it, and
the pure-torch layers import neither Lightning, nor Hydra, nor MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import seqexp

LAYERS = [
    ("checks",),
    ("cells",),
    ("kernels",),
    ("layers",),
    ("tasks",),
    ("models",),
    ("config",),
    ("diagnostics",),
    ("tracking",),
    ("search",),
    ("commands", "bench"),
]
"""seqexp's layers, lowest first: a module may import from its own layer and any below."""
PURE_TORCH = ("checks", "cells", "kernels", "layers")
"""Layers a plain PyTorch script can use on their own."""
FRAMEWORKS = ("pytorch_lightning", "lightning", "hydra", "omegaconf", "mlflow")


def layer_of(module: str) -> int:
    """The layer of a module of seqexp (``seqexp.layers.recurrent`` -> the index of ``layers``)."""
    top = module.split(".")[1] if module.count(".") else ""
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def imports(source: str, module: str) -> set[str]:
    """The modules ``source`` (the text of ``module``) imports, relative imports made absolute."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if base == "seqexp"}
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import in ``graph`` (module -> modules it imports) that points up a layer, or from a
    pure-torch layer into a framework."""
    found = []
    for module, imported in sorted(graph.items()):
        level = layer_of(module)
        for name in sorted(imported):
            if name.startswith("seqexp.") and layer_of(name) > level:
                found.append(f"{module} imports {name}, a layer above it")
            if LAYERS[level][0] in PURE_TORCH and name.split(".")[0] in FRAMEWORKS:
                found.append(f"{module} imports {name}: {LAYERS[level][0]} must stay pure torch")
    return found


def package_graph() -> dict[str, set[str]]:
    root = Path(seqexp.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "seqexp":
            continue
        graph[module] = imports(path.read_text(), module if parts[-1] != "__init__" else module + ".__init__")
    return graph


def test_imports_point_only_down_the_layers() -> None:
    assert violations(package_graph()) == []


@pytest.mark.parametrize(
    ("module", "imported", "complaint"),
    [
        ("seqexp.cells.lstm", "pytorch_lightning", "cells must stay pure torch"),
        ("seqexp.layers.recurrent", "mlflow", "layers must stay pure torch"),
        ("seqexp.models.sequence", "seqexp.tracking.runs", "a layer above it"),
        ("seqexp.tasks.adding", "seqexp.models.data", "a layer above it"),
    ],
)
def test_the_check_catches_an_import_against_the_layers(module: str, imported: str, complaint: str) -> None:
    graph = package_graph() | {module: {imported}}
    assert any(complaint in v for v in violations(graph))


def test_every_package_says_what_it_may_import() -> None:
    root = Path(seqexp.__file__).parent
    for package in (p for p in root.iterdir() if (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert "import" in doc, f"seqexp.{package.name}'s docstring does not say what it may import"
