"""The async engine and session factory, and the translation of driver errors into ours.

Nothing here does I/O at import: :class:`Database` is built from a URL at start-up (by
``app.py``) and disposed at shutdown. Driver and pool errors that mean "PostgreSQL is not
reachable right now" become :class:`~schemas.errors.TransientError` (``DATABASE_UNAVAILABLE``)
where they enter, so callers retry them and never see SQLAlchemy or asyncpg types.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg  # type: ignore[import-untyped]  # stubs: asyncpg-stubs (see report)
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from schemas.errors import ErrorCode, TransientError
from schemas.settings import DatabaseSettings

# Without the pre-ping, pooled connections older than this are replaced at checkout
# (Database, pre_ping).
RECYCLE_SECONDS = 300

# Library errors that mean the server is unreachable, shutting down or refusing connections.
# ``tests/unit/sinks/test_database_errors.py`` builds one of each and checks the translation.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused/reset connections, DNS failures and connect timeouts (TimeoutError)
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, incl. ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: pg_ctl stop -m fast terminated our session
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InterfaceError,  # "connection is closed", "connection was closed in the middle"
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
)
# asyncpg raises these subclasses of InterfaceError for bad parameters: retrying cannot help.
_NOT_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ClientConfigurationError,
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """Yield the error, SQLAlchemy's wrapped ``orig`` and every explicit cause, once each."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        if current.__cause__ is not None:
            pending.append(current.__cause__)


def translate_error(error: BaseException) -> TransientError | None:
    """Return our error for a library error that means "database unavailable", else ``None``."""
    if isinstance(error, sa_exc.TimeoutError):
        # The pool had no free connection in time: the database is too slow, not down.
        return TransientError(ErrorCode.TIMEOUT, "timed out waiting for a database connection")
    chain = list(_chain(error))
    if any(isinstance(item, _NOT_UNAVAILABLE) for item in chain):
        return None
    invalidated = isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
    if invalidated or any(isinstance(item, UNAVAILABLE_ERRORS) for item in chain):
        return TransientError(ErrorCode.DATABASE_UNAVAILABLE, "PostgreSQL is unavailable")
    return None


@contextmanager
def database_errors() -> Iterator[None]:
    """Translate "database unavailable" library errors raised inside the block into ours."""
    try:
        yield
    except TransientError:
        raise
    except (sa_exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        translated = translate_error(exc)
        if translated is None:
            raise
        raise translated from exc


def to_async_url(url: str) -> str:
    """Select SQLAlchemy's asyncpg driver for a plain ``postgresql://`` URL."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    return url


def tls_context(settings: DatabaseSettings) -> ssl.SSLContext | str:
    """What asyncpg's ``ssl`` argument gets for ``settings.sslmode``.

    ``verify-full`` checks the server's certificate against ``sslrootcert`` and its name against
    the host connected to; ``verify-ca`` the certificate only; ``require`` encrypts without
    verifying (libpq's meaning, without a root certificate); ``prefer`` and ``disable`` are
    passed on as asyncpg's own modes.
    """
    mode = settings.sslmode
    if mode in {"disable", "prefer"}:
        return mode
    context = ssl.create_default_context(
        cafile=None if settings.sslrootcert is None else str(settings.sslrootcert)
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode != "verify-full":
        context.check_hostname = False
    if mode == "require":
        context.verify_mode = ssl.CERT_NONE
    if settings.sslcert is not None and settings.sslkey is not None:
        context.load_cert_chain(settings.sslcert, settings.sslkey)
    return context


class Database:
    """One async engine and its session factory, created at start-up and disposed at shutdown.

    Args:
        url: ``postgresql://`` or ``postgresql+asyncpg://`` URL (a secret: never logged).
        pool_size: pooled connections kept open (``SinkSettings.pool_size``).
        connect_timeout_seconds: how long a new connection may take before it counts as down.
        tls: asyncpg's ``ssl`` argument (:func:`tls_context`); None leaves asyncpg's default.
        pre_ping: test each pooled connection at checkout (SQLAlchemy's ``pool_pre_ping``), so
            a request after a server restart does not fail on a dead connection. It costs three
            round trips per checkout (asyncpg's ping is BEGIN, a query, ROLLBACK). A caller that
            retries a failed write anyway passes False: its first write after a restart fails
            on the dead connection, SQLAlchemy invalidates the pool (the error is translated to
            ``DATABASE_UNAVAILABLE``), and the retry gets a new connection ("optimistic"
            disconnect handling). The batching sinks do; the API and one-shot commands do not.
            Without the pre-ping, connections are replaced once they are five minutes old
            (``pool_recycle``, no round trip): an idle timeout of a firewall or a connection
            pooler (usually longer) then does not leave a dead connection whose first use
            would be reported as a database outage.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        connect_timeout_seconds: float = 5.0,
        tls: ssl.SSLContext | str | None = None,
        pre_ping: bool = True,
    ) -> None:
        connect_args: dict[str, object] = {"timeout": connect_timeout_seconds}
        if tls is not None:
            connect_args["ssl"] = tls
        self.engine: AsyncEngine = create_async_engine(
            to_async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=pre_ping,
            pool_recycle=-1 if pre_ping else RECYCLE_SECONDS,
            pool_timeout=connect_timeout_seconds,
            connect_args=connect_args,
        )
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    async def ping(self) -> bool:
        """Whether PostgreSQL answers ``SELECT 1`` now (for health checks; never raises)."""
        try:
            with database_errors():
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except TransientError:
            return False
        return True

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
