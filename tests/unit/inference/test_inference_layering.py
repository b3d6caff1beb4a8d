"""streams/inference stays pure: it imports only schemas, itself and its allowed libraries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.unit.inference.inference_builders import REPO_ROOT
from tests.unit.module_imports import imported_modules

pytestmark = pytest.mark.requirement("RS-ARC-01")

PACKAGE = REPO_ROOT / "streams" / "inference"
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "pydantic", "yaml"}
ALLOWED_OURS = ("schemas", "streams.inference")


def _allowed(module: str) -> bool:
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY:
        return True
    return any(module == ours or module.startswith(ours + ".") for ours in ALLOWED_OURS)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_only_allowed_imports(path: Path) -> None:
    """No Kafka, SQL, HTTP, metrics or logging library is imported by the pure core."""
    assert sorted(m for m in imported_modules(path) if not _allowed(m)) == []


def test_checker_rejects_a_forbidden_import() -> None:
    """The check itself fails on faust, sqlalchemy, structlog and streams' agents."""
    forbidden = ["faust", "sqlalchemy.orm", "structlog", "prometheus_client", "sinks.results"]
    assert [m for m in forbidden if _allowed(m)] == []


def test_stdlib_logging_is_not_used() -> None:
    """Pure logic does not log (stdlib logging is allowed by name, so check it explicitly)."""
    used = set().union(*(imported_modules(path) for path in PACKAGE.glob("*.py")))
    assert "logging" not in used
