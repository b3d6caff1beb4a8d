"""Dropping a test database survives an autovacuum worker the admin role may not terminate."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import pytest

from sinks import provisioning
from streams.retry import RetriesExhaustedError, RetryPolicy

pytestmark = pytest.mark.requirement("RS-ERR-01", "RS-DB-03")

NO_WAIT = RetryPolicy(max_attempts=3, initial_seconds=0.0, max_seconds=0.0)


def refusing(times: int, statements: list[str]) -> object:
    """An ``_execute`` that refuses like PostgreSQL ``times`` times, then succeeds."""

    async def execute(_url: str, statement: str) -> None:
        statements.append(statement)
        if len(statements) <= times:
            raise asyncpg.InsufficientPrivilegeError(
                "must be a member of the role whose process is being terminated"
            )

    return execute


async def test_drop_is_tried_again_until_the_worker_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    statements: list[str] = []
    monkeypatch.setattr(provisioning, "_execute", refusing(2, statements))
    await provisioning.drop_database("postgresql://h/admin", 'odd"name', policy=NO_WAIT)
    assert statements == ['DROP DATABASE IF EXISTS "odd""name" WITH (FORCE)'] * 3


async def test_drop_gives_up_after_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    statements: list[str] = []
    monkeypatch.setattr(provisioning, "_execute", refusing(10, statements))
    with pytest.raises(RetriesExhaustedError):
        await provisioning.drop_database("postgresql://h/admin", "busy", policy=NO_WAIT)
    assert len(statements) == 3
