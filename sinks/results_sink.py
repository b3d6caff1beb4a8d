"""The write path of the results sink agent, independent of Faust.

A batch of result events (plus the rejections and validations consumed beside them) is written
in ONE transaction: every row or none. Writes are idempotent, so the agent may redeliver a batch
after a crash and nothing doubles. The agent commits its Kafka offsets only after
:meth:`ResultsSink.write_batch_with_backoff` returns; while PostgreSQL is down that call keeps
retrying with bounded exponential backoff, the agent stops consuming, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.errors import TransientError
from schemas.events import ImageRejected, ImageValidated, InferenceCompleted
from schemas.settings import SinkSettings
from sinks.database import database_errors
from sinks.records import LifecycleEntry
from sinks.repositories import LifecycleRepository, ResultsRepository


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What one committed batch did; ``*_duplicates`` were already stored (redeliveries)."""

    results_received: int
    results_inserted: int
    lifecycle_received: int
    lifecycle_inserted: int
    seconds: float
    attempts: int = 1

    @property
    def results_duplicates(self) -> int:
        """Results skipped because their natural key was already stored."""
        return self.results_received - self.results_inserted


@dataclass(frozen=True, slots=True)
class SinkHooks:
    """Optional callbacks through which the agent records metrics and health, in one place.

    Attributes:
        database_up: called with ``False`` when a write finds PostgreSQL unavailable and with
            ``True`` when a write succeeds again after that.
        backpressure: called with the seconds about to be spent waiting before a retry.
        batch_written: called with the report of every committed batch.
    """

    database_up: Callable[[bool], None] | None = None
    backpressure: Callable[[float], None] | None = None
    batch_written: Callable[[WriteReport], None] | None = None


class ResultsSink:
    """Writes batches of results and lifecycle steps to PostgreSQL, exactly once in effect."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: SinkSettings,
        hooks: SinkHooks | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._hooks = hooks or SinkHooks()
        self._sleep = sleep

    async def write_batch(
        self,
        results: Sequence[InferenceCompleted],
        rejections: Sequence[ImageRejected] = (),
        validated: Sequence[ImageValidated] = (),
    ) -> WriteReport:
        """Write one batch in one transaction; raise ``TransientError`` if PostgreSQL is down.

        Lifecycle steps recorded: ``validated``, ``rejected``/``failed``, and for every result
        ``inferred`` and ``stored`` (at the sink's clock when the batch was written).
        """
        started = time.perf_counter()
        with database_errors():
            async with self._sessions() as session, session.begin():
                inserted = await ResultsRepository.upsert_results(session, results)
                entries = [LifecycleEntry.validated(event) for event in validated]
                entries += [LifecycleEntry.rejected(event) for event in rejections]
                # The sink's clock, not the server's: saves a round trip per batch.
                now = datetime.now(UTC)
                for result in results:
                    entries.append(LifecycleEntry.inferred(result))
                    entries.append(LifecycleEntry.stored(result, now))
                recorded = await LifecycleRepository.record(session, entries)
        report = WriteReport(
            results_received=len(results),
            results_inserted=inserted,
            lifecycle_received=len(entries),
            lifecycle_inserted=recorded,
            seconds=time.perf_counter() - started,
        )
        if self._hooks.batch_written is not None:
            self._hooks.batch_written(report)
        return report

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): doubling, capped."""
        initial = self._settings.retry_initial_seconds
        # The exponent is capped so a days-long outage cannot overflow the float.
        exponent = min(max(attempt - 1, 0), 32)
        return float(min(initial * 2**exponent, self._settings.retry_max_seconds))

    async def write_batch_with_backoff(
        self,
        results: Sequence[InferenceCompleted],
        rejections: Sequence[ImageRejected] = (),
        validated: Sequence[ImageValidated] = (),
    ) -> WriteReport:
        """Write the batch, retrying retryable failures until it commits or the task is cancelled.

        Only retryable :class:`TransientError` (database unavailable, pool timeout) is retried;
        any other error propagates for the agent to dead-letter.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                report = await self.write_batch(results, rejections, validated)
            except TransientError as error:
                if not error.retryable:
                    raise
                if attempt == 1 and self._hooks.database_up is not None:
                    self._hooks.database_up(False)
                delay = self.retry_delay(attempt)
                if self._hooks.backpressure is not None:
                    self._hooks.backpressure(delay)
                await self._sleep(delay)
                continue
            if attempt > 1 and self._hooks.database_up is not None:
                self._hooks.database_up(True)
            return WriteReport(
                results_received=report.results_received,
                results_inserted=report.results_inserted,
                lifecycle_received=report.lifecycle_received,
                lifecycle_inserted=report.lifecycle_inserted,
                seconds=report.seconds,
                attempts=attempt,
            )
