"""RetryPolicy and run_with_retries: bounded backoff, retry only what can succeed later."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from schemas.errors import ErrorCode, RadstreamError, error_for
from schemas.settings import RetrySettings
from streams.retry import FailureRecord, RetriesExhaustedError, RetryPolicy, run_with_retries

pytestmark = pytest.mark.requirement("RS-ERR-02")


class FakeSleep:
    """Records requested delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def failing_then(results: list[object]) -> Callable[[], object]:
    """An async callable raising/returning the given items in turn."""
    calls = iter(results)

    async def fn() -> object:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    return fn


def ticking_clock(start: datetime) -> Callable[[], datetime]:
    """A clock advancing one second per reading."""
    state = {"now": start}

    def now() -> datetime:
        state["now"] += timedelta(seconds=1)
        return state["now"]

    return now


class TestRetryPolicy:
    def test_delays_grow_exponentially_and_are_capped(self) -> None:
        """Delays double from the initial value and never exceed the cap."""
        policy = RetryPolicy(max_attempts=6, initial_seconds=0.5, max_seconds=3.0, multiplier=2.0)
        assert policy.delays() == (0.5, 1.0, 2.0, 3.0, 3.0)

    def test_one_attempt_means_no_delays(self) -> None:
        """With a single attempt there is nothing to wait for."""
        assert RetryPolicy(max_attempts=1).delays() == ()

    def test_from_settings(self) -> None:
        """The policy takes attempts and backoff from RetrySettings."""
        settings = RetrySettings(
            max_attempts=3, initial_seconds=0.2, max_seconds=1, multiplier=3, jitter=0
        )
        assert RetryPolicy.from_settings(settings).delays() == pytest.approx((0.2, 0.6))

    def test_from_settings_takes_the_jitter(self) -> None:
        """The configured jitter spreads the delays, within its bounds."""
        settings = RetrySettings(max_attempts=4, initial_seconds=1, max_seconds=8, jitter=0.5)
        delays = RetryPolicy.from_settings(settings, seed=3).delays()
        assert delays != (1.0, 2.0, 4.0)
        for base, delay in zip((1.0, 2.0, 4.0), delays, strict=True):
            assert base * 0.5 <= delay <= base

    def test_seeded_jitter_is_deterministic(self) -> None:
        """The same seed gives the same jittered delays."""
        first = RetryPolicy(max_attempts=5, jitter=0.5, seed=7).delays()
        assert first == RetryPolicy(max_attempts=5, jitter=0.5, seed=7).delays()
        assert first != RetryPolicy(max_attempts=5, jitter=0.5, seed=8).delays()

    def test_jitter_only_shortens_within_bounds(self) -> None:
        """Jittered delays lie between (1 - jitter) x base and base."""
        plain = RetryPolicy(max_attempts=8, jitter=0.0).delays()
        jittered = RetryPolicy(max_attempts=8, jitter=0.3, seed=1).delays()
        for base, delay in zip(plain, jittered, strict=True):
            assert base * 0.7 <= delay <= base

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_attempts": 0},
            {"initial_seconds": -1.0},
            {"multiplier": 0.5},
            {"jitter": 1.5},
        ],
    )
    def test_invalid_policies_are_refused(self, kwargs: dict[str, float]) -> None:
        """Nonsensical policies are refused when built."""
        with pytest.raises(ValueError, match="must"):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]


