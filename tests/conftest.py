"""Shared test configuration: markers by folder and the real services integration tests need.

Integration, security-over-the-wire and reliability tests run against the real Kafka broker and
PostgreSQL that ``ops/services.sh up`` starts. A missing service is a test *failure*, never a
skip: a skipped integration test would let CI go green without proving anything.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import structlog

from schemas.errors import TransientError
from schemas.settings import DEFAULT_DATABASE_URL
from streams.kafka import KafkaClientConfig, build_admin

REPO_ROOT = Path(__file__).resolve().parent.parent
_MARK_BY_FOLDER = {
    "integration": "integration",
    "security": "security",
    "reliability": "reliability",
}


_TREE_STATUS = pytest.StashKey[frozenset[str] | None]()


def work_tree_status() -> frozenset[str] | None:
    """The checkout's changes: ``git status --porcelain`` lines and untracked directories.

    ``git status`` does not show an untracked directory that holds no file (Faust leaves an
    empty ``<app>-data/v1/tables`` tree when it is given no data directory), so the untracked
    directories are listed too (``git ls-files --others --directory`` names empty ones).
    None outside a git checkout.
    """
    commands = (
        ["git", "status", "--porcelain", "--untracked-files=all"],
        ["git", "ls-files", "--others", "--exclude-standard", "--directory"],
    )
    lines: set[str] = set()
    for command in commands:
        try:
            result = subprocess.run(
                command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        lines.update(result.stdout.splitlines())
    return frozenset(lines)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the work tree's state, so the session can prove it left no litter."""
    session.config.stash[_TREE_STATUS] = work_tree_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when it left files in the work tree (``make test`` must leave it clean)."""
    before = session.config.stash.get(_TREE_STATUS, None)
    after = work_tree_status()
    if before is None or after is None:
        return
    litter = sorted(after - before)
    if litter:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line("the tests left the work tree changed (git status):", red=True)
            for line in litter:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


@pytest.fixture(autouse=True)
def _logging_isolated() -> Iterator[None]:
    """Every test starts from structlog's defaults and the root logger it found.

    A command run in-process configures logging at WARNING (``cli.context``); a later test that
    captures ``info`` lines would otherwise see none, depending on which tests ran before it.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """For tests that run commands in-process: report what a run left unclosed in time.

    ``radstream`` configures logging once per process, with handlers on the streams of the
    test's capture. ``_logging_isolated`` (autouse, so set up before and torn down after this
    fixture) removes those handlers; collecting first reports what the run left unclosed while
    its streams still exist.
    """
    yield
    gc.unfreeze()  # a service run in-process froze its heap (cli.context.freeze_startup_heap)
    gc.collect()


@pytest.fixture(autouse=True)
def _heap_unfrozen() -> Iterator[None]:
    """Every test ends with the collector seeing every object again.

    A service run in-process freezes what is alive when it serves; frozen, a test's objects
    that later form garbage cycles would never be collected, for the rest of the session.
    """
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
