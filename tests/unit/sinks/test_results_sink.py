"""The results sink without a database: how it collects a batch and how long it waits."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from schemas.settings import SinkSettings
from sinks.results_sink import ResultsSink, WriteReport


def _sink() -> ResultsSink:
    settings = SinkSettings(retry_initial_seconds=0.2, retry_max_seconds=10, retry_jitter=0)
    return ResultsSink(async_sessionmaker(), settings)


class TestBackpressure:
    """While PostgreSQL is away the runtime waits per the sink's settings."""

    def test_waits_double_then_cap(self) -> None:
        """Each retry waits twice as long as the last, never more than retry_max_seconds."""
        delays = list(itertools.islice(_sink().backpressure.policy.delays(), 50))
        assert delays[:7] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0])
        assert delays[-1] == 10.0

    def test_waits_until_the_database_is_back(self) -> None:
        """No attempt limit and no overall bound: an outage stalls the stage, it loses nothing."""
        policy = _sink().backpressure.policy
        assert (policy.max_attempts, policy.max_elapsed_seconds) == (None, None)

    def test_jitter_comes_from_the_settings(self) -> None:
        """The configured jitter spreads the waits of many workers."""
        sink = ResultsSink(async_sessionmaker(), SinkSettings(retry_jitter=0.3))
        assert sink.backpressure.policy.jitter == 0.3


def test_duplicates_are_received_minus_inserted() -> None:
    """The report derives duplicates from what was received and what was new."""
    report = WriteReport(
        results_received=5, results_inserted=2, lifecycle_received=0, lifecycle_inserted=0,
        seconds=0.1,
    )  # fmt: skip
    assert report.results_duplicates == 3
