"""What a Python file imports, read with ``ast``: the one parser behind the layering tests."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(path: Path) -> set[str]:
    """The dotted names ``path`` imports absolutely (``import a.b`` and ``from a.b import c``).

    Relative imports are left out: they stay inside their own package, which is never the
    layer a rule forbids.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imported_packages(path: Path) -> set[str]:
    """The top-level packages ``path`` imports absolutely (``a`` for ``import a.b``)."""
    return {name.partition(".")[0] for name in imported_modules(path)}
