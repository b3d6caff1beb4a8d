"""Helpers for tests that need their own PostgreSQL databases (used by conftest and tests)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from sinks.migrate import upgrade_async
from sinks.provisioning import create_database, drop_database, url_for_database

T = TypeVar("T")
Prepare = Callable[[str], Awaitable[None]]


def run_in_thread(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a worker thread."""

    async def main() -> T:
        return await make_coroutine()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def scratch_name(prefix: str = "radstream_test") -> str:
    """A database name no other test or run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_prepared(admin_url: str, name: str, prepare: Prepare = upgrade_async) -> str:
    """Create database ``name``, ``prepare`` it (migrate to head); drop it again if that fails."""
    await create_database(admin_url, name)
    url = url_for_database(admin_url, name)
    try:
        await prepare(url)
    except BaseException:
        await drop_database(admin_url, name)
        raise
    return url


@asynccontextmanager
async def migrated_database(admin_url: str) -> AsyncIterator[str]:
    """A fresh database migrated to head (its URL), dropped afterwards."""
    name = scratch_name()
    url = await create_prepared(admin_url, name)
    try:
        yield url
    finally:
        await drop_database(admin_url, name)


def database_in_thread(
    admin_url: str, *, name: str | None = None, prepare: Prepare = upgrade_async
) -> tuple[str, Callable[[], None]]:
    """For synchronous fixtures: a created, prepared database and the function that drops it.

    Each step runs on a private loop in a worker thread, so it never disturbs the event loop
    pytest-asyncio gives each test.
    """
    chosen = name or scratch_name()
    url = run_in_thread(lambda: create_prepared(admin_url, chosen, prepare))
    return url, lambda: run_in_thread(lambda: drop_database(admin_url, chosen))


@contextmanager
def own_database(
    admin_url: str, *, name: str | None = None, prepare: Prepare = upgrade_async
) -> Iterator[str]:
    """For synchronous fixtures: a created, prepared database's URL, dropped on leaving."""
    url, drop = database_in_thread(admin_url, name=name, prepare=prepare)
    try:
        yield url
    finally:
        drop()
