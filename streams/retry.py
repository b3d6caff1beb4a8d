"""The one retry mechanism of radstream: jittered, capped backoff for retryable errors.

Everything that waits for something to come back goes through :func:`run_with_retries`: a stage
reading an image file the router is still writing (a few attempts, then a dead letter),
delivering a batch's outcomes while the broker is away, a sink flushing while PostgreSQL is
away, and the audit loops restarting after a broker error. Only a retryable
:class:`~schemas.errors.RadstreamError` is retried; a permanent one, or any other exception, is
raised at once. A :class:`RetryPolicy` bounds every single delay (``max_seconds``) and may bound
the number of attempts (``max_attempts``) and the total time (``max_elapsed_seconds``); past
either bound the caller gets a :class:`RetriesExhaustedError` (``RETRIES_EXHAUSTED``) carrying
the last error, so it can dead-letter the work, or recreate a client and try again. One
:class:`FailureRecord` says how often and when the work failed.

Why our own loop and not tenacity: the delays must be reproducible under a seed (the jitter of
one policy, for tests and dead letters), the overall bound must run on an injected monotonic
clock, and the failure record and the outage start/end hooks are ours; tenacity would need a
custom wait, stop and callbacks for each, which is as much code as this loop. No I/O here.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from schemas.errors import ErrorCode, RadstreamError, TransientError
from schemas.events import utc_now
from schemas.settings import RetrySettings

T = TypeVar("T")

OnRetry = Callable[[int, RadstreamError, float], Awaitable[None] | None]
OnRecovered = Callable[["FailureRecord"], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, how long and for how long in total to wait between attempts.

    Attributes:
        max_attempts: total attempts, the first one included (1 means no retry); ``None``
            retries until the work succeeds, ``max_elapsed_seconds`` passes or the task is
            cancelled (backpressure: a stage waits out an outage instead of losing work).
        initial_seconds: delay before the second attempt.
        max_seconds: cap of any single delay.
        multiplier: growth factor of the delay per attempt.
        jitter: fraction (0-1) of each delay that is randomised away, spreading retries of
            many workers; 0 disables jitter.
        max_elapsed_seconds: give up once the next attempt would start later than this after
            the first one; ``None`` for no overall bound.
        seed: seed of the jitter's random generator; set it for deterministic delays.
    """

    max_attempts: int | None = 4
    initial_seconds: float = 0.1
    max_seconds: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.0
    max_elapsed_seconds: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_seconds < 0 or self.max_seconds < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.max_elapsed_seconds is not None and self.max_elapsed_seconds <= 0:
            raise ValueError("max_elapsed_seconds must be positive")

    @classmethod
    def from_settings(cls, settings: RetrySettings, *, seed: int | None = None) -> RetryPolicy:
        """The bounded policy the deployment configured for work on one message."""
        return cls(
            max_attempts=settings.max_attempts,
            initial_seconds=settings.initial_seconds,
            max_seconds=settings.max_seconds,
            multiplier=settings.multiplier,
            jitter=settings.jitter,
            max_elapsed_seconds=settings.max_elapsed_seconds,
            seed=seed,
        )

    @classmethod
    def until_done(
        cls,
        *,
        initial_seconds: float,
        max_seconds: float,
        jitter: float = 0.2,
        max_elapsed_seconds: float | None = None,
        seed: int | None = None,
    ) -> RetryPolicy:
        """Retry until success (or the overall bound): doubling delays capped at ``max_seconds``."""
        return cls(
            max_attempts=None,
            initial_seconds=initial_seconds,
            max_seconds=max_seconds,
            jitter=jitter,
            max_elapsed_seconds=max_elapsed_seconds,
            seed=seed,
        )

    def delays(self) -> Iterator[float]:
        """The waits before attempts 2, 3, ... (same values for the same seed).

        Finite (``max_attempts - 1`` values) when attempts are bounded, endless otherwise.
        """
        # Jitter spreads retries of many workers; it is not a secret, so a seeded PRNG is right.
        rng = random.Random(self.seed)  # noqa: S311  # nosec B311
        base = min(self.initial_seconds, self.max_seconds)
        retry = 0
        while self.max_attempts is None or retry < self.max_attempts - 1:
            yield base * (1.0 - self.jitter * rng.random())
            # Capped at every step, so a days-long outage never overflows the float.
            base = min(base * self.multiplier, self.max_seconds)
            retry += 1


