"""Shared test configuration: markers by folder and the real services integration tests need.

Integration, security-over-the-wire and reliability tests run against the real Kafka broker and
PostgreSQL that ``ops/services.sh up`` starts. A missing service is a test *failure*, never a
skip: a skipped integration test would let CI go green without proving anything.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from schemas.errors import TransientError
from schemas.settings import DEFAULT_DATABASE_URL
from streams.kafka import KafkaClientConfig, build_admin

REPO_ROOT = Path(__file__).resolve().parent.parent
_MARK_BY_FOLDER = {
    "integration": "integration",
    "security": "security",
    "reliability": "reliability",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the folder they live in, so ``-m`` selects whole suites."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts
        if parts and parts[0] in _MARK_BY_FOLDER:
            item.add_marker(getattr(pytest.mark, _MARK_BY_FOLDER[parts[0]]))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real broker's bootstrap address; fails the test when it is not up."""
    bootstrap = os.environ.get("RADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not reachable at {bootstrap}: run `make services-up` first")
    return bootstrap


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> KafkaClientConfig:
    """The Kafka layer's connection to the real broker."""
    return KafkaClientConfig(kafka_bootstrap, client_id="radstream-test")


@pytest.fixture(scope="session")
def admin_database_url() -> str:
    """The configured PostgreSQL URL (plain ``postgresql://``); fails when it is not up."""
    url = os.environ.get("RADSTREAM_DATABASE_URL", DEFAULT_DATABASE_URL)
    parts = urlsplit(url.replace("+asyncpg", ""))
    if not _reachable(parts.hostname or "127.0.0.1", parts.port or 5432):
        pytest.fail(
            f"PostgreSQL is not reachable at {parts.hostname}:{parts.port}: "
            "run `make services-up` first"
        )
    return url.replace("+asyncpg", "")


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id unique to this test session, for topic prefixes and database names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session", autouse=True)
def _delete_run_topics(run_id: str) -> Iterator[None]:
    """Delete this session's topics (``rstest.<run_id>.*``) when the session ends.

    A developer's broker runs for days: every test creates topics under a fresh prefix, and a
    broker holding tens of thousands of leftover partitions runs out of heap (seen: 12,000
    partition folders, ``OutOfMemoryError``, every admin call timing out). Only this session's
    prefix is touched, so concurrent runs on the same broker keep theirs.
    """
    yield
    bootstrap = os.environ.get("RADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if _reachable(host, int(port)):
        asyncio.run(_delete_topics_with_prefix(KafkaClientConfig(bootstrap), f"rstest.{run_id}."))


async def _delete_topics_with_prefix(config: KafkaClientConfig, prefix: str) -> None:
    try:
        async with build_admin(config) as admin:
            names = [name for name in await admin.list_topics() if name.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
    except TransientError as exc:  # clean-up only: the broker's state is not under test here
        print(f"\nleft this run's topics on the broker ({exc.code})", file=sys.stderr)


@pytest.fixture
def topic_prefix(run_id: str) -> str:
    """A topic prefix unique to one test, so tests and concurrent runs never share topics."""
    return f"rstest.{run_id}.{uuid.uuid4().hex[:8]}."
