"""Alembic migrations against a real, empty PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from sinks import migrate
from sinks.tables import metadata
from tests.integration.database_helpers import run_in_thread

pytestmark = pytest.mark.requirement("RS-DB-01")

TABLES = {"inference_results", "image_events"}
# The newest revision, so adding a migration does not break these tests.
HEAD = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


class TestMigrations:
    """Migrations create and remove exactly radstream's tables."""

    async def test_upgrade_from_empty_creates_tables(self, new_database: Callable[[], str]) -> None:
        """Upgrading an empty database to head creates the tables and records revision 0001."""
        url = new_database()
        await migrate.upgrade_async(url)
        assert await _tables(url) >= TABLES
        assert await migrate.current_revision_async(url) == HEAD

    async def test_downgrade_to_base_removes_tables(self, new_database: Callable[[], str]) -> None:
        """Downgrading to base drops every table the migrations created."""
        url = new_database()
        await migrate.upgrade_async(url)
        await migrate.downgrade_async(url, "base")
        assert not TABLES & await _tables(url)
        assert await migrate.current_revision_async(url) is None

    async def test_upgrade_again_after_downgrade(self, new_database: Callable[[], str]) -> None:
        """Up, down and up again ends at head with the tables present."""
        url = new_database()
        await migrate.upgrade_async(url)
        await migrate.downgrade_async(url, "base")
        await migrate.upgrade_async(url)
        assert await _tables(url) >= TABLES

    async def test_upgrade_is_idempotent(self, new_database: Callable[[], str]) -> None:
        """Upgrading a database already at head changes nothing and does not fail."""
        url = new_database()
        await migrate.upgrade_async(url)
        await migrate.upgrade_async(url)
        assert await migrate.current_revision_async(url) == HEAD

    def test_sync_upgrade_works_from_any_directory(
        self,
        new_database: Callable[[], str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The synchronous entry point needs no alembic.ini in the working directory."""
        url = new_database()
        monkeypatch.chdir(tmp_path)
        migrate.upgrade(url)
        migrate.downgrade(url, "base")
        migrate.upgrade(url, "0001")
        assert run_in_thread(lambda: migrate.current_revision_async(url)) == "0001"
        assert not list(tmp_path.iterdir())

    async def test_tables_module_matches_migrations(self, database_url: str) -> None:
        """Autogenerate finds no difference between sinks/tables.py and the migrated schema."""
        engine = create_async_engine(
            database_url.replace("postgresql://", "postgresql+asyncpg://"), poolclass=pool.NullPool
        )
        try:
            async with engine.connect() as connection:
                diff = await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()
        assert diff == []


class TestAlembicCommandLinePath:
    """env.py also serves the ``alembic`` CLI, which passes a URL instead of a connection."""

    def test_url_from_main_option(self, new_database: Callable[[], str]) -> None:
        """sqlalchemy.url in the config is used when no connection is given."""
        url = new_database()
        config = migrate.alembic_config()
        config.set_main_option("sqlalchemy.url", url)
        run_in_thread(lambda: asyncio.to_thread(command.upgrade, config, "head"))
        assert run_in_thread(lambda: migrate.current_revision_async(url)) == HEAD

    def test_url_from_environment(
        self, new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RADSTREAM_DATABASE_URL is the fallback when the config names no URL."""
        url = new_database()
        monkeypatch.setenv("RADSTREAM_DATABASE_URL", url)
        config = migrate.alembic_config()
        run_in_thread(lambda: asyncio.to_thread(command.upgrade, config, "head"))
        assert run_in_thread(lambda: migrate.current_revision_async(url)) == HEAD

    def test_missing_url_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without any URL the environment refuses clearly."""
        monkeypatch.delenv("RADSTREAM_DATABASE_URL", raising=False)
        with pytest.raises(RuntimeError, match="RADSTREAM_DATABASE_URL"):
            command.upgrade(migrate.alembic_config(), "head")

    def test_offline_mode_is_refused(self) -> None:
        """SQL-script (offline) mode is not supported and says so."""
        with pytest.raises(RuntimeError, match="offline"):
            command.upgrade(migrate.alembic_config(), "head", sql=True)
