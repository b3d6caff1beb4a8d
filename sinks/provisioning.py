"""Create and drop whole PostgreSQL databases by name (``CREATE/DROP DATABASE``).

What the integration tests and the benchmarks use to give each run a database of its own;
``radstream`` itself never creates a database (its role may not be allowed to). The URL names
the server and a role with ``CREATEDB``; it is a secret and never logged.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # stubs: asyncpg-stubs (see report)

from schemas.errors import ErrorCode, error_for
from sinks.database import database_errors
from streams.retry import RetryPolicy, run_with_retries

# DROP DATABASE ... WITH (FORCE) terminates the sessions still in the database, but a role
# without superuser or pg_signal_backend may not terminate an autovacuum worker (it has no role
# of its own): PostgreSQL refuses with InsufficientPrivilege. Autovacuum of a test-sized database
# ends within moments, so the drop is tried again for up to about half a minute.
DROP_RETRY = RetryPolicy(max_attempts=12, initial_seconds=0.2, max_seconds=5.0)


def url_for_database(url: str, name: str) -> str:
    """The same server URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _quoted(name: str) -> str:
    """``name`` as a quoted SQL identifier (names come from code, but quote them right)."""
    return '"' + name.replace('"', '""') + '"'


async def _execute(admin_url: str, statement: str) -> None:
    """Run one statement on a connection of its own (CREATE/DROP DATABASE cannot share one)."""
    with database_errors():
        connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE ``name`` on the server of ``admin_url``."""
    await _execute(admin_url, f"CREATE DATABASE {_quoted(name)}")


async def drop_database(admin_url: str, name: str, *, policy: RetryPolicy = DROP_RETRY) -> None:
    """DROP DATABASE ``name``, disconnecting any session still in it.

    Raises:
        RetriesExhaustedError: a session in it could still not be terminated (see
            :data:`DROP_RETRY`).
    """

    async def attempt() -> None:
        try:
            await _execute(admin_url, f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
        except asyncpg.InsufficientPrivilegeError as exc:
            raise error_for(
                ErrorCode.DATABASE_UNAVAILABLE,
                "a background process in the database could not be terminated yet",
            ) from exc

    await run_with_retries(attempt, policy)
