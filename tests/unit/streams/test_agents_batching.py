"""Adaptive batching (:class:`streams.agents.ReadyBuffer`): no waiting when the queue is empty.

Timing is observed through the event loop, not a wall clock: a take that returns "at once"
completes within a few loop turns while every timer it could wait on is an hour long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from streams.agents import Deferral, ReadyBuffer, take_ready

pytestmark = pytest.mark.requirement("RS-PRF-03", "RS-INF-05")

HOUR = 3600.0


async def turns(count: int = 5) -> None:
    """Let the event loop run ``count`` times without any timer firing."""
    for _ in range(count):
        await asyncio.sleep(0)


class TestTakesWhatIsThere:
    async def test_a_lone_message_is_taken_at_once(self) -> None:
        """One message, room for eight: taken without waiting for the batch to fill."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8)
        await buffer.put("a")
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert take.done()
        assert take.result() == ["a"]
        assert len(buffer) == 0

    async def test_an_idle_take_ends_with_the_first_message(self) -> None:
        """Waiting on an empty buffer ends when a message arrives, not when a timer fires."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8)
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert not take.done()
        await buffer.put("a")
        await turns()
        assert take.result() == ["a"]

    async def test_an_idle_take_returns_nothing_after_its_bound(self) -> None:
        """Every wait has a bound: the caller gets an empty batch and can check for shutdown."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8)
        assert await buffer.take(idle_seconds=0) == []

    async def test_what_arrived_during_processing_is_the_next_batch(self) -> None:
        """Messages keep arriving while a batch is processed; the next take has them all."""
        buffer: ReadyBuffer[int] = ReadyBuffer(8)
        await buffer.put(0)
        first = await buffer.take(idle_seconds=HOUR)
        for n in range(1, 6):  # arrive while the first batch is being processed
            await buffer.put(n)
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert first == [0]
        assert take.result() == [1, 2, 3, 4, 5]

    async def test_a_batch_never_exceeds_capacity(self) -> None:
        """A backlog is taken in batches of at most ``capacity``, in order."""
        buffer: ReadyBuffer[int] = ReadyBuffer(3)
        puts = asyncio.create_task(_put_all(buffer, range(7)))
        batches: list[list[int]] = []
        while len(batches) < 3:
            batches.append(await buffer.take(idle_seconds=HOUR))
        await puts
        assert batches == [[0, 1, 2], [3, 4, 5], [6]]


async def _put_all(buffer: ReadyBuffer[int], items: range) -> None:
    for item in items:
        await buffer.put(item)


class TestBackpressure:
    async def test_put_waits_while_full(self) -> None:
        """The consumer side stops at ``capacity`` until the agent takes a batch."""
        buffer: ReadyBuffer[str] = ReadyBuffer(2)
        await buffer.put("a")
        await buffer.put("b")
        third = asyncio.create_task(buffer.put("c"))
        await turns()
        assert not third.done()
        assert await buffer.take(idle_seconds=HOUR) == ["a", "b"]
        await turns()
        assert third.done()
        assert await buffer.take(idle_seconds=HOUR) == ["c"]


class TestLinger:
    async def test_linger_waits_for_a_fuller_batch(self) -> None:
        """With a linger, a lone message waits for company; a full batch ends the wait."""
        buffer: ReadyBuffer[str] = ReadyBuffer(3, linger_seconds=HOUR)
        await buffer.put("a")
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert not take.done()
        await buffer.put("b")
        await turns()
        assert not take.done()
        await buffer.put("c")
        await turns()
        assert take.result() == ["a", "b", "c"]

    async def test_linger_is_bounded(self) -> None:
        """When the linger passes, the partial batch goes."""
        buffer: ReadyBuffer[str] = ReadyBuffer(3, linger_seconds=0.001)
        await buffer.put("a")
        assert await buffer.take(idle_seconds=HOUR) == ["a"]

    async def test_a_full_buffer_does_not_linger(self) -> None:
        """A full batch is taken at once even with a linger configured."""
        buffer: ReadyBuffer[str] = ReadyBuffer(2, linger_seconds=HOUR)
        await buffer.put("a")
        await buffer.put("b")
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert take.result() == ["a", "b"]


