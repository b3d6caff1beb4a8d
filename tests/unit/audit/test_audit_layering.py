"""The pure audit package imports no Kafka, SQL, HTTP, metrics or logging library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("RS-ARC-01")

PACKAGE = Path(__file__).resolve().parents[3] / "streams" / "audit"
PURE = ["records.py", "chain.py", "checkpoints.py", "verify.py", "files.py", "__init__.py"]
FORBIDDEN = {
    "aiokafka",
    "kafka",
    "faust",
    "sqlalchemy",
    "asyncpg",
    "alembic",
    "httpx",
    "fastapi",
    "prometheus_client",
    "structlog",
    "logging",
    "sinks",
    "gateway",
    "observability",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    """Each pure audit module stays free of I/O libraries and outer layers."""
    assert not _imports(PACKAGE / module) & FORBIDDEN
