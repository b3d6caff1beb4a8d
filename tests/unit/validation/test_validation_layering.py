"""The validation core stays pure: it imports only schemas/, itself and its libraries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.module_imports import imported_modules
from tests.unit.validation.support import REPO_ROOT

pytestmark = pytest.mark.requirement("RS-ARC-01")

PACKAGE = REPO_ROOT / "streams" / "validation"
ALLOWED_ROOTS = {
    "__future__", "collections", "contextlib", "dataclasses", "datetime", "enum", "hashlib",
    "hmac", "io", "math", "os", "pathlib", "re", "stat", "struct", "typing", "urllib",
    "warnings", "zlib", "numpy", "PIL", "pydicom", "pydantic", "yaml", "schemas", "streams",
}  # fmt: skip
FORBIDDEN_STREAMS = ("streams.topics", "streams.inference", "streams.audit")


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_only_pure_imports(path: Path) -> None:
    """No Kafka, SQL, HTTP, logging or metrics import in streams/validation."""
    imports = imported_modules(path)
    assert imports, "the parser found no imports at all"
    for name in imports:
        assert name.split(".")[0] in ALLOWED_ROOTS, name
        assert not name.startswith(FORBIDDEN_STREAMS), name