def lifecycle_only(item: str) -> bool:
    """Items named ``step:...`` may wait (an arrival's or validation's lifecycle step)."""
    return item.startswith("step:")


class TestDeferral:
    """Deferrable items wait for an urgent one, so both are written in one transaction."""

    async def test_deferrable_items_wait_for_an_urgent_one(self) -> None:
        """An arrival and its validation wait; the result releases the three at once."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8, defer_seconds=HOUR, deferrable=lifecycle_only)
        await buffer.put("step:arrived")
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        await buffer.put("step:validated")
        await turns()
        assert not take.done()
        await buffer.put("result")
        await turns()
        assert take.result() == ["step:arrived", "step:validated", "result"]

    async def test_an_urgent_item_never_waits(self) -> None:
        """A result alone, or one already buffered behind deferrable items, goes at once."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8, defer_seconds=HOUR, deferrable=lifecycle_only)
        await buffer.put("result")
        assert await buffer.take(idle_seconds=HOUR) == ["result"]
        await buffer.put("step:arrived")
        await buffer.put("rejection")
        assert await buffer.take(idle_seconds=HOUR) == ["step:arrived", "rejection"]

    async def test_the_wait_is_bounded(self) -> None:
        """Without an urgent item, the deferrable ones go when the deferral passes."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8, defer_seconds=0.001, deferrable=lifecycle_only)
        await buffer.put("step:arrived")
        assert await buffer.take(idle_seconds=HOUR) == ["step:arrived"]

    async def test_a_full_buffer_of_deferrable_items_goes_at_once(self) -> None:
        """A backlog of lifecycle steps is a full batch: nothing to wait for."""
        buffer: ReadyBuffer[str] = ReadyBuffer(2, defer_seconds=HOUR, deferrable=lifecycle_only)
        await buffer.put("step:a")
        await buffer.put("step:b")
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert take.result() == ["step:a", "step:b"]

    async def test_urgent_items_left_behind_are_still_counted(self) -> None:
        """A take of a full batch leaves an urgent item for the next take, which goes at once."""
        buffer: ReadyBuffer[str] = ReadyBuffer(1, defer_seconds=HOUR, deferrable=lifecycle_only)
        await buffer.put("step:a")
        put = asyncio.create_task(buffer.put("result"))  # waits for room
        assert await buffer.take(idle_seconds=HOUR) == ["step:a"]
        await put
        take = asyncio.create_task(buffer.take(idle_seconds=HOUR))
        await turns()
        assert take.result() == ["result"]

    async def test_without_a_predicate_nothing_is_deferred(self) -> None:
        """``defer_seconds`` alone defers nothing: every item counts as urgent."""
        buffer: ReadyBuffer[str] = ReadyBuffer(8, defer_seconds=HOUR)
        await buffer.put("step:arrived")
        assert buffer.defer_seconds == 0.0
        assert await buffer.take(idle_seconds=HOUR) == ["step:arrived"]

    def test_a_deferral_names_its_topics(self) -> None:
        """Deferral.defers judges a Faust event by its message's topic."""
        deferral = Deferral(frozenset({"p.images.arrived"}), 0.5)
        arrived = SimpleNamespace(message=SimpleNamespace(topic="p.images.arrived"))
        result = SimpleNamespace(message=SimpleNamespace(topic="p.inference.results"))
        assert deferral.defers(arrived)
        assert not deferral.defers(result)

    def test_a_negative_deferral_is_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            Deferral(frozenset(), -1.0)


@pytest.mark.parametrize(
    ("capacity", "linger", "defer"), [(0, 0.0, 0.0), (1, -0.1, 0.0), (1, 0.0, -0.1)]
)
def test_invalid_parameters_are_refused(capacity: int, linger: float, defer: float) -> None:
    """A buffer that could never hand anything over is refused."""
    with pytest.raises(ValueError, match="capacity"):
        ReadyBuffer(capacity, linger_seconds=linger, defer_seconds=defer)


