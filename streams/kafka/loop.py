"""The one run loop of the aiokafka-driven batch loops (the audit agent, the audit-table writer).

A :class:`BatchLoop` knows how to start (connect, recover its state), process one batch and stop;
this module runs it. :func:`run_until_stopped` restarts it from durable state after a retryable
error (broker or database trouble), waiting per a jittered, capped backoff, and raises a
non-retryable one (a fenced producer, a broken chain) so the worker exits and its supervisor
restarts it. :func:`run_until_idle` runs it until nothing arrives for a while (tools, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from schemas.errors import RadstreamError
from streams.retry import RetryPolicy, run_with_retries

log = structlog.get_logger("radstream.loop")

# After a failure: restart after 1 s, then doubling, never waiting more than 10 s at a time.
RESTART_POLICY = RetryPolicy.until_done(initial_seconds=1.0, max_seconds=10.0)


class BatchLoop(Protocol):
    """A consume→process→commit loop over Kafka, one batch at a time."""

    @property
    def name(self) -> str:
        """What the loop is called in logs."""
        ...

    async def start(self) -> None:
        """Connect and recover durable state (offsets, chain head)."""

    async def stop(self, *, clean: bool = True) -> None:
        """Disconnect; ``clean`` after a normal end (checkpoint the tail), not after a failure."""

    async def process_batch(self, timeout_ms: int = 500) -> int:
        """Handle one batch (waiting up to ``timeout_ms`` for it); the messages handled."""
        ...


async def run_until_stopped(
    loop: BatchLoop, stop: asyncio.Event, *, restart: RetryPolicy = RESTART_POLICY
) -> None:
    """Run ``loop`` batch after batch until ``stop`` is set, then stop it cleanly.

    Raises:
        RadstreamError: a non-retryable error (the loop is stopped first); the process should
            exit so that its supervisor restarts it.
        Exception: anything unexpected, after stopping the loop.
    """

    async def session() -> None:
        if stop.is_set():  # stopped while waiting to restart
            return
        try:
            await loop.start()
            while not stop.is_set():
                await loop.process_batch()
        except Exception:
            # The failure is what the caller needs to see, not a second one from closing.
            with contextlib.suppress(RadstreamError):
                await loop.stop(clean=False)
            raise
        await loop.stop(clean=True)

    def restarting(attempt: int, error: RadstreamError, delay: float) -> None:
        log.warning(
            "batch_loop_restarting",
            loop=loop.name,
            error_code=error.code.value,
            reason=error.reason,
            attempt=attempt,
            delay_seconds=round(delay, 2),
        )

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    try:
        await run_with_retries(session, restart, sleep=pause, on_retry=restarting)
    except RadstreamError as error:
        log.error(  # noqa: TRY400 - the reason is the message; a traceback adds nothing
            "batch_loop_failed", loop=loop.name, error_code=error.code.value, reason=error.reason
        )
        raise


async def run_until_idle(
    loop: BatchLoop,
    *,
    idle_seconds: float = 1.0,
    deadline_seconds: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Start ``loop``, run it until nothing arrives for ``idle_seconds``, stop it cleanly.

    Returns the number of messages handled.

    Raises:
        TimeoutError: it was still busy after ``deadline_seconds``.
    """
    await loop.start()
    handled = 0
    try:
        async with asyncio.timeout(deadline_seconds):
            idle_since = clock()
            while clock() - idle_since < idle_seconds:
                count = await loop.process_batch(timeout_ms=200)
                if count:
                    handled += count
                    idle_since = clock()
    finally:
        await loop.stop()
    return handled
