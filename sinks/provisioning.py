"""Create and drop whole PostgreSQL databases by name (``CREATE/DROP DATABASE``).

What the integration tests and the benchmarks use to give each run a database of its own;
``radstream`` itself never creates a database (its role may not be allowed to). The URL names
the server and a role with ``CREATEDB``; it is a secret and never logged.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # stubs: asyncpg-stubs (see report)

from sinks.database import database_errors


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


async def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE ``name``, disconnecting any session still in it."""
    await _execute(admin_url, f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
