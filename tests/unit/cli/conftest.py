"""Every command-line unit test runs commands in-process: give each a clean logging set-up."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _logging(restored_logging: None) -> None:
    """See ``tests/conftest.py``: ``restored_logging``."""
