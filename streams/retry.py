"""Bounded exponential backoff for retryable errors, with no I/O of its own.

Agents wrap the work on one message in :func:`run_with_retries`: a retryable
:class:`~schemas.errors.RadstreamError` is retried after the policy's next delay; a permanent
error, or any other exception, is raised at once; when every attempt failed the caller gets a
:class:`RetriesExhaustedError` (code ``RETRIES_EXHAUSTED``) that carries the attempt count and the
last error, ready for the dead-letter topic. Sleeping and the clock are injected, so tests run
instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from schemas.errors import ErrorCode, RadstreamError, TransientError
from schemas.events import utc_now
from schemas.settings import RetrySettings

T = TypeVar("T")

OnRetry = Callable[[int, RadstreamError, float], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    Attributes:
        max_attempts: total attempts, the first one included (1 means no retry).
        initial_seconds: delay before the second attempt.
        max_seconds: cap of any single delay.
        multiplier: growth factor of the delay per attempt.
        jitter: fraction (0-1) of each delay that is randomised away, spreading retries of
            many workers; 0 disables jitter.
        seed: seed of the jitter's random generator; set it for deterministic delays.
    """

    max_attempts: int = 4
    initial_seconds: float = 0.1
    max_seconds: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_seconds < 0 or self.max_seconds < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def from_settings(cls, settings: RetrySettings, *, seed: int | None = None) -> RetryPolicy:
        """The policy the deployment configured, jitter included."""
        return cls(
            max_attempts=settings.max_attempts,
            initial_seconds=settings.initial_seconds,
            max_seconds=settings.max_seconds,
            multiplier=settings.multiplier,
            jitter=settings.jitter,
            seed=seed,
        )

    def delays(self) -> tuple[float, ...]:
        """The waits before attempts 2..max_attempts (same values for the same seed)."""
        # Jitter spreads retries of many workers; it is not a secret, so a seeded PRNG is right.
        rng = random.Random(self.seed)  # noqa: S311  # nosec B311
        result = []
        for retry in range(self.max_attempts - 1):
            base = min(self.max_seconds, self.initial_seconds * self.multiplier**retry)
            result.append(base * (1.0 - self.jitter * rng.random()))
        return tuple(result)


class RetriesExhaustedError(TransientError):
    """A retryable error persisted through every attempt the policy allows."""

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
    """What :func:`run_with_retries` saw fail: attempts made and when the failures happened."""

    attempts: int = 0
    first_failure_at: datetime | None = None
    last_failure_at: datetime | None = None
    codes: list[ErrorCode] = field(default_factory=list)

    def note(self, attempt: int, code: ErrorCode, at: datetime) -> None:
        """Record that ``attempt`` failed with ``code`` at ``at``."""
        self.attempts = attempt
        if self.first_failure_at is None:
            self.first_failure_at = at
        self.last_failure_at = at
        self.codes.append(code)


def _retryable(error: RadstreamError) -> bool:
    return error.retryable


async def run_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    is_retryable: Callable[[RadstreamError], bool] = _retryable,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: OnRetry | None = None,
    record: FailureRecord | None = None,
    now: Callable[[], datetime] = utc_now,
) -> T:
    """Await ``fn()`` until it succeeds, retrying only retryable radstream errors.

    Args:
        fn: the work; called again from scratch on each attempt.
        policy: attempts and delays.
        is_retryable: decides which radstream errors are worth another attempt.
        sleep: awaited with each delay (a fake in tests).
        on_retry: called with (failed attempt number, error, delay) before sleeping.
        record: filled with attempts and failure times, for the dead letter.
        now: the clock used for ``record``.

    Raises:
        RetriesExhaustedError: the last attempt failed with a retryable error.
        RadstreamError: a non-retryable error, unchanged.
        Exception: anything else ``fn`` raised, unchanged and at once.
    """
    delays = policy.delays()
    failures = record if record is not None else FailureRecord()
    attempt = 1
    while True:
        try:
            return await fn()
        except RadstreamError as error:
            failures.note(attempt, error.code, now())
            if not is_retryable(error):
                raise
            if attempt >= policy.max_attempts:
                raise RetriesExhaustedError(error, attempt) from error
            delay = delays[attempt - 1]
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
