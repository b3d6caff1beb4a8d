"""The pure audit package imports no Kafka, SQL, HTTP, metrics or logging library."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.module_imports import imported_packages

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


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    """Each pure audit module stays free of I/O libraries and outer layers."""
    assert not imported_packages(PACKAGE / module) & FORBIDDEN
