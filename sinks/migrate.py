"""Apply or revert the Alembic migrations from Python (``radstream db upgrade`` calls this).

Alembic's configuration is built here rather than read from an ``alembic.ini``, so it works
from any working directory and when radstream is installed as a package. Migrations run on an
asyncpg connection through ``run_sync``; they are the only way tables are created.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from schemas.errors import ErrorCode, InputValidationError
from sinks.database import database_errors, to_async_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Alembic's names for the ends of the history, and steps relative to the current revision.
_SYMBOLIC_REVISION = re.compile(r"^(head|heads|base|[+-][0-9]+)$")


def alembic_config() -> Config:
    """An Alembic configuration pointing at ``sinks/migrations`` (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def revisions() -> list[str]:
    """The migration revisions of this release, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def is_known_revision(revision: str) -> bool:
    """Whether Alembic can migrate to ``revision`` (an id, its unique prefix, head, +1 ...)."""
    if _SYMBOLIC_REVISION.match(revision):
        return True
    matches = [known for known in revisions() if known.startswith(revision)]
    return len(matches) == 1


def _engine(url: str, tls: ssl.SSLContext | str | None) -> AsyncEngine:
    connect_args = {} if tls is None else {"ssl": tls}
    return create_async_engine(
        to_async_url(url), poolclass=pool.NullPool, connect_args=connect_args
    )


async def _with_connection(
    url: str, action: str, revision: str, tls: ssl.SSLContext | str | None = None
) -> None:
    engine = _engine(url, tls)

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    try:
        with database_errors():
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
    except CommandError as exc:
        # e.g. a downgrade "to" a revision above the current one; Alembic's message names
        # revisions only.
        raise InputValidationError(ErrorCode.REQUEST_INVALID, f"Alembic: {exc}") from exc
    finally:
        await engine.dispose()


async def upgrade_async(
    url: str, revision: str = "head", *, tls: ssl.SSLContext | str | None = None
) -> None:
    """Upgrade the database at ``url`` to ``revision`` (from inside a running event loop)."""
    await _with_connection(url, "upgrade", revision, tls)


async def downgrade_async(
    url: str, revision: str, *, tls: ssl.SSLContext | str | None = None
) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` drops every table)."""
    await _with_connection(url, "downgrade", revision, tls)


async def current_revision_async(
    url: str, *, tls: ssl.SSLContext | str | None = None
) -> str | None:
    """The revision the database at ``url`` is at, ``None`` when it was never migrated."""
    engine = _engine(url, tls)
    try:
        with database_errors():
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (from synchronous code such as the CLI)."""
    asyncio.run(upgrade_async(url, revision))


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (from synchronous code)."""
    asyncio.run(downgrade_async(url, revision))