class FakeFaustStream:
    """The parts of a Faust stream :func:`take_ready` uses, as ``faust/streams.py`` has them.

    ``_enable_passive`` drains the channel in the background: each value becomes the current
    event and passes through the processors (``take_ready``'s buffer), as Faust's own
    ``_passive_drainer`` does. ``ack`` records what was acknowledged.
    """

    def __init__(self, values: list[str]) -> None:
        self.channel = _Channel(values)
        self.current_event: object | None = None
        self.enable_acks = True
        self.should_stop = False
        self._processors: list[Any] = []
        self._active_agens: set[AsyncIterator[list[Any]]] = set()
        self.acked: list[str] = []
        self.drainer: asyncio.Task[None] | None = None

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel: AsyncIterator[str]) -> None:
        self.drainer = asyncio.create_task(self._drain(channel))

    async def _drain(self, channel: AsyncIterator[str]) -> None:
        async for value in channel:
            topic = value.split(":")[0] if ":" in value else "t"
            self.current_event = SimpleNamespace(value=value, message=SimpleNamespace(topic=topic))
            for processor in list(self._processors):
                await processor(value)

    async def ack(self, event: Any) -> bool:
        self.acked.append(event.value)
        return True


class _Channel:
    """Values arrive when the test sends them (the broker's fetches)."""

    def __init__(self, values: list[str]) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        for value in values:
            self.queue.put_nowait(value)

    def send(self, *values: str) -> None:
        for value in values:
            self.queue.put_nowait(value)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        while True:
            yield await self.queue.get()


@pytest.fixture
async def streams() -> AsyncIterator[list[FakeFaustStream]]:
    """Fake streams whose background drainers are stopped after the test."""
    made: list[FakeFaustStream] = []
    yield made
    for stream in made:
        if stream.drainer is not None:
            stream.drainer.cancel()


class TestTakeReady:
    async def test_batches_are_acked_only_after_the_caller_is_done(
        self, streams: list[FakeFaustStream]
    ) -> None:
        """Faust's rule kept: a batch is acknowledged when the caller asks for the next one."""
        stream = FakeFaustStream(["a"])
        streams.append(stream)
        batches = take_ready(stream, 8, 0.0)
        assert stream._active_agens == {batches}  # closed by Faust when the stream stops
        first = await anext(batches)
        assert [e.value for e in first] == ["a"]  # a lone message, taken at once
        assert stream.enable_acks is False
        stream.channel.send("b", "c")  # arrive while a is processed
        await turns()
        assert stream.acked == []  # a is being processed: not acknowledged
        second = await anext(batches)
        assert stream.acked == ["a"]
        assert [e.value for e in second] == ["b", "c"]
        await batches.aclose()  # type: ignore[attr-defined]
        assert stream.acked == ["a", "b", "c"]
        assert stream._processors == []
        assert stream.enable_acks is True

    async def test_a_deferral_holds_lifecycle_steps_for_the_result(
        self, streams: list[FakeFaustStream]
    ) -> None:
        """The results agent's case: the arrival waits for the result on another topic."""
        stream = FakeFaustStream(["arrived:1"])
        streams.append(stream)
        batches = take_ready(stream, 8, 0.0, Deferral(frozenset({"arrived"}), HOUR))
        first = asyncio.ensure_future(anext(batches))
        await turns()
        assert not first.done()
        stream.channel.send("results:1")
        await turns()
        assert [e.value for e in first.result()] == ["arrived:1", "results:1"]
        await batches.aclose()  # type: ignore[attr-defined]

    async def test_a_held_batch_is_not_acked_when_the_stream_stops(self) -> None:
        """A stopped stream yields nothing and acknowledges nothing."""
        stream = FakeFaustStream(["a"])
        stream.should_stop = True
        assert [batch async for batch in take_ready(stream, 8, 0.0)] == []
        assert stream.acked == []
        assert stream._processors == []

    async def test_a_value_without_an_event_is_an_error(
        self, streams: list[FakeFaustStream]
    ) -> None:
        """The buffer needs Faust's current event (its message carries the offset to ack)."""
        stream = FakeFaustStream([])
        streams.append(stream)
        batches = take_ready(stream, 8, 0.0)
        stream.should_stop = True
        with pytest.raises(StopAsyncIteration):
            await anext(batches)
        stream.should_stop = False
        batches = take_ready(stream, 8, 0.0)
        stream.current_event = None
        waiting: asyncio.Future[list[Any]] = asyncio.ensure_future(anext(batches))
        await turns()
        with pytest.raises(RuntimeError, match="current event"):
            await stream._processors[0]("x")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
