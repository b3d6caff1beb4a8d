"""The batching-sink contract the results sink and the audit-table writer share.

In the spirit of Quix Streams' ``BatchingSink``: a sink collects the items of one consumed batch
with :meth:`BatchingSink.add` and writes them all in one transaction with
:meth:`BatchingSink.flush`. The runtime (the Faust results agent, the audit-table loop) then
keeps its side of the bargain through :func:`flush_until_committed`:

* it commits the consumed offsets only after ``flush`` committed;
* backpressure is one condition: ``flush`` raised a *retryable* error (the database is
  unavailable). The runtime waits — bounded, jittered, each delay capped
  (:class:`Backpressure`) — and flushes the same items again, consuming nothing meanwhile, so an
  outage stalls the stream and loses nothing. ``database_up(False)`` marks the start of an
  outage, ``database_up(True)`` its end;
* any other error propagates with the items still added; the runtime decides (the results stage
  isolates the culprit row by row) and calls :meth:`BatchingSink.clear`.

Writes are idempotent (``ON CONFLICT`` on natural keys), so a batch flushed again after a crash
between commit and offset commit changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from schemas.errors import RadstreamError
from schemas.settings import SinkSettings
from streams.retry import FailureRecord, RetryPolicy, run_with_retries

ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ReportT = TypeVar("ReportT")
ReportT_co = TypeVar("ReportT_co", covariant=True)


@dataclass(frozen=True, slots=True)
class SinkHooks(Generic[ReportT]):
    """Optional callbacks through which a sink reports metrics and health, in one place.

    Attributes:
        database_up: called with ``False`` when a flush finds the database unavailable and with
            ``True`` when a flush succeeds again after that.
        backpressure: called with the seconds about to be spent waiting before a retry.
        batch_written: called by the sink with the report of every committed batch.
    """

    database_up: Callable[[bool], None] | None = None
    backpressure: Callable[[float], None] | None = None
    batch_written: Callable[[ReportT], None] | None = None


@dataclass(frozen=True, slots=True)
class Backpressure:
    """How a runtime waits while a sink's destination is unavailable, and whom it tells.

    Attributes:
        policy: how long to wait between flushes (and whether to give up).
        hooks: told about the outage.
        sleep: awaited with each wait (a fake in tests).
        stop: when set, the runtime is shutting down: the wait ends at once and the last
            error is raised instead of flushing again, so shutdown is not held up by an
            outage (the offsets stay uncommitted; the batch is redelivered after a restart).
    """

    policy: RetryPolicy
    hooks: SinkHooks[Any] = field(default_factory=SinkHooks)
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    stop: asyncio.Event | None = None

    @classmethod
    def from_settings(
        cls,
        settings: SinkSettings,
        hooks: SinkHooks[Any] | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        stop: asyncio.Event | None = None,
    ) -> Backpressure:
        """Wait until the database is back: doubling delays capped at ``retry_max_seconds``."""
        policy = RetryPolicy.until_done(
            initial_seconds=settings.retry_initial_seconds,
            max_seconds=settings.retry_max_seconds,
            jitter=settings.retry_jitter,
        )
        return cls(policy, hooks or SinkHooks(), sleep, stop)

    def stopping(self) -> bool:
        """Whether the runtime is shutting down."""
        return self.stop is not None and self.stop.is_set()

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the runtime starts shutting down meanwhile."""
        if self.stop is None:
            await self.sleep(seconds)
            return
        waiting = asyncio.ensure_future(self.sleep(seconds))
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            stopping.cancel()


class BatchingSink(Protocol[ItemT_contra, ReportT_co]):
    """A sink that writes the items of one consumed batch in one transaction."""

    @property
    def backpressure(self) -> Backpressure:
        """How the runtime waits while this sink's destination is unavailable."""
        ...

    def add(self, item: ItemT_contra) -> None:
        """Collect one item of the batch being consumed."""

    async def flush(self) -> ReportT_co:
        """Write every collected item in one transaction, then forget them.

        Raises:
            RadstreamError: retryable when the destination is unavailable (backpressure); the
                items stay collected either way until a flush succeeds or :meth:`clear`.
        """
        ...

    def clear(self) -> None:
        """Forget every collected item (after a failure the runtime handled otherwise)."""


async def flush_until_committed(sink: BatchingSink[Any, ReportT]) -> ReportT:
    """Flush ``sink``, waiting out backpressure; returns once the items are committed.

    Raises:
        RadstreamError: a failure that waiting cannot fix, the policy's bound passed, or the
            last error when the runtime started shutting down during the outage.
        Exception: anything else the sink raised.
    """
    backpressure = sink.backpressure
    hooks = backpressure.hooks

    def waiting(attempt: int, _error: RadstreamError, delay: float) -> None:
        if attempt == 1 and hooks.database_up is not None:
            hooks.database_up(False)
        if hooks.backpressure is not None:
            hooks.backpressure(delay)

    def recovered(_failures: FailureRecord) -> None:
        if hooks.database_up is not None:
            hooks.database_up(True)

    return await run_with_retries(
        sink.flush,
        backpressure.policy,
        is_retryable=lambda error: error.retryable and not backpressure.stopping(),
        sleep=backpressure.wait,
        on_retry=waiting,
        on_recovered=recovered,
    )
