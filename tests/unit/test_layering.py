"""Architecture rules, read from the imports with ast (conventions: Layering)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("RS-ARC-01")

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"schemas", "streams", "sinks", "gateway", "observability", "app", "bench"}
DB_LIBRARIES = {"sqlalchemy", "asyncpg", "alembic", "psycopg", "psycopg2"}
IO_LIBRARIES = {
    "aiokafka",
    "faust",
    "mode",
    "httpx",
    "fastapi",
    "starlette",
    "prometheus_client",
    "structlog",
    "logging",
    "requests",
    "urllib3",
    "aiohttp",
    "socket",
}
PURE_PACKAGES = ("streams/validation", "streams/inference", "streams/audit")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts)


class TestLayering:
    @pytest.mark.parametrize("path", python_files("schemas"), ids=lambda p: p.name)
    def test_schemas_import_nothing_of_ours(self, path: Path) -> None:
        """schemas/ is the bottom layer: it imports no other radstream package."""
        assert imports_of(path) & (OUR_PACKAGES - {"schemas"}) == set()

    @pytest.mark.parametrize(
        "path",
        [p for folder in PURE_PACKAGES for p in python_files(folder) if p.name not in {"agent.py"}],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_pure_logic_does_no_io(self, path: Path) -> None:
        """Validation, inference and audit logic import only schemas/ and their libraries."""
        imported = imports_of(path)
        assert imported & (OUR_PACKAGES - {"schemas", "streams"}) == set()
        assert imported & (DB_LIBRARIES | IO_LIBRARIES) == set()

    @pytest.mark.parametrize(
        "path",
        [p for f in ("streams", "gateway", "observability", "schemas") for p in python_files(f)]
        + [ROOT / "app.py"],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_only_sinks_talk_sql(self, path: Path) -> None:
        """SQLAlchemy and asyncpg are imported only under sinks/."""
        assert imports_of(path) & DB_LIBRARIES == set()
