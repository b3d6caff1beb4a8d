"""The production consumer loop's life cycle around Faust apps (fakes, no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

import app
from observability.health import HealthState
from observability.metrics import Metrics
from schemas.settings import load_settings
from streams.agents import AgentSpec
from streams.pipeline import NullObserver

pytestmark = pytest.mark.requirement("RS-REL-14")

# A guard against a hang only: every fake here answers at once, so nothing waits this long.
HANG_GUARD_SECONDS = 10.0


class FakeApp:
    """A Faust app's start and stop as the loop sees them; ``start`` may never return."""

    def __init__(
        self,
        group: str,
        *,
        start_hangs: bool = False,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.conf = SimpleNamespace(id=group, stream_wait_empty=True)
        self.calls: list[str] = []
        self.start_cancelled = False
        self._start_hangs = start_hangs
        self._on_start = on_start
        self._on_stop = on_stop

    async def start(self) -> None:
        """Start; with ``start_hangs`` wait for an assignment that never comes."""
        self.calls.append("start")
        if self._on_start is not None:
            self._on_start()
        if self._start_hangs:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                self.start_cancelled = True
                raise

    async def stop(self) -> None:
        """Stop (``on_stop`` plays what happens meanwhile, e.g. a batch draining)."""
        self.calls.append("stop")
        if self._on_stop is not None:
            self._on_stop()


def worker(*names: str) -> app.Worker:
    """A worker whose specs are named ``names`` (each stat lane consumes in its own group)."""

    async def deliver(_messages: object) -> None:
        return None

    specs = tuple(cast("AgentSpec", SimpleNamespace(name=name)) for name in names)
    return app.Worker(
        settings=load_settings(),
        stages=("validation",),
        specs=specs,
        deliver=deliver,
        observer=NullObserver(),
        health=HealthState(names, requires_database=False),
        metrics=Metrics(CollectorRegistry(), process_collector=False),
        started=asyncio.Event(),
    )


def factory(
    made: dict[str, FakeApp], build: Callable[[str, Callable[[Exception], None]], FakeApp]
) -> app.AppFactory:
    """An app factory that builds ``build(group, on_fatal)`` and records it in ``made``."""

    def make(
        _worker: app.Worker,
        group: str,
        _specs: Sequence[AgentSpec],
        on_fatal: Callable[[Exception], None],
    ) -> faust.App:
        made[group] = build(group, on_fatal)
        return cast("faust.App", made[group])

    return make


async def run_loop(built: app.Worker, stop: asyncio.Event, make: app.AppFactory) -> Any:
    """Run the loop to its end (bounded against a hang)."""
    return await asyncio.wait_for(
        app.faust_consumer_loop(built, stop, build_app=make), HANG_GUARD_SECONDS
    )


class TestStopWhileStarting:
    async def test_stop_ends_a_start_that_never_completes(self) -> None:
        """A start waiting for ever (no group coordinator) ends at the stop, with one line."""
        stop = asyncio.Event()
        made: dict[str, FakeApp] = {}
        built = worker("validation")
        starting = asyncio.Event()
        make = factory(
            made, lambda group, _fatal: FakeApp(group, start_hangs=True, on_start=starting.set)
        )
        loop = asyncio.create_task(run_loop(built, stop, make))
        await asyncio.wait_for(starting.wait(), HANG_GUARD_SECONDS)
        with capture_logs() as logs:
            stop.set()
            await loop
        fake = made["radstream-validation"]
        assert fake.calls == ["start", "stop"]
        assert fake.start_cancelled
        assert not built.started.is_set()
        assert [(line["event"], line["group"]) for line in logs] == [
            ("worker_start_interrupted", "radstream-validation")
        ]

    async def test_stop_between_two_starts_skips_the_next(self) -> None:
        """Stopped while the first group started: the second is never started, the first stops."""
        stop = asyncio.Event()
        made: dict[str, FakeApp] = {}
        make = factory(made, lambda group, _fatal: FakeApp(group, on_start=stop.set))
        await run_loop(worker("validation", "validation-stat"), stop, make)
        assert made["radstream-validation"].calls == ["start", "stop"]
        assert made["radstream-validation-stat"].calls == []

    async def test_started_apps_consume_until_stopped(self) -> None:
        """Every app started: the worker is marked started, and stop stops each app once."""
        stop = asyncio.Event()
        made: dict[str, FakeApp] = {}
        built = worker("validation", "validation-stat")
        make = factory(made, lambda group, _fatal: FakeApp(group))
        loop = asyncio.create_task(run_loop(built, stop, make))
        await asyncio.wait_for(built.started.wait(), HANG_GUARD_SECONDS)
        stop.set()
        await loop
        assert [fake.calls for fake in made.values()] == [["start", "stop"], ["start", "stop"]]


class TestFailureWhileStopping:
    async def test_batch_refused_while_draining_is_raised(self) -> None:
        """A delivery refused for good while the apps stop ends the loop with that error."""
        stop = asyncio.Event()
        refused = ConnectionRefusedError("delivery refused while draining")
        made: dict[str, FakeApp] = {}
        make = factory(made, lambda group, fatal: FakeApp(group, on_stop=lambda: fatal(refused)))
        stop.set()
        with pytest.raises(ConnectionRefusedError) as caught:
            await run_loop(worker("validation"), stop, make)
        assert caught.value is refused

    async def test_stop_cancelled_after_a_failed_drain_raises_the_failure(self) -> None:
        """Faust waits for the held batch until the stop is cancelled: the failure is raised."""
        stop = asyncio.Event()
        refused = ConnectionRefusedError("delivery refused while draining")
        stopping = asyncio.Event()
        made: dict[str, FakeApp] = {}

        class WaitsForHeldBatch(FakeApp):
            async def stop(self) -> None:
                await super().stop()
                stopping.set()
                await asyncio.get_running_loop().create_future()  # wait_empty, for ever

        def build(group: str, fatal: Callable[[Exception], None]) -> FakeApp:
            return WaitsForHeldBatch(group, on_stop=lambda: fatal(refused))

        stop.set()
        loop = asyncio.create_task(
            app.faust_consumer_loop(worker("validation"), stop, build_app=factory(made, build))
        )
        await asyncio.wait_for(stopping.wait(), HANG_GUARD_SECONDS)
        loop.cancel()  # what app.finish_within does once the stop overran
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(loop, HANG_GUARD_SECONDS)

    async def test_clean_stop_raises_nothing(self) -> None:
        """Without a failure the stop is clean: the loop returns."""
        stop = asyncio.Event()
        stop.set()
        made: dict[str, FakeApp] = {}
        assert await run_loop(worker("validation"), stop, factory(made, plain_app)) is None


def plain_app(group: str, _fatal: Callable[[Exception], None]) -> FakeApp:
    """A fake app that starts and stops at once."""
    return FakeApp(group)