class RetriesExhaustedError(TransientError):
    """A retryable error persisted through every attempt, or past the time, the policy allows."""

    def __init__(self, last_error: RadstreamError, attempts: int) -> None:
        # Only the code goes into the reason: it is published on the dead-letter topic.
        super().__init__(
            ErrorCode.RETRIES_EXHAUSTED,
            f"{last_error.code.value} persisted through {attempts} attempts",
        )
        self.last_error = last_error
        self.attempts = attempts

    @property
    def original_code(self) -> ErrorCode:
        """The code of the error that kept recurring."""
        return self.last_error.code


@dataclass(slots=True)
class FailureRecord:
    """How often and when some work failed: the attempts and first/last failure times.

    Filled by :func:`run_with_retries`; a dead letter takes its counts and times from it.
    """

    attempts: int = 0
    first_failure_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_code: ErrorCode | None = None

    def note(self, attempt: int, code: ErrorCode, at: datetime) -> None:
        """Record that ``attempt`` failed with ``code`` at ``at``."""
        self.attempts = attempt
        if self.first_failure_at is None:
            self.first_failure_at = at
        self.last_failure_at = at
        self.last_code = code

    @property
    def failed(self) -> bool:
        """Whether any attempt failed."""
        return self.attempts > 0

    def span(self, now: datetime) -> tuple[int, datetime, datetime]:
        """(attempts, first, last failure) with a failure that was never noted counted ``now``."""
        first = self.first_failure_at or now
        return max(self.attempts, 1), first, self.last_failure_at or first


def _retryable(error: RadstreamError) -> bool:
    return error.retryable


async def run_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    is_retryable: Callable[[RadstreamError], bool] = _retryable,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: OnRetry | None = None,
    on_recovered: OnRecovered | None = None,
    record: FailureRecord | None = None,
    now: Callable[[], datetime] = utc_now,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Await ``fn()`` until it succeeds, retrying only retryable radstream errors.

    Args:
        fn: the work; called again from scratch on each attempt.
        policy: attempts, delays and the overall bound.
        is_retryable: decides which radstream errors are worth another attempt.
        sleep: awaited with each delay (a fake in tests).
        on_retry: called with (failed attempt number, error, delay) before sleeping; attempt 1
            is the start of an outage.
        on_recovered: called with the failure record when an attempt succeeds after at least
            one failed: the end of an outage.
        record: filled with attempts and failure times, for the dead letter.
        now: the wall clock used for ``record``.
        clock: the monotonic clock the overall bound is measured on.

    Raises:
        RetriesExhaustedError: the last attempt the policy allows failed with a retryable error.
        RadstreamError: a non-retryable error, unchanged.
        Exception: anything else ``fn`` raised, unchanged and at once.
    """
    delays = policy.delays()
    failures = record if record is not None else FailureRecord()
    started = clock()
    attempt = 1
    while True:
        try:
            result = await fn()
        except RadstreamError as error:
            failures.note(attempt, error.code, now())
            if not is_retryable(error):
                raise
            delay = next(delays, None)
            if delay is None or _past_bound(policy, clock() - started + delay):
                raise RetriesExhaustedError(error, attempt) from error
            if on_retry is not None:
                maybe = on_retry(attempt, error, delay)
                if inspect.isawaitable(maybe):
                    await maybe
            await sleep(delay)
            attempt += 1
        except Exception:
            # Unexpected errors are not retried, but the dead letter still needs the count.
            failures.note(attempt, ErrorCode.INTERNAL_ERROR, now())
            raise
        else:
            if attempt > 1 and on_recovered is not None:
                on_recovered(failures)
            return result


def _past_bound(policy: RetryPolicy, elapsed_at_next_attempt: float) -> bool:
    bound = policy.max_elapsed_seconds
    return bound is not None and elapsed_at_next_attempt > bound
