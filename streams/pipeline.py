"""What every stage agent does around its pure logic: parse, guard, deliver, observe.

A stage is a :class:`StageHandler` that turns a batch of consumed messages into messages to
produce. :func:`process_batch` runs it so that

* nothing escapes: Faust acks a ``take_events`` batch in a ``finally`` even when the body
  raised, so an exception would silently skip the batch's offsets. A handler crash turns each
  message of the batch into a dead letter instead;
* nothing is acked before its outcome is on the broker: delivery is retried with bounded
  backoff for as long as it takes (a broker outage stalls the stage, it loses nothing);
* metrics are recorded in one place, from the outcomes themselves, through a
  :class:`StageObserver`;
* every outcome is logged once (``message_processed``, ``image_rejected``,
  ``message_dead_lettered``) with the message's context bound: correlation id, event id, stage
  and the consumed topic/partition/offset. Only ids, codes and the published, patient-data-free
  reasons are logged, never a message value.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from structlog.typing import FilteringBoundLogger

from observability.logging import message_context
from schemas.correlation import (
    CorrelationId,
    correlation_id_from_headers,
    derived_correlation_id,
    new_correlation_id,
    with_correlation_header,
)
from schemas.errors import ErrorCode, RadstreamError, error_for
from schemas.events import DeadLetter, ImageRejected, Stage, utc_now
from streams.kafka import Headers, Outgoing
from streams.retry import FailureRecord, RetryPolicy, run_with_retries
from streams.topics import TopicKey

ModelT = TypeVar("ModelT", bound=BaseModel)

log = structlog.get_logger("radstream.pipeline")

# A shadow version's outcome is not the stage's outcome for the event (the published one is);
# it is counted per version by radstream_model_images_total{role="shadow"} instead.
SHADOW_OUTCOME = "shadow"
OUTCOME_BY_TOPIC: dict[TopicKey, str] = {
    TopicKey.IMAGES_VALIDATED: "validated",
    TopicKey.IMAGES_VALIDATED_STAT: "validated",
    TopicKey.IMAGES_REJECTED: "rejected",
    TopicKey.INFERENCE_RESULTS: "inferred",
    TopicKey.DEADLETTER: "dead_lettered",
    TopicKey.AUDIT_LOG: "audited",
    TopicKey.RESULTS_EXPORTED: "exported",
    TopicKey.INFERENCE_SHADOW: SHADOW_OUTCOME,
}


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed message, independent of the consumer library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp: float | None = None

    def header(self, name: str) -> str | None:
        """A header's value as text, or None."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", errors="replace")
        return None

    @property
    def correlation_id(self) -> CorrelationId:
        """The propagated correlation id: the producer's when the rule accepts it, else derived.

        Correlation ids are logged and published unmasked, so a header that is not a UUID or a
        hex digest (it could be a patient's name or record number) is replaced, never copied
        (``schemas/correlation.py``). The replacement is derived from the message's position,
        so every outcome and every redelivery of one message share it, and so does the audit
        agent's record of the same message.
        """
        return correlation_id_from_headers(self.headers) or derived_correlation_id(
            self.topic, self.partition, self.offset
        )

    def out_headers(self) -> Headers:
        """Headers for every message produced from this one (carry the correlation id)."""
        return tuple(with_correlation_header((), self.correlation_id))


class StageHandler(Protocol):
    """A stage's logic over a batch of consumed messages."""

    stage: Stage

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """Return the messages to produce for ``batch``; every input gets an outcome."""


class StageObserver(Protocol):
    """Hooks through which the runner reports what happened (metrics live behind it)."""

    def batch_processed(
        self, stage: Stage, size: int, seconds: float, outcomes: Sequence[tuple[str, str | None]]
    ) -> None:
        """A batch of ``size`` messages finished; outcomes are (outcome, error code) pairs."""

    def retried(self, stage: Stage, code: ErrorCode) -> None:
        """Work of ``stage`` failed with ``code`` and will be retried: delivering a batch's
        outcomes (``BROKER_UNAVAILABLE``) or reading an image."""

    def in_flight(self, stage: Stage, delta: int) -> None:
        """``delta`` messages entered (positive) or left (negative) the stage's work."""


