"""The thin Faust agents: consume a topic in batches, run a stage handler, deliver, ack.

Faust owns consumer-group membership and offset commits; the stage logic never sees Faust.
Batching is adaptive (:func:`take_ready`): an agent takes what has arrived, without waiting for
more when the queue is empty, so a message that finds the stage idle is processed at once and a
batch fills only under load (while the previous batch was being processed). Every consumed
topic uses raw bytes (``value_serializer="raw"``) so a
poison message reaches the stage's guard and becomes a dead letter instead of crashing Faust's
decoder. Agents run with ``concurrency=1``: Faust issue #606 can commit past an in-flight
message with more, losing it on restart; scale with partitions and processes instead.

A batch whose outcomes cannot be delivered for good (the broker refused: an ACL, a fenced
producer — ``BROKER_REQUEST_REFUSED``) must not be acknowledged either: raising out of the agent
would let :func:`take_ready` (like Faust's ``take_events``) ack it in its ``finally`` and Faust
commit past it. The agent instead holds the batch's messages (:func:`hold_unacknowledged`),
reports the failure through ``on_fatal`` — the worker then stops and exits non-zero — and
waits to be cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
import structlog

from schemas.errors import ErrorCode, RadstreamError
from streams.kafka import Outgoing
from streams.kafka.errors import kafka_errors
from streams.pipeline import Incoming, StageHandler, StageObserver, process_batch

T = TypeVar("T")

log = structlog.get_logger("radstream.agents")

# How long an idle agent waits for its first message before it looks again (a bound on every
# wait; shutdown cancels the wait anyway). Not a batching delay: a message ends the wait at once.
IDLE_RECHECK_SECONDS = 1.0
# Bound of one look at a Faust consumer's pending error (a hop to Faust's consumer thread).
CONSUMER_CHECK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Deferral:
    """Messages that may wait for a more urgent one, so both share one batch.

    A batch holding only messages of ``topics`` waits up to ``seconds`` for a message of another
    topic (or for the batch to fill); one such message releases it at once. The results sink
    defers lifecycle-only steps (an arrival, a validation): they are written with the image's
    result in one transaction instead of one transaction each, and a result never waits.
    """

    topics: frozenset[str]
    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("a deferral's seconds must not be negative")

    def defers(self, event: Any) -> bool:
        """Whether a Faust ``event`` may wait (its message came from one of ``topics``)."""
        return bool(event.message.topic in self.topics)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """Which topics a stage consumes and how it batches them.

    Attributes:
        batch_size: most messages in one batch.
        batch_wait_seconds: how long a batch that is not full may wait for more messages after
            its first (0: take what is there; a batch then fills only while the stage is busy).
        deferral: messages a batch may hold back for a more urgent one (:class:`Deferral`).
        skip: messages the stage does not handle although its topics carry them (acknowledged
            with their batch): events of an image already inferred where it was validated
            (``streams.stages.fused.already_inferred``).
    """

    name: str
    topics: tuple[str, ...]
    handler: StageHandler
    batch_size: int
    batch_wait_seconds: float
    deferral: Deferral | None = None
    skip: Callable[[Incoming], bool] | None = None

    def kept(self, batch: Sequence[Incoming]) -> list[Incoming]:
        """The messages of ``batch`` the stage handles (all of them without ``skip``)."""
        if self.skip is None:
            return list(batch)
        return [message for message in batch if not self.skip(message)]


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


class ReadyBuffer(Generic[T]):
    """Messages fetched for one agent, handed over as soon as there are any (adaptive batching).

    The consumer's side :meth:`put` appends and waits while ``capacity`` items are buffered
    (backpressure, as Faust's own take buffer does). The agent's side :meth:`take` waits for the
    first item, then — after up to ``linger_seconds`` for the batch to fill, 0 by default —
    returns at most ``capacity`` items. Items keep arriving while the agent processes a batch,
    so the next :meth:`take` returns at once with everything that came meanwhile: batches are
    one message at low rates (no added latency) and full under load (the per-batch costs shared).

    With ``deferrable``, a buffer holding only items it accepts waits up to ``defer_seconds``
    (from the :meth:`take`) for any other item or a full buffer before it hands them over.
    """

    def __init__(
        self,
        capacity: int,
        *,
        linger_seconds: float = 0.0,
        defer_seconds: float = 0.0,
        deferrable: Callable[[T], bool] | None = None,
    ) -> None:
        if capacity < 1 or linger_seconds < 0 or defer_seconds < 0:
            raise ValueError("capacity must be positive and the waits not negative")
        self.capacity = capacity
        self.linger_seconds = linger_seconds
        self.defer_seconds = defer_seconds if deferrable is not None else 0.0
        self._deferrable = deferrable
        self._items: list[T] = []
        self._urgent = 0  # buffered items that may not wait
        self._ready = asyncio.Event()  # set while there is at least one item
        self._full = asyncio.Event()  # set while there are ``capacity`` items
        self._room = asyncio.Event()  # set while there are fewer than ``capacity`` items
        self._due = asyncio.Event()  # set while an urgent item is buffered, or it is full
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        """Add ``item``; waits (before adding) while the buffer is full."""
        while len(self._items) >= self.capacity:
            await self._room.wait()
        self._items.append(item)
        if not self._may_wait(item):
            self._urgent += 1
        self._changed()

    async def take(self, idle_seconds: float = IDLE_RECHECK_SECONDS) -> list[T]:
        """The buffered items (at most ``capacity``); empty when none came in ``idle_seconds``."""
        if not self._items:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), idle_seconds)
        if self._items and self.defer_seconds > 0 and not self._due.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self.defer_seconds)
        if self._items and self.linger_seconds > 0 and not self._full.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.linger_seconds)
        taken = self._items[: self.capacity]
        del self._items[: self.capacity]
        self._urgent = sum(not self._may_wait(item) for item in self._items)
        self._changed()
        return taken

    def _may_wait(self, item: T) -> bool:
        return self._deferrable is not None and self._deferrable(item)

    def _changed(self) -> None:
        count = len(self._items)
        for event, on in (
            (self._ready, count > 0),
            (self._full, count >= self.capacity),
            (self._room, count < self.capacity),
            (self._due, self._urgent > 0 or count >= self.capacity),
        ):
            if on:
                event.set()
            else:
                event.clear()


def take_ready(
    stream: Any, max_: int, within: float, deferral: Deferral | None = None
) -> AsyncIterator[list[Any]]:
    """Faust's ``stream.take_events(max_, within)`` made adaptive (:class:`ReadyBuffer`).

    ``take_events`` waits ``within`` on a fixed tick even for a lone message and stops
    buffering while its caller processes a batch; this takes what is there at once (lingering
    ``within`` only when asked to, from the batch's first message) and keeps buffering during
    processing. The delivery rules are ``take_events``' own: acks are disabled on the stream,
    and a batch's events are acknowledged in a ``finally`` after the caller has finished with
    it (the agent holds them first when their outcomes could not be delivered). It uses the
    stream's processor and passive-drain hooks exactly as ``take_events`` does
    (faust-streaming 0.15, ``faust/streams.py``), and registers with the stream like
    ``take_events``, so stopping the stream closes it (its ``finally`` acks the last batch).
    Up to ``max_`` buffered events wait for the next batch instead of Faust's channel queue;
    in a rebalance Faust waits for them to be processed (``stream_wait_empty``), and a partition's
    new owner may process them again: at least once, as for ``take_events``' in-flight batch.
    With ``deferral``, a batch of deferrable messages only waits for a more urgent one.
    """
    batches = _take_ready(stream, max_, within, deferral)
    active = getattr(stream, "_active_agens", None)
    if active is not None:
        active.add(batches)
    return batches


async def _take_ready(
    stream: Any, max_: int, within: float, deferral: Deferral | None
) -> AsyncIterator[list[Any]]:
    buffer: ReadyBuffer[Any] = ReadyBuffer(
        max_,
        linger_seconds=within,
        defer_seconds=deferral.seconds if deferral else 0.0,
        deferrable=deferral.defers if deferral else None,
    )

    async def add_to_buffer(value: T) -> T:
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_ready found no current event")
        await buffer.put(event)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            events = await buffer.take()
            if not events:
                continue
            try:
                yield events
            finally:
                for event in events:
                    await stream.ack(event)
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


def register_agent(
    app: faust.App,
    spec: AgentSpec,
    deliver: Callable[[Sequence[Outgoing]], Awaitable[None]],
    observer: StageObserver,
    *,
    on_handler_crash: Callable[[BaseException], None] | None = None,
    on_batch_done: Callable[[str, Sequence[Outgoing]], None] | None = None,
    on_fatal: Callable[[Exception], None] | None = None,
    take: Callable[[Any, int, float, Deferral | None], AsyncIterator[Sequence[Any]]] = take_ready,
) -> Any:
    """Declare the Faust agent that runs ``spec.handler`` over its topics.

    Args:
        on_fatal: called once when a batch's outcomes could not be delivered for good; the
            batch is held unacknowledged and the agent waits to be cancelled. Without it, the
            error is raised (and Faust would ack the batch: production passes it).
        take: how batches are taken from the stream (:func:`take_ready`; tests pass fakes).
    """
    channel = app.topic(
        *spec.topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def agent(stream: Any) -> AsyncIterator[None]:
        async for events in take(stream, spec.batch_size, spec.batch_wait_seconds, spec.deferral):
            batch = spec.kept([incoming_from_event(event) for event in events])
            try:
                outgoing = (
                    await finish_even_if_cancelled(
                        process_batch(
                            spec.handler,
                            batch,
                            deliver,
                            observer,
                            on_handler_crash=on_handler_crash,
                        )
                    )
                    if batch
                    else []
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


async def raise_consumer_error(app: faust.App) -> None:
    """Raise the error aiokafka holds for ``app``'s consumer, translated; return if there is none.

    aiokafka raises what its group coordination cannot get past without the operator (a group
    or topic the principal may not use: ``GroupAuthorizationFailedError``, or a coordination
    task that died) from the consumer's ``getmany``. Faust never calls ``getmany``: it reads
    from aiokafka's fetcher directly (faust-streaming 0.15, ``drivers/aiokafka.py``,
    ``_fetch_records``), so such an error is never raised and the worker waits without a member
    or a line, for ever. This asks the coordinator (``check_errors``, on Faust's consumer
    thread, where the coordinator lives). An app whose consumer has not started, or whose
    thread does not answer within the bound, is skipped: no verdict is not an error.

    Raises:
        RadstreamError: ``BROKER_REQUEST_REFUSED`` for a refusal, else the translated error.
    """
    consumer = getattr(app, "_consumer", None)  # not app.consumer: that would create one
    thread = getattr(consumer, "_thread", None)
    coordinator = getattr(getattr(thread, "_consumer", None), "_coordinator", None)
    if thread is None or coordinator is None:
        return

    async def check() -> None:
        coordinator.check_errors()

    try:
        async with asyncio.timeout(CONSUMER_CHECK_TIMEOUT_SECONDS):
            with kafka_errors(f"consuming in group {app.conf.id}"):
                await thread.call_thread(check)
    except TimeoutError:
        return  # the consumer thread is busy or stopping: no verdict, the next look decides


async def watch_consumers(
    apps: Sequence[faust.App],
    on_fatal: Callable[[Exception], None],
    *,
    every_seconds: float = 1.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Check every app's consumer every ``every_seconds``; the first error ends the worker.

    The error is logged as one line (``consumer_failed`` with the group and the error code)
    and passed to ``on_fatal``, which stops the worker; it exits non-zero for its supervisor.
    """
    while True:
        await sleep(every_seconds)
        for app in apps:
            try:
                await raise_consumer_error(app)
            except Exception as exc:  # noqa: BLE001 - any error here means no consumption
                code = exc.code if isinstance(exc, RadstreamError) else ErrorCode.INTERNAL_ERROR
                log.error(  # noqa: TRY400 - one line; the error's text is the CLI's to print
                    "consumer_failed", group=app.conf.id, error_code=code.value
                )
                on_fatal(exc)
                return
