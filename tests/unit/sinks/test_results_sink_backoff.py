"""The results sink's retry delays (pure arithmetic, no database)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from schemas.settings import SinkSettings
from sinks.results_sink import ResultsSink, WriteReport

pytestmark = pytest.mark.requirement("RS-DB-03")


def _sink() -> ResultsSink:
    settings = SinkSettings(retry_initial_seconds=0.2, retry_max_seconds=10)
    return ResultsSink(async_sessionmaker(), settings)


class TestRetryDelay:
    """Delays double from retry_initial_seconds and stop at retry_max_seconds."""

    @pytest.mark.parametrize(
        ("attempt", "expected"), [(1, 0.2), (2, 0.4), (3, 0.8), (6, 6.4), (7, 10.0), (50, 10.0)]
    )
    def test_doubles_then_caps(self, attempt: int, expected: float) -> None:
        """Each retry waits twice as long as the last, never more than the maximum."""
        assert _sink().retry_delay(attempt) == pytest.approx(expected)

    def test_days_long_outage_does_not_overflow(self) -> None:
        """A huge attempt number still yields the capped delay instead of OverflowError."""
        assert _sink().retry_delay(10_000_000) == 10.0


def test_duplicates_are_received_minus_inserted() -> None:
    """The report derives duplicates from what was received and what was new."""
    report = WriteReport(
        results_received=5, results_inserted=2, lifecycle_received=0, lifecycle_inserted=0,
        seconds=0.1,
    )  # fmt: skip
    assert report.results_duplicates == 3
