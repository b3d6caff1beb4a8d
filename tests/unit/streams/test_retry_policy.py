"""The one retry mechanism: capped, jittered backoff; retry only what can succeed later."""

from __future__ import annotations

import itertools
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
        assert tuple(policy.delays()) == (0.5, 1.0, 2.0, 3.0, 3.0)

    def test_one_attempt_means_no_delays(self) -> None:
        """With a single attempt there is nothing to wait for."""
        assert tuple(RetryPolicy(max_attempts=1).delays()) == ()

    def test_from_settings(self) -> None:
        """The policy takes attempts and backoff from RetrySettings."""
        settings = RetrySettings(
            max_attempts=3, initial_seconds=0.2, max_seconds=1, multiplier=3, jitter=0
        )
        assert tuple(RetryPolicy.from_settings(settings).delays()) == pytest.approx((0.2, 0.6))

    def test_from_settings_takes_the_jitter(self) -> None:
        """The configured jitter spreads the delays, within its bounds."""
        settings = RetrySettings(max_attempts=4, initial_seconds=1, max_seconds=8, jitter=0.5)
        delays = tuple(RetryPolicy.from_settings(settings, seed=3).delays())
        assert delays != (1.0, 2.0, 4.0)
        for base, delay in zip((1.0, 2.0, 4.0), delays, strict=True):
            assert base * 0.5 <= delay <= base

    def test_seeded_jitter_is_deterministic(self) -> None:
        """The same seed gives the same jittered delays."""
        first = tuple(RetryPolicy(max_attempts=5, jitter=0.5, seed=7).delays())
        assert first == tuple(RetryPolicy(max_attempts=5, jitter=0.5, seed=7).delays())
        assert first != tuple(RetryPolicy(max_attempts=5, jitter=0.5, seed=8).delays())

    def test_jitter_only_shortens_within_bounds(self) -> None:
        """Jittered delays lie between (1 - jitter) x base and base."""
        plain = RetryPolicy(max_attempts=8, jitter=0.0).delays()
        jittered = RetryPolicy(max_attempts=8, jitter=0.3, seed=1).delays()
        for base, delay in zip(plain, jittered, strict=True):
            assert base * 0.7 <= delay <= base

    def test_until_done_never_runs_out_of_delays(self) -> None:
        """Without an attempt bound the delays go on, each capped at max_seconds."""
        policy = RetryPolicy.until_done(initial_seconds=0.2, max_seconds=10.0, jitter=0)
        delays = list(itertools.islice(policy.delays(), 1000))
        assert delays[:7] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0])
        assert set(delays[6:]) == {10.0}

    def test_a_days_long_outage_does_not_overflow(self) -> None:
        """A huge multiplier and a million retries still give the capped delay, no OverflowError."""
        policy = RetryPolicy(max_attempts=None, multiplier=1e300, max_seconds=7.0)
        assert next(itertools.islice(policy.delays(), 10**6, None)) == 7.0

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_attempts": 0},
            {"initial_seconds": -1.0},
            {"multiplier": 0.5},
            {"jitter": 1.5},
            {"max_elapsed_seconds": 0},
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
        assert record.last_code is ErrorCode.INTERNAL_ERROR

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

    async def test_until_done_retries_past_any_attempt_count(self) -> None:
        """An unbounded policy keeps retrying (here 50 failures) until the work succeeds."""
        transient = error_for(ErrorCode.BROKER_UNAVAILABLE)
        sleep = FakeSleep()
        policy = RetryPolicy.until_done(initial_seconds=0.1, max_seconds=1.0)
        result = await run_with_retries(
            failing_then([transient] * 50 + ["up"]), policy, sleep=sleep
        )
        assert result == "up"
        assert len(sleep.delays) == 50
        assert max(sleep.delays) <= 1.0

    async def test_overall_bound_gives_up_on_the_injected_clock(self) -> None:
        """Past max_elapsed_seconds (measured on the injected clock) the error is exhausted."""
        transient = error_for(ErrorCode.TIMEOUT)
        now = {"t": 100.0}
        sleep_calls: list[float] = []

        async def sleep(seconds: float) -> None:
            sleep_calls.append(seconds)
            now["t"] += seconds

        policy = RetryPolicy.until_done(
            initial_seconds=1.0, max_seconds=4.0, jitter=0, max_elapsed_seconds=10.0
        )
        with pytest.raises(RetriesExhaustedError) as info:
            await run_with_retries(
                failing_then([transient] * 100), policy, sleep=sleep, clock=lambda: now["t"]
            )
        # 1 + 2 + 4 = 7 s waited; the next 4 s would end at 11 s > 10 s: give up instead.
        assert sleep_calls == [1.0, 2.0, 4.0]
        assert info.value.attempts == 4
        assert info.value.original_code is ErrorCode.TIMEOUT

    async def test_recovery_is_reported_once_after_failures(self) -> None:
        """on_recovered sees the failure record when an attempt succeeds after failing."""
        transient = error_for(ErrorCode.DATABASE_UNAVAILABLE)
        recovered: list[int] = []
        await run_with_retries(
            failing_then([transient, transient, "ok"]),
            RetryPolicy(),
            sleep=FakeSleep(),
            on_recovered=lambda record: recovered.append(record.attempts),
        )
        assert recovered == [2]

    async def test_no_recovery_without_a_failure(self) -> None:
        """A first-time success is no recovery."""
        recovered: list[int] = []
        await run_with_retries(
            failing_then(["ok"]),
            RetryPolicy(),
            sleep=FakeSleep(),
            on_recovered=lambda record: recovered.append(record.attempts),
        )
        assert recovered == []


class TestFailureRecord:
    def test_span_of_a_record_that_never_failed_is_one_failure_now(self) -> None:
        """A dead letter for work that failed once, outside any retry, says 1 attempt, now."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        assert FailureRecord().span(now) == (1, now, now)

    def test_span_of_noted_failures(self) -> None:
        """Attempts and the first and last failure times come from the notes."""
        first, last = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        record = FailureRecord()
        record.note(1, ErrorCode.TIMEOUT, first)
        record.note(2, ErrorCode.TIMEOUT, last)
        assert record.span(datetime(2027, 1, 1, tzinfo=UTC)) == (2, first, last)
        assert record.failed
