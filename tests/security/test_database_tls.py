"""PostgreSQL over TLS: ``database.sslmode`` verify-full, verify-ca and require (issue #16, 2).

A private cluster started with a server certificate from ``ops/postgres-tls.sh`` (the shared
cluster has no TLS and must not be reconfigured). The engine radstream builds
(:class:`sinks.database.Database` with :func:`sinks.database.tls_context`) must encrypt, and
verify-full must refuse a server whose certificate another CA signed or whose name differs.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from schemas.settings import PROJECT_ROOT, DatabaseSettings, Settings
from sinks.database import Database, tls_context
from sinks.migrate import current_revision_async
from tests.reliability.private_postgres import SUPERUSER, PrivateCluster, running_cluster

pytestmark = pytest.mark.requirement("RS-SEC-02")

TLS_SCRIPT = PROJECT_ROOT / "ops" / "postgres-tls.sh"
# Bounded: a local TLS handshake takes milliseconds.
CONNECT_TIMEOUT_SECONDS = 5.0


def _certificates(directory: Path, *hosts: str) -> Path:
    subprocess.run(
        ["bash", str(TLS_SCRIPT), str(directory), *hosts],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return directory


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """A private cluster serving TLS with a certificate naming 127.0.0.1 only."""

    def certify(private: PrivateCluster) -> None:
        tls = _certificates(private.base / "tls", "127.0.0.1")
        if os.geteuid() == 0:
            for path in (tls, *tls.iterdir()):
                shutil.chown(path, "postgres", "postgres")

    with running_cluster(
        "ssl=on",
        # Relative to the data directory, which is a sibling of tls/.
        "ssl_cert_file=../tls/server.crt",
        "ssl_key_file=../tls/server.key",
        prepare=certify,
    ) as private:
        yield private


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the server's certificate."""
    return _certificates(tmp_path_factory.mktemp("other") / "tls") / "ca.crt"


def _url(cluster: PrivateCluster, host: str = "127.0.0.1") -> str:
    return f"postgresql://{SUPERUSER}@{host}:{cluster.port}/postgres"


async def _encrypted(url: str, settings: DatabaseSettings) -> bool:
    """Whether a connection of radstream's engine with ``settings`` is encrypted."""
    database = Database(
        url, pool_size=1, connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS, tls=tls_context(settings)
    )
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            return bool(result.scalar_one())
    finally:
        await database.dispose()


@pytest_asyncio.fixture
async def ca(cluster: PrivateCluster) -> AsyncIterator[Path]:
    """The CA that signed the server's certificate."""
    yield cluster.base / "tls" / "ca.crt"


class TestTls:
    """The modes a deployment can choose."""

    async def test_verify_full_encrypts(self, cluster: PrivateCluster, ca: Path) -> None:
        """With the right CA and host name the connection is up and encrypted."""
        settings = DatabaseSettings(sslmode="verify-full", sslrootcert=ca)
        assert await _encrypted(_url(cluster), settings)

    async def test_verify_full_checks_the_host_name(
        self, cluster: PrivateCluster, ca: Path
    ) -> None:
        """``localhost`` reaches the same server, but the certificate does not name it."""
        settings = DatabaseSettings(sslmode="verify-full", sslrootcert=ca)
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await _encrypted(_url(cluster, "localhost"), settings)

    async def test_verify_full_refuses_another_ca(
        self, cluster: PrivateCluster, other_ca: Path
    ) -> None:
        """A server certificate signed by another CA is refused."""
        settings = DatabaseSettings(sslmode="verify-full", sslrootcert=other_ca)
        with pytest.raises(ssl.SSLCertVerificationError):
            await _encrypted(_url(cluster), settings)

    async def test_verify_ca_ignores_the_name(self, cluster: PrivateCluster, ca: Path) -> None:
        """verify-ca checks the chain only (the server is reached under a name it lacks)."""
        settings = DatabaseSettings(sslmode="verify-ca", sslrootcert=ca)
        assert await _encrypted(_url(cluster, "localhost"), settings)

    async def test_require_encrypts_without_a_ca(self, cluster: PrivateCluster) -> None:
        """require encrypts (libpq's meaning: no verification without a root certificate)."""
        assert await _encrypted(_url(cluster), DatabaseSettings(sslmode="require"))

    async def test_disable_is_plain(self, cluster: PrivateCluster) -> None:
        """The control: with TLS disabled the same query says the link is not encrypted."""
        assert not await _encrypted(_url(cluster), DatabaseSettings(sslmode="disable"))

    async def test_migration_tool_uses_tls(self, cluster: PrivateCluster, ca: Path) -> None:
        """``radstream db`` connects through the same context (never migrated: no revision)."""
        settings = Settings(
            environment="test",
            database_url=_url(cluster),
            database=DatabaseSettings(sslmode="verify-full", sslrootcert=ca),
        )
        tls = tls_context(settings.database)
        assert await current_revision_async(settings.owner_database_url, tls=tls) is None


class TestSettings:
    """Inconsistent TLS settings are refused at start-up."""

    def test_verification_needs_a_root_certificate(self) -> None:
        """verify-full without sslrootcert is a settings error."""
        with pytest.raises(ValueError, match="sslrootcert"):
            DatabaseSettings(sslmode="verify-full")

    def test_client_certificate_needs_its_key(self, tmp_path: Path) -> None:
        """sslcert without sslkey is a settings error."""
        with pytest.raises(ValueError, match="together"):
            DatabaseSettings(sslcert=tmp_path / "c.crt")
