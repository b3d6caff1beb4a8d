"""Shutting a worker down mid-batch never acknowledges undelivered outcomes.

Faust's ``take_events`` acks a batch in a ``finally`` when the generator closes (read
``faust/streams.py``); :class:`FakeStream` reproduces exactly that, so these tests show the
agent's behaviour against Faust's real acknowledgement rule without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types.tuples import Message

from schemas.errors import ErrorCode, TransientError
from schemas.events import Stage
from streams.agents import AgentSpec, finish_even_if_cancelled, register_agent
from streams.kafka import Outgoing
from streams.pipeline import Incoming, NullObserver
from streams.topics import TopicKey

pytestmark = pytest.mark.requirement("RS-G-03", "RS-INF-05")


class OneBatchStream:
    """take_events as Faust implements it: yields one batch, acks it in ``finally``.

    Subclasses say what a batch is and what acknowledging it does.
    """

    def __init__(self) -> None:
        self.generator: AsyncIterator[list[Any]] | None = None

    def take_events(self, _max: int, within: float) -> AsyncIterator[list[Any]]:
        self.generator = self._take_events()
        return self.generator

    async def _take_events(self) -> AsyncIterator[list[Any]]:
        events = self.batch()
        try:
            yield events
            await asyncio.sleep(3600)  # no second batch
        finally:
            self.ack(events)

    def batch(self) -> list[Any]:
        """The one batch of events the stream yields."""
        raise NotImplementedError

    def ack(self, events: list[Any]) -> None:
        """Acknowledge ``events`` as the generator closes."""
        raise NotImplementedError


class FakeStream(OneBatchStream):
    """Faust's acks of a batch, recorded as the values acknowledged."""

    def __init__(self, values: list[bytes]) -> None:
        super().__init__()
        self.values = values
        self.acked: list[bytes] = []

    def batch(self) -> list[Any]:
        return [
            SimpleNamespace(
                message=SimpleNamespace(
                    topic="t", partition=0, offset=i, key=None, value=v, headers=(), timestamp=0.0
                )
            )
            for i, v in enumerate(self.values)
        ]

    def ack(self, events: list[Any]) -> None:
        self.acked.extend(e.message.value for e in events)


def take_events(
    stream: Any, max_: int, within: float, _deferral: object = None
) -> AsyncIterator[list[Any]]:
    """Take batches as Faust's ``take_events`` does (the fakes below reproduce its acks)."""
    generator: AsyncIterator[list[Any]] = stream.take_events(max_, within)
    return generator


class FakeApp:
    """Captures the agent function Faust would run."""

    def __init__(self) -> None:
        self.agent_fn: Callable[[Any], AsyncIterator[None]] | None = None

    def topic(self, *_args: Any, **_kwargs: Any) -> object:
        return object()

    def agent(self, _channel: object, **_kwargs: Any) -> Callable[[Any], Any]:
        def decorate(fn: Callable[[Any], AsyncIterator[None]]) -> Any:
            self.agent_fn = fn
            return fn

        return decorate


class PassThrough:
    stage = Stage.VALIDATION

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        return [Outgoing(TopicKey.IMAGES_VALIDATED, m.key, m.value) for m in batch]


