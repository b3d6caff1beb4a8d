"""Fixtures for integration tests: a fresh PostgreSQL database per test session.

The database ``radstream_test_<run_id>`` is created on the real server from
``admin_database_url``, migrated to head, and dropped (``WITH (FORCE)``) at the end, so parallel
runs by other developers never see each other's rows. Setup runs ``asyncio.run`` in a worker
thread so it never disturbs the event loop pytest-asyncio gives each test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from sinks.database import Database
from sinks.provisioning import create_database, drop_database, url_for_database
from tests.integration.database_helpers import own_database, run_in_thread


@pytest.fixture
def new_database(admin_database_url: str) -> Iterator[Callable[[], str]]:
    """A factory of empty, un-migrated databases, each dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"radstream_test_{uuid.uuid4().hex[:12]}"
        run_in_thread(lambda: create_database(admin_database_url, name))
        created.append(name)
        return url_for_database(admin_database_url, name)

    yield make
    for name in created:
        run_in_thread(lambda name=name: drop_database(admin_database_url, name))


@pytest.fixture(scope="session")
def database_url(admin_database_url: str, run_id: str) -> Iterator[str]:
    """Plain ``postgresql://`` URL of this session's migrated test database."""
    with own_database(admin_database_url, name=f"radstream_test_{run_id}") as url:
        yield url


@pytest.fixture(scope="module")
def pipeline_database_url(admin_database_url: str) -> Iterator[str]:
    """A migrated database of this test module's own.

    Tests that run the audit stage need their own: ``audit_log`` holds ONE chain per audit topic
    partition, so two pipelines with different audit topics must not share a database.
    """
    with own_database(admin_database_url) as url:
        yield url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on the session's test database, disposed after the test."""
    db = Database(database_url, pool_size=2)
    yield db
    await db.dispose()