class NullObserver:
    """An observer that records nothing (tools and unit tests)."""

    def batch_processed(
        self, stage: Stage, size: int, seconds: float, outcomes: Sequence[tuple[str, str | None]]
    ) -> None:
        """Record nothing."""

    def retried(self, stage: Stage, code: ErrorCode) -> None:
        """Record nothing."""

    def in_flight(self, stage: Stage, delta: int) -> None:
        """Record nothing."""


def dead_letter_for(
    message: Incoming,
    stage: Stage,
    error: Exception,
    *,
    failures: FailureRecord | None = None,
    event_id: uuid.UUID | None = None,
) -> Outgoing:
    """A dead letter keeping ``message`` whole, with a reason safe to publish.

    ``failures`` says how often and when the work on it failed; without one it failed once, now.
    """
    from streams.deadletter import build_dead_letter  # noqa: PLC0415 - keeps this module light

    attempts, first, last = (failures or FailureRecord()).span(utc_now())
    letter: DeadLetter = build_dead_letter(
        stage=stage,
        error=error,
        attempts=attempts,
        first_failure_at=first,
        last_failure_at=last,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=message.headers,
        correlation_id=message.correlation_id,
        event_id=event_id,
    )
    return Outgoing(TopicKey.DEADLETTER, letter.message_key(), letter, message.out_headers())


def parse_event(message: Incoming, model: type[ModelT]) -> ModelT:
    """Validate a message value against its contract.

    Raises:
        InputValidationError: EVENT_MALFORMED or EVENT_SCHEMA_VERSION_UNSUPPORTED, with a
            reason naming only the offending field locations (never their values).
    """
    try:
        return model.model_validate_json(message.value)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        locations = sorted({".".join(str(p) for p in e["loc"]) for e in errors})[:5]
        code = (
            ErrorCode.EVENT_SCHEMA_VERSION_UNSUPPORTED
            if any(e["loc"] == ("schema_version",) for e in errors)
            else ErrorCode.EVENT_MALFORMED
        )
        reason = f"{model.__name__} contract violated at: {', '.join(locations) or 'value'}"
        raise error_for(code, reason) from exc


def parse_batch(
    batch: Sequence[Incoming],
    models: Mapping[str, type[ModelT]],
    stage: Stage,
    *,
    skipped_topics: frozenset[str] = frozenset(),
    on_skipped: Callable[[Incoming, ErrorCode], None] | None = None,
) -> tuple[list[tuple[Incoming, ModelT]], list[Outgoing]]:
    """Parse each message with its topic's contract: the parsed events and the dead letters.

    A message on a topic the stage does not consume, or one that does not parse, becomes a dead
    letter, except on ``skipped_topics``: arrivals that the validation stage reads too and
    dead-letters once itself (a second dead letter would be replayed twice). Those are handed to
    ``on_skipped`` with their code, for a log line and a counter, and go no further.
    """
    parsed: list[tuple[Incoming, ModelT]] = []
    dead_letters: list[Outgoing] = []
    for message in batch:
        model = models.get(message.topic)
        if model is None:
            wrong = ValueError(f"{stage.value} stage does not consume {message.topic}")
            dead_letters.append(dead_letter_for(message, stage, wrong))
            continue
        try:
            parsed.append((message, parse_event(message, model)))
        except RadstreamError as exc:
            if message.topic in skipped_topics:
                if on_skipped is not None:
                    on_skipped(message, exc.code)
            else:
                dead_letters.append(dead_letter_for(message, stage, exc))
    return parsed, dead_letters


