"""Alembic environment: runs radstream's migrations on an async (asyncpg) engine via run_sync.

Called two ways: from :mod:`sinks.migrate` (which passes an open connection in
``config.attributes["connection"]``), or from the ``alembic`` command line with the URL in
``sqlalchemy.url`` or ``RADSTREAM_DATABASE_URL``. A transaction-scoped advisory lock makes two
workers that start at once run the migrations one after the other.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from sinks.database import to_async_url
from sinks.tables import metadata

# Any constant works; it only has to be the same for every radstream process.
MIGRATION_LOCK_KEY = 7_203_114_515

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, transaction_per_migration=False
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(to_async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("RADSTREAM_DATABASE_URL")
    if not url:
        raise RuntimeError("set sqlalchemy.url or RADSTREAM_DATABASE_URL")
    asyncio.run(_run_from_url(url))


_main()
