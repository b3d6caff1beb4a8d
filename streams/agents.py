"""The thin Faust agents: consume a topic in batches, run a stage handler, deliver, ack.

Faust owns consumer-group membership, batching (``take_events``) and offset commits; the stage
logic never sees Faust. Every consumed topic uses raw bytes (``value_serializer="raw"``) so a
poison message reaches the stage's guard and becomes a dead letter instead of crashing Faust's
decoder. Agents run with ``concurrency=1``: Faust issue #606 can commit past an in-flight
message with more, losing it on restart; scale with partitions and processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import faust

from streams.kafka import Outgoing
from streams.pipeline import Incoming, StageHandler, StageObserver, process_batch

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """Which topics a stage consumes and how it batches them."""

    name: str
    topics: tuple[str, ...]
    handler: StageHandler
    batch_size: int
    batch_wait_seconds: float


def incoming_from_event(event: Any) -> Incoming:
    """Translate a Faust event into the library-independent :class:`Incoming`."""
    message = event.message
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = tuple(headers.items())
    return Incoming(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value if message.value is not None else b"",
        headers=tuple((str(k), bytes(v or b"")) for k, v in headers),
        timestamp=message.timestamp,
    )


async def finish_even_if_cancelled(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` to its end even when the caller is cancelled, then re-raise the cancel.

    ``take_events`` acknowledges a batch in a ``finally`` when its generator closes, and a
    worker shutting down cancels the agent mid-batch: without this, the batch would be acked
    (and its offsets committed on shutdown) while its outcomes were still undelivered. The
    batch is finished first; if it cannot finish (broker down) shutdown waits, and a killed
    process commits nothing, so the batch is redelivered.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        raise


def register_agent(
    app: faust.App,
    spec: AgentSpec,
    deliver: Callable[[Sequence[Outgoing]], Awaitable[None]],
    observer: StageObserver,
    *,
    on_handler_crash: Callable[[BaseException], None] | None = None,
    on_batch_done: Callable[[str, Sequence[Outgoing]], None] | None = None,
) -> Any:
    """Declare the Faust agent that runs ``spec.handler`` over its topics."""
    channel = app.topic(
        *spec.topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def agent(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(spec.batch_size, within=spec.batch_wait_seconds):
            batch = [incoming_from_event(event) for event in events]
            outgoing = await finish_even_if_cancelled(
                process_batch(
                    spec.handler, batch, deliver, observer, on_handler_crash=on_handler_crash
                )
            )
            if on_batch_done is not None:
                on_batch_done(spec.name, outgoing)
            yield None

    agent.__name__ = agent.__qualname__ = f"{spec.name}_agent"
    return app.agent(channel, name=spec.name, concurrency=1)(agent)
