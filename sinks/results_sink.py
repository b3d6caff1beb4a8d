"""The results sink: results and lifecycle steps to PostgreSQL, one transaction per batch.

A :class:`~streams.batching_sink.BatchingSink`: the results stage adds the events of one consumed
batch (results, plus the arrivals, rejections and validations consumed beside them) and flushes
them in ONE transaction — every row or none. Writes are idempotent, so a batch redelivered after a
crash doubles nothing. The stage commits its Kafka offsets only after the flush committed; while
PostgreSQL is down the flush raises ``DATABASE_UNAVAILABLE`` and the runtime waits and flushes
again (:func:`~streams.batching_sink.flush_until_committed`): the stage stops consuming and
nothing is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.events import (
    ImageArrived,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ShadowOutcome,
    StorableEvent,
)
from schemas.rollout import ResultRole
from schemas.settings import SinkSettings
from sinks.database import database_errors
from sinks.records import LifecycleEntry
from sinks.repositories import LifecycleRepository, ResultsRepository
from streams.batching_sink import Backpressure, SinkHooks


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What one committed batch did; ``*_duplicates`` were already stored (redeliveries)."""

    results_received: int
    results_inserted: int
    lifecycle_received: int
    lifecycle_inserted: int
    seconds: float

    @property
    def results_duplicates(self) -> int:
        """Results skipped because their natural key was already stored."""
        return self.results_received - self.results_inserted


@dataclass(slots=True)
class _Pending:
    results: list[InferenceCompleted] = field(default_factory=list)
    arrivals: list[ImageArrived] = field(default_factory=list)
    rejections: list[ImageRejected] = field(default_factory=list)
    validated: list[ImageValidated] = field(default_factory=list)
    shadow_results: list[InferenceCompleted] = field(default_factory=list)
    shadow_rejections: list[ImageRejected] = field(default_factory=list)


class ResultsSink:
    """Writes batches of results and lifecycle steps to PostgreSQL, exactly once in effect.

    Args:
        sessions: the session factory of the started :class:`~sinks.database.Database`.
        settings: batch and backoff settings.
        hooks: metrics and health callbacks (backpressure, database up, batch written).
        sleep: awaited while waiting out an outage (a fake in tests).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: SinkSettings,
        hooks: SinkHooks[WriteReport] | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._sessions = sessions
        self._hooks: SinkHooks[WriteReport] = hooks or SinkHooks()
        self._backpressure = Backpressure.from_settings(settings, self._hooks, sleep=sleep)
        self._pending = _Pending()

    @property
    def backpressure(self) -> Backpressure:
        """How the runtime waits while PostgreSQL is unavailable."""
        return self._backpressure

    def add(self, event: StorableEvent) -> None:
        """Collect one event of the batch (a result, an arrival, a rejection, a validation, a
        shadow's)."""
        if isinstance(event, ShadowOutcome):
            if event.result is not None:
                self._pending.shadow_results.append(event.result)
            if event.rejection is not None:
                self._pending.shadow_rejections.append(event.rejection)
        elif isinstance(event, InferenceCompleted):
            self._pending.results.append(event)
        elif isinstance(event, ImageRejected):
            self._pending.rejections.append(event)
        elif isinstance(event, ImageArrived):
            self._pending.arrivals.append(event)
        else:
            self._pending.validated.append(event)

    def clear(self) -> None:
        """Forget the collected events."""
        self._pending = _Pending()

    async def flush(self) -> WriteReport:
        """Write the collected events in one transaction; ``TransientError`` if PostgreSQL is down.

        Lifecycle steps recorded: ``arrived`` (at the arrival's ``occurred_at``), ``validated``,
        ``rejected``/``failed``, and for every result
        ``inferred`` and ``stored`` (at the sink's clock when the batch was written). A shadow
        version's results and failures are stored with role ``shadow`` (no other lifecycle
        step: they are not part of the image's story). The events stay collected when the write
        fails.
        """
        pending = self._pending
        started = time.perf_counter()
        with database_errors():
            async with self._sessions() as session, session.begin():
                inserted = await ResultsRepository.upsert_results(session, pending.results)
                inserted += await ResultsRepository.upsert_results(
                    session, pending.shadow_results, ResultRole.SHADOW
                )
                entries = [LifecycleEntry.arrived(event) for event in pending.arrivals]
                entries += [LifecycleEntry.validated(event) for event in pending.validated]
                entries += [LifecycleEntry.rejected(event) for event in pending.rejections]
                entries += [
                    LifecycleEntry.rejected(event, ResultRole.SHADOW)
                    for event in pending.shadow_rejections
                ]
                # The sink's clock, not the server's: saves a round trip per batch.
                now = datetime.now(UTC)
                for result in pending.results:
                    entries.append(LifecycleEntry.inferred(result))
                    entries.append(LifecycleEntry.stored(result, now))
                recorded = await LifecycleRepository.record(session, entries)
        self.clear()
        report = WriteReport(
            results_received=len(pending.results) + len(pending.shadow_results),
            results_inserted=inserted,
            lifecycle_received=len(entries),
            lifecycle_inserted=recorded,
            seconds=time.perf_counter() - started,
        )
        if self._hooks.batch_written is not None:
            self._hooks.batch_written(report)
        return report