class SlowDelivery:
    """Delivery that completes only when the test says so (a broker taking its time)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.delivered: list[bytes] = []

    async def __call__(self, messages: Sequence[Outgoing]) -> None:
        await self.release.wait()
        self.delivered.extend(m.value_bytes() for m in messages)


class TestShutdownMidBatch:
    async def test_batch_is_delivered_before_it_is_acked(self) -> None:
        """Cancelling the agent mid-delivery waits for delivery; only then is the batch acked."""
        app, stream, delivery = FakeApp(), FakeStream([b"a", b"b"]), SlowDelivery()
        spec = AgentSpec("validation", ("t",), PassThrough(), 10, 0.01)
        register_agent(app, spec, delivery, NullObserver(), take=take_events)  # type: ignore[arg-type]
        assert app.agent_fn is not None

        async def consume() -> None:
            async for _ in app.agent_fn(stream):
                pass

        agent = asyncio.create_task(consume())
        await asyncio.sleep(0.05)  # the batch is in delivery now
        agent.cancel()
        await asyncio.sleep(0.05)
        assert stream.acked == []  # shutdown is waiting for the batch, nothing acked yet
        assert not agent.done()
        delivery.release.set()
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert delivery.delivered == [b"a", b"b"]
        # Faust closes the stream's generator on stop; that is when the batch is acked.
        assert stream.generator is not None
        await stream.generator.aclose()  # type: ignore[attr-defined]
        assert stream.acked == [b"a", b"b"]


class TestFinishEvenIfCancelled:
    async def test_result_returned_when_not_cancelled(self) -> None:
        """Without cancellation it is a plain await."""

        async def work() -> int:
            return 7

        assert await finish_even_if_cancelled(work()) == 7

    async def test_work_errors_propagate(self) -> None:
        """An error of the work itself is not swallowed."""

        async def work() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await finish_even_if_cancelled(work())

    async def test_repeated_cancellation_still_waits(self) -> None:
        """A second cancel during the wait does not abandon the work either."""
        done = asyncio.Event()
        finished: list[bool] = []

        async def work() -> None:
            await done.wait()
            finished.append(True)

        outer = asyncio.create_task(finish_even_if_cancelled(work()))
        await asyncio.sleep(0.01)
        outer.cancel()
        await asyncio.sleep(0.01)
        outer.cancel()
        await asyncio.sleep(0.01)
        assert not outer.done()
        done.set()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert finished == [True]


class RefcountingStream(OneBatchStream):
    """take_events with Faust's real acknowledgement rule: ``Message.ack`` and its refcount.

    The conductor gives each message one reference per stream; ``take_events`` acks every event
    of the batch in its ``finally``; a message is committable only when its final ack lands.
    """

    def __init__(self, values: list[bytes]) -> None:
        super().__init__()
        self.consumer = object()
        self.messages = [
            Message("t", 0, i, 0.0, 0, None, None, v, None) for i, v in enumerate(values)
        ]
        self.committable: list[int] = []

    def batch(self) -> list[Any]:
        for message in self.messages:
            message.incref()
        return [SimpleNamespace(message=m) for m in self.messages]

    def ack(self, events: list[Any]) -> None:
        for event in events:
            if event.message.ack(self.consumer):
                self.committable.append(event.message.offset)


async def refused(_messages: Sequence[Outgoing]) -> None:
    raise TransientError(ErrorCode.BROKER_REQUEST_REFUSED, "delivery: refused by the broker")


class TestRefusedDelivery:
    async def test_refused_batch_is_never_acknowledged_and_the_worker_is_told(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An ACL refusal: on_fatal gets the error once, Faust's ack cannot commit the batch."""
        app, stream = FakeApp(), RefcountingStream([b"a", b"b"])
        fatal: list[Exception] = []
        spec = AgentSpec("validation", ("t",), PassThrough(), 10, 0.01)
        register_agent(
            app,  # type: ignore[arg-type]
            spec,
            refused,
            NullObserver(),
            on_fatal=fatal.append,
            take=take_events,
        )
        agent_fn = app.agent_fn
        assert agent_fn is not None

        async def consume() -> None:
            async for _ in agent_fn(stream):
                pass

        agent = asyncio.create_task(consume())
        for _ in range(100):
            if fatal:
                break
            await asyncio.sleep(0.01)
        assert [getattr(e, "code", None) for e in fatal] == [ErrorCode.BROKER_REQUEST_REFUSED]
        assert not agent.done()  # waits for the worker's shutdown, consuming nothing more
        agent.cancel()  # the worker stops: Faust cancels the agent, then closes the stream
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert stream.generator is not None
        await stream.generator.aclose()  # type: ignore[attr-defined]
        assert stream.committable == []
        lines = [line for line in capsys.readouterr().out.splitlines() if "delivery_failed" in line]
        assert len(lines) == 1
        assert "BROKER_REQUEST_REFUSED" in lines[0]

    async def test_without_on_fatal_the_error_is_raised_and_the_batch_still_held(self) -> None:
        """Tools without a worker around them see the error; the batch is not acknowledged."""
        app, stream = FakeApp(), RefcountingStream([b"a"])
        spec = AgentSpec("validation", ("t",), PassThrough(), 10, 0.01)
        register_agent(app, spec, refused, NullObserver(), take=take_events)  # type: ignore[arg-type]
        assert app.agent_fn is not None
        with pytest.raises(TransientError):
            async for _ in app.agent_fn(stream):
                pass
        await stream.generator.aclose()  # type: ignore[union-attr]
        assert stream.committable == []

    async def test_a_delivered_batch_is_acknowledged_by_the_same_rule(self) -> None:
        """The control: with delivery confirmed, Faust's ack makes the offsets committable."""
        app, stream = FakeApp(), RefcountingStream([b"a", b"b"])
        delivery = SlowDelivery()
        delivery.release.set()
        spec = AgentSpec("validation", ("t",), PassThrough(), 10, 0.01)
        register_agent(app, spec, delivery, NullObserver(), take=take_events)  # type: ignore[arg-type]
        assert app.agent_fn is not None
        agen = app.agent_fn(stream)
        await agen.__anext__()
        await agen.aclose()  # type: ignore[attr-defined]
        await stream.generator.aclose()  # type: ignore[union-attr]
        assert stream.committable == [0, 1]
