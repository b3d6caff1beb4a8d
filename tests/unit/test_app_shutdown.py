"""The worker's stall watchdog and its bounded shutdown (no services)."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

import app
from observability.health import HealthState
from schemas.settings import load_settings

pytestmark = pytest.mark.requirement("RS-REL-14")

# A guard against a hang only: the admin client gives up on a silent broker within its own
# timeout, so an unfixed start ends (with an error) before this.
HANG_GUARD_SECONDS = 60.0


def stalled_state() -> HealthState:
    """A results stage with lag, the broker up, and no progress past a 1 s bound."""
    now = [0.0]
    state = HealthState(
        ("results",), requires_database=False, stall_timeout=1.0, clock=lambda: now[0]
    )
    state.mark_started()
    state.set_broker_up(True)
    state.set_lag("results", 3, committed=1)
    now[0] = 5.0
    state.beat()
    return state


class TestWatchForStall:
    async def test_stalled_stage_ends_the_worker_with_one_line(self) -> None:
        """The watchdog raises (the worker exits non-zero) and says why, once."""
        with capture_logs() as logs, pytest.raises(app.WorkerStalledError, match="results"):
            await app.watch_for_stall(stalled_state(), asyncio.Event(), interval_seconds=0)
        assert [line["event"] for line in logs] == ["worker_stalled"]

    async def test_healthy_worker_watches_until_stopped(self) -> None:
        """No stall: the watchdog returns when the worker is stopped."""
        state = HealthState(("results",), requires_database=False, stall_timeout=60.0)
        stop = asyncio.Event()
        watching = asyncio.create_task(app.watch_for_stall(state, stop, interval_seconds=0.01))
        await asyncio.sleep(0.05)
        assert not watching.done()
        stop.set()
        await asyncio.wait_for(watching, 5)

    async def test_stall_fails_the_worker_through_its_supervision(self) -> None:
        """The supervisor of the stages turns the stall into a stage failure."""
        watchdog = asyncio.create_task(
            app.watch_for_stall(stalled_state(), asyncio.Event(), interval_seconds=0)
        )
        with pytest.raises(RuntimeError, match="stage failed") as caught:
            await app.wait_for_stop_or_failure(asyncio.Event(), [watchdog])
        assert isinstance(caught.value.__cause__, app.WorkerStalledError)


class TestFinishWithin:
    async def test_stages_that_finish_are_awaited(self) -> None:
        """Nothing is cancelled when every stage returns within the bound."""
        quick = asyncio.create_task(asyncio.sleep(0))
        with capture_logs() as logs:
            await app.finish_within([quick], 5.0)
        assert quick.done()
        assert not quick.cancelled()
        assert logs == []

    async def test_stage_that_overruns_is_cancelled_and_logged(self) -> None:
        """A stage that ignores the stop is cancelled after the bound, with one line."""
        stuck = asyncio.create_task(asyncio.Event().wait())
        with capture_logs() as logs:
            await app.finish_within([stuck], 0.01)
        assert stuck.cancelled()
        assert [line["event"] for line in logs] == ["worker_shutdown_overran"]

    async def test_stage_that_resists_cancellation_does_not_hold_the_worker(self) -> None:
        """One that swallows cancellation is left after a second bound (the backstop ends it)."""
        release = asyncio.Event()

        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(app.finish_within([task], 0.01), 5)
        assert not task.done()
        release.set()
        await task

    async def test_no_stages_nothing_to_wait_for(self) -> None:
        """A worker without tasks finishes at once."""
        await app.finish_within([], 1.0)


class TestStopWhileConnecting:
    async def test_stop_ends_a_start_waiting_for_a_silent_broker(self) -> None:
        """A broker that accepts and never answers: the stop ends the start, with one line."""
        connected = asyncio.Event()
        held: list[asyncio.StreamWriter] = []

        async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)
            connected.set()

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = load_settings(kafka_bootstrap=f"127.0.0.1:{port}")
        stop = asyncio.Event()
        try:
            worker = asyncio.create_task(
                app.run_worker(settings, ["validation"], stop, serve_http=False)
            )
            await asyncio.wait_for(connected.wait(), HANG_GUARD_SECONDS)
            with capture_logs() as logs:
                stop.set()
                await asyncio.wait_for(worker, HANG_GUARD_SECONDS)
        finally:
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()
        assert [(line["event"], line["step"]) for line in logs] == [
            ("worker_start_interrupted", "connecting")
        ]

    async def test_a_start_that_completes_is_returned(self) -> None:
        """Not stopped: the start's result is the worker to run."""

        async def build() -> str:
            return "worker"

        assert await app.unless_stopped(build(), asyncio.Event(), 1.0) == "worker"

    async def test_a_start_that_fails_raises(self) -> None:
        """Not stopped: the start's failure (the outage) is the worker's error."""

        async def build() -> str:
            raise ConnectionError("broker unavailable")

        with pytest.raises(ConnectionError):
            await app.unless_stopped(build(), asyncio.Event(), 1.0)