async def apply_isolating_culprits(
    parsed: Sequence[tuple[Incoming, ModelT]],
    apply: Callable[[Sequence[ModelT]], Awaitable[None]],
    stage: Stage,
    *,
    on_batch_error: Callable[[Exception], None] | None = None,
) -> list[Outgoing]:
    """Apply ``parsed``'s events in one call; if that fails, one by one: the dead letters.

    One bad event must not take its batch-mates with it, nor lose the batch: after the batch
    failed (reported to ``on_batch_error``), each event is applied alone and only those that
    fail again are dead-lettered, with their own error.
    """
    dead_letters: list[Outgoing] = []
    try:
        await apply([event for _, event in parsed])
    except Exception as exc:  # noqa: BLE001 - isolate the culprit instead of losing the batch
        if on_batch_error is not None:
            on_batch_error(exc)
        for message, event in parsed:
            try:
                await apply([event])
            except Exception as single:  # noqa: BLE001 - dead-lettered with its code
                dead_letters.append(dead_letter_for(message, stage, single))
    return dead_letters


def skip_reporter(
    logger: FilteringBoundLogger, event: str, count: Callable[[ErrorCode], None] | None = None
) -> Callable[[Incoming, ErrorCode], None]:
    """An ``on_skipped`` for :func:`parse_batch`: log the skip as ``event``, then ``count`` it.

    The line carries the code and the message's position only: the value may hold whatever a
    sender wrote.
    """

    def report(message: Incoming, code: ErrorCode) -> None:
        logger.warning(
            event,
            error_code=code.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        if count is not None:
            count(code)

    return report


# Delivery waits out a broker outage (backpressure): every delay capped, no attempt limit.
DELIVERY_RETRY = RetryPolicy.until_done(initial_seconds=0.2, max_seconds=10.0, jitter=0.2)


async def deliver_until_done(
    deliver: Callable[[Sequence[Outgoing]], Awaitable[None]],
    messages: Sequence[Outgoing],
    *,
    on_retry: Callable[[], None],
    policy: RetryPolicy = DELIVERY_RETRY,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Deliver ``messages``, retrying transient broker failures per ``policy``.

    The consumed batch is acknowledged only after this returns, so blocking here is the
    backpressure that keeps a broker outage from losing anything; with the default policy it
    blocks until the broker is back (each wait capped at 10 s). Idempotent producing keeps
    retries from duplicating what was already written.

    Raises:
        RetriesExhaustedError: only with a policy that bounds attempts or time.
        RadstreamError: a delivery error that retrying cannot fix.
    """
    await run_with_retries(
        lambda: deliver(messages), policy, sleep=sleep, on_retry=lambda *_: on_retry()
    )


async def process_batch(
    handler: StageHandler,
    batch: Sequence[Incoming],
    deliver: Callable[[Sequence[Outgoing]], Awaitable[None]],
    observer: StageObserver,
    *,
    on_handler_crash: Callable[[BaseException], None] | None = None,
) -> list[Outgoing]:
    """Run one batch through ``handler`` and deliver its outcomes before returning."""
    observer.in_flight(handler.stage, len(batch))
    try:
        return await _process_batch(handler, batch, deliver, observer, on_handler_crash)
    finally:
        # Also on cancellation: a stage that stopped has nothing in flight.
        observer.in_flight(handler.stage, -len(batch))


async def _process_batch(
    handler: StageHandler,
    batch: Sequence[Incoming],
    deliver: Callable[[Sequence[Outgoing]], Awaitable[None]],
    observer: StageObserver,
    on_handler_crash: Callable[[BaseException], None] | None,
) -> list[Outgoing]:
    started = time.perf_counter()
    try:
        outgoing = await handler.handle(batch)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - native decoders raise BaseException panics
        # Anything escaping would make Faust skip the batch's offsets: dead-letter it instead.
        error = exc if isinstance(exc, Exception) else RuntimeError(type(exc).__name__)
        # The type only, no traceback: an exception's text may quote the message (a name
        # without a caret the masker cannot recognise).
        log.error(  # noqa: TRY400
            "stage_handler_crashed", stage=handler.stage.value, error_type=type(exc).__name__
        )
        if on_handler_crash is not None:
            on_handler_crash(error)
        outgoing = [dead_letter_for(message, handler.stage, error) for message in batch]

    def retried() -> None:
        log.warning("delivery_retried", stage=handler.stage.value, messages=len(outgoing))
        observer.retried(handler.stage, ErrorCode.BROKER_UNAVAILABLE)

    await deliver_until_done(deliver, outgoing, on_retry=retried)
    seconds = time.perf_counter() - started
    log_outcomes(handler.stage, batch, outgoing)
    log.debug("batch_processed", stage=handler.stage.value, size=len(batch), seconds=seconds)
    by_stage: dict[Stage, list[Outgoing]] = {handler.stage: []}
    for message in outgoing:
        by_stage.setdefault(outcome_stage(message, handler.stage), []).append(message)
    for stage, messages in by_stage.items():
        # The handler's own stage received the batch; a later stage run in the same step
        # (streams/stages/fused.py) received the images its outcomes are about.
        size = len(batch) if stage is handler.stage else _images_in(messages)
        observer.batch_processed(stage, size, seconds, [_outcome_of(m) for m in messages])
    return outgoing


def _images_in(messages: Sequence[Outgoing]) -> int:
    """How many images ``messages`` are outcomes of (one per model; a shadow's beside them)."""
    return len(
        {
            getattr(m.value, "event_id", None) or id(m)
            for m in messages
            if m.topic is not TopicKey.INFERENCE_SHADOW
        }
    )


def outcome_stage(message: Outgoing, default: Stage) -> Stage:
    """The stage an outcome is of: a rejection or dead letter names it, a result is inference's.

    Every other outcome is ``default``'s (the stage that handled the batch).
    """
    value = message.value
    if isinstance(value, DeadLetter | ImageRejected):
        return value.stage
    if message.topic in (TopicKey.INFERENCE_RESULTS, TopicKey.INFERENCE_SHADOW):
        return Stage.INFERENCE
    return default


def log_outcomes(stage: Stage, batch: Sequence[Incoming], outgoing: Sequence[Outgoing]) -> None:
    """Log each delivered outcome once, bound to the context of the message it came from."""
    sources: dict[str, Incoming] = {}
    for message in batch:
        sources.setdefault(message.correlation_id, message)
    for out in outgoing:
        correlation_id = correlation_id_from_headers(out.headers) or new_correlation_id()
        value = out.value
        source = sources.get(correlation_id)
        position: tuple[str | None, int | None, int | None] = (None, None, None)
        if isinstance(value, DeadLetter):
            position = (value.source_topic, value.source_partition, value.source_offset)
        elif source is not None:
            position = (source.topic, source.partition, source.offset)
        with message_context(
            correlation_id,
            event_id=getattr(value, "event_id", None),
            stage=outcome_stage(out, stage),
            topic=position[0],
            partition=position[1],
            offset=position[2],
        ):
            _log_outcome(out)


def _log_outcome(out: Outgoing) -> None:
    value = out.value
    outcome, code = _outcome_of(out)
    if isinstance(value, DeadLetter):
        log.warning(
            "message_dead_lettered",
            error_code=code,
            attempts=value.attempts,
            reason=value.reason,
            dead_letter_id=str(value.dead_letter_id),
        )
    elif out.topic is TopicKey.IMAGES_REJECTED:
        log.info("image_rejected", error_code=code, reason=getattr(value, "reason", None))
    else:
        log.info("message_processed", outcome=outcome, error_code=code)


def _outcome_of(message: Outgoing) -> tuple[str, str | None]:
    code = getattr(message.value, "error_code", None)
    return OUTCOME_BY_TOPIC.get(message.topic, message.topic.value), (
        str(code) if code is not None else None
    )
