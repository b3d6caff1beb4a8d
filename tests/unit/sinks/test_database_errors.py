"""Translation of SQLAlchemy/asyncpg errors into radstream's errors (no database needed)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from schemas.errors import ErrorCode, TransientError
from sinks.database import (
    RECYCLE_SECONDS,
    UNAVAILABLE_ERRORS,
    Database,
    database_errors,
    to_async_url,
    translate_error,
)

pytestmark = pytest.mark.requirement("RS-ERR-01", "RS-DB-03")


def _instance(error_type: type[BaseException]) -> BaseException:
    """Build one instance of a library error type the way the library would."""
    if issubclass(error_type, sa_exc.DBAPIError):
        return error_type("SELECT 1", None, ConnectionRefusedError(111, "refused"))
    if issubclass(error_type, asyncpg.PostgresError):
        return error_type("server said no")
    return error_type("connection is closed")


class TestUnavailableMapping:
    """Every error type the sink treats as "database unavailable" maps to DATABASE_UNAVAILABLE."""

    @pytest.mark.parametrize("error_type", UNAVAILABLE_ERRORS, ids=lambda t: t.__name__)
    def test_every_caught_type_is_translated(self, error_type: type[BaseException]) -> None:
        """Each listed library error becomes a retryable DATABASE_UNAVAILABLE TransientError."""
        translated = translate_error(_instance(error_type))
        assert isinstance(translated, TransientError)
        assert translated.code is ErrorCode.DATABASE_UNAVAILABLE
        assert translated.retryable

    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"),
            asyncpg.AdminShutdownError("terminating connection due to administrator command"),
            asyncpg.CannotConnectNowError("the database system is shutting down"),
            ConnectionRefusedError(111, "Connect call failed"),
        ],
        ids=["ConnectionDoesNotExist", "AdminShutdown", "CannotConnectNow", "Refused"],
    )
    def test_wrapped_driver_error_is_found_through_the_cause(self, error: Exception) -> None:
        """A generic SQLAlchemy DBAPIError wrapping a connection error is still unavailability."""
        wrapped = sa_exc.DBAPIError("INSERT", None, error)
        translated = translate_error(wrapped)
        assert translated is not None
        assert translated.code is ErrorCode.DATABASE_UNAVAILABLE

    def test_pool_timeout_is_a_retryable_timeout(self) -> None:
        """Waiting too long for a pooled connection maps to TIMEOUT, still retryable."""
        translated = translate_error(sa_exc.TimeoutError("QueuePool limit reached"))
        assert translated is not None
        assert translated.code is ErrorCode.TIMEOUT
        assert translated.retryable

    def test_invalidated_connection_counts_as_unavailable(self) -> None:
        """A DBAPIError SQLAlchemy marked as a disconnect is unavailability."""
        error = sa_exc.DBAPIError("SELECT 1", None, RuntimeError("x"), connection_invalidated=True)
        assert translate_error(error) is not None


class TestNotUnavailable:
    """Errors retrying cannot fix are left alone, so the agent dead-letters them."""

    @pytest.mark.parametrize(
        "error",
        [
            sa_exc.IntegrityError("INSERT", None, asyncpg.UniqueViolationError("dup")),
            sa_exc.ProgrammingError("SELECT", None, asyncpg.UndefinedTableError("no table")),
            sa_exc.InterfaceError("INSERT", None, asyncpg.exceptions.DataError("bad value")),
            ValueError("not a database error"),
        ],
        ids=["unique", "undefined-table", "data-error", "value-error"],
    )
    def test_is_not_translated(self, error: Exception) -> None:
        """Constraint, SQL and data errors are not turned into DATABASE_UNAVAILABLE."""
        assert translate_error(error) is None


class TestDatabaseErrorsContext:
    """The context manager raises our error from the library's."""

    def test_raises_transient_from_library_error(self) -> None:
        """The library error is kept as __cause__ for the service log."""
        original = asyncpg.CannotConnectNowError("starting up")
        with pytest.raises(TransientError) as caught, database_errors():
            raise original
        assert caught.value.__cause__ is original

    def test_passes_other_errors_through(self) -> None:
        """A unique violation leaves the block unchanged."""
        error = sa_exc.IntegrityError("INSERT", None, asyncpg.UniqueViolationError("dup"))
        with pytest.raises(sa_exc.IntegrityError), database_errors():
            raise error

    def test_passes_our_transient_error_through(self) -> None:
        """An already translated error is not wrapped twice."""
        error = TransientError(ErrorCode.DATABASE_UNAVAILABLE)
        with pytest.raises(TransientError) as caught, database_errors():
            raise error
        assert caught.value is error


class TestAsyncUrl:
    """URLs select the asyncpg driver."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ],
    )
    def test_driver_selected(self, url: str, expected: str) -> None:
        """Plain URLs get +asyncpg; explicit drivers are kept."""
        assert to_async_url(url) == expected


class TestPoolSettings:
    """What the pool does at checkout (no connection is made to build an engine)."""

    async def test_the_default_pre_pings_and_never_recycles(self) -> None:
        database = Database("postgresql://u@127.0.0.1:1/db")
        try:
            assert database.engine.pool._pre_ping is True  # type: ignore[attr-defined]
            assert database.engine.pool._recycle == -1  # type: ignore[attr-defined]
        finally:
            await database.dispose()

    async def test_a_retrying_sink_recycles_instead_of_pinging(self) -> None:
        """No pre-ping, but no connection older than RECYCLE_SECONDS either: an idle timeout
        on the way must not make the next write look like an outage."""
        database = Database("postgresql://u@127.0.0.1:1/db", pre_ping=False)
        try:
            assert database.engine.pool._pre_ping is False  # type: ignore[attr-defined]
            assert database.engine.pool._recycle == RECYCLE_SECONDS  # type: ignore[attr-defined]
        finally:
            await database.dispose()
