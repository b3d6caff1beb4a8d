"""The one run loop of the aiokafka-driven batch loops, over a scripted loop (no broker)."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from schemas.errors import ErrorCode, RadstreamError, TransientError, error_for
from streams.kafka.loop import run_until_idle, run_until_stopped
from streams.retry import RetryPolicy

NO_WAIT = RetryPolicy.until_done(initial_seconds=0, max_seconds=0)


class ScriptedLoop:
    """Processes batches from a script: an int is a batch of that size, an error is raised."""

    name = "scripted"

    def __init__(self, script: list[int | Exception], stop: asyncio.Event | None = None) -> None:
        self.script = list(script)
        self.stop_event = stop
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self, *, clean: bool = True) -> None:
        self.events.append("stop-clean" if clean else "stop-failed")

    async def process_batch(self, timeout_ms: int = 500) -> int:
        if not self.script:
            if self.stop_event is not None:
                self.stop_event.set()
            return 0
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


class TestRunUntilStopped:
    async def test_restarts_from_durable_state_after_a_retryable_error(self) -> None:
        """A broker error stops the loop (not cleanly) and starts it again; it then ends clean."""
        stop = asyncio.Event()
        loop = ScriptedLoop([3, error_for(ErrorCode.BROKER_UNAVAILABLE), 2], stop)
        with capture_logs() as logs:
            await run_until_stopped(loop, stop, restart=NO_WAIT)
        assert loop.events == ["start", "stop-failed", "start", "stop-clean"]
        assert [e["event"] for e in logs] == ["batch_loop_restarting"]
        assert logs[0]["error_code"] == "BROKER_UNAVAILABLE"

    async def test_a_refusal_ends_the_loop_with_one_error_line(self) -> None:
        """Fenced (refused) is not retried: the loop stops and the error reaches the caller."""
        stop = asyncio.Event()
        fenced = TransientError(ErrorCode.BROKER_REQUEST_REFUSED, "a transaction: refused")
        loop = ScriptedLoop([fenced], stop)
        with capture_logs() as logs, pytest.raises(RadstreamError) as caught:
            await run_until_stopped(loop, stop, restart=NO_WAIT)
        assert caught.value is fenced
        assert loop.events == ["start", "stop-failed"]
        assert [(e["event"], e["log_level"]) for e in logs] == [("batch_loop_failed", "error")]

    async def test_unexpected_errors_stop_the_loop_and_propagate(self) -> None:
        """A bug is not retried either; the loop is stopped first."""
        loop = ScriptedLoop([KeyError("bug")])
        with pytest.raises(KeyError):
            await run_until_stopped(loop, asyncio.Event(), restart=NO_WAIT)
        assert loop.events == ["start", "stop-failed"]

    async def test_a_stop_while_waiting_to_restart_does_not_restart(self) -> None:
        """Shutdown during the restart wait ends at once instead of starting again."""
        stop = asyncio.Event()

        class FailsThenStops(ScriptedLoop):
            async def stop(self, *, clean: bool = True) -> None:
                await super().stop(clean=clean)
                stop.set()  # the worker is shutting down meanwhile

        loop = FailsThenStops([error_for(ErrorCode.TIMEOUT)])
        slow = RetryPolicy.until_done(initial_seconds=3600, max_seconds=3600)
        await asyncio.wait_for(run_until_stopped(loop, stop, restart=slow), 5)
        assert loop.events == ["start", "stop-failed"]


class TestRunUntilIdle:
    async def test_counts_until_nothing_arrives(self) -> None:
        """Batches are counted until a quiet spell of idle_seconds, then the loop stops clean."""
        now = {"t": 0.0}

        def clock() -> float:
            now["t"] += 0.1
            return now["t"]

        loop = ScriptedLoop([4, 0, 3])
        assert await run_until_idle(loop, idle_seconds=1.0, clock=clock) == 7
        assert loop.events == ["start", "stop-clean"]