class TestRunWithRetries:
    async def test_success_needs_no_sleep(self) -> None:
        """A first-time success returns the result without sleeping."""
        sleep = FakeSleep()
        assert await run_with_retries(failing_then(["ok"]), RetryPolicy(), sleep=sleep) == "ok"
        assert sleep.delays == []

    async def test_retryable_errors_are_retried_with_the_policy_delays(self) -> None:
        """Retryable errors are retried after each of the policy's delays, then succeed."""
        sleep = FakeSleep()
        transient = error_for(ErrorCode.DATABASE_UNAVAILABLE)
        policy = RetryPolicy(max_attempts=4, initial_seconds=0.1, multiplier=2.0)
        fn = failing_then([transient, transient, "done"])
        assert await run_with_retries(fn, policy, sleep=sleep) == "done"
        assert sleep.delays == pytest.approx([0.1, 0.2])

    async def test_exhaustion_raises_with_attempts_and_code(self) -> None:
        """When every attempt fails, RETRIES_EXHAUSTED carries the attempts and original code."""
        transient = error_for(ErrorCode.STORAGE_FILE_NOT_FOUND)
        policy = RetryPolicy(max_attempts=3)
        with pytest.raises(RetriesExhaustedError) as info:
            await run_with_retries(failing_then([transient] * 3), policy, sleep=FakeSleep())
        error = info.value
        assert error.code is ErrorCode.RETRIES_EXHAUSTED
        assert error.attempts == 3
        assert error.original_code is ErrorCode.STORAGE_FILE_NOT_FOUND
        assert error.last_error is transient
        assert error.__cause__ is transient
        assert "STORAGE_FILE_NOT_FOUND" in error.reason

    async def test_permanent_errors_are_not_retried(self) -> None:
        """A non-retryable radstream error is raised unchanged after one attempt."""
        sleep = FakeSleep()
        permanent = error_for(ErrorCode.IMAGE_EMPTY)
        with pytest.raises(RadstreamError) as info:
            await run_with_retries(failing_then([permanent]), RetryPolicy(), sleep=sleep)
        assert info.value is permanent
        assert sleep.delays == []

    async def test_foreign_exceptions_are_not_retried(self) -> None:
        """Exceptions that are not radstream errors escape at once."""
        record = FailureRecord()
        with pytest.raises(KeyError):
            await run_with_retries(
                failing_then([KeyError("x")]), RetryPolicy(), sleep=FakeSleep(), record=record
            )
        assert record.attempts == 1
        assert record.codes == [ErrorCode.INTERNAL_ERROR]

    async def test_is_retryable_overrides_the_flag(self) -> None:
        """A custom is_retryable can refuse to retry an otherwise retryable error."""
        transient = error_for(ErrorCode.TIMEOUT)
        with pytest.raises(RadstreamError) as info:
            await run_with_retries(
                failing_then([transient, "never"]),
                RetryPolicy(),
                sleep=FakeSleep(),
                is_retryable=lambda e: e.code is not ErrorCode.TIMEOUT,
            )
        assert info.value is transient

    async def test_on_retry_sees_attempt_error_and_delay(self) -> None:
        """on_retry is called before each sleep with the failed attempt, error and delay."""
        seen: list[tuple[int, ErrorCode, float]] = []
        transient = error_for(ErrorCode.BROKER_UNAVAILABLE)
        await run_with_retries(
            failing_then([transient, transient, 1]),
            RetryPolicy(initial_seconds=1.0, multiplier=3.0),
            sleep=FakeSleep(),
            on_retry=lambda n, e, d: seen.append((n, e.code, d)),
        )
        assert seen == [
            (1, ErrorCode.BROKER_UNAVAILABLE, 1.0),
            (2, ErrorCode.BROKER_UNAVAILABLE, 3.0),
        ]

    async def test_async_on_retry_is_awaited(self) -> None:
        """An async on_retry callback is awaited."""
        seen: list[int] = []

        async def on_retry(attempt: int, error: RadstreamError, delay: float) -> None:
            seen.append(attempt)

        await run_with_retries(
            failing_then([error_for(ErrorCode.TIMEOUT), 1]),
            RetryPolicy(),
            sleep=FakeSleep(),
            on_retry=on_retry,
        )
        assert seen == [1]

    async def test_record_tracks_failure_times(self) -> None:
        """The failure record holds attempts and first/last failure times for the dead letter."""
        start = datetime(2026, 1, 1, tzinfo=UTC)
        record = FailureRecord()
        transient = error_for(ErrorCode.TIMEOUT)
        with pytest.raises(RetriesExhaustedError):
            await run_with_retries(
                failing_then([transient] * 3),
                RetryPolicy(max_attempts=3),
                sleep=FakeSleep(),
                record=record,
                now=ticking_clock(start),
            )
        assert record.attempts == 3
        assert record.first_failure_at == start + timedelta(seconds=1)
        assert record.last_failure_at == start + timedelta(seconds=3)
