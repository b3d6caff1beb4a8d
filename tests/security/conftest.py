"""Fixtures of the security tests that need a peer of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.secure_kafka import SecureKafka


@pytest.fixture(scope="session")
def secure_kafka(run_id: str) -> Iterator[SecureKafka]:
    """The secure broker profile, started once per session on free ports (never skipped)."""
    broker = SecureKafka(f"rstest.{run_id}.secure.", f"rstest-secure-{run_id}")
    try:
        broker.up()
        yield broker
    finally:
        broker.remove()
