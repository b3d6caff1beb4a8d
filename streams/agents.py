"""The thin Faust agents: consume a topic in batches, run a stage handler, deliver, ack.

Faust owns consumer-group membership, batching (``take_events``) and offset commits; the stage
logic never sees Faust. Every consumed topic uses raw bytes (``value_serializer="raw"``) so a
poison message reaches the stage's guard and becomes a dead letter instead of crashing Faust's
decoder. Agents run with ``concurrency=1``: Faust issue #606 can commit past an in-flight
message with more, losing it on restart; scale with partitions and processes instead.

A batch whose outcomes cannot be delivered for good (the broker refused: an ACL, a fenced
producer — ``BROKER_REQUEST_REFUSED``) must not be acknowledged either: raising out of the agent
would let ``take_events`` ack it in its ``finally`` and Faust commit past it. The agent instead
holds the batch's messages (:func:`hold_unacknowledged`), reports the failure through
``on_fatal`` — the worker then stops and exits non-zero — and waits to be cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
import structlog

from schemas.errors import ErrorCode, RadstreamError
from streams.kafka import Outgoing
from streams.pipeline import Incoming, StageHandler, StageObserver, process_batch

T = TypeVar("T")

log = structlog.get_logger("radstream.agents")


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


def hold_unacknowledged(events: Sequence[Any]) -> None:
    """Keep Faust from ever acknowledging ``events`` in this process.

    Faust acks an event by decrementing its message's reference count and marks the offset
    committable only when the count reaches zero (``faust/types/tuples.py``, ``Message.ack``);
    one extra reference per message keeps ``take_events``' ``finally`` from reaching zero, so
    the offsets stay uncommitted (Faust commits only contiguous acknowledged offsets) and the
    batch is redelivered to the next process.
    """
    for event in events:
        event.message.incref()


async def _until_cancelled() -> None:
    """Wait for the worker's shutdown, which ``on_fatal`` has started (bounded by it)."""
    await asyncio.get_running_loop().create_future()


def register_agent(
    app: faust.App,
    spec: AgentSpec,
    deliver: Callable[[Sequence[Outgoing]], Awaitable[None]],
    observer: StageObserver,
    *,
    on_handler_crash: Callable[[BaseException], None] | None = None,
    on_batch_done: Callable[[str, Sequence[Outgoing]], None] | None = None,
    on_fatal: Callable[[Exception], None] | None = None,
) -> Any:
    """Declare the Faust agent that runs ``spec.handler`` over its topics.

    Args:
        on_fatal: called once when a batch's outcomes could not be delivered for good; the
            batch is held unacknowledged and the agent waits to be cancelled. Without it, the
            error is raised (and Faust would ack the batch: production passes it).
    """
    channel = app.topic(
        *spec.topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def agent(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(spec.batch_size, within=spec.batch_wait_seconds):
            batch = [incoming_from_event(event) for event in events]
            try:
                outgoing = await finish_even_if_cancelled(
                    process_batch(
                        spec.handler, batch, deliver, observer, on_handler_crash=on_handler_crash
                    )
                )
            except Exception as exc:
                # Only delivery raises out of process_batch, and only what retrying cannot fix.
                hold_unacknowledged(events)
                if on_fatal is None:
                    raise
                code = exc.code if isinstance(exc, RadstreamError) else ErrorCode.INTERNAL_ERROR
                log.error(  # noqa: TRY400 - one line; the error's text is the CLI's to print
                    "delivery_failed", stage=spec.name, error_code=code.value, messages=len(events)
                )
                on_fatal(exc)
                await _until_cancelled()
            if on_batch_done is not None:
                on_batch_done(spec.name, outgoing)
            yield None

    agent.__name__ = agent.__qualname__ = f"{spec.name}_agent"
    return app.agent(channel, name=spec.name, concurrency=1)(agent)
