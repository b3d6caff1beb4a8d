"""The runtime database role cannot rewrite the audit trail (issue #16, item 2).

Creating roles needs CREATEROLE, which the shared cluster's role does not have (and roles are
cluster-wide), so this runs on a private PostgreSQL cluster of its own: an owner role with
CREATEROLE runs the migrations, a login role in ``<database>_runtime`` does what workers do,
and everything that would let it rewrite ``audit_log`` is refused.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import pytest_asyncio

from sinks.migrate import upgrade_async
from tests.reliability.private_postgres import PrivateCluster, running_cluster

pytestmark = pytest.mark.requirement("RS-SEC-02")

DATABASE = "radstream_roles"
OWNER = "radstream_owner"
APP = "radstream_app"
READER = "radstream_reader"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """A private cluster: the owner role migrates, login roles join the groups it created."""
    with running_cluster() as private:
        yield private


def _url(cluster: PrivateCluster, user: str, database: str = DATABASE) -> str:
    return f"postgresql://{user}@127.0.0.1:{cluster.port}/{database}"


@asynccontextmanager
async def _connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to ``url``, closed on leaving."""
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def migrated(cluster: PrivateCluster) -> AsyncIterator[None]:
    """The database, migrated by its owner; an app and a reader login in the two groups."""
    async with _connected(cluster.admin_url) as admin:
        await admin.execute(f"CREATE ROLE {OWNER} LOGIN CREATEROLE")
        await admin.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
    await upgrade_async(_url(cluster, OWNER))
    async with _connected(_url(cluster, OWNER)) as owner:
        await owner.execute(f"CREATE ROLE {APP} LOGIN IN ROLE {DATABASE}_runtime")
        await owner.execute(f"CREATE ROLE {READER} LOGIN IN ROLE {DATABASE}_readonly")
    yield


# One sequence per inserted row: the cluster lives for the module, and (chain, sequence) is
# unique. (A hash of the statement was not: str hashes change per process, and two of the
# seven statements collided mod 1000 in about one run in fifty.)
_UNUSED_SEQUENCES = itertools.count(100)


async def _insert_audit_row(connection: asyncpg.Connection, sequence: int) -> None:
    await connection.execute(
        "INSERT INTO audit_log (chain_partition, sequence, hash, event_id, recorded_at,"
        " audit_offset, record) VALUES (0, $1, $2, $3, now(), $1, $4::jsonb)",
        sequence,
        "0" * 64,
        uuid.uuid4(),
        json.dumps({"kind": "test"}),
    )


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.usefixtures("migrated")
class TestRuntimeRole:
    """What the workers' role may and may not do to audit_log."""

    async def test_may_insert_and_select(self, cluster: PrivateCluster) -> None:
        """Appending and reading the trail are what it needs."""
        async with _connected(_url(cluster, APP)) as app:
            await _insert_audit_row(app, 1)
            assert await app.fetchval("SELECT count(*) FROM audit_log") >= 1

    @pytest.mark.parametrize(
        "statement",
        [
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "UPDATE audit_log SET hash = repeat('f', 64)",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "DROP TABLE audit_log",
            "ALTER TABLE audit_log OWNER TO radstream_app",
        ],
    )
    async def test_may_not_rewrite_the_trail(self, cluster: PrivateCluster, statement: str) -> None:
        """Every way to change or unprotect audit_log is refused for lack of privilege."""
        async with _connected(_url(cluster, APP)) as app:
            await _insert_audit_row(app, next(_UNUSED_SEQUENCES))
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement)

    async def test_owns_nothing(self, cluster: PrivateCluster) -> None:
        """No table belongs to the runtime role or its group."""
        async with _connected(_url(cluster, APP)) as app:
            owned = await app.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                " AND tableowner IN ($1, $2)",
                APP,
                f"{DATABASE}_runtime",
            )
        assert owned == 0

    async def test_may_update_results_for_verification(self, cluster: PrivateCluster) -> None:
        """The API marks results verified: UPDATE on inference_results is granted."""
        async with _connected(_url(cluster, APP)) as app:
            await app.execute("UPDATE inference_results SET verified_at = now() WHERE false")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.usefixtures("migrated")
class TestReadOnlyRole:
    """The read-only role reads and changes nothing."""

    async def test_may_select(self, cluster: PrivateCluster) -> None:
        """It reads the trail (audit verify, audit show)."""
        async with _connected(_url(cluster, READER)) as reader:
            assert await reader.fetchval("SELECT count(*) FROM audit_log") >= 0

    @pytest.mark.parametrize(
        "statement",
        [
            "INSERT INTO image_events (event_id) VALUES (gen_random_uuid())",
            "UPDATE inference_results SET verified_at = now()",
        ],
    )
    async def test_may_not_write(self, cluster: PrivateCluster, statement: str) -> None:
        """Writes are refused."""
        async with _connected(_url(cluster, READER)) as reader:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(statement)
