"""The batching-sink contract's runtime side: flush, wait out backpressure, report the outage."""

from __future__ import annotations

import asyncio

import pytest

from schemas.errors import ErrorCode, RadstreamError, error_for
from streams.batching_sink import Backpressure, SinkHooks, flush_until_committed
from streams.retry import RetryPolicy


class FakeSleep:
    """Records requested delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class ScriptedSink:
    """A sink whose flushes fail as scripted, then store everything added."""

    def __init__(self, failures: list[Exception], hooks: SinkHooks[int] | None = None) -> None:
        self.failures = list(failures)
        self.sleep = FakeSleep()
        policy = RetryPolicy.until_done(initial_seconds=0.5, max_seconds=2.0, jitter=0)
        self.backpressure = Backpressure(policy, hooks or SinkHooks(), self.sleep)
        self.pending: list[str] = []
        self.stored: list[str] = []
        self.flushes = 0

    def add(self, item: str) -> None:
        self.pending.append(item)

    def clear(self) -> None:
        self.pending = []

    async def flush(self) -> int:
        self.flushes += 1
        if self.failures:
            raise self.failures.pop(0)
        self.stored += self.pending
        count, self.pending = len(self.pending), []
        return count


DOWN = error_for(ErrorCode.DATABASE_UNAVAILABLE)


class TestFlushUntilCommitted:
    async def test_first_flush_commits(self) -> None:
        """A healthy destination: one flush, no wait, no health change."""
        states: list[bool] = []
        sink = ScriptedSink([], SinkHooks(database_up=states.append))
        sink.add("a")
        assert await flush_until_committed(sink) == 1
        assert (sink.flushes, sink.sleep.delays, states) == (1, [], [])

    async def test_backpressure_flushes_the_same_items_again(self) -> None:
        """While the database is down the runtime waits and flushes the kept items again."""
        waited: list[float] = []
        states: list[bool] = []
        hooks: SinkHooks[int] = SinkHooks(database_up=states.append, backpressure=waited.append)
        sink = ScriptedSink([DOWN, DOWN, DOWN, DOWN], hooks)
        sink.add("a")
        sink.add("b")
        assert await flush_until_committed(sink) == 2
        assert sink.stored == ["a", "b"]
        assert sink.sleep.delays == waited == [0.5, 1.0, 2.0, 2.0]
        assert states == [False, True]  # one line's worth: outage start, outage end

    async def test_a_failure_waiting_cannot_fix_propagates_with_items_kept(self) -> None:
        """A non-retryable error is raised at once; the runtime decides what to do with them."""
        broken = error_for(ErrorCode.AUDIT_CHAIN_BROKEN)
        sink = ScriptedSink([broken])
        sink.add("a")
        with pytest.raises(RadstreamError) as caught:
            await flush_until_committed(sink)
        assert caught.value is broken
        assert (sink.pending, sink.sleep.delays) == (["a"], [])

    async def test_unexpected_errors_are_not_retried(self) -> None:
        """Anything that is not a radstream error escapes at once."""
        sink = ScriptedSink([ValueError("bad row")])
        with pytest.raises(ValueError, match="bad row"):
            await flush_until_committed(sink)
        assert sink.flushes == 1


class TestShutdownDuringAnOutage:
    async def test_stop_ends_the_wait_with_the_last_error(self) -> None:
        """A runtime shutting down is not held up by the outage; nothing is committed."""
        stop = asyncio.Event()
        sink = ScriptedSink([DOWN] * 1000)
        never = asyncio.Event()

        async def long_sleep(_seconds: float) -> None:
            stop.set()  # the worker is told to stop while it waits
            await never.wait()

        sink.backpressure = Backpressure(sink.backpressure.policy, SinkHooks(), long_sleep, stop)
        sink.add("a")
        with pytest.raises(RadstreamError) as caught:
            await asyncio.wait_for(flush_until_committed(sink), 5)
        assert caught.value is DOWN
        assert (sink.flushes, sink.stored, sink.pending) == (2, [], ["a"])

    async def test_without_a_stop_the_wait_is_the_plain_sleep(self) -> None:
        """The results stage (no stop event) waits exactly as its policy says."""
        sink = ScriptedSink([DOWN])
        assert await flush_until_committed(sink) == 0
        assert sink.sleep.delays == [0.5]
